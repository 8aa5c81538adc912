"""Delegation end to end: the real pinned OpenCode against the reference gateway, every fault class.

Each test asserts the classified outcome, the time it took, and that no process of the run is
left: every OpenCode process inherits a unique ``NEXUS_TEST_RUN`` variable, and after the run
no process on the machine may carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import opencode_path, run_cli
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.opencode.attempt import Attempt, AttemptResult, AttemptSpec, run_attempt
from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    FailureClass,
    FallbackTaken,
    GatewayRetrying,
    ProcessStats,
    Reasoning,
    RunEvent,
    StepFinish,
    Text,
    ToolUse,
)
from nexus_core.routing.chain import DelegationSpec, delegate
from nexus_core.routing.registry import BUILTIN_MODELS, ModelProfile

pytestmark = pytest.mark.opencode

KEY = "sk-nexus-test-0123456789abcdef"
OPUS = "custom/claude-opus-4-5"
SONNET = "custom/claude-sonnet-4-5"
GATEWAY_MODELS = ("claude-opus-4-5", "claude-sonnet-4-5")
# Startup of OpenCode in a fresh HOME (database migration included) plus a tree termination.
OVERHEAD_S = 12.0


def _marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("NEXUS_TEST_RUN") == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def assert_nothing_left(marker: str) -> None:
    left = _marked_processes(marker)
    assert not left, f"processes left behind: {[(p.pid, p.name()) for p in left]}"


@pytest.fixture
def gateway() -> Iterator[ReferenceGateway]:
    with ReferenceGateway(models=GATEWAY_MODELS, api_key=KEY) as gw:
        yield gw


def write_project(directory: Path, base_url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = write_opencode_config(directory, base_url, api_key_env="CUSTOM_API_KEY", models=(*GATEWAY_MODELS, "ghost"))
    config = json.loads(path.read_text())
    # The title request goes to the small model; keep it on the gateway, off the internet.
    config["small_model"] = SONNET
    path.write_text(json.dumps(config))
    return directory


@pytest.fixture
def project(tmp_path: Path, gateway: ReferenceGateway) -> Path:
    return write_project(tmp_path / "project", gateway.base_url)


@pytest.fixture
def env(hermetic_env: dict[str, str]) -> dict[str, str]:
    return {**hermetic_env, "CUSTOM_API_KEY": KEY, "NEXUS_TEST_RUN": uuid.uuid4().hex}


def spec(
    env: dict[str, str], project: Path, prompt: str = "say hi", model: str = OPUS, **overrides: Any
) -> AttemptSpec:
    fields: dict[str, Any] = {
        "cli_model_name": model,
        "prompt": prompt,
        "env": env,
        "workdir": project,
        "timeout_s": 60,
        "stall_timeout_s": 20,
        "max_gateway_retries": 1,
        "stats_interval_s": 0.2,
    }
    fields.update(overrides)
    return AttemptSpec(**fields)


async def test_success_streams_typed_events_and_leaves_nothing(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    gateway.script("ping", "pong")
    events: list[RunEvent] = []
    async with Attempt(spec(env, project, "ping")) as attempt:
        async for event in attempt.events():
            events.append(event)
    result = attempt.result
    assert result is not None and result.outcome.ok, result
    assert isinstance(events[0], AttemptStarted) and isinstance(events[-1], AttemptFinished)
    assert [e.text for e in events if isinstance(e, Text)] == ["pong"]
    finish = [e for e in events if isinstance(e, StepFinish)][-1]
    assert finish.reason == "stop" and finish.tokens.input > 0 and finish.tokens.output > 0
    stats = [e for e in events if isinstance(e, ProcessStats)]
    assert stats and all(s.rss_bytes > 0 and s.pids for s in stats)
    assert any(s.cpu_percent > 0 for s in stats), "OpenCode's start-up never showed in the CPU samples"
    assert result.text == "pong" and result.outcome.exit_code == 0
    assert KEY not in result.stderr_tail
    assert_nothing_left(env["NEXUS_TEST_RUN"])


FAULTS = [
    # fault spec, model, expected class, extra spec fields, seconds allowed beyond the overhead
    ("401", OPUS, FailureClass.AUTH, {}, 0),
    ("403", OPUS, FailureClass.AUTH, {}, 0),
    (None, "custom/ghost", FailureClass.MODEL_NOT_FOUND, {}, 0),
    (None, "custom/not-in-config", FailureClass.MODEL_NOT_FOUND, {}, 0),
    ("500", OPUS, FailureClass.GATEWAY_ERROR, {}, 8),
    ("502", OPUS, FailureClass.GATEWAY_ERROR, {}, 8),
    ("429,retry_after=1", OPUS, FailureClass.RATE_LIMITED, {}, 6),
    ("429,retry_after=0", OPUS, FailureClass.RATE_LIMITED, {}, 4),
    ("drop", OPUS, FailureClass.CONNECTION, {}, 10),
    # OpenCode 1.2.15 reports a stream cut mid-answer as ECONNRESET, like a dropped connection,
    # or, when the cut falls inside an SSE line, as a JSON parse error, like malformed SSE.
    ("cut", OPUS, (FailureClass.CUT_STREAM, FailureClass.CONNECTION, FailureClass.GATEWAY_ERROR), {}, 10),
    ("malformed-sse", OPUS, FailureClass.GATEWAY_ERROR, {}, 4),
    ("html", OPUS, FailureClass.GATEWAY_ERROR, {}, 6),
    ("silent", OPUS, FailureClass.STALLED, {"stall_timeout_s": 4}, 4),
    ("latency=60", OPUS, FailureClass.TIMEOUT, {"timeout_s": 4}, 0),
]


@pytest.mark.parametrize(
    ("fault", "model", "expected", "extra", "slack"), FAULTS, ids=[f"{f or m}" for f, m, _, _, _ in FAULTS]
)
async def test_every_fault_ends_classified_in_bounded_time(
    gateway: ReferenceGateway,
    project: Path,
    env: dict[str, str],
    fault: str | None,
    model: str,
    expected: FailureClass | tuple[FailureClass, ...],
    extra: dict,
    slack: float,
) -> None:
    allowed = expected if isinstance(expected, tuple) else (expected,)
    if fault:
        gateway.add_fault(fault)
    started = time.monotonic()
    result = await run_attempt(spec(env, project, model=model, **extra))
    took = time.monotonic() - started
    assert result.outcome.failure in allowed, result.outcome
    assert result.outcome.message and result.outcome.fix
    assert took < OVERHEAD_S + slack + extra.get("timeout_s", 0), f"took {took:.1f}s"
    # A cut inside an SSE line is a parse error to OpenCode, which it does not retry (see FAULTS).
    retried = fault in {"500", "502", "429,retry_after=1", "429,retry_after=0", "drop"} or (
        fault == "cut" and result.outcome.failure is not FailureClass.GATEWAY_ERROR
    )
    if retried:
        announced = any(isinstance(e, GatewayRetrying) for e in result.events)
        assert announced, f"the retries were not announced: {result.outcome}"
    assert KEY not in result.outcome.message and KEY not in result.stderr_tail
    assert_nothing_left(env["NEXUS_TEST_RUN"])


async def test_connection_refused(tmp_path: Path, env: dict[str, str]) -> None:
    with ReferenceGateway(models=GATEWAY_MODELS) as closed:
        base_url = closed.base_url
    project = write_project(tmp_path / "refused", base_url)
    result = await run_attempt(spec(env, project))
    assert result.outcome.failure is FailureClass.CONNECTION, result.outcome
    assert "baseURL" in result.outcome.fix
    assert_nothing_left(env["NEXUS_TEST_RUN"])


async def test_invalid_config_names_the_file_and_line(tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "broken"
    project.mkdir()
    (project / "opencode.json").write_text('{\n  "provider": {,\n}\n')
    result = await run_attempt(spec(env, project))
    assert result.outcome.failure is FailureClass.CONFIG_INVALID, result.outcome
    assert "opencode.json" in result.outcome.message and "line 2" in result.outcome.message
    assert_nothing_left(env["NEXUS_TEST_RUN"])


async def test_missing_opencode_is_classified(project: Path, env: dict[str, str]) -> None:
    result = await run_attempt(spec({**env, "PATH": str(project), "NEXUS_OPENCODE": str(project / "absent")}, project))
    assert result.outcome.failure is FailureClass.OPENCODE_NOT_FOUND
    missing = await run_attempt(spec(env, project, opencode=str(project / "no-such-opencode")))
    assert missing.outcome.failure is FailureClass.OPENCODE_NOT_FOUND


async def test_missing_key_reaches_the_gateway_as_no_key(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    result = await run_attempt(spec({k: v for k, v in env.items() if k != "CUSTOM_API_KEY"}, project))
    assert result.outcome.failure is FailureClass.AUTH
    assert all(r.bearer != "expected" for r in gateway.requests if r.kind == "chat")


@pytest.mark.parametrize(
    "prompt", ["x" * 200_000 + " END", "--help", "-m custom/other --variant max"], ids=["200KB", "--help", "flags"]
)
async def test_prompts_reach_the_gateway_intact(
    gateway: ReferenceGateway, project: Path, env: dict[str, str], prompt: str
) -> None:
    result = await run_attempt(spec(env, project, prompt))
    assert result.outcome.ok, result.outcome
    chat = [r for r in gateway.requests if r.kind == "chat"]
    assert chat, "no chat request reached the gateway"
    # OpenCode joins its positional words (none) and stdin with a newline.
    assert chat[0].last_user_text.strip() == prompt
    assert result.text == "Reply to: " + " ".join(prompt.split())[:60]


async def test_variant_outside_the_allowlist_never_reaches_opencode(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    gateway.add_fault("latency=1")  # the tree is sampled every 0.2 s while OpenCode waits
    seen_cmdlines: list[list[str]] = []
    depths: set[str | None] = set()
    root_depths: set[str | None] = set()
    async with Attempt(spec(env, project, variant="high; rm -rf /")) as attempt:
        async for event in attempt.events():
            if isinstance(event, ProcessStats):
                for pid in event.pids:
                    try:
                        seen_cmdlines.append(psutil.Process(pid).cmdline())
                        depth = psutil.Process(pid).environ().get("NEXUS_DELEGATION_DEPTH")
                    except psutil.Error:
                        continue
                    # OpenCode's own helpers (git, rg…) may run with an environment of their own.
                    (root_depths if pid == attempt.pid else depths).add(depth)
    assert attempt.result is not None and attempt.result.outcome.ok, attempt.result
    assert seen_cmdlines, "the process tree was never sampled"
    assert "--variant" not in attempt.argv
    for cmdline in seen_cmdlines:
        assert not any("rm -rf" in arg or arg == "--variant" for arg in cmdline), cmdline
    assert root_depths == {"1"}, "OpenCode must run with NEXUS_DELEGATION_DEPTH one above ours"
    assert depths <= {"1", None}, "no process of the run may claim another delegation depth"


async def test_eight_concurrent_runs_each_get_their_own_text(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    # A fresh HOME: the eight race to migrate OpenCode's database; the losers are started again.
    prompts = [f"concurrent task number {i} of eight" for i in range(8)]
    results: list[AttemptResult] = await asyncio.gather(
        *(
            run_attempt(spec(env, project, prompt, timeout_s=120, stall_timeout_s=60, stats_interval_s=None), attempt=i)
            for i, prompt in enumerate(prompts)
        )
    )
    for prompt, result in zip(prompts, results, strict=True):
        assert result.outcome.ok, result.outcome
        assert result.text == f"Reply to: {prompt}"
    assert_nothing_left(env["NEXUS_TEST_RUN"])


def _profiles(*cli_names: str) -> tuple[ModelProfile, ...]:
    return tuple(
        ModelProfile(id=name.split("/")[1], name=name, provider="custom", cli_model_name=name) for name in cli_names
    )


async def test_fallback_moves_on_after_gateway_error(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    gateway.add_fault("500,model=claude-opus-4-5")
    events: list[RunEvent] = []
    result = await delegate(
        DelegationSpec(
            prompt="fall back please",
            chain=_profiles(OPUS, SONNET),
            env=env,
            workdir=project,
            timeout_s=60,
            stall_timeout_s=20,
            max_gateway_retries=0,
        ),
        events.append,
    )
    assert result.ok, result.outcome
    assert [a.cli_model_name for a in result.attempts] == [OPUS, SONNET]
    assert result.attempts[0].outcome.failure is FailureClass.GATEWAY_ERROR
    assert result.text == "Reply to: fall back please"
    fallbacks = [e for e in events if isinstance(e, FallbackTaken)]
    assert len(fallbacks) == 1 and fallbacks[0].reason is FailureClass.GATEWAY_ERROR
    assert_nothing_left(env["NEXUS_TEST_RUN"])


async def test_a_model_that_failed_is_not_tried_again_under_another_id(tmp_path: Path, env: dict[str, str]) -> None:
    """opencode-default names the same model as the first entry (the config's "model"): one attempt, not two."""
    with ReferenceGateway(models=GATEWAY_MODELS) as closed:
        base_url = closed.base_url
    project = write_project(tmp_path / "refused", base_url)
    default = next(m for m in BUILTIN_MODELS if m.id == "opencode-default").model_copy(update={"cli_model_name": OPUS})
    events: list[RunEvent] = []
    result = await delegate(
        DelegationSpec(prompt="hello", chain=(*_profiles(OPUS), default), env=env, workdir=project, timeout_s=60),
        events.append,
    )
    assert [a.cli_model_name for a in result.attempts] == [OPUS], result.attempts
    assert result.outcome.failure is FailureClass.CONNECTION
    assert not any(isinstance(e, FallbackTaken) for e in events)


async def test_fallback_moves_on_after_model_not_found(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    result = await delegate(
        DelegationSpec(prompt="hello", chain=_profiles("custom/ghost", SONNET), env=env, workdir=project, timeout_s=60)
    )
    assert result.ok and [a.outcome.failure for a in result.attempts] == [FailureClass.MODEL_NOT_FOUND, None]
    assert [r.model for r in gateway.requests if r.kind == "chat"] == ["ghost", "claude-sonnet-4-5"]


async def test_no_fallback_on_auth_failure(gateway: ReferenceGateway, project: Path, env: dict[str, str]) -> None:
    gateway.add_fault("401")
    result = await delegate(
        DelegationSpec(prompt="hello", chain=_profiles(OPUS, SONNET), env=env, workdir=project, timeout_s=60)
    )
    assert not result.ok and len(result.attempts) == 1
    assert result.outcome.failure is FailureClass.AUTH
    assert {r.model for r in gateway.requests if r.kind == "chat"} == {"claude-opus-4-5"}


async def test_builtin_chain_never_falls_back_silently(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    opus = next(m for m in BUILTIN_MODELS if m.id == "opencode-custom-opus")
    result = await delegate(
        DelegationSpec(prompt="hello", chain=(opus,), env=env, workdir=project, timeout_s=60, transport="run")
    )
    assert result.ok
    assert [r.model for r in gateway.requests if r.kind == "chat"] == ["claude-opus-4-5"]
    assert result.final.argv[result.final.argv.index("--model") + 1] == OPUS


def with_mcp_child(project: Path) -> Path:
    """``project`` with a local MCP server in its config: a child OpenCode starts and keeps running.

    OpenCode in a warm HOME starts no helper process of its own before calling the model, so this
    gives the attempt a real process tree (as a user's MCP servers do) for the cancel tests to end.
    """
    path = project / "opencode.json"
    config = json.loads(path.read_text())
    sleeper = "import sys, time; sys.stdin.read(); time.sleep(600)"
    config["mcp"] = {"sleeper": {"type": "local", "command": [sys.executable, "-c", sleeper]}}
    path.write_text(json.dumps(config))
    return project


async def _wait_for_tree(attempt: Attempt, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if attempt.pid is not None:
            try:
                children = psutil.Process(attempt.pid).children(recursive=True)
            except psutil.Error:
                children = []
            if children:
                return [attempt.pid, *(c.pid for c in children)]
        await asyncio.sleep(0.05)
    raise AssertionError("OpenCode's process tree never appeared")


@pytest.mark.parametrize("through_launcher", [False, True], ids=["binary", "node-launcher"])
async def test_cancel_ends_the_whole_tree(
    gateway: ReferenceGateway, project: Path, env: dict[str, str], through_launcher: bool
) -> None:
    gateway.add_fault("silent")
    opencode = opencode_path() if through_launcher else None
    attempt = Attempt(spec(env, with_mcp_child(project), stall_timeout_s=60, opencode=opencode))

    async def consume() -> None:
        async with attempt:
            async for _ in attempt.events():
                pass

    consumer = asyncio.create_task(consume())
    pids = await _wait_for_tree(attempt)
    started = time.monotonic()
    attempt.cancel()
    await asyncio.wait_for(consumer, 10)
    assert time.monotonic() - started < 5
    assert attempt.result is not None and attempt.result.outcome.failure is FailureClass.CANCELLED
    if through_launcher:
        assert len(pids) >= 2, "the node launcher and the binary it starts"
    assert not [p for p in pids if _alive(p)]
    assert_nothing_left(env["NEXUS_TEST_RUN"])


async def test_cancelling_the_task_ends_the_whole_tree(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    gateway.add_fault("silent")
    attempt = Attempt(spec(env, with_mcp_child(project), stall_timeout_s=60))

    async def consume() -> None:
        async with attempt:
            async for _ in attempt.events():
                pass

    consumer = asyncio.create_task(consume())
    await _wait_for_tree(attempt)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(consumer, 10)
    assert attempt.result is not None and attempt.result.outcome.failure is FailureClass.CANCELLED
    assert_nothing_left(env["NEXUS_TEST_RUN"])


# ---------------------------------------------------------------- the CLI


def test_cli_orchestrate_prints_the_answer_and_exits_0(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    gateway.script("write a haiku", "five seven five")
    done = run_cli(
        ["orchestrate", "--model", "opus", "--dir", str(project), "--timeout", "60", "write a haiku"], env, project
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "five seven five"
    assert "attempt 1: opencode-custom-opus" in done.stderr and "step finished (stop)" in done.stderr
    assert KEY not in done.stdout + done.stderr


def test_cli_orchestrate_json_task_from_stdin_and_dash_dash(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    done = run_cli(
        ["orchestrate", "--json", "--model", SONNET, "--dir", str(project)], env, project, stdin="from stdin\n"
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["kind"] == "attempt_started" and lines[-1]["kind"] == "result"
    assert lines[-1]["ok"] is True and lines[-1]["text"] == "Reply to: from stdin"
    assert any(line["kind"] == "text" for line in lines)
    dashed = run_cli(["orchestrate", "--model", SONNET, "--dir", str(project), "--", "--help"], env, project)
    assert dashed.returncode == 0, dashed.stderr
    assert dashed.stdout.strip() == "Reply to: --help"


def test_cli_orchestrate_failure_prints_cause_and_fix(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    gateway.add_fault("401")
    done = run_cli(["orchestrate", "--model", "opus", "--dir", str(project), "hello"], env, project)
    assert done.returncode == 1
    assert "failed (auth)" in done.stderr and "CUSTOM_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads(
        run_cli(
            ["orchestrate", "--json", "--model", "opus", "--dir", str(project), "hello"], env, project
        ).stdout.splitlines()[-1]
    )
    assert summary["ok"] is False and summary["outcome"]["failure"] == "auth" and len(summary["attempts"]) == 1


def test_cli_orchestrate_bad_input_is_one_sentence(project: Path, env: dict[str, str]) -> None:
    unknown = run_cli(["orchestrate", "--model", "no-such-model", "--dir", str(project), "x"], env, project)
    assert unknown.returncode == 2 and "no model matches the hint 'no-such-model'" in unknown.stderr
    empty = run_cli(["orchestrate", "--model", SONNET, "--dir", str(project)], env, project, stdin="  \n")
    assert empty.returncode == 2 and "the task is empty" in empty.stderr
    for bad_seconds in ("nan", "inf", "0"):
        refused = run_cli(["orchestrate", "--timeout", bad_seconds, "--model", SONNET, "x"], env, project)
        assert (
            refused.returncode == 2
            and f"argument --timeout: '{bad_seconds}' is not a number of seconds" in refused.stderr
        )
        assert len(refused.stderr.strip().splitlines()[-1]) < 120 and "pydantic" not in refused.stderr
    for done in (unknown, empty):
        assert "Traceback" not in done.stderr


@contextlib.contextmanager
def _sigint_as_in_a_terminal() -> Iterator[None]:
    """Children started inside get SIGINT at its default, as a terminal's foreground job has it.

    A suite started in the background (``python3 bootstrap.py test &`` in a script) ignores
    SIGINT, and an ignored signal is inherited across exec: the CLI would then rightly ignore
    the test's Ctrl-C, as any background job of a script does.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["ctrl-c", "sigterm", "sighup"])
def test_cli_interrupted_leaves_no_process(
    gateway: ReferenceGateway, project: Path, env: dict[str, str], sig: signal.Signals
) -> None:
    gateway.add_fault("silent")
    exe = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / "nexus-agents"
    argv = [
        str(exe) if exe.exists() else "nexus-agents",
        "orchestrate",
        "--model",
        "opus",
        "--dir",
        str(project),
        "hang",
    ]
    with _sigint_as_in_a_terminal():
        proc = subprocess.Popen(argv, env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not any(r.kind == "chat" for r in gateway.requests):
            assert time.monotonic() < deadline, "OpenCode never reached the gateway"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert_nothing_left(env["NEXUS_TEST_RUN"])


def test_cli_orchestrate_without_model_uses_the_routing_choice(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    done = run_cli(["orchestrate", "--dir", str(project), "refactor the parser"], env, project)
    assert done.returncode == 0, done.stderr
    assert "routed:" in done.stderr and "chain: " in done.stderr
    assert done.stdout.strip() == "Reply to: refactor the parser"
    chat = [r.model for r in gateway.requests if r.kind == "chat"]
    assert len(chat) == 1 and chat[0] in GATEWAY_MODELS


async def test_tool_calls_reasoning_and_length_finish_come_through_typed(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    (project / "notes.txt").write_text("the secret word is pelican\n")
    gateway.script(
        "read the notes",
        tool_calls=[("read", {"filePath": str(project / "notes.txt")})],
        then="The word is pelican.",
        reasoning="I should read the file first.",
    )
    result = await run_attempt(spec(env, project, "read the notes", thinking=True))
    assert result.outcome.ok, result.outcome
    tools = [e for e in result.events if isinstance(e, ToolUse)]
    assert len(tools) == 1 and tools[0].tool == "read" and tools[0].status == "completed"
    assert tools[0].output and "pelican" in tools[0].output
    assert [e.reason for e in result.events if isinstance(e, StepFinish)] == ["tool-calls", "stop"]
    assert any(isinstance(e, Reasoning) and "read the file" in e.text for e in result.events)
    assert result.text == "The word is pelican."

    gateway.script("long story", "once upon a time", finish="length")
    cut_short = await run_attempt(spec(env, project, "long story"))
    assert cut_short.outcome.ok and cut_short.outcome.message == "finished at the output limit"


async def test_cancel_also_ends_mcp_servers_even_in_their_own_session(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    config_path = project / "opencode.json"
    config = json.loads(config_path.read_text())
    # An MCP server that never answers and leaves OpenCode's process group (so killpg alone misses it).
    config["mcp"] = {
        "stuck": {
            "type": "local",
            "timeout": 60_000,
            "command": [sys.executable, "-c", "import os, time; os.setsid(); time.sleep(120)"],
        }
    }
    config_path.write_text(json.dumps(config))
    attempt = Attempt(spec(env, project, stall_timeout_s=60))

    async def consume() -> None:
        async with attempt:
            async for _ in attempt.events():
                pass

    consumer = asyncio.create_task(consume())

    def escaped() -> list[psutil.Process]:
        found = []
        for proc in _marked_processes(env["NEXUS_TEST_RUN"]):
            try:
                if os.getpgid(proc.pid) != attempt.pid:
                    found.append(proc)
            except OSError:
                continue
        return found

    deadline = time.monotonic() + 30
    while not escaped():
        assert time.monotonic() < deadline, "the MCP server never started in a session of its own"
        await asyncio.sleep(0.05)
    attempt.cancel()
    await asyncio.wait_for(consumer, 10)
    assert attempt.result is not None and attempt.result.outcome.failure is FailureClass.CANCELLED
    assert_nothing_left(env["NEXUS_TEST_RUN"])


async def test_a_daemonised_grandchild_is_ended_after_success(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    config_path = project / "opencode.json"
    config = json.loads(config_path.read_text())
    # An "MCP server" that forks a daemon in a new session and exits: nobody's child any more.
    daemon = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    null = os.open(os.devnull, os.O_RDWR)\n"
        "    for fd in (0, 1, 2):\n        os.dup2(null, fd)\n    time.sleep(120)\n"
    )
    config["mcp"] = {"daemon": {"type": "local", "timeout": 2_000, "command": [sys.executable, "-c", daemon]}}
    config_path.write_text(json.dumps(config))
    result = await run_attempt(spec(env, project, "hello"))
    assert result.outcome.ok, result.outcome
    assert_nothing_left(env["NEXUS_TEST_RUN"])
