"""A run's log out of view: it keeps every line without laying out the screen for each write, and
catches up (size, tail) when its tab comes back into view."""

from __future__ import annotations

from pathlib import Path

from nexus_tui.widgets.runs import RunView
from tui_support import SIZE, RecordingApp, settle, until, write_project

LONG = "word " * 60


def make_app(tmp_path: Path, env: dict[str, str]) -> RecordingApp:
    options = {"test_mode": True, "watch_config": False, "check_health": False, "debounce": 0.01}
    return RecordingApp(write_project(tmp_path), env=env, **options)


async def open_run(app: RecordingApp, task: str) -> RunView:
    view = app.new_run_view(task)
    await app.show_run_view(view)
    return view


async def test_a_log_out_of_view_keeps_its_lines_and_catches_up_when_shown(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    app = make_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        hidden = await open_run(app, "first")
        shown = await open_run(app, "second")
        await until(pilot, lambda: shown.log_widget.scrollable_content_region.width > 0)
        await until(pilot, lambda: not hidden.log_widget.scrollable_content_region.width)
        screen = app.screen
        layouts = 0
        original = screen._refresh_layout

        def counting(*args, **kwargs):
            nonlocal layouts
            layouts += 1
            return original(*args, **kwargs)

        screen._refresh_layout = counting  # type: ignore[method-assign]
        for n in range(30):
            hidden.write_lines([f"{n:02d} {LONG}"])
            hidden.flush()
            await pilot.pause()
        screen._refresh_layout = original  # type: ignore[method-assign]
        assert layouts <= 3, f"{layouts} screen layouts for 30 writes to a log out of view"

        log = hidden.log_widget
        written = [line for line in log.lines if line[:2].isdigit() or line.startswith("word")]
        assert " ".join(written).split() == [w for n in range(30) for w in f"{n:02d} {LONG}".split()]

        app.runs_area.action_switch(1)
        await until(pilot, lambda: log.scrollable_content_region.width > 0)
        await until(pilot, lambda: log.virtual_size.height == len(log.lines))
        await until(pilot, lambda: log.max_scroll_y > 0 and log.is_vertical_scroll_end)
        assert hidden.unseen_lines == 0


async def test_a_log_in_view_grows_without_laying_out_the_screen(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = make_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await open_run(app, "shown")
        log = view.log_widget
        await until(pilot, lambda: log.scrollable_content_region.width > 0)
        view.write_lines(f"first {n}" for n in range(60))  # past the fold: the scrollbar has a thumb
        view.flush()
        await until(pilot, lambda: log.max_scroll_y > 0 and log.is_vertical_scroll_end)
        screen = app.screen
        layouts = 0
        original = screen._refresh_layout

        def counting(*args, **kwargs):
            nonlocal layouts
            layouts += 1
            return original(*args, **kwargs)

        screen._refresh_layout = counting  # type: ignore[method-assign]
        for n in range(30):
            view.write_lines([f"{n:02d} {LONG}"])
            view.flush()
            await pilot.pause()
            view.stream_text(f"delta {n} ")
            view.flush()
            await pilot.pause()
        screen._refresh_layout = original  # type: ignore[method-assign]
        assert layouts <= 3, f"{layouts} screen layouts for 60 writes to a log in view"
        assert log.virtual_size.height == log.line_count == log.vertical_scrollbar.window_virtual_size
        assert log.is_vertical_scroll_end and view.unseen_lines == 0
        bottom = log.scrollable_content_region.height - 1
        assert log.render_line(bottom).text.rstrip() == log.lines[-1].rstrip()
