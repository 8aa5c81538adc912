"""The MCP server over real stdio: the SDK's client against ``nexus-agents --mode=server``, and OpenCode's.

Runs go through the real pinned OpenCode against the loopback reference gateway; only the
model is scripted.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import TextContent

from conftest import opencode_path, run_cli
from nexus_core.config.setup import server_command
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.mcp.consensus import agreement, verdict_of
from nexus_core.mcp.jobs import SERVER_EXIT
from nexus_core.mcp.project import delegation_depth
from nexus_core.mcp.reports import VoteAnswer
from nexus_core.routing.experts import EXPERTS
from nexus_core.store.runs import RunStore

ANSI = re.compile(r"\x1b\[[0-9;]*m")
OPUS = "custom/claude-opus-4-5"
SONNET = "custom/claude-sonnet-4-5"


@asynccontextmanager
async def mcp_client(project: Path, env: dict[str, str], command: list[str] | None = None) -> AsyncIterator[Client]:
    """The SDK client over stdio to this installation's server, started as OpenCode starts it."""
    command = command or server_command()
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=project)
    async with Client(params, read_timeout_seconds=120) as client:
        yield client


def payload(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def error_text(result: Any) -> str:
    assert result.is_error, result.content
    return result.content[0].text


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
async def gateway() -> AsyncIterator[ReferenceGateway]:
    async with ReferenceGateway() as gw:
        yield gw


@pytest.fixture
def gateway_project(project: Path, gateway: ReferenceGateway) -> Path:
    write_opencode_config(project, gateway.base_url, default_model="claude-sonnet-4-5")
    return project


# ---------------------------------------------------------------- without a model


@pytest.mark.parametrize("how", ["script", "python -m"])
async def test_tools_are_listed_with_descriptions_and_schemas(
    project: Path, hermetic_env: dict[str, str], how: str
) -> None:
    command = server_command() if how == "script" else [sys.executable, "-m", "nexus_core", "--mode=server"]
    async with mcp_client(project, hermetic_env, command) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {
        "delegate_to_model",
        "orchestrate",
        "list_models",
        "route_task",
        "doctor",
        "list_experts",
        "consensus_vote",
        "start_task",
        "task_status",
        "task_result",
        "cancel_task",
        "list_runs",
    }
    assert all(t.description for t in tools.values())
    orchestrate = tools["orchestrate"].input_schema
    assert orchestrate["required"] == ["task"]
    assert {"task", "model_hint", "variant", "thinking", "workDir", "expert"} <= set(orchestrate["properties"])
    assert "ctx" not in orchestrate["properties"]


async def test_dir_option_names_the_project(project: Path, tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    (project / "opencode.json").write_text(json.dumps({"provider": {"acme": {"models": {"big-one": {}}}}}))
    command = [*server_command()[:-1], "--dir", str(project), "--mode=server"]
    async with mcp_client(tmp_path, hermetic_env, command) as client:
        models = payload(await client.call_tool("list_models", {}))
    assert "opencode-acme-big-one" in {m["id"] for m in models["models"]}


async def test_list_experts_and_models(project: Path, hermetic_env: dict[str, str]) -> None:
    (project / "opencode.json").write_text(json.dumps({"provider": {"acme": {"models": {"big-one": {"name": "Big"}}}}}))
    async with mcp_client(project, hermetic_env) as client:
        experts = payload(await client.call_tool("list_experts", {}))
        models = payload(await client.call_tool("list_models", {}))
    assert [e["id"] for e in experts["experts"]] == [e.id for e in EXPERTS]
    assert {"code", "review", "security", "architecture", "docs"} <= {e["id"] for e in experts["experts"]}
    assert all(
        e["system_prompt"] and e["preferred_capability"] in {"reasoning", "code", "speed", "cost"}
        for e in experts["experts"]
    )
    assert {"opencode-custom-opus", "opencode-acme-big-one"} <= {m["id"] for m in models["models"]}


async def test_route_task_and_recommendation_explain_without_running(
    gateway_project: Path, gateway: ReferenceGateway, hermetic_env: dict[str, str]
) -> None:
    async with mcp_client(gateway_project, hermetic_env) as client:
        routed = payload(
            await client.call_tool("route_task", {"task": "Design the architecture of a concurrent scheduler"})
        )
        forced = payload(await client.call_tool("route_task", {"task": "anything", "model_hint": "sonnet"}))
        recommended = payload(
            await client.call_tool(
                "delegate_to_model", {"task": "Fix the typo in the README", "preferred_capability": "speed"}
            )
        )
    assert routed["chosen"] == "opencode-custom-opus"
    first = routed["models"][0]
    assert first["total"] == sum(t["value"] for t in first["terms"])
    assert forced["chosen"] == "opencode-custom-sonnet" and forced["reason"].startswith("forced by the hint")
    assert recommended["recommended"] == "opencode-custom-sonnet"
    assert recommended["total"] == sum(t["value"] for t in recommended["breakdown"])
    assert [a["id"] for a in recommended["alternatives"]] and recommended["alternatives"][0]["total"] <= recommended[
        "total"
    ]
    assert recommended["result"] is None
    assert gateway.requests == []


async def test_bad_input_is_a_clear_tool_error_and_the_server_keeps_serving(
    project: Path, hermetic_env: dict[str, str]
) -> None:
    async with mcp_client(project, hermetic_env) as client:
        missing = error_text(await client.call_tool("orchestrate", {}))
        assert missing.startswith("Invalid arguments for orchestrate: task: Field required.")
        assert "errors.pydantic.dev" not in missing
        wrong = error_text(await client.call_tool("delegate_to_model", {"task": "x", "preferred_capability": "magic"}))
        assert "preferred_capability" in wrong and "'reasoning', 'code', 'speed' or 'cost'" in wrong
        unknown = error_text(await client.call_tool("list_experts", {"modelHint": "x"}))
        assert unknown.startswith("Unknown argument 'modelHint' for list_experts")
        hint = error_text(await client.call_tool("route_task", {"task": "x", "model_hint": "opuss"}))
        assert "no model matches the hint 'opuss'" in hint and "opus" in hint
        expert = error_text(await client.call_tool("orchestrate", {"task": "x", "expert": "wizard"}))
        assert "No expert has the id 'wizard'" in expert and "security" in expert
        blank = error_text(await client.call_tool("orchestrate", {"task": " \n\t "}))
        assert blank.startswith("Invalid arguments for orchestrate: task:") and "empty" in blank
        blank_question = error_text(await client.call_tool("consensus_vote", {"question": "  "}))
        assert "question:" in blank_question and "empty" in blank_question
        workdir = error_text(await client.call_tool("orchestrate", {"task": "x", "workDir": "no/such/dir"}))
        assert "workDir 'no/such/dir' is not a directory" in workdir
        (project / "opencode.json").write_text('{\n  "provider": {,\n}')
        broken = error_text(await client.call_tool("list_models", {}))
        assert str(project / "opencode.json") + ":" in broken and "Fix the file" in broken
        (project / "opencode.json").write_text("{}")
        assert payload(await client.call_tool("list_models", {}))["models"]


async def test_doctor_reports_checks_as_json(gateway_project: Path, hermetic_env: dict[str, str]) -> None:
    async with mcp_client(gateway_project, hermetic_env) as client:
        report = payload(await client.call_tool("doctor", {}))
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["gateway.custom"]["status"] == "ok"
    assert checks["mcp"]["status"] == "warn"
    assert report["project_dir"] == str(gateway_project)


@pytest.mark.parametrize(("value", "expected"), [("", (0, 2)), ("1", (1, 2)), ("junk", (0, 2)), ("-3", (0, 2))])
def test_delegation_depth_reads_the_environment(value: str, expected: tuple[int, int]) -> None:
    assert delegation_depth({"NEXUS_DELEGATION_DEPTH": value}) == expected
    assert delegation_depth({"NEXUS_DELEGATION_DEPTH": "5", "NEXUS_MAX_DELEGATION_DEPTH": "7"}) == (5, 7)


def test_agreement_groups_verdicts() -> None:
    def answer(model: str, text: str, ok: bool = True) -> VoteAnswer:
        return VoteAnswer(
            model_id=model, cli_model_name=None, ok=ok, verdict=verdict_of(text) if ok else "", answer=text
        )

    assert verdict_of("\n  Yes, definitely!\nbecause") == "yes definitely"
    majority = agreement("q", [answer("a", "Yes\nx"), answer("b", "yes.\ny"), answer("c", "No\nz")])
    assert (majority.agreement, majority.majority_verdict) == ("majority", "yes")
    assert [g.models for g in majority.groups] == [["a", "b"], ["c"]]
    split = agreement("q", [answer("a", "A"), answer("b", "B"), answer("c", "", ok=False)])
    assert (
        split.agreement == "split"
        and split.majority_verdict is None
        and "1 model(s) gave no usable answer" in split.summary
    )
    assert agreement("q", [answer("a", "", ok=False)]).agreement == "no answers"


# ---------------------------------------------------------------- real runs through OpenCode


@pytest.mark.opencode
async def test_orchestrate_runs_with_expert_fallback_tokens_and_progress(
    gateway_project: Path, gateway: ReferenceGateway, hermetic_env: dict[str, str]
) -> None:
    gateway.add_fault("404,model=claude-opus-4-5")
    gateway.script("hash map resize", reply="Use a load factor of 0.75.")
    notes: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append(message or "")

    async with mcp_client(gateway_project, hermetic_env) as client:
        result = await client.call_tool(
            "orchestrate",
            {"task": "Review the hash map resize logic", "model_hint": "opus", "expert": "review"},
            progress_callback=on_progress,
        )
    report = payload(result)
    assert report["ok"] and report["text"] == "Use a load factor of 0.75."
    assert report["model_used"] == "opencode-custom-sonnet" and report["cli_model_name"] == SONNET
    assert [(a["model_id"], a["failure"]) for a in report["attempts"]] == [
        ("opencode-custom-opus", "model_not_found"),
        ("opencode-custom-sonnet", None),
    ]
    assert report["expert"] == "review" and report["tokens"]["total"] > 0
    assert (
        report["tokens"]["total"]
        == report["tokens"]["input"] + report["tokens"]["output"] + report["tokens"]["reasoning"]
    )
    chats = [r for r in gateway.requests if r.kind == "chat"]
    review_prompt = next(e.system_prompt for e in EXPERTS if e.id == "review")
    assert review_prompt in chats[-1].last_user_text and "Review the hash map resize logic" in chats[-1].last_user_text
    assert f"attempt 1: opencode-custom-opus ({OPUS})" in notes
    assert "falling back from opencode-custom-opus to opencode-custom-sonnet (model_not_found)" in notes


@pytest.mark.opencode
async def test_delegate_execute_and_a_failed_run_is_a_tool_error(
    gateway_project: Path, gateway: ReferenceGateway, hermetic_env: dict[str, str]
) -> None:
    gateway.script("capital of France", reply="Paris.")
    async with mcp_client(gateway_project, hermetic_env) as client:
        done = payload(
            await client.call_tool(
                "delegate_to_model", {"task": "What is the capital of France?", "model_hint": "sonnet", "execute": True}
            )
        )
        gateway.add_fault("401")
        failed = error_text(await client.call_tool("orchestrate", {"task": "anything at all", "model_hint": "sonnet"}))
    assert done["recommended"] == "opencode-custom-sonnet"
    assert done["result"]["ok"] and done["result"]["text"] == "Paris."
    assert failed.startswith("The task failed: opencode-custom-sonnet: auth (")


@pytest.mark.opencode
async def test_a_rate_limited_model_cools_down_for_the_next_calls(
    gateway_project: Path, gateway: ReferenceGateway, hermetic_env: dict[str, str]
) -> None:
    gateway.add_fault("429,model=claude-opus-4-5,retry_after=0")
    async with mcp_client(gateway_project, hermetic_env) as client:
        report = payload(
            await client.call_tool("orchestrate", {"task": "design the cache eviction policy", "model_hint": "opus"})
        )
        explained = payload(await client.call_tool("route_task", {"task": "design the cache eviction policy"}))
    assert [(a["model_id"], a["failure"]) for a in report["attempts"]] == [
        ("opencode-custom-opus", "rate_limited"),
        ("opencode-custom-sonnet", None),
    ]
    skipped = {s["id"]: s["reason"] for s in explained["skipped"]}
    # The rest comes from the run store (OpenCode keeps the Retry-After to itself: the default rest).
    assert re.fullmatch(r"rate limited \d+ s ago; resting \d+ s more", skipped["opencode-custom-opus"]), explained


@pytest.mark.opencode
async def test_consensus_vote_asks_models_concurrently(
    gateway_project: Path, gateway: ReferenceGateway, hermetic_env: dict[str, str]
) -> None:
    gateway.script("Is Python dynamically typed?", reply="Yes\nIt checks types at run time.")
    async with mcp_client(gateway_project, hermetic_env) as client:
        vote = payload(
            await client.call_tool(
                "consensus_vote", {"question": "Is Python dynamically typed?", "models": ["opus", "sonnet"]}
            )
        )
        too_few = error_text(await client.call_tool("consensus_vote", {"question": "q", "models": ["opus"]}))
        gateway.add_fault("404,model=claude-opus-4-5")
        half = payload(
            await client.call_tool(
                "consensus_vote", {"question": "Is Python dynamically typed?", "models": ["opus", "sonnet"]}
            )
        )
    assert [a["model_id"] for a in vote["answers"]] == ["opencode-custom-opus", "opencode-custom-sonnet"]
    assert all(a["ok"] and a["verdict"] == "yes" for a in vote["answers"]), vote["answers"]
    assert (vote["agreement"], vote["majority_verdict"]) == ("unanimous", "yes")
    assert {r.model for r in gateway.requests if r.kind == "chat"} == {"claude-opus-4-5", "claude-sonnet-4-5"}
    assert "models" in too_few and "at least 2" in too_few
    assert [(a["model_id"], a["ok"]) for a in half["answers"]] == [
        ("opencode-custom-opus", False),
        ("opencode-custom-sonnet", True),
    ]
    assert "not found" in half["answers"][0]["error"].lower()
    assert half["agreement"] == "unanimous" and half["summary"].endswith("1 model(s) gave no usable answer.")


async def test_depth_limit_refuses_to_delegate(
    gateway_project: Path, gateway: ReferenceGateway, hermetic_env: dict[str, str]
) -> None:
    env = {**hermetic_env, "NEXUS_DELEGATION_DEPTH": "2"}
    async with mcp_client(gateway_project, env) as client:
        for tool, args in (
            ("orchestrate", {"task": "x"}),
            ("delegate_to_model", {"task": "x", "execute": True}),
            ("consensus_vote", {"question": "x"}),
        ):
            refused = error_text(await client.call_tool(tool, args))
            assert refused.startswith(f"{tool} refused: this nexus server already runs 2 delegation(s) deep")
        assert payload(await client.call_tool("delegate_to_model", {"task": "x"}))["recommended"]
    assert gateway.requests == []


# ---------------------------------------------------------------- inside OpenCode (the acceptance path)


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.opencode
def test_opencode_mcp_list_shows_the_server_connected_after_setup(project: Path, hermetic_env: dict[str, str]) -> None:
    setup = run_cli(["setup", "--project"], hermetic_env, project)
    assert setup.returncode == 0, setup.stderr
    listed = subprocess.run(
        [opencode_path(), "mcp", "list"], env=hermetic_env, cwd=project, capture_output=True, text=True, timeout=120
    )
    text = ANSI.sub("", listed.stdout + listed.stderr)
    assert "✓ nexus-agents connected" in text, text
    assert server_command()[0] in text


@pytest.mark.opencode
def test_opencode_run_calls_list_experts_and_the_model_receives_the_answer(
    project: Path, hermetic_env: dict[str, str]
) -> None:
    with ReferenceGateway() as gateway:
        write_opencode_config(project, gateway.base_url, default_model="claude-sonnet-4-5")
        assert run_cli(["setup", "--project"], hermetic_env, project).returncode == 0
        gateway.script("which experts", tool_calls=[("nexus-agents_list_experts", {})], then="There are seven experts.")
        run = subprocess.run(
            [opencode_path(), "run", "--format", "json", "--model", SONNET],
            input="which experts do you have?",
            env=hermetic_env,
            cwd=project,
            capture_output=True,
            text=True,
            timeout=180,
        )
        chats = [r for r in gateway.requests if r.kind == "chat"]
    events = _events(run.stdout)
    tool_uses = [e["part"] for e in events if e["type"] == "tool_use"]
    assert [(t["tool"], t["state"]["status"]) for t in tool_uses] == [("nexus-agents_list_experts", "completed")], (
        run.stdout + run.stderr
    )
    output = tool_uses[0]["state"]["output"]
    assert [e["id"] for e in json.loads(output)["experts"]] == [e.id for e in EXPERTS]
    assert "nexus-agents_list_experts" in chats[0].tools
    follow_up = [m for m in chats[-1].messages if m.get("role") == "tool"]
    assert follow_up and json.loads(follow_up[-1]["content"]) == json.loads(output)
    assert [e["part"]["text"] for e in events if e["type"] == "text"] == ["There are seven experts."]


@pytest.mark.opencode
def test_opencode_run_at_the_depth_limit_gets_a_tool_error_not_a_recursion(
    project: Path, hermetic_env: dict[str, str]
) -> None:
    env = {**hermetic_env, "NEXUS_DELEGATION_DEPTH": "2"}
    with ReferenceGateway() as gateway:
        write_opencode_config(project, gateway.base_url, default_model="claude-sonnet-4-5")
        assert run_cli(["setup", "--project"], env, project).returncode == 0
        gateway.script(
            "delegate this",
            tool_calls=[("nexus-agents_orchestrate", {"task": "delegate this onwards"})],
            then="Understood.",
        )
        run = subprocess.run(
            [opencode_path(), "run", "--format", "json", "--model", SONNET],
            input="delegate this",
            env=env,
            cwd=project,
            capture_output=True,
            text=True,
            timeout=180,
        )
        chats = [r for r in gateway.requests if r.kind == "chat"]
    tool_uses = [e["part"] for e in _events(run.stdout) if e["type"] == "tool_use"]
    # OpenCode 1.2.15 hands an MCP error result to the model as the tool's output.
    assert [t["tool"] for t in tool_uses] == ["nexus-agents_orchestrate"], run.stdout + run.stderr
    assert tool_uses[0]["state"]["output"].startswith(
        "orchestrate refused: this nexus server already runs 2 delegation(s) deep"
    )
    assert len(chats) == 2 and not any("delegate this onwards" in r.last_user_text for r in chats)
    assert "orchestrate refused" in [m for m in chats[-1].messages if m.get("role") == "tool"][-1]["content"]


def _opencode_processes_in(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "cwd"]):
        info = proc.info
        if info["cwd"] == str(folder) and "opencode" in " ".join(info["cmdline"] or [info["name"] or ""]):
            found.append(proc)
    return found


def _poll(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.05)


@pytest.mark.opencode
def test_client_going_away_mid_run_ends_the_server_and_its_opencode_tree(
    project: Path, hermetic_env: dict[str, str]
) -> None:
    with ReferenceGateway(faults=["silent"]) as gateway:
        write_opencode_config(project, gateway.base_url, default_model="claude-sonnet-4-5")
        server = subprocess.Popen(
            server_command(),
            cwd=project,
            env=hermetic_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert server.stdin is not None and server.stdout is not None
            messages = [
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "opencode", "version": "1.2.15"},
                    },
                },
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "orchestrate", "arguments": {"task": "never answered", "model_hint": "sonnet"}},
                },
            ]
            server.stdin.write("".join(json.dumps(m) + "\n" for m in messages).encode())
            server.stdin.flush()
            assert json.loads(server.stdout.readline())["id"] == 1
            running = _poll(lambda: _opencode_processes_in(project), 60, "no opencode process started")
            server.stdin.close()
            assert server.wait(timeout=20) == 0
            # Only the protocol on stdout, even when a run is cut short.
            assert all(json.loads(line)["jsonrpc"] == "2.0" for line in server.stdout.read().decode().splitlines())
            _poll(
                lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in running),
                20,
                "opencode outlived the server",
            )
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(timeout=10)


@pytest.mark.opencode
def test_an_opencode_call_timeout_ends_the_nested_run(project: Path, hermetic_env: dict[str, str]) -> None:
    with ReferenceGateway(faults=["silent,model=claude-opus-4-5"]) as gateway:
        config = write_opencode_config(project, gateway.base_url, default_model="claude-sonnet-4-5")
        assert run_cli(["setup", "--project"], hermetic_env, project).returncode == 0
        data = json.loads(config.read_text())
        data["mcp"]["nexus-agents"]["timeout"] = 8000
        config.write_text(json.dumps(data))
        gateway.script(
            "outer task",
            tool_calls=[("nexus-agents_orchestrate", {"task": "inner task", "model_hint": "opus"})],
            then="Gave up.",
        )
        prompt = project.parent / "prompt.txt"
        prompt.write_text("outer task")
        with prompt.open() as stdin:
            outer = subprocess.Popen(
                [opencode_path(), "run", "--format", "json", "--model", SONNET],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=hermetic_env,
                cwd=project,
            )
        try:
            nested = _poll(lambda: _nested_runs(project), 60, "the nested opencode run never started")
            stdout, stderr = outer.communicate(timeout=120)
        finally:
            if outer.poll() is None:
                outer.kill()
                outer.wait(timeout=10)
    tool_uses = [e["part"] for e in _events(stdout) if e["type"] == "tool_use"]
    assert [(t["tool"], t["state"]["status"]) for t in tool_uses] == [("nexus-agents_orchestrate", "error")], (
        stdout + stderr
    )
    assert "Request timed out" in tool_uses[0]["state"]["error"]
    _poll(lambda: not any(_alive(p) for p in nested), 20, "the nested opencode run outlived the call")


def _nested_runs(project: Path) -> list[psutil.Process]:
    """The nexus-started OpenCode in ``project``: an `opencode run --model <opus>`, or the `opencode serve` it prompts."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if (OPUS in " ".join(p.info["cmdline"] or []) or (p.info["cmdline"] or [""])[1:2] == ["serve"])
        and _cwd(p) == str(project)
    ]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cwd(proc: psutil.Process) -> str:
    try:
        return proc.cwd()
    except psutil.Error:
        return ""


# ---------------------------------------------------------------- job tools


async def _until_done(client: Client, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = payload(await client.call_tool("task_status", {"run_id": run_id}))
        if status["state"] != "running":
            return status
        assert time.monotonic() < deadline, f"run {run_id} still running after {timeout:g} s: {status}"
        await asyncio.sleep(0.2)


@pytest.mark.opencode
async def test_job_tools_start_follow_result_cancel_and_list(
    gateway_project: Path, gateway: ReferenceGateway, hermetic_env: dict[str, str]
) -> None:
    gateway.script("capital of Chile", reply="Santiago.")
    gateway.add_fault("silent,model=claude-opus-4-5")
    async with mcp_client(gateway_project, hermetic_env) as client:
        started = time.monotonic()
        job = payload(
            await client.call_tool("start_task", {"task": "What is the capital of Chile?", "model_hint": "sonnet"})
        )
        assert time.monotonic() - started < 10 and job["model"] == "opencode-custom-sonnet"
        early = await client.call_tool("task_result", {"run_id": job["run_id"]})
        if early.is_error:  # still running: a tool error that says what to do
            said = early.content[0]
            assert isinstance(said, TextContent)
            assert "is still running" in said.text and "task_status" in said.text
        done = await _until_done(client, job["run_id"])
        assert done["state"] == "ok" and done["model"] == "opencode-custom-sonnet" and done["attempt"] == 1
        assert done["last_lines"] == ["Santiago."]
        result = payload(await client.call_tool("task_result", {"run_id": job["run_id"]}))
        assert result["ok"] and result["text"] == "Santiago." and result["model_used"] == "opencode-custom-sonnet"
        assert [(a["model_id"], a["ok"]) for a in result["attempts"]] == [("opencode-custom-sonnet", True)]

        hung = payload(await client.call_tool("start_task", {"task": "never answered", "model_hint": "opus"}))
        running = _poll(lambda: _opencode_processes_in(gateway_project), 60, "no opencode process started")
        assert payload(await client.call_tool("task_status", {"run_id": hung["run_id"]}))["state"] == "running"
        cancelled = payload(await client.call_tool("cancel_task", {"run_id": hung["run_id"]}))
        assert cancelled["state"] == "cancelled" and "cancel_task" in cancelled["message"]
        assert not any(_alive(p) for p in running), "opencode outlived cancel_task"
        listed = payload(await client.call_tool("list_runs", {}))
        assert listed["history"] is True
        assert [(r["run_id"], r["state"]) for r in listed["runs"]] == [
            (hung["run_id"], "cancelled"),
            (job["run_id"], "ok"),
        ]
        unknown = error_text(await client.call_tool("task_status", {"run_id": "nope"}))
        assert unknown.startswith("No run has the id 'nope'")

        last = payload(await client.call_tool("start_task", {"task": "also never answered", "model_hint": "opus"}))
        _poll(lambda: _opencode_processes_in(gateway_project), 60, "no opencode process started")
    # The server has exited: its job was ended and recorded so, and nothing of it runs on.
    _poll(lambda: not _opencode_processes_in(gateway_project), 20, "opencode outlived the server")
    with RunStore.open(hermetic_env) as store:
        detail = store.show(last["run_id"])
    assert detail is not None and detail.summary.status == "cancelled"
    assert detail.summary.outcome_message == SERVER_EXIT
