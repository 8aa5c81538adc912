# ruff: noqa: F811 - opencode_binary is a fixture imported from opencode_versions
"""Nothing outlives nexus: a killed CLI or MCP server, mid-run, leaves no OpenCode behind.

Each case starts a real run (the real OpenCode of each release the project tests) against the
reference gateway, which stays silent; once OpenCode's request has reached it, nexus is killed
(SIGKILL or SIGTERM) and the gateway is told to answer from then on, the moment that made an
orphaned OpenCode spin and grow. Within :data:`ENDED_WITHIN_S` no process may be left that
carries the run's hermetic HOME in its environment. The MCP server is driven by the official
MCP Python SDK client, as a client would drive it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import psutil
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from nexus_core.cli import build_parser
from nexus_core.config.setup import server_command
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from opencode_versions import opencode_binary  # noqa: F401 - a fixture

pytestmark = pytest.mark.opencode

ENDED_WITHIN_S = 5.0
SONNET = "custom/claude-sonnet-4-5"
SIGNALS = [pytest.param(signal.SIGKILL, id="SIGKILL"), pytest.param(signal.SIGTERM, id="SIGTERM")]


def _transports() -> list[object]:
    """The default transport, and ``--transport run`` (the parser must take it: no silent skip)."""
    args = build_parser().parse_args(["orchestrate", "--transport", "run", "a task"])
    assert args.transport == "run"
    return [pytest.param(None, id="default"), pytest.param("run", id="run")]


def home_processes(home: str) -> list[psutil.Process]:
    """Live (not zombie) processes whose environment has ``HOME=home``: everything the run started."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("HOME") == home and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def opencode_processes(home: str) -> list[psutil.Process]:
    found = []
    for proc in home_processes(home):
        try:
            if "opencode" in proc.name() or any("opencode" in part for part in proc.cmdline()[:1]):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def until(check: Callable[[], object], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return bool(check())


@pytest.fixture
def silent_gateway() -> Iterator[ReferenceGateway]:
    with ReferenceGateway(models=("claude-opus-4-5", "claude-sonnet-4-5"), faults=["silent"]) as gateway:
        yield gateway


@pytest.fixture
def run_env(
    tmp_path: Path, hermetic_env: dict[str, str], silent_gateway: ReferenceGateway, opencode_binary: str
) -> dict[str, str]:
    project = tmp_path / "project"
    path = write_opencode_config(project, silent_gateway.base_url, default_model="claude-sonnet-4-5")
    config = json.loads(path.read_text())
    config["small_model"] = SONNET  # the title request stays on the gateway
    path.write_text(json.dumps(config))
    return {**hermetic_env, "NEXUS_OPENCODE": opencode_binary}


def _assert_nothing_left(home: str, gateway: ReferenceGateway, what: str) -> None:
    # The gateway answers from now on: an orphan would wake up and spin.
    gateway.clear_faults()
    try:
        assert until(lambda: not home_processes(home), ENDED_WITHIN_S), (
            f"left running {ENDED_WITHIN_S:g} s after {what}: "
            f"{[(p.pid, p.name(), p.ppid()) for p in home_processes(home)]}"
        )
    finally:
        for proc in home_processes(home):
            proc.kill()


@pytest.mark.parametrize("transport", _transports())
@pytest.mark.parametrize("sig", SIGNALS)
def test_a_killed_cli_leaves_no_opencode(
    tmp_path: Path,
    run_env: dict[str, str],
    silent_gateway: ReferenceGateway,
    sig: signal.Signals,
    transport: str | None,
) -> None:
    project = tmp_path / "project"
    argv = ["nexus-agents", "orchestrate", "--model", "sonnet", "--dir", str(project)]
    argv += ["--transport", transport] if transport else []
    # The CLI's own stdout and stderr are pipes this test never reads.
    cli = subprocess.Popen(
        [*argv, "never answered"], env=run_env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert until(lambda: any(r.kind == "chat" for r in silent_gateway.requests), 60), "no chat request came"
        assert opencode_processes(run_env["HOME"]), "no OpenCode process carries the hermetic HOME"
        cli.send_signal(sig)
        cli.wait(ENDED_WITHIN_S)
        _assert_nothing_left(run_env["HOME"], silent_gateway, f"{sig.name} of the CLI")
    finally:
        cli.kill()
        cli.wait()


def _server_pid(home: str) -> int:
    for proc in home_processes(home):
        try:
            if "--mode=server" in proc.cmdline():
                return proc.pid
        except psutil.Error:
            continue
    raise AssertionError("the MCP server process was not found")


@pytest.mark.parametrize("sig", SIGNALS)
async def test_a_killed_mcp_server_leaves_no_opencode(
    tmp_path: Path, run_env: dict[str, str], silent_gateway: ReferenceGateway, sig: signal.Signals
) -> None:
    project = tmp_path / "project"
    command = server_command()
    params = StdioServerParameters(command=command[0], args=command[1:], env=run_env, cwd=project)
    home = run_env["HOME"]
    outcome: list[object] = []
    async with Client(params, read_timeout_seconds=60) as client:

        async def call() -> None:
            try:
                outcome.append(
                    await client.call_tool("orchestrate", {"task": "never answered", "model_hint": "sonnet"})
                )
            except Exception as exc:  # the server died under the call: any error will do
                outcome.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            with anyio.fail_after(60):
                while not any(r.kind == "chat" for r in silent_gateway.requests):
                    await anyio.sleep(0.05)
            assert opencode_processes(home), "no OpenCode process carries the hermetic HOME"
            os.kill(_server_pid(home), sig)
            await anyio.to_thread.run_sync(_assert_nothing_left, home, silent_gateway, f"{sig.name} of the server")
            with anyio.move_on_after(10):
                while not outcome:
                    await anyio.sleep(0.05)
            group.cancel_scope.cancel()
