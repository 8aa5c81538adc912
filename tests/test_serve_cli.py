"""``nexus-agents orchestrate`` on the serve transport, as a user runs it, on both OpenCode releases.

Real subprocesses of the installed ``nexus-agents``, the real OpenCode binary (``NEXUS_OPENCODE``)
and the reference gateway (slow-chunk mode where the timing matters).
"""
# ruff: noqa: F811 - opencode_binary is a fixture imported from opencode_versions

from __future__ import annotations

import errno
import json
import os
import re
import selectors
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from nexus_core.gateway import write_opencode_config
from nexus_core.gateway.slow import SlowChunkGateway
from opencode_versions import opencode_binary  # noqa: F401 - a fixture

pytestmark = pytest.mark.opencode

KEY = "sk-nexus-test-0123456789abcdef"
MODEL = "custom/claude-sonnet-4-5"
REGISTRY_ID = "opencode-custom-sonnet"  # the built-in profile of MODEL
WORDS = [f"word{i}" for i in range(60)]  # 20 streamed pieces of three words


def _project(tmp_path: Path, gateway: SlowChunkGateway, permission: dict[str, str] | None = None) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    path = write_opencode_config(work, gateway.base_url, api_key_env="CUSTOM_API_KEY")
    config = json.loads(path.read_text())
    config["small_model"] = MODEL  # the title request stays on the gateway
    if permission:
        config["permission"] = permission
    path.write_text(json.dumps(config))
    return work


@pytest.fixture
def env(hermetic_env: dict[str, str], opencode_binary: str) -> dict[str, str]:
    return {
        **hermetic_env,
        "CUSTOM_API_KEY": KEY,
        "NEXUS_OPENCODE": opencode_binary,
        "NEXUS_TEST_RUN": uuid.uuid4().hex,
    }


def _exe(env: dict[str, str]) -> str:
    exe = shutil.which("nexus-agents", path=env.get("PATH"))
    assert exe, "nexus-agents is not installed in the test environment"
    return exe


def _cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_exe(env), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _result(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert lines and lines[-1]["kind"] == "result", done.stdout[-2000:] + done.stderr[-2000:]
    return lines[-1]


def _running(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("NEXUS_TEST_RUN") == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _left_behind(marker: str) -> list[int]:
    return [proc.pid for proc in _running(marker)]


@pytest.mark.opencode_catalog  # the catalog's load is what the serve warm-up keeps off the first prompt
def test_text_streams_before_the_answer_ends(tmp_path: Path, env: dict[str, str]) -> None:
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.25) as gateway:
        gateway.script("count words", " ".join(WORDS))
        work = _project(tmp_path, gateway)
        proc = subprocess.Popen(
            [_exe(env), "orchestrate", "--model", MODEL, "--dir", str(work), "please count words"],
            env=env,
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        chunks: list[tuple[float, bytes]] = []
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if not selector.select(timeout=1.0):
                    continue
                data = os.read(proc.stdout.fileno(), 65536)
                if not data:
                    break
                chunks.append((time.monotonic(), data))
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        output = b"".join(c for _, c in chunks).decode()
        assert " ".join(WORDS) in output
        first_visible = next(t for t, c in chunks if c.strip())
        last_sent = max(gateway.sent_at)
        first_text = chunks[0][1].decode()
        assert WORDS[-1] not in first_text, "the whole answer came at once"
        assert last_sent - first_visible > 2.0, f"text showed only {last_sent - first_visible:.2f} s before the end"
        # Within a second of the gateway sending it: the chunk sent just before the text showed up.
        sent_before = [t for t in gateway.sent_at if t <= first_visible]
        assert sent_before and first_visible - max(sent_before) < 1.0
        # Piece by piece: a cold 1.18.33 on a loaded machine may still hold its first deltas back for a
        # second or so (see ManagedServer._warm_up), never half the answer.
        biggest = max(len(c.split()) for _, c in chunks)
        assert biggest <= len(WORDS) // 2, f"{biggest} words arrived at once"
    assert not _left_behind(env["NEXUS_TEST_RUN"])


def test_continue_reaches_the_gateway_as_one_conversation(tmp_path: Path, env: dict[str, str]) -> None:
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.script("first question", "the first answer")
        gateway.script("second question", "the second answer")
        work = _project(tmp_path, gateway)
        first = _result(
            _cli(["orchestrate", "--json", "--model", MODEL, "--dir", str(work), "first question"], env, work)
        )
        assert first["ok"], first
        session = first["session_id"]
        assert isinstance(session, str) and session.startswith("ses")
        follow = _cli(
            ["orchestrate", "--json", "--continue", session, "--dir", str(work), "second question"], env, work
        )
        second = _result(follow)
        assert second["ok"], second
        assert second["session_id"] == session
        assert second["cli_model_name"] == MODEL  # the session's model, no --model given
        events = [json.loads(line) for line in follow.stdout.splitlines()]
        assert any(e["kind"] == "text_delta" for e in events)
        chats = [r for r in gateway.requests if r.kind == "chat" and "second question" in json.dumps(r.messages)]
        users = [json.dumps(m) for m in chats[-1].messages if m.get("role") == "user"]
        assert any("first question" in u for u in users), "the follow-up did not carry the earlier turn"
        assert any("the first answer" in json.dumps(m) for m in chats[-1].messages if m.get("role") == "assistant")
        unknown = _cli(["orchestrate", "--continue", "ses_nope", "--dir", str(work), "x"], env, work)
        assert unknown.returncode == 2 and "ses_nope" in unknown.stderr and "Traceback" not in unknown.stderr
    assert not _left_behind(env["NEXUS_TEST_RUN"])


@pytest.mark.parametrize("approve", [[], ["--approve", "bash"]], ids=["unanswered", "approved"])
def test_a_permission_question_is_reported_or_approved(tmp_path: Path, env: dict[str, str], approve: list[str]) -> None:
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.script(
            "run it",
            tool_calls=[("bash", {"command": "echo hi-from-bash", "description": "say hi"})],
            then="done running",
        )
        work = _project(tmp_path, gateway, permission={"bash": "ask"})
        done = _cli(
            ["orchestrate", "--json", *approve, "--model", MODEL, "--dir", str(work), "please run it"], env, work
        )
        result = _result(done)
        events = [json.loads(line) for line in done.stdout.splitlines()]
        assert any(e["kind"] == "permission_asked" and e["permission"] == "bash" for e in events)
        if approve:
            assert done.returncode == 0 and result["ok"], result
            tools = [e for e in events if e["kind"] == "tool_state" and e["status"] == "completed"]
            assert tools and "hi-from-bash" in (tools[0]["output"] or "")
        else:
            assert done.returncode == 1
            outcome = result["outcome"]
            assert outcome["failure"] == "permission", outcome
            assert "bash" in outcome["message"] and "echo hi-from-bash" in outcome["message"]
            assert "--approve bash" in outcome["fix"]
            assert len(result["attempts"]) == 1  # not curable by another model
            readable = _cli(["orchestrate", "--model", MODEL, "--dir", str(work), "please run it"], env, work)
            assert "failed (permission)" in readable.stderr and "--approve bash" in readable.stderr
            assert "cut" not in readable.stderr
    assert not _left_behind(env["NEXUS_TEST_RUN"])


def test_attach_runs_on_the_users_server_and_leaves_it_running(
    tmp_path: Path, env: dict[str, str], opencode_binary: str
) -> None:
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.script("attached question", "an attached answer")
        work = _project(tmp_path, gateway)
        password = "pw-" + uuid.uuid4().hex
        server = subprocess.Popen(
            [opencode_binary, "serve", "--hostname", "127.0.0.1", "--port", "0"],
            env={**env, "OPENCODE_SERVER_PASSWORD": password},
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            assert server.stdout is not None
            url = None
            deadline = time.monotonic() + 60
            while url is None and time.monotonic() < deadline:
                line = server.stdout.readline()
                if not line:
                    break
                match = re.search(r"listening on (http://\S+)", line)
                url = match.group(1) if match else None
            assert url, "opencode serve did not start"
            attach = ["--attach", url, "--password-env", "USER_SERVER_PASSWORD"]
            args = ["orchestrate", "--json", *attach, "--model", MODEL, "--dir", str(work), "attached question"]
            done = _cli(args, {**env, "USER_SERVER_PASSWORD": password}, work)
            result = _result(done)
            assert result["ok"] and "an attached answer" in str(result["text"]), result
            assert password not in done.stdout + done.stderr
            assert server.poll() is None, "the attached server was ended"
            sessions = httpx.get(f"{url}/session", auth=("opencode", password), timeout=10)
            assert sessions.status_code == 200
            assert result["session_id"] in {s["id"] for s in sessions.json()}
            wrong = _cli(args[:1] + args[2:], {**env, "USER_SERVER_PASSWORD": "wrong"}, work)
            assert wrong.returncode == 1 and "password" in wrong.stderr
            assert server.poll() is None
        finally:
            os.killpg(server.pid, 9)
            server.wait(10)


def test_the_run_transport_still_works(tmp_path: Path, env: dict[str, str]) -> None:
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.script("run transport", "answered by opencode run")
        work = _project(tmp_path, gateway)
        done = _cli(
            ["orchestrate", "--json", "--transport", "run", "--model", MODEL, "--dir", str(work), "run transport"],
            env,
            work,
        )
        result = _result(done)
        assert result["ok"] and "answered by opencode run" in str(result["text"]), result
        events = [json.loads(line) for line in done.stdout.splitlines()]
        started = [e for e in events if e["kind"] == "attempt_started"]
        assert started and started[0]["argv"][1] == "run"
        assert not any(e["kind"] == "text_delta" for e in events)
        refused = _cli(["orchestrate", "--transport", "run", "--approve", "bash", "--model", MODEL, "x"], env, work)
        assert refused.returncode == 2 and "--approve needs the serve transport" in refused.stderr
    assert not _left_behind(env["NEXUS_TEST_RUN"])


@pytest.mark.parametrize("transport", ["run", "serve"])
def test_a_stale_pwd_does_not_send_opencode_to_another_directory(
    tmp_path: Path, env: dict[str, str], transport: str
) -> None:
    """Started in the project with no --dir and the PWD of somewhere else (an editor starting nexus,
    a script's cd without a shell), OpenCode still works in the project: 1.18.33 reads PWD."""
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.script("where am I", "in the project")
        work = _project(tmp_path, gateway)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        args = ["orchestrate", "--json", "--transport", transport, "--model", MODEL, "--no-history", "where am I"]
        done = _cli(args, {**env, "PWD": str(elsewhere)}, work)
        result = _result(done)
        assert result["ok"] and "in the project" in str(result["text"]), result
    assert not _left_behind(env["NEXUS_TEST_RUN"])


def test_variant_and_thinking_reach_the_session(tmp_path: Path, env: dict[str, str]) -> None:
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.script("think hard", "a considered answer", reasoning="first I weigh it")
        work = _project(tmp_path, gateway)
        args = ["orchestrate", "--variant", "high", "--thinking", "--model", MODEL, "--dir", str(work), "think hard"]
        done = _cli(args, env, work)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "a considered answer" in done.stdout
        assert "  … first I weigh it" in done.stderr


def test_kill_9_of_orchestrate_leaves_no_server(tmp_path: Path, env: dict[str, str]) -> None:
    # 20 pieces 0.3 s apart: the answer is still streaming seconds after its first text, when the kill comes.
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.3) as gateway:
        gateway.script("count words", " ".join(WORDS))
        work = _project(tmp_path, gateway)
        proc = subprocess.Popen(
            [_exe(env), "orchestrate", "--model", MODEL, "--dir", str(work), "please count words"],
            env=env,
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            assert os.read(proc.stdout.fileno(), 4096).strip(), "no text before the kill"  # the session is mid-answer
            servers = [p for p in _running(env["NEXUS_TEST_RUN"]) if "serve" in p.cmdline()[1:2]]
            assert servers, "no opencode serve was running"
            proc.kill()
            proc.wait(10)
            _gone, alive = psutil.wait_procs(servers, timeout=10)
            assert not alive, f"left running: {[p.pid for p in alive]}"
        finally:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--model", "no-such-model"], "no-such-model"),
        (["--transport", "run", "--model", MODEL, "--continue", "ses_1"], "--continue needs the serve transport"),
    ],
    ids=["serve", "run"],
)
def test_a_refused_model_ends_the_server_started_ahead(
    tmp_path: Path, env: dict[str, str], args: list[str], said: str
) -> None:
    """The server (on the run transport, the `opencode run` of a provider/model hint) starts while
    the run is planned (its start covers the planning); a plan that fails, on a model the registry
    does not know or an option the transport lacks, still ends it, and says one sentence."""
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY) as gateway:
        work = _project(tmp_path, gateway)
        done = _cli(["orchestrate", *args, "--dir", str(work), "hello"], env, work)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("nexus-agents: ") and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not _left_behind(env["NEXUS_TEST_RUN"])


def test_the_server_is_started_before_the_plan_is_made(tmp_path: Path, env: dict[str, str]) -> None:
    """The head start is real: with the planning held up (a history store on a path that is slow to
    open would do the same), ``opencode serve`` is already running while nexus still plans."""
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.script("hello", "hi")
        work = _project(tmp_path, gateway)
        hold = tmp_path / "hold"
        hold.mkdir()
        # A registry overlay on a FIFO: reading it blocks the plan until the test writes to it.
        fifo = hold / "models.json"
        os.mkfifo(fifo)
        proc = subprocess.Popen(
            [_exe(env), "orchestrate", "--model", MODEL, "--dir", str(work), "hello"],
            env={**env, "NEXUS_MODELS_FILE": str(fifo)},
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            servers: list[psutil.Process] = []
            while not servers and time.monotonic() < deadline and proc.poll() is None:
                servers = [p for p in _running(env["NEXUS_TEST_RUN"]) if "serve" in p.cmdline()[1:2]]
                time.sleep(0.05)  # polling the process table: there is no event to wait on
            assert servers, f"no opencode serve while the plan was held: {proc.poll()}"
            with fifo.open("w") as writer:
                writer.write('{"models": {}}')
            _, stderr = proc.communicate(timeout=90)
        finally:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert not _left_behind(env["NEXUS_TEST_RUN"])


def _opencode_runs(marker: str) -> set[int]:
    """The pids of the test's running `opencode run` processes."""
    found = set()
    for proc in _running(marker):
        try:
            if proc.cmdline()[1:2] == ["run"]:
                found.add(proc.pid)
        except psutil.Error:
            continue
    return found


def _overlay_read(fifo: Path, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int | None:
    """A write end of ``fifo`` once ``proc`` has opened it to read: its plan is then held at the
    registry overlay (until the fd is written and closed), so whatever the CLI starts ahead of the
    plan is already running. None when ``proc`` ended or ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while no reader has it open
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        time.sleep(0.02)  # a FIFO's reader arriving gives no event to wait on
    return None


def _held_run(
    env: dict[str, str], work: Path, hold: Path, hint: str, overlay: dict[str, Any], hold_s: float = 30
) -> dict[str, Any]:
    """`orchestrate --json --transport run --model hint` with its plan held (a FIFO registry overlay):
    once the plan is at the overlay, until an `opencode run` is up or ``hold_s`` more passed; then the
    overlay is given and the run watched to its end. What was seen: ``early`` (the runs up while the
    plan was held), ``seen`` (every run). The CLI starts a head start before its plan (it awaits the
    spawn), so one that is made is up by the time the plan reads the overlay."""
    fifo = hold / "models.json"  # reading it blocks the plan until the test writes to it
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [_exe(env), "orchestrate", "--json", "--transport", "run", "--model", hint, "--dir", str(work), "head start"],
        env={**env, "NEXUS_MODELS_FILE": str(fifo)},
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        writer = _overlay_read(fifo, proc)
        if writer is None:
            proc.kill()
            _, stderr = proc.communicate(timeout=30)
            pytest.fail(f"the plan never read the overlay (exit {proc.returncode}): {stderr.decode()[-2000:]}")
        deadline = time.monotonic() + hold_s
        early = _opencode_runs(env["NEXUS_TEST_RUN"])
        while not early and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)  # polling the process table: there is no event to wait on
            early = _opencode_runs(env["NEXUS_TEST_RUN"])
        try:
            os.write(writer, json.dumps(overlay).encode())
        finally:
            os.close(writer)
        seen = set(early)
        while proc.poll() is None and time.monotonic() < deadline + 90:
            seen |= _opencode_runs(env["NEXUS_TEST_RUN"])
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    lines = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    assert lines[-1]["kind"] == "result" and "taken over" in str(lines[-1]["text"]), lines[-1]
    started = [e for e in lines if e["kind"] == "attempt_started"]
    assert len(started) == 1 and started[0]["argv"][started[0]["argv"].index("--model") + 1] == MODEL
    os.unlink(fifo)
    return {"early": early, "seen": seen}


@pytest.mark.parametrize("alias", [False, True], ids=["named", "alias-of-another-name"])
def test_a_named_model_s_opencode_run_starts_while_the_plan_is_held(
    tmp_path: Path, env: dict[str, str], alias: bool
) -> None:
    """On the run transport a provider/model hint starts `opencode run` before the plan is made
    (it waits for its prompt), and the first attempt takes that process over: one process for
    the whole run. A hint of that shape that is an alias of another name gives the attempt
    another argv: the early process is ended and the attempt starts its own."""
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.script("head start", "taken over")
        work = _project(tmp_path, gateway)
        hold = tmp_path / "hold"
        hold.mkdir()
        overlay = {"models": {"team-sonnet": {"cli_model_name": MODEL, "aliases": ["team/sonnet"]}}}
        held = _held_run(env, work, hold, "team/sonnet" if alias else MODEL, overlay if alias else {"models": {}})
    early, seen = held["early"], held["seen"]
    assert len(early) == 1, f"no single opencode run while the plan was held: {early}"
    if alias:
        assert len(seen) == 2 and early < seen, f"the early process was not replaced: {seen}"
    else:
        assert seen == early, f"another opencode run was started besides the early one: {seen - early}"
    assert not _left_behind(env["NEXUS_TEST_RUN"])


def test_a_registry_id_s_opencode_run_starts_ahead_from_its_second_run(tmp_path: Path, env: dict[str, str]) -> None:
    """A registry id names no OpenCode model by itself: its first run in a project starts OpenCode
    only once planned, and keeps what the id resolved to; the next run there starts that name
    ahead of the plan, and the attempt takes it over."""
    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gateway:
        gateway.script("head start", "taken over")
        work = _project(tmp_path, gateway)
        hold = tmp_path / "hold"
        hold.mkdir()
        # Nothing kept yet: no opencode run while the plan is held (a head start would be up when the plan
        # reads the overlay; a second more for good measure).
        first = _held_run(env, work, hold, REGISTRY_ID, {"models": {}}, hold_s=1)
        assert not first["early"] and len(first["seen"]) == 1, first
        second = _held_run(env, work, hold, REGISTRY_ID, {"models": {}})
    assert len(second["early"]) == 1 and second["seen"] == second["early"], second
    assert not _left_behind(env["NEXUS_TEST_RUN"])
