# ruff: noqa: F811 - opencode_binary is a fixture imported from opencode_versions
"""A cancelled MCP tool call ends its run and process tree within a second, through the official SDK client.

Two ways a client cancels: it sends ``notifications/cancelled`` for the call's request id, or it
abandons the call (its scope is cancelled: a timeout, the user gave up), on which the SDK client
sends the same notification itself. Either way, with the gateway silent and OpenCode waiting on
it, every OpenCode process of the run must be gone within :data:`ENDED_WITHIN_S` of the cancel,
and the server logs the run as cancelled.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import Client, types
from mcp.client.stdio import StdioServerParameters, stdio_client

from nexus_core.config.setup import server_command
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from opencode_versions import opencode_binary  # noqa: F401 - a fixture
from test_orphans import home_processes, opencode_processes

pytestmark = pytest.mark.opencode

ENDED_WITHIN_S = 1.0
SONNET = "custom/claude-sonnet-4-5"


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@pytest.fixture
def run_env(tmp_path: Path, hermetic_env: dict[str, str], opencode_binary: str) -> dict[str, str]:
    # A wide console: the SDK logs through rich, which would wrap the line the test looks for.
    return {**hermetic_env, "NEXUS_OPENCODE": opencode_binary, "COLUMNS": "400"}


@pytest.mark.parametrize("how", ["notification", "abandon"])
async def test_a_cancelled_call_ends_its_run_and_tree_within_a_second(
    tmp_path: Path, run_env: dict[str, str], how: str
) -> None:
    project = tmp_path / "project"
    home = run_env["HOME"]
    tokens: list[Any] = []

    async def on_message(message: Any) -> None:
        # The SDK client uses the request id as the progress token: it names the call to cancel.
        if isinstance(message, types.ProgressNotification):
            tokens.append(message.params.progress_token)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        pass

    with ReferenceGateway(faults=["silent"]) as gateway, tempfile.TemporaryFile("w+") as errlog:
        path = write_opencode_config(project, gateway.base_url, default_model="claude-sonnet-4-5")
        config = json.loads(path.read_text())
        config["small_model"] = SONNET
        path.write_text(json.dumps(config))
        command = server_command()
        params = StdioServerParameters(command=command[0], args=command[1:], env=run_env, cwd=project)
        try:
            async with (
                Client(stdio_client(params, errlog=errlog), message_handler=on_message) as client,
                anyio.create_task_group() as group,
            ):
                call_scope = anyio.CancelScope()

                async def call() -> None:
                    with call_scope:
                        await client.call_tool(
                            "orchestrate",
                            {"task": "never answered", "model_hint": "sonnet"},
                            progress_callback=on_progress,
                        )

                group.start_soon(call)
                with anyio.fail_after(60):
                    while not (tokens and any(r.kind == "chat" for r in gateway.requests)):
                        await anyio.sleep(0.05)
                running = opencode_processes(home)
                assert running, "no OpenCode process carries the hermetic HOME"
                cancelled_at = time.monotonic()
                if how == "notification":
                    await client.session.send_notification(
                        types.CancelledNotification(
                            params=types.CancelledNotificationParams(request_id=tokens[0], reason="the user gave up")
                        )
                    )
                else:
                    call_scope.cancel()
                while any(_alive(p) for p in running) and time.monotonic() < cancelled_at + 10:
                    await anyio.sleep(0.02)
                took = time.monotonic() - cancelled_at
                # The supervisors are reaped right after their groups ended: a moment later.
                with anyio.move_on_after(5):
                    while left := [p.pid for p in home_processes(home) if "--mode=server" not in _cmdline(p)]:
                        await anyio.sleep(0.05)
                group.cancel_scope.cancel()
        finally:
            for proc in home_processes(home):
                proc.kill()
        errlog.seek(0)
        log = errlog.read()
    assert took <= ENDED_WITHIN_S, f"the run's tree took {took:.2f} s to end after the cancel"
    assert not left, f"left running: {left}"
    assert "cancelled by the client" in log and "ended as cancelled" in log, log
