"""The dashboard on ``opencode serve``: the real OpenCode (both releases) against the reference gateway.

Tokens show in the run view while the gateway is still streaming; a permission question is put
to the user in a modal (``y`` lets the tool run, ``n`` ends the run as ``permission``); F6 sends
a follow-up into the same session; quitting leaves no OpenCode process behind.
"""
# ruff: noqa: F811 - opencode_binary is a fixture imported from opencode_versions

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from nexus_core.gateway.slow import SlowChunkGateway
from nexus_tui.screens import PermissionScreen
from nexus_tui.widgets.runs import RunStatus, RunView
from nexus_tui.widgets.runs_area import RunsArea
from nexus_tui.widgets.task import TaskPanel
from opencode_versions import opencode_binary  # noqa: F401 - a fixture
from tui_support import SIZE, RecordingApp, project_config, settle, until

pytestmark = pytest.mark.opencode

KEY = "sk-nexus-tui-0123456789abcdef"
MODEL = "opencode-custom-sonnet"
# About 70 chunks, 0.1 s apart: long enough to outlast OpenCode 1.18.33's first prompt on a cold
# server, which publishes the deltas of its first seconds together.
ANSWER = "alpha " + " ".join(f"w{i}" for i in range(200)) + " omega"


@pytest.fixture
def gateway() -> Iterator[SlowChunkGateway]:
    with SlowChunkGateway(models=("claude-sonnet-4-5", "claude-opus-4-5"), api_key=KEY, chunk_delay_s=0.1) as gw:
        yield gw


def status_of(view: RunView) -> RunStatus:
    """The view's status now (a call, so that the type checker does not keep an earlier assert's narrowing)."""
    return view.status


def make_app(
    tmp_path: Path,
    env: dict[str, str],
    gateway: SlowChunkGateway,
    binary: str,
    permission: dict[str, str] | None = None,
) -> RecordingApp:
    project = tmp_path / "project"
    project.mkdir()
    config = project_config(gateway.base_url)
    if permission:
        config["permission"] = permission
    (project / "opencode.json").write_text(json.dumps(config, indent=2))
    env = {**env, "CUSTOM_API_KEY": KEY, "NEXUS_OPENCODE": binary}
    return RecordingApp(project, env=env, test_mode=True, watch_config=False, check_health=False, debounce=0.01)


def descendants() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def assert_all_gone(pids: set[int]) -> None:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _gone, alive = psutil.wait_procs(procs, timeout=10)
    left = [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"processes left behind: {left}"


def servers_in(project: Path) -> list[int]:
    """OpenCode servers still running in ``project`` (by their working directory)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if "serve" in cmdline and proc.info["cwd"] == str(project):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def log_text(view: RunView) -> str:
    return "\n".join(line for line in view.log_widget.lines if not line.startswith("$ "))


async def submit(pilot: Any, app: RecordingApp, task: str, run_id: str) -> RunView:
    app.query_one("#task", TaskPanel).pick(MODEL)
    await pilot.press(*task, "enter")
    await until(pilot, lambda: run_id in app.runs, what=run_id)
    await until(pilot, lambda: app.run_view(run_id) is not None, what=f"the view of {run_id}")
    view = app.run_view(run_id)
    assert view is not None
    return view


async def test_tokens_stream_into_the_view_and_f6_follows_up_in_the_same_session(
    tmp_path: Path, hermetic_env: dict[str, str], gateway: SlowChunkGateway, opencode_binary: str
) -> None:
    gateway.script("count words", ANSWER)
    app = make_app(tmp_path, hermetic_env, gateway, opencode_binary)
    before = descendants()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await submit(pilot, app, "please count words", "run-1")
        assert status_of(view) is RunStatus.QUEUED
        # Streamed: the first words are drawn while the rest are still on their way.
        await until(pilot, lambda: "alpha" in log_text(view), timeout=90, what="the first streamed words")
        assert "omega" not in log_text(view)
        assert status_of(view) is RunStatus.RUNNING
        # The CPU and memory of what the run runs on: its server's tree, sampled while it streams.
        await until(pilot, lambda: view.rss_bytes > 10_000_000, timeout=30, what="the server's RSS in the view")
        await until(pilot, lambda: view.status.finished, timeout=90, what="the answer")
        assert status_of(view) is RunStatus.SUCCEEDED, view.verdict
        lines = list(view.log_widget.lines)
        assert "◌ queued: starting OpenCode's server for this directory" in lines
        assert ANSWER in " ".join(log_text(view).split()), lines
        assert view.reply_text == ANSWER
        first = app.runs["run-1"]
        session = first.session_id
        assert session
        server_pids = descendants() - before
        assert server_pids, "no OpenCode server was started"

        # F6, type, Enter: the follow-up goes into the same session, on the warm server.
        assert not view.follow_up_box.has_focus
        await pilot.press("f6")
        assert view.follow_up_box.has_focus
        await pilot.press(*"and now backwards", "enter")
        await until(pilot, lambda: app.runs["run-1"] is not first, what="the follow-up to start")
        await until(pilot, lambda: app.runs["run-1"].finished, timeout=90, what="the follow-up's answer")
        assert status_of(view) is RunStatus.SUCCEEDED, view.verdict
        assert app.runs["run-1"].session_id == session
        lines = list(view.log_widget.lines)
        separator = lines.index("──── follow-up ────")
        assert "$ and now backwards" in lines[separator:]
        assert lines.count("◌ queued: starting OpenCode's server for this directory") == 1, "the server was not kept"
        assert "Reply to: and now backwards" in "\n".join(lines[separator:])
        chats = [r for r in gateway.requests if r.kind == "chat"]
        users = [m for m in chats[-1].messages if m.get("role") == "user"]
        assert len(users) >= 2 and "please count words" in json.dumps(users[0]), "not one conversation"
        assert "and now backwards" in chats[-1].last_user_text
        assert any("alpha" in json.dumps(m) for m in chats[-1].messages if m.get("role") == "assistant"), (
            "the first answer is not in the conversation"
        )
        assert servers_in(app.project_dir), "the server should run until the app exits"
        project = app.project_dir
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    assert_all_gone(server_pids)
    assert servers_in(project) == []


async def test_permission_questions_are_asked_y_runs_the_tool_n_ends_the_run(
    tmp_path: Path, hermetic_env: dict[str, str], gateway: SlowChunkGateway, opencode_binary: str
) -> None:
    gateway.chunk_delay_s = 0.0
    gateway.script(
        "run it",
        tool_calls=[("bash", {"command": "echo hi-from-bash", "description": "say hi"})],
        then="done running",
    )
    app = make_app(tmp_path, hermetic_env, gateway, opencode_binary, permission={"bash": "ask"})
    before = descendants()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        area = app.query_one(RunsArea)
        view = await submit(pilot, app, "please run it", "run-1")
        await until(pilot, lambda: isinstance(app.screen, PermissionScreen), timeout=90, what="the question")
        screen = app.screen
        assert isinstance(screen, PermissionScreen)
        assert "echo hi-from-bash" in str(screen.query_one("#permission-detail").render())
        head = str(screen.query_one("#permission-head").render())
        assert "Run 1" in head and "please run it" in head and "bash" in head
        assert view.waiting
        await until(pilot, lambda: str(area.tabs.get_tab("run-1").label).startswith("? 1 "), what="the tab's mark")
        # The session waits for the human: far past the stall timeout would be a bug, a second is a check.
        await pilot.pause(1.0)
        assert not view.status.finished
        await pilot.press("y")
        await until(pilot, lambda: view.status.finished, timeout=90, what="the run to end")
        assert status_of(view) is RunStatus.SUCCEEDED, view.verdict
        assert not view.waiting
        assert "  → bash: allowed once" in view.log_widget.lines
        assert "done running" in view.reply_text
        rows = list(view._tools.rows.values())
        assert [(row.tool, row.state) for row in rows] == [("bash", "completed")]
        tool_results = [m for r in gateway.requests if r.kind == "chat" for m in r.messages if m.get("role") == "tool"]
        assert tool_results and "hi-from-bash" in json.dumps(tool_results[-1]), "the tool result never went back"

        rejected = await submit(pilot, app, "please run it again", "run-2")
        await until(pilot, lambda: isinstance(app.screen, PermissionScreen), timeout=90, what="the second question")
        await pilot.press("n")
        await until(pilot, lambda: rejected.status.finished, timeout=90, what="the rejected run to end")
        assert rejected.status is RunStatus.FAILED
        assert [a.verdict for a in rejected.attempts] == ["permission"]
        assert "permission 'bash'" in rejected.verdict and "echo hi-from-bash" in rejected.verdict
        assert "  → bash: rejected" in rejected.log_widget.lines
        spawned = descendants() - before
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    assert_all_gone(spawned)


async def test_a_gateway_retry_shows_in_the_run_view(
    tmp_path: Path, hermetic_env: dict[str, str], gateway: SlowChunkGateway, opencode_binary: str
) -> None:
    gateway.chunk_delay_s = 0.0
    gateway.add_fault("503,times=1")
    app = make_app(tmp_path, hermetic_env, gateway, opencode_binary)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await submit(pilot, app, "try again", "run-1")
        await until(pilot, lambda: view.status.finished, timeout=90, what="the run to end")
        assert status_of(view) is RunStatus.SUCCEEDED, view.verdict
        retries = [line for line in view.log_widget.lines if line.startswith("↻ gateway retry 1")]
        assert retries, list(view.log_widget.lines)
        assert "Reply to: try again" in view.reply_text
        await app.shutdown()


def test_the_ask_callback_answers_waits_without_stalling_and_is_bounded(
    tmp_path: Path, hermetic_env: dict[str, str], opencode_binary: str
) -> None:
    """The core side of the dashboard's questions: ``ServeAttempt(ask=...)``."""
    from nexus_core.gateway import write_opencode_config
    from nexus_core.opencode.attempt import AttemptSpec
    from nexus_core.opencode.events import FailureClass
    from nexus_core.opencode.serve.client import ServeClient
    from nexus_core.opencode.serve.events import PermissionAsked, ToolState
    from nexus_core.opencode.serve.server import ManagedServer
    from nexus_core.opencode.serve.session import ServeAttempt

    with SlowChunkGateway(models=("claude-sonnet-4-5",), api_key=KEY, chunk_delay_s=0.0) as gw:
        gw.script(
            "run it",
            tool_calls=[("bash", {"command": "echo hi-from-bash", "description": "say hi"})],
            then="done running",
        )
        work = tmp_path / "work"
        work.mkdir()
        path = write_opencode_config(work, gw.base_url, api_key_env="CUSTOM_API_KEY")
        config = json.loads(path.read_text())
        config["permission"] = {"bash": "ask"}
        path.write_text(json.dumps(config))
        env = {**hermetic_env, "CUSTOM_API_KEY": KEY}
        spec = AttemptSpec(
            cli_model_name="custom/claude-sonnet-4-5", prompt="please run it", timeout_s=90, stall_timeout_s=3
        )
        asked: list[PermissionAsked] = []
        withdrawn: list[str] = []

        async def slow_yes(event: PermissionAsked) -> Any:
            asked.append(event)
            await asyncio.sleep(5)  # longer than the stall timeout: a human is deciding
            return "once"

        async def no(event: PermissionAsked) -> Any:
            return "reject"

        async def never(event: PermissionAsked) -> Any:
            try:
                await asyncio.Event().wait()
            finally:
                withdrawn.append(event.permission_id)

        async def main() -> None:
            server = await ManagedServer.start(work, env=env, opencode=opencode_binary)
            try:
                async with ServeClient(server) as client:
                    allowed = ServeAttempt(client, spec, ask=slow_yes)
                    events = [event async for event in allowed.events()]
                    assert allowed.result is not None and allowed.result.outcome.ok, allowed.result
                    assert asked and asked[0].permission == "bash" and "echo hi-from-bash" in asked[0].patterns
                    done = [e for e in events if isinstance(e, ToolState) and e.status == "completed"]
                    assert done and "hi-from-bash" in (done[0].output or "")

                    rejected = ServeAttempt(client, spec, ask=no)
                    [event async for event in rejected.events()]
                    assert rejected.result is not None
                    assert rejected.result.outcome.failure is FailureClass.PERMISSION
                    assert "it was rejected" in rejected.result.outcome.message

                    unanswered = ServeAttempt(client, spec, ask=never, ask_timeout_s=1.0)
                    [event async for event in unanswered.events()]
                    assert unanswered.result is not None
                    assert unanswered.result.outcome.failure is FailureClass.PERMISSION
                    assert "nobody answered within 1 s" in unanswered.result.outcome.message
                    assert withdrawn, "the unanswered question was not withdrawn"
            finally:
                await server.aclose()

        asyncio.run(main())
