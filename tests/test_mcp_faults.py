"""The MCP server under faulty clients and failing models: strict arguments, failed votes, a killed client.

The SDK client drives ``nexus-agents --mode=server`` over stdio, as in test_mcp_server.py; the
killed-client case uses a real process that owns the server's pipes and is SIGKILLed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nexus_core.config.setup import server_command
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from test_mcp_server import error_text, mcp_client, payload


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


async def test_arguments_are_validated_strictly(project: Path, hermetic_env: dict[str, str]) -> None:
    write_opencode_config(project, "http://127.0.0.1:9/v1", default_model="claude-sonnet-4-5")  # never called
    async with mcp_client(project, hermetic_env) as client:
        thinking = error_text(await client.call_tool("orchestrate", {"task": "x", "thinking": "yes"}))
        assert thinking.startswith("Invalid arguments for orchestrate: thinking: Input should be a valid boolean")
        execute = error_text(await client.call_tool("delegate_to_model", {"task": "x", "execute": 1}))
        assert "execute: Input should be a valid boolean" in execute
        count = error_text(await client.call_tool("consensus_vote", {"question": "q", "count": 2.5}))
        assert "count: Input should be a valid integer" in count
        task = error_text(await client.call_tool("route_task", {"task": 42}))
        assert "task: Input should be a valid string" in task
        # Right types still pass, ints for seconds included.
        assert payload(await client.call_tool("delegate_to_model", {"task": "x", "timeout_s": 30, "execute": False}))


@pytest.mark.opencode
async def test_a_vote_no_model_answered_is_a_tool_error(project: Path, hermetic_env: dict[str, str]) -> None:
    async with ReferenceGateway(faults=["404"]) as gateway:
        write_opencode_config(project, gateway.base_url, default_model="claude-sonnet-4-5")
        async with mcp_client(project, hermetic_env) as client:
            result = await client.call_tool(
                "consensus_vote", {"question": "Is Python dynamically typed?", "models": ["opus", "sonnet"]}
            )
    failed = error_text(result)
    assert failed.startswith("No model answered the vote. opencode-custom-opus: model_not_found ("), failed
    assert "opencode-custom-sonnet: model_not_found (" in failed


# The client: starts the server with pipes it alone holds, sends requests whose answers it never
# reads, reports the server's pid, and waits to be killed.
_CLIENT = r"""
import json, subprocess, sys, time
server = subprocess.Popen(json.loads(sys.argv[1]), cwd=sys.argv[2], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=open(sys.argv[3], "wb"))
def send(message):
    server.stdin.write((json.dumps(message) + "\n").encode())
    server.stdin.flush()
send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
      "capabilities": {}, "clientInfo": {"name": "doomed", "version": "1"}}})
server.stdout.readline()
send({"jsonrpc": "2.0", "method": "notifications/initialized"})
for n in range(200):
    send({"jsonrpc": "2.0", "id": 10 + n, "method": "tools/call", "params": {"name": "list_experts", "arguments": {}}})
print(server.pid, flush=True)
time.sleep(600)
"""


def test_a_sigkilled_client_leaves_the_server_to_end_quietly(
    project: Path, hermetic_env: dict[str, str], tmp_path: Path
) -> None:
    errlog = tmp_path / "server-stderr.txt"
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, json.dumps(server_command()), str(project), str(errlog)],
        env=hermetic_env,
        stdout=subprocess.PIPE,
    )
    try:
        assert client.stdout is not None
        server_pid = int(client.stdout.readline())
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        deadline = time.monotonic() + 20
        while _running(server_pid):
            assert time.monotonic() < deadline, "the server outlived its killed client by 20 s"
            time.sleep(0.05)
    finally:
        client.kill()
        client.wait()
    said = errlog.read_text()
    assert "ExceptionGroup" not in said and "BrokenPipeError" not in said and "Traceback" not in said, said
    assert "unexpected error" not in said, said


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # The server is the killed client's child: once it exits it is a zombie until init reaps it.
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().split(b")")[-1].split()[0] != b"Z"


def _raw_session(project: Path, env: dict[str, str], lines: list[str], answers: int) -> list[dict[str, Any]]:
    """Send ``lines`` after the handshake over the server's real stdio; its first ``answers`` answers besides the handshake's."""
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
    handshake = [
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    ]
    server = subprocess.Popen(
        server_command(), cwd=project, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert server.stdin is not None and server.stdout is not None and server.stderr is not None
    try:
        server.stdin.write(("\n".join([*handshake, *lines]) + "\n").encode())
        server.stdin.flush()
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len(got) < answers + 1 and time.monotonic() < deadline:
            ready, _, _ = select.select([server.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            got.append(json.loads(server.stdout.readline()))
        server.stdin.close()
        assert server.wait(20) == 0
        assert "Traceback" not in server.stderr.read().decode()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    # Replies may overtake each other (an error for an unreadable line is written as soon as it is
    # read, maybe before the SDK has answered the handshake): leave out the handshake's by its id.
    return [answer for answer in got if answer.get("id") != 1]


def test_requests_the_sdk_cannot_read_get_a_json_rpc_error(project: Path, hermetic_env: dict[str, str]) -> None:
    deep = '{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": ' + "[" * 100_000 + "]" * 100_000 + "}"
    answers = _raw_session(
        project,
        hermetic_env,
        [
            json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": ["list_experts", {}]}),
            deep,
            "this is not json",
            json.dumps({"jsonrpc": "2.0", "method": "notifications/progress", "params": ["no", "answer"]}),
            json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "list_experts"}}),
        ],
        answers=4,
    )
    by_id = {a.get("id"): a for a in answers}
    assert by_id[2]["error"]["code"] == -32600 and "params must be an object" in by_id[2]["error"]["message"]
    assert by_id[3]["error"]["code"] == -32600 and "nested too deeply" in by_id[3]["error"]["message"]
    assert by_id[None]["error"]["code"] == -32700
    assert "result" in by_id[5], "the server stopped serving after the bad lines"
    assert len(answers) == 4, answers  # the broken notification is not answered
