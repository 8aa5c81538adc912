# ruff: noqa: F811 - snap is a fixture imported from test_tui_snapshots
"""The dashboard's History: past runs from the run store (seeded through the real recorder in a
hermetic ``NEXUS_STATE_DIR``) are listed at start, replayed, re-run, recalled with Up, and a run
whose process was killed reads as interrupted."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from nexus_core.store.runs import RunStore
from nexus_tui.history import StoreTaskHistory, load_past_runs
from nexus_tui.widgets.editor import TaskEditor
from nexus_tui.widgets.history import HistoryPanel, HistoryRun
from nexus_tui.widgets.run_log import RunLog
from nexus_tui.widgets.runs import RunStatus
from nexus_tui.widgets.runs_area import HISTORY_PANE
from test_tui_snapshots import snap  # noqa: F401 - a fixture
from tui_support import SIZE, SONNET, SONNET_ID, RecordingApp, seed_run, settle, until, write_project


@pytest.fixture
def env(hermetic_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**hermetic_env, "NEXUS_STATE_DIR": str(tmp_path / "state")}


def make_app(project: Path, env: dict[str, str]) -> RecordingApp:
    return RecordingApp(project, env=env, test_mode=True, watch_config=False, check_health=False, debounce=0.01)


async def test_past_runs_are_listed_replayed_rerun_and_recalled(tmp_path: Path, env: dict[str, str]) -> None:
    project = write_project(tmp_path)
    with RunStore.open(env) as store:
        oldest = seed_run(store, project, "explain the parser", "The parser is a Pratt parser.")
        failed = seed_run(store, project, "design a cache", "", ok=False)
        newest = seed_run(store, project, "What is the capital of Peru?", "Lima is the capital.")
        seed_run(store, tmp_path, "another project's task", "not listed")
    app = make_app(project, env)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, app.history_loaded.is_set, what="the history read")
        await settle(pilot)
        panel = app.query_one(HistoryPanel)
        assert [e.run_id for e in panel.entries] == [newest, failed, oldest]
        assert app.runs_area.tabs.active == HISTORY_PANE
        table = panel.table
        assert table.row_count == 3
        first_row = [str(cell) for cell in table.get_row_at(0)]
        assert first_row[0] == "✓ ok" and first_row[2] == "What is the capital of Peru?"
        assert str(table.get_row_at(1)[0]) == "✗ failed"

        # Up in the (empty) task box recalls the stored tasks, newest first, this project's only.
        editor = app.query_one("#task-input", TaskEditor)
        editor.focus()
        await pilot.press("up")
        assert editor.text == "What is the capital of Peru?"
        await pilot.press("up", "up")
        assert editor.text == "explain the parser"
        await pilot.press("up")
        assert editor.text == "explain the parser", "the other project's task is not recalled"
        editor.set_text("")

        # Enter on a row replays that run read-only in a new tab.
        table.focus()
        await pilot.press("enter")
        await until(pilot, lambda: bool(app.query(HistoryRun)), what="the replay tab")
        replay = app.query_one(HistoryRun)
        await settle(pilot)
        assert replay.stored_id == newest and replay.status is RunStatus.SUCCEEDED
        lines = list(replay.log_widget.lines)
        assert "Lima is the capital." in lines, lines
        assert any(line.startswith("→ attempt 1:") and "custom/claude-sonnet-4-5" in line for line in lines), lines
        assert any("F6 continue its session" in line for line in lines), lines
        assert replay.reply_text == "Lima is the capital."
        assert app.runs_area.active_view is replay
        assert replay.stored.session_id == "ses_seeded0001"

        # F6 asks to continue the stored session (the follow-up sender takes it from there).
        await pilot.press("f6")
        [asked] = app.seen(HistoryRun.ContinueRequested)
        assert (asked.session_id, asked.model, asked.task) == ("ses_seeded0001", SONNET_ID, replay.task_text)
        await pilot.pause()
        # ... and its follow-up box takes the text for that session (sent on Enter: test_tui_serve.py).
        assert replay.follow_up_box.display and replay.follow_up_box.has_focus
        await pilot.press("escape")  # leaves the box for the run's log
        assert isinstance(app.focused, RunLog)

        # A replay closes like a finished run; opening it again brings a new replay.
        # R re-runs the same task on the same model: a new, live run.
        await pilot.press("R")
        await until(pilot, lambda: len(app.runs) == 1, what="the re-run")
        [(run_id, handle)] = app.runs.items()
        assert app.requests[run_id].task == "What is the capital of Peru?"
        assert app.requests[run_id].model_id == SONNET_ID and handle.label == SONNET_ID
        await until(
            pilot,
            lambda: app.runs_area.active_view is not None and app.runs_area.active_view.run_id == run_id,
            what="the re-run's tab in view",
        )
        await until(pilot, lambda: handle.finished, timeout=60, what="the re-run to end")

        # The History tab (F9) lists the new run once it comes into view again, and the replay closes with x.
        await pilot.press("f9")
        assert app.runs_area.tabs.active == HISTORY_PANE
        await until(pilot, lambda: len(panel.entries) == 4, what="the list read again")
        assert panel.entries[0].task == "What is the capital of Peru?" and panel.entries[0].run_id == handle.run_id
        app.runs_area.tabs.active = replay.run_id
        replay.log_widget.focus()
        await pilot.press("x")
        await until(pilot, lambda: not app.query(HistoryRun), what="the replay tab to close")


_RECORD_AND_HANG = """
import sys, time
from nexus_core.opencode.events import AttemptStarted, Text
from nexus_core.routing.chain import DelegationSpec
from nexus_core.routing.registry import ModelProfile
from nexus_core.store.recorder import DelegationRecorder, history_store
profile = ModelProfile(id="m", name="m", provider="custom", cli_model_name="custom/m", source="opencode.json")
store = history_store()
recorder = DelegationRecorder.begin(store, DelegationSpec(prompt="doomed task", chain=(profile,)), project=sys.argv[1])
recorder.see(AttemptStarted(attempt=1, model_id="m", cli_model_name="custom/m"))
recorder.see(Text(attempt=1, text="half an answer"))
recorder.flush()
store.flush()
print(recorder.run_id, flush=True)
time.sleep(120)
"""


async def test_a_run_of_another_process_shows_running_then_interrupted_once_killed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    project = write_project(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", _RECORD_AND_HANG, str(project)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        assert run_id, "the recording child printed no run id"
        app = make_app(project, env)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, app.history_loaded.is_set, what="the history read")
            await settle(pilot)
            panel = app.query_one(HistoryPanel)
            assert [(e.run_id, e.status) for e in panel.entries] == [(run_id, "running")]
            assert str(panel.table.get_row_at(0)[0]) == "● running elsewhere"
            panel.table.focus()
            await pilot.press("enter")
            await until(pilot, lambda: bool(app.query(HistoryRun)), what="the replay tab")
            replay = app.query_one(HistoryRun)
            await settle(pilot)
            assert replay.status is RunStatus.RUNNING
            assert "half an answer" in list(replay.log_widget.lines)
            assert any("still running in another process" in line for line in replay.log_widget.lines)

            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            app.runs_area.action_history()
            await until(pilot, lambda: panel.entries[0].status == "interrupted", what="the list read again")
            assert str(panel.table.get_row_at(0)[0]) == "⚠ interrupted"
            # Opening it now replays it as interrupted, with the store's reason.
            panel.table.focus()
            await pilot.press("enter")
            await until(
                pilot, lambda: [v.status for v in app.query(HistoryRun)] == [RunStatus.FAILED], what="a fresh replay"
            )
            again = app.query_one(HistoryRun)
            assert again.run_id != replay.run_id
            assert again.status is RunStatus.FAILED and again.verdict.startswith("interrupted: ")
            assert "killed or crashed" in again.verdict
            assert app.runs_area.tabs.get_tab(again.run_id).label.plain.startswith("⚠ ")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


async def test_no_past_runs_keeps_the_empty_runs_line_until_f9_finds_one(tmp_path: Path, env: dict[str, str]) -> None:
    project = write_project(tmp_path)
    app = make_app(project, env)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, app.history_loaded.is_set, what="the history read")
        await settle(pilot)
        assert app.runs_area.history is None
        assert app.query_one("#runs-empty").display
        await pilot.press("f9")
        await until(pilot, lambda: any("No runs of this project" in n.message for n in app.notices), what="the notice")
        # A run recorded since (by another process, say): F9 reads the store again and shows it.
        with RunStore.open(env) as store:
            run_id = seed_run(store, project, "recorded meanwhile", "done")
        await pilot.press("f9")
        await until(pilot, lambda: app.runs_area.history is not None, what="the History tab")
        await until(pilot, lambda: app.runs_area.tabs.active == HISTORY_PANE, what="it in view")
        assert [e.run_id for e in app.query_one(HistoryPanel).entries] == [run_id]


def test_the_start_read_is_bounded_and_tasks_have_no_repeats(tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "p"
    project.mkdir()
    with RunStore.open(env) as store:
        for n in range(30):
            handle = store.begin_run(f"task {n % 7}", project=project)
            handle.finish(None, wait=n == 29)
    past = load_past_runs(env, project, limit=10, scan=12)
    assert len(past.entries) == 10 and past.entries[0].task == "task 1"
    assert past.tasks == ("task 1", "task 0", "task 6", "task 5", "task 4", "task 3", "task 2")
    history = StoreTaskHistory(limit=4)
    history.add("typed before the read")
    history.load(past.tasks)
    assert history.entries() == ("task 6", "task 0", "task 1", "typed before the read")
    history.add("task 0")
    assert history.entries() == ("task 6", "task 1", "typed before the read", "task 0")
    assert load_past_runs({**env, "NEXUS_NO_HISTORY": "1"}, project).entries == ()


def seed_fixed_history(project: Path, env: dict[str, str]) -> None:
    """Four runs with fixed times (UTC), one of them left ``running`` by a process that is gone."""
    with RunStore.open(env) as store:
        seed_run(store, project, "explain the parser\nwith an example", "The parser is a Pratt parser.")
        seed_run(store, project, "design a cache for the registry lookups", "", ok=False)
        store.begin_run("rename the config loader and update every caller of it", project=project)
        seed_run(store, project, "What is the capital of Peru?", "Lima is the capital.")
        path = store.path
    with sqlite3.connect(path) as conn:
        for seq, (start, took) in enumerate(((0, 12.5), (600, 3.2), (1_200, None), (1_800, 95.0)), start=1):
            at = FIXED_EPOCH + start
            conn.execute(
                "UPDATE runs SET started_at = ?, finished_at = ? WHERE seq = ?",
                (at, None if took is None else at + took, seq),
            )
        conn.execute("UPDATE runs SET pid = 999999999, pid_started = 0 WHERE status = 'running'")


FIXED_EPOCH = 1_796_300_000.0  # 2026-12-03 12:13:20 UTC


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_history_list_snapshot_at_100x30(snap: Any, tmp_path: Path, hermetic_env: dict[str, str], utc: None) -> None:
    project = write_project(tmp_path)
    seed_fixed_history(project, hermetic_env)
    app = make_app(project, hermetic_env)

    async def prepare(pilot: Pilot[Any]) -> None:
        await until(pilot, app.history_loaded.is_set, what="the history read")
        await pilot.app.workers.wait_for_complete()
        panel = app.query_one(HistoryPanel)
        await until(pilot, lambda: panel.drawn_width == panel.size.width > 0, what="the columns laid out")
        await pilot.pause()

    assert snap(prepare, app=app, size=(100, 30))


async def test_at_80x24_the_history_rows_are_visible(tmp_path: Path, hermetic_env: dict[str, str], utc: None) -> None:
    project = write_project(tmp_path)
    seed_fixed_history(project, hermetic_env)
    app = make_app(project, hermetic_env)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, app.history_loaded.is_set, what="the history read")
        await settle(pilot)
        panel = app.query_one(HistoryPanel)
        await until(pilot, lambda: panel.drawn_width == panel.size.width > 0, what="the columns laid out")
        table = panel.table
        region = table.region
        assert region.height >= 4 and region.bottom <= 24 and region.right <= 80, region
        # The task column takes the room the model column leaves at this width, and nothing scrolls sideways.
        assert [str(c.label) for c in table.columns.values()] == ["status", "started", "task", "took"]
        assert table.virtual_size.width <= region.width, (table.virtual_size, region)
        assert [str(table.get_row_at(n)[0]) for n in range(4)] == [
            "✓ ok",
            "⚠ interrupted",
            "✗ failed",
            "✓ ok",
        ]


@pytest.mark.opencode
def test_f6_is_offered_only_while_opencode_keeps_the_session(tmp_path: Path, env: dict[str, str]) -> None:
    from conftest import opencode_path
    from nexus_tui.history import load_stored_run, session_known

    project = write_project(tmp_path)
    # The real OpenCode makes a session, then fails to reach the (closed) gateway.
    done = subprocess.run(
        [opencode_path(), "run", "--format", "json", "-m", SONNET, "hi"],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    session = next((json.loads(line)["sessionID"] for line in done.stdout.splitlines() if '"sessionID"' in line), None)
    assert session, done.stdout + done.stderr
    assert session_known(session, env) is True
    assert session_known("ses_gone", env) is False
    assert session_known(session, {**env, "XDG_DATA_HOME": str(tmp_path / "nowhere")}) is None
    with RunStore.open(env) as store:
        kept = seed_run(store, project, "still here", "yes", session_id=session)
        gone = seed_run(store, project, "long gone", "no", session_id="ses_gone")
    kept_run, gone_run = load_stored_run(env, kept), load_stored_run(env, gone)
    assert kept_run is not None and kept_run.session_exists is True
    assert gone_run is not None and gone_run.session_exists is False
    assert HistoryRun("run-1", kept_run, show_timings=False).can_continue
    assert not HistoryRun("run-2", gone_run, show_timings=False).can_continue
