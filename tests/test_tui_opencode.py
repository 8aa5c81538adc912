"""The real OpenCode through the dashboard, in demo mode against the reference gateway."""

from __future__ import annotations

import contextlib

import psutil
import pytest
from textual.widgets import TabbedContent

from conftest import present
from nexus_core.store.runs import RunStore
from nexus_tui import backend
from nexus_tui.screens import ConfirmQuitScreen
from nexus_tui.widgets.registry import RegistryPanel
from nexus_tui.widgets.runs import RunStatus, RunView
from nexus_tui.widgets.task import TaskPanel
from tui_support import SIZE, RecordingApp, until

pytestmark = pytest.mark.opencode


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def descendants() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


async def test_demo_runs_two_tasks_streams_the_reply_and_quits_leaving_nothing(hermetic_env: dict[str, str]) -> None:
    app = RecordingApp(demo=True, env=hermetic_env, test_mode=True, check_health=False, debounce=0.01)
    before = descendants()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state is not None, timeout=30, what="the demo config")
        demo = app.demo_environment
        assert demo is not None and demo.config_file.is_file()
        assert "DEMO" in str(app.query_one("#demo-banner").render())
        root = demo.root

        await pilot.press(*"say hello", "enter")
        await until(pilot, lambda: "run-1" in app.runs, what="the first run")
        first = app.query_one("#run-1-view", RunView)
        await until(pilot, lambda: first.status is RunStatus.SUCCEEDED, timeout=120, what="the first run to succeed")
        lines = list(first.log_widget.lines)
        assert any("say hello" in line and not line.startswith("$") for line in lines), lines
        assert any(line.startswith("■ step finished (stop)") and "tokens" in line for line in lines), lines
        assert (
            first.attempts
            and first.attempts[0].cli_model_name
            == present(present(app.state).registry.get(app.runs["run-1"].label)).cli_model_name
        )
        requests = await demo.gateway.wait_for_requests(1)
        assert "say hello" in requests[-1].last_user_text

        # Slow answers keep the next runs in progress: one is cancelled, one is left running at quit.
        # Both run on the server the first run started (kept until the app exits).
        server = descendants() - before
        assert server, "no OpenCode server runs between runs"
        demo.gateway.add_fault("latency=60")

        def asked(text: str) -> bool:
            return any(text in r.last_user_text for r in demo.gateway.requests if r.kind == "chat")

        await pilot.press(*"to be cancelled", "enter")
        await until(pilot, lambda: "run-2" in app.runs, what="the run to cancel")
        cancelled = app.query_one("#run-2-view", RunView)
        await until(pilot, lambda: asked("to be cancelled"), timeout=30, what="its request to reach the gateway")
        await pilot.press("f8")
        await until(pilot, lambda: cancelled.status is RunStatus.CANCELLED, timeout=30, what="the cancel")
        assert descendants() - before == server, "a run started or left processes of its own"

        await pilot.press(*"second task", "enter")
        await until(pilot, lambda: "run-3" in app.runs, what="the second run")
        second = app.query_one("#run-3-view", RunView)
        await until(pilot, lambda: asked("second task"), timeout=30, what="the second run's request")
        assert second.status is RunStatus.RUNNING
        spawned = descendants() - before
        assert spawned
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuitScreen), what="the quit question")
        await pilot.press("y")
    assert app.return_code == 0
    assert app.runs["run-3"].finished
    procs = []
    for pid in spawned:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    psutil.wait_procs(procs, timeout=10)
    left = [pid for pid in spawned if alive(pid)]
    assert left == [], f"processes left behind: {left}"
    assert not root.exists(), "the demo's temporary directory was not removed"


async def test_a_picked_model_that_fails_falls_back_and_the_view_shows_both_attempts(
    hermetic_env: dict[str, str],
) -> None:
    app = RecordingApp(demo=True, env=hermetic_env, test_mode=True, check_health=False, debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state is not None, timeout=30, what="the demo config")
        present(app.demo_environment).gateway.add_fault("404,model=claude-opus-4-5")
        app.query_one("#task", TaskPanel).pick("opencode-custom-opus")
        await pilot.press(*"design a cache", "enter")
        await until(pilot, lambda: "run-1" in app.runs, what="the run")
        view = app.query_one("#run-1-view", RunView)
        await until(pilot, lambda: view.status.finished, timeout=120, what="the run to end")
        assert view.status is RunStatus.SUCCEEDED, view.verdict
        assert [a.cli_model_name for a in view.attempts] == ["custom/claude-opus-4-5", "custom/claude-sonnet-4-5"]
        assert view.attempts[0].verdict == "model_not_found" and view.attempts[1].ok
        # The run is in the store, and routing already counts what it observed.
        with RunStore.open(app.env) as store:
            detail = present(store.show(present(app.runs["run-1"].run_id)))
        assert (detail.summary.source, detail.summary.status) == ("dashboard", "ok")
        assert [(a.model_id, a.outcome_class) for a in detail.attempts] == [
            ("opencode-custom-opus", "model_not_found"),
            ("opencode-custom-sonnet", None),
        ]
        # "Model not found" rests the model: routing leaves it out, with the reason, until a check passes.
        opus = next(
            r
            for r in backend.score(present(app.state), "design a cache").ranked
            if r.model_id == "opencode-custom-opus"
        )
        assert opus.skipped is not None and "the last run got “model not found”" in opus.skipped
        assert app.state is not None and "model not found" in app.state.unavailable["opencode-custom-opus"]
        registry = app.query_one("#registry", RegistryPanel)
        await until(
            pilot,
            lambda: "model not found" in str(registry.table.get_cell("opencode-custom-opus", "availability")),
            what="the registry to show the rest",
        )
        lines = list(view.log_widget.lines)
        assert any(
            line.startswith("⤷ falling back from opencode-custom-opus to opencode-custom-sonnet") for line in lines
        ), lines
        tabs = app.query_one("#runs", TabbedContent)
        await until(
            pilot,
            lambda: str(tabs.get_tab("run-1").label) == "✓ 1 design a cache",
            what="the tab label",
        )
        await app.shutdown()


async def test_the_demo_tour_tool_call_shows_as_a_completed_row(hermetic_env: dict[str, str]) -> None:
    from nexus_tui.widgets.tool_calls import ToolCalls

    app = RecordingApp(demo=True, env=hermetic_env, test_mode=True, check_health=False, debounce=0.01)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state is not None, timeout=30, what="the demo config")
        app.query_one("#task", TaskPanel).pick("opencode-custom-sonnet")
        await pilot.press(*"read the README", "enter")
        await until(pilot, lambda: "run-1" in app.runs, what="the run")
        view = app.query_one("#run-1-view", RunView)
        await until(pilot, lambda: view.status.finished, timeout=120, what="the run to end")
        assert view.status is RunStatus.SUCCEEDED, view.verdict
        rows = list(view.query_one(ToolCalls).rows.values())
        assert [(row.tool, row.state) for row in rows] == [("read", "completed")]
        assert "README says the parser drops the trailing newline" in view.reply_text
        await app.shutdown()
