"""The ``opencode serve`` transport against the real OpenCode (both releases) and the reference gateway."""
# ruff: noqa: F811 - opencode_binary is a fixture imported from opencode_versions

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from nexus_core.gateway import write_opencode_config
from nexus_core.gateway.slow import SlowChunkGateway
from nexus_core.opencode.attempt import AttemptSpec
from nexus_core.opencode.events import FailureClass
from nexus_core.opencode.serve.client import ServeClient
from nexus_core.opencode.serve.events import PermissionAsked, TextDelta, ToolState
from nexus_core.opencode.serve.server import ManagedServer
from nexus_core.opencode.serve.session import ServeAttempt
from opencode_versions import opencode_binary  # noqa: F401 - a fixture

pytestmark = pytest.mark.opencode

KEY = "sk-nexus-test-0123456789abcdef"
MODEL = "custom/claude-sonnet-4-5"


def _workdir(tmp_path: Path, gateway: SlowChunkGateway, permission: dict[str, str] | None = None) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    path = write_opencode_config(work, gateway.base_url, api_key_env="CUSTOM_API_KEY")
    if permission:
        config = json.loads(path.read_text())
        config["permission"] = permission
        path.write_text(json.dumps(config))
    return work


def _spec(prompt: str, **kw: Any) -> AttemptSpec:
    return AttemptSpec(cli_model_name=MODEL, prompt=prompt, timeout_s=60, stall_timeout_s=30, **kw)


async def _collect(attempt: ServeAttempt, prompt: str | None = None) -> list[object]:
    return [event async for event in attempt.events(prompt)]


def test_deltas_arrive_before_the_end_and_a_follow_up_is_one_conversation(
    tmp_path: Path, hermetic_env: dict[str, str], opencode_binary: str
) -> None:
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.25) as gateway:
        # Long enough to outlast the start: 1.18.33 publishes the first deltas of an answer together,
        # up to about 0.7 s after the gateway sent them (1.2.15 one by one).
        gateway.script("count words", "one two three four five six seven eight " + " ".join(f"w{i}" for i in range(24)))
        work = _workdir(tmp_path, gateway)
        env = {**hermetic_env, "CUSTOM_API_KEY": KEY}

        async def main() -> None:
            server = await ManagedServer.start(work, env=env, opencode=opencode_binary)
            try:
                async with ServeClient(server) as client:
                    attempt = ServeAttempt(client, _spec("please count words"))
                    stamps: list[tuple[float, object]] = []
                    async for event in attempt.events():
                        stamps.append((time.monotonic(), event))
                    assert attempt.result is not None and attempt.result.outcome.ok, attempt.result
                    assert "eight" in attempt.result.text
                    deltas = [t for t, e in stamps if isinstance(e, TextDelta)]
                    assert len(deltas) >= 3
                    end = stamps[-1][0]
                    assert end - deltas[0] > 0.5, "the first delta came only at the end"
                    follow = ServeAttempt(client, _spec("second question"), session_id=attempt.session_id)
                    await _collect(follow)
                    assert follow.result is not None and follow.result.outcome.ok, follow.result
                chats = [r for r in gateway.requests if r.kind == "chat"]
                users = [m for m in chats[-1].messages if m.get("role") == "user"]
                assert len(users) >= 2, "the follow-up did not carry the first prompt"
            finally:
                await server.aclose()
            assert not server.alive
            assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE

        asyncio.run(main())


@pytest.mark.parametrize("approve", [(), ("bash",)], ids=["rejected", "approved"])
def test_a_bash_permission_is_asked_and_rejected_or_approved(
    tmp_path: Path, hermetic_env: dict[str, str], opencode_binary: str, approve: tuple[str, ...]
) -> None:
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.script(
            "run it",
            tool_calls=[("bash", {"command": "echo hi-from-bash", "description": "say hi"})],
            then="done running",
        )
        work = _workdir(tmp_path, gateway, permission={"bash": "ask"})
        env = {**hermetic_env, "CUSTOM_API_KEY": KEY}

        async def main() -> None:
            server = await ManagedServer.start(work, env=env, opencode=opencode_binary)
            try:
                async with ServeClient(server) as client:
                    attempt = ServeAttempt(client, _spec("please run it"), approve=approve)
                    events = await _collect(attempt)
            finally:
                await server.aclose()
            asked = [e for e in events if isinstance(e, PermissionAsked)]
            assert asked and asked[0].permission == "bash"
            assert attempt.result is not None
            if approve:
                assert attempt.result.outcome.ok, attempt.result.outcome
                done = [e for e in events if isinstance(e, ToolState) and e.status == "completed"]
                assert done and "hi-from-bash" in (done[0].output or "")
            else:
                outcome = attempt.result.outcome
                assert outcome.failure is FailureClass.PERMISSION
                assert "bash" in outcome.message and "echo hi-from-bash" in outcome.message
                assert "--approve bash" in outcome.fix

        asyncio.run(main())


def test_out_of_time_while_opencode_retries_says_what_the_gateway_answered(
    tmp_path: Path, hermetic_env: dict[str, str], opencode_binary: str
) -> None:
    """A timeout during OpenCode's retries keeps them (as the run transport does): the last word
    names the gateway's 500s, never "no byte came back from the gateway"."""
    from nexus_core.opencode.events import GatewayRetrying
    from nexus_core.routing.chain import DelegationResult
    from nexus_core.routing.last_word import last_word

    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.add_fault("500")
        work = _workdir(tmp_path, gateway)
        env = {**hermetic_env, "CUSTOM_API_KEY": KEY}
        spec = AttemptSpec(
            cli_model_name=MODEL, prompt="hello", timeout_s=6, stall_timeout_s=30, max_gateway_retries=20
        )

        async def main() -> None:
            server = await ManagedServer.start(work, env=env, opencode=opencode_binary)
            try:
                async with ServeClient(server) as client:
                    attempt = ServeAttempt(client, spec)
                    await _collect(attempt)
            finally:
                await server.aclose()
            result = attempt.result
            assert result is not None and result.outcome.failure is FailureClass.TIMEOUT, result
            retried = [e for e in result.events if isinstance(e, GatewayRetrying)]
            assert retried and result.outcome.failed_requests == len(retried), result
            said = last_word(DelegationResult(attempts=(result,), duration_s=result.outcome.duration_s), 6)
            assert said.startswith(f"{MODEL}: 500 ×{len(retried)} from the gateway, then no answer within the 6 s"), (
                said
            )
            assert "no byte came back" not in said

        asyncio.run(main())


def test_abort_ends_the_attempt_as_cancelled(
    tmp_path: Path, hermetic_env: dict[str, str], opencode_binary: str
) -> None:
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=1.0) as gateway:
        gateway.script("slow answer", " ".join(f"w{i}" for i in range(60)))
        work = _workdir(tmp_path, gateway)
        env = {**hermetic_env, "CUSTOM_API_KEY": KEY}

        async def main() -> None:
            server = await ManagedServer.start(work, env=env, opencode=opencode_binary)
            try:
                async with ServeClient(server) as client:
                    attempt = ServeAttempt(client, _spec("a slow answer"))
                    started = time.monotonic()
                    async for event in attempt.events():
                        if isinstance(event, TextDelta):
                            attempt.cancel()
                    assert attempt.result is not None
                    assert attempt.result.outcome.failure is FailureClass.CANCELLED
                    assert time.monotonic() - started < 30
            finally:
                await server.aclose()

        asyncio.run(main())


_CHILD = """
import asyncio, sys, json
from nexus_core.opencode.serve.server import ManagedServer
async def main():
    server = await ManagedServer.start(sys.argv[1], opencode=sys.argv[2])
    print(server.pid, flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


def test_kill_9_of_the_parent_leaves_no_server(
    tmp_path: Path, hermetic_env: dict[str, str], opencode_binary: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), opencode_binary],
        env=hermetic_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
        server = psutil.Process(pid)
        tree = [server, *server.children(recursive=True)]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        _gone, alive = psutil.wait_procs(tree, timeout=5)
        assert not alive, f"left running: {[p.pid for p in alive]}"
    finally:
        child.kill()
        child.wait(10)
