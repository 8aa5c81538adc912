"""The task editor: Enter submits atomically, pastes keep their lines, refused runs keep their text, history."""

from __future__ import annotations

from pathlib import Path

from textual import events

from nexus_tui.widgets.editor import InMemoryTaskHistory, TaskEditor
from nexus_tui.widgets.task import TaskPanel
from tui_support import SIZE, RecordingApp, settle, until, write_project


def make_app(tmp_path: Path, env: dict[str, str]) -> RecordingApp:
    # No OpenCode anywhere (not on PATH, and NEXUS_OPENCODE names a missing file, so the checkout's
    # .tools copy is not used either): every run is refused, so the tests see what the editor submitted.
    env = env | {"PATH": str(tmp_path / "empty-bin"), "NEXUS_OPENCODE": str(tmp_path / "no-opencode")}
    options = {"test_mode": True, "watch_config": False, "check_health": False, "debounce": 0.01}
    return RecordingApp(write_project(tmp_path), env=env, **options)


async def test_keys_typed_right_after_enter_start_the_next_task() -> None:
    from textual.app import App

    class Host(App[None]):
        def compose(self):
            yield TaskPanel(debounce=0.01, id="task")

    requested: list[str] = []

    def hook(message: object) -> None:
        if isinstance(message, TaskPanel.RunRequested) and message.request.task not in requested:
            requested.append(message.request.task)

    app = Host()
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        editor = app.query_one("#task-input", TaskEditor)
        editor.focus()
        # One burst, no pause between the Enter and the next keys: what a fast typist does.
        await pilot.press(*"fix the flaky login test", "enter", *"rename the helper", "enter", *"third")
        await pilot.pause()
        assert requested == ["fix the flaky login test", "rename the helper"]
        assert editor.text == "third"


async def test_a_paste_keeps_every_line_and_ctrl_j_adds_one(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = make_app(tmp_path, hermetic_env)
    traceback = 'Traceback (most recent call last):\n  File "app.py", line 3\nValueError: bad'
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        editor = app.query_one("#task-input", TaskEditor)
        await pilot.press(*"explain this:", "ctrl+j")
        app.post_message(events.Paste(traceback))  # as the driver delivers it
        await pilot.pause()
        assert editor.text == "explain this:\n" + traceback
        await pilot.press("shift+enter", *"thanks")
        assert editor.text.endswith("ValueError: bad\nthanks")
        assert not app.seen(TaskPanel.RunRequested)
        await pilot.press("enter")
        await until(pilot, lambda: app.seen(TaskPanel.RunRequested), what="the submission")
        assert app.seen(TaskPanel.RunRequested)[0].request.task == "explain this:\n" + traceback + "\nthanks"


async def test_a_refused_run_keeps_its_text(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = make_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        editor = app.query_one("#task-input", TaskEditor)
        await pilot.press(*"line one", "ctrl+j", *"line two", "enter")
        await until(pilot, lambda: any(n.severity == "error" for n in app.notices), what="the refusal")
        await settle(pilot)
        assert app.runs == {}
        assert editor.text == "line one\nline two"


async def test_up_and_down_walk_the_history_and_come_back_to_the_draft(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    app = make_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        editor = app.query_one("#task-input", TaskEditor)
        editor.task_history.add("first task")
        editor.task_history.add("second task\nwith a second line")
        await pilot.press(*"draft")
        await pilot.press("up")
        assert editor.text == "second task\nwith a second line"
        await pilot.press("up")
        assert editor.text == "first task"
        await pilot.press("up")
        assert editor.text == "first task", "past the oldest entry nothing changes"
        await pilot.press("down")
        assert editor.text == "second task\nwith a second line"
        # Down first moves within the recalled text, then on to the draft.
        assert editor.cursor_location[0] == 0
        await pilot.press("down")
        assert editor.cursor_location[0] == 1 and editor.text.startswith("second")
        await pilot.press("down")
        assert editor.text == "draft"


def test_in_memory_history_is_bounded_and_skips_repeats() -> None:
    history = InMemoryTaskHistory(limit=3)
    for task in ("a", "b", "b", "c", "d"):
        history.add(task)
    assert history.entries() == ("b", "c", "d")
