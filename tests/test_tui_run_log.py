"""A run's log out of view: it keeps every line without laying out the screen for each write, and
catches up (size, tail) when its tab comes back into view."""

from __future__ import annotations

from pathlib import Path

from tui_support import SIZE, open_run, quiet_app, settle, until

LONG = "word " * 60


async def test_a_log_out_of_view_keeps_its_lines_and_catches_up_when_shown(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        hidden = await open_run(app, "first")
        shown = await open_run(app, "second")
        await until(pilot, lambda: shown.log_widget.scrollable_content_region.width > 0)
        await until(pilot, lambda: not hidden.log_widget.scrollable_content_region.width)
        log = hidden.log_widget
        size_before = log.virtual_size
        for n in range(30):
            hidden.write_lines([f"{n:02d} {LONG}"])
            hidden.flush()
            await pilot.pause()
        # Out of view a write changes no size (a size change is what lays out the whole screen):
        # the lines are kept, and the size catches up only when the tab is shown.
        assert log.virtual_size == size_before
        written = [line for line in log.lines if line[:2].isdigit() or line.startswith("word")]
        assert " ".join(written).split() == [w for n in range(30) for w in f"{n:02d} {LONG}".split()]

        app.runs_area.action_switch(1)
        await until(pilot, lambda: log.scrollable_content_region.width > 0)
        await until(pilot, lambda: log.virtual_size.height == len(log.lines))
        await until(pilot, lambda: log.max_scroll_y > 0 and log.is_vertical_scroll_end)
        assert hidden.unseen_lines == 0


async def test_a_log_in_view_grows_its_scrollbar_follows_and_the_last_row_is_the_last_line(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await open_run(app, "shown")
        log = view.log_widget
        await until(pilot, lambda: log.scrollable_content_region.width > 0)
        view.write_lines(f"first {n}" for n in range(60))  # past the fold: the scrollbar has a thumb
        view.flush()
        await until(pilot, lambda: log.max_scroll_y > 0 and log.is_vertical_scroll_end)
        for n in range(30):
            view.write_lines([f"{n:02d} {LONG}"])
            view.flush()
            await pilot.pause()
            view.stream_text(f"delta {n} ")
            view.flush()
            await pilot.pause()
        assert log.virtual_size.height == log.line_count == log.vertical_scrollbar.window_virtual_size
        assert log.is_vertical_scroll_end and view.unseen_lines == 0
        bottom = log.scrollable_content_region.height - 1
        assert log.render_line(bottom).text.rstrip() == log.lines[-1].rstrip()


async def test_writes_that_come_before_the_layout_catches_up_keep_the_log_on_its_tail(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    """A busy machine flushes again before the scroll to the tail is done: the log must still follow."""
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await open_run(app, "busy")
        log = view.log_widget
        await until(pilot, lambda: log.scrollable_content_region.width > 0)
        for burst in range(3):
            # No pause between the flushes: the second comes while the first's scroll waits for a refresh.
            view.write_lines(f"burst {burst} line {n}" for n in range(40))
            view.flush()
            view.write_lines([f"burst {burst} last"])
            view.flush()
        await until(pilot, lambda: log.max_scroll_y > 0 and log.is_vertical_scroll_end)
        assert view.unseen_lines == 0 and log.lines[-1] == "burst 2 last"
