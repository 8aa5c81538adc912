"""The dashboard as a console: runs first at any size, run tabs and their actions, tables that show state."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.command import CommandList
from textual.widgets import DataTable, Input, OptionList, Static

from conftest import present
from nexus_core.errors import NexusError
from nexus_core.opencode.events import AttemptFinished, AttemptStarted, Outcome, Text
from nexus_tui import backend
from nexus_tui.screens import DetailsScreen
from nexus_tui.widgets.editor import TaskEditor
from nexus_tui.widgets.health import HealthCheck, HealthPanel, HealthReport
from nexus_tui.widgets.registry import RegistryPanel
from nexus_tui.widgets.runs import RunStatus, RunView
from nexus_tui.widgets.runs_area import RunsArea, short_title
from nexus_tui.widgets.task import TaskPanel
from tui_support import SIZE, RecordingApp, quiet_app, settle, until

REPLY = "The parser now keeps the trailing newline; all 14 tests pass."


class FinishedRun:
    """A run handle that has already ended (the app's quit and cancel paths only read ``finished``)."""

    label = "opencode-custom-sonnet"
    finished = True

    def cancel(self) -> None:
        return None

    async def wait(self) -> None:
        return None


async def finished_run(app: RecordingApp, task: str, lines: int = 0) -> RunView:
    """A run view with ``lines`` lines of output and then a reply, finished."""
    view = app.new_run_view(task)
    app.runs[view.run_id] = FinishedRun()
    await app.show_run_view(view)
    view.feed(AttemptStarted(attempt=1, model_id="opencode-custom-sonnet", cli_model_name="custom/claude-sonnet-4-5"))
    view.write_lines(f"output line {i}" for i in range(lines))
    view.feed(Text(attempt=1, text=REPLY))
    view.feed(AttemptFinished(attempt=1, cli_model_name="custom/claude-sonnet-4-5", outcome=Outcome(message="ok")))
    view.finish(RunStatus.SUCCEEDED, "custom/claude-sonnet-4-5 answered")
    return view


def visible_lines(view: RunView) -> list[str]:
    log = view.log_widget
    top = round(log.scroll_y)
    return list(log.lines[top : top + log.scrollable_content_region.height])


def on_screen(app: Any, widget: Any) -> bool:
    region = widget.region
    return region.height > 0 and app.screen.region.contains_region(region)


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
async def test_a_reply_and_the_last_line_are_visible_on_small_terminals(
    tmp_path: Path, hermetic_env: dict[str, str], size: tuple[int, int]
) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        assert app.models_collapsed and app.task_collapsed, "a short screen starts with both panels collapsed"
        view = await finished_run(app, "fix the failing test", lines=40)
        await settle(pilot)
        log = view.log_widget
        assert on_screen(app, log) and log.scrollable_content_region.height >= 3
        # The scroll to the tail comes after the layout: on a busy machine that is a few frames later.
        await until(pilot, lambda: log.max_scroll_y > 0 and log.is_vertical_scroll_end, what="the log at its tail")
        shown = visible_lines(view)
        assert shown[-1] == log.lines[-1] and shown[-1].startswith("══ succeeded")
        assert any(REPLY[:30] in line for line in shown), shown
        assert on_screen(app, app.query_one("#task-input", TaskEditor))


async def test_panels_collapse_and_the_run_zooms(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert not app.models_collapsed and not app.task_collapsed
        view = await finished_run(app, "explain the cache", lines=5)
        await settle(pilot)
        before = view.log_widget.size.height
        await pilot.press("f2")
        assert app.models_collapsed and app.query_one("#registry-table").region.height == 0
        await pilot.press("f3")
        assert app.task_collapsed and app.query_one("#breakdown").region.height == 0
        await pilot.pause()
        assert view.log_widget.size.height > before
        await pilot.press("f2", "f3")
        await pilot.press("f7")
        await pilot.pause()
        assert app.zoomed and app.screen.has_class("-zoom")
        assert app.query_one("#registry").region.height == 0 and app.query_one("#task").region.height == 0
        assert view.log_widget.size.height >= SIZE[1] - 10
        await pilot.press("f7")
        await pilot.pause()
        assert not app.zoomed and app.query_one("#task").region.height > 0


async def test_new_lines_are_counted_while_scrolled_up(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        view = await finished_run(app, "a long one", lines=80)
        await settle(pilot)
        view.log_widget.scroll_home(animate=False)
        await pilot.pause()
        view.write_lines(f"late {i}" for i in range(7))
        view.flush()
        await pilot.pause()
        banner = view.query_one("#run-new-lines")
        assert view.unseen_lines == 7 and "7 new" in str(banner.render()) and on_screen(app, banner)


async def test_tabs_show_status_and_title_switch_close_and_clear(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        area = app.query_one(RunsArea)
        done = await finished_run(app, "fix the flaky login test in tests/test_auth.py")
        waiting = app.new_run_view("rename the helper")
        await app.show_run_view(waiting)
        await settle(pilot)
        tabs = area.tabs
        assert str(tabs.get_tab(done.run_id).label) == f"✓ 1 {short_title(done.task_text)}"
        assert str(tabs.get_tab(waiting.run_id).label) == "◌ 2 rename the helper", "not started yet: queued"
        assert waiting.status is RunStatus.QUEUED
        waiting.log_widget.focus()
        await pilot.press("1")
        assert tabs.active == done.run_id
        await pilot.press("right_square_bracket")
        assert tabs.active == waiting.run_id
        await pilot.press("right_square_bracket")
        assert tabs.active == done.run_id, "wraps around"
        await pilot.press("left_square_bracket")
        assert tabs.active == waiting.run_id
        await pilot.press("x")
        await pilot.pause()
        assert len(area.views) == 2, "a run in progress is not closed"
        await pilot.press("X")
        await pilot.pause()
        assert [view.run_id for view in area.views] == [waiting.run_id]
        assert done.run_id in app.runs, "a closed tab stays in the history"


async def test_copy_save_and_rerun_the_run_in_view(
    tmp_path: Path, hermetic_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    asked: list[Any] = []

    def start_run(state: Any, request: Any, env: Any, project_dir: Any, **_: Any) -> Any:
        asked.append(request)
        raise NexusError("not started in this test")

    monkeypatch.setattr(backend, "start_run", start_run)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await finished_run(app, "fix the failing test", lines=3)
        await settle(pilot)
        view.log_widget.focus()
        await pilot.press("y")
        assert app.clipboard == REPLY
        await pilot.press("s")
        assert app.last_saved_log is not None and app.last_saved_log.is_file()
        saved = app.last_saved_log.read_text()
        assert "output line 2" in saved and REPLY in saved and saved.rstrip().endswith("answered")
        assert Path(hermetic_env["XDG_STATE_HOME"]) in app.last_saved_log.parents
        await pilot.press("r")
        await until(pilot, lambda: app.screen.query(CommandList), what="the model list")
        await pilot.press(*"custom-opus")
        await until(pilot, lambda: app.screen.query_one(CommandList).option_count >= 1, what="the models")
        await pilot.press("enter")
        await until(pilot, lambda: asked, what="the re-run")
        assert asked[0].task == "fix the failing test" and asked[0].model_id == "opencode-custom-opus"


async def test_registry_sort_arrow_reverse_filter_anywhere_and_count(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        registry = app.query_one(RegistryPanel)
        table = registry.table

        def header(key: str) -> str:
            return str(table.columns[next(k for k in table.columns if k.value == key)].label)

        assert header("id").endswith("▼") and "3 models" in str(registry.border_subtitle)
        registry.sort_by("speed")
        assert registry.shown_ids[0] == "opencode-custom-sonnet" and header("speed") == "spd ▼"
        assert not header("id").endswith(("▼", "▲"))
        registry.sort_by("speed")
        assert registry.shown_ids[-1] == "opencode-custom-sonnet" and header("speed") == "spd ▲"
        assert "spd ▲" in str(registry.border_subtitle)

        # "/" from the runs area (not a text box) goes to the filter; Esc clears it; Enter goes to the rows.
        app.query_one("#registry-table").focus()
        await pilot.press("slash")
        assert app.focused is app.query_one("#registry-filter", Input)
        await pilot.press(*"sonnet")
        assert registry.shown_ids == ["opencode-custom-sonnet"] and "1 of 3 match" in str(registry.border_subtitle)
        await pilot.press("escape")
        assert len(registry.shown_ids) == 3 and app.query_one("#registry-filter", Input).value == ""
        await pilot.press("ctrl+f", *"opus", "enter")
        assert table.has_focus and registry.shown_ids == ["opencode-custom-opus"]
        # Ctrl+F works even from the task editor, where "/" is typed as text.
        app.query_one("#task-input", TaskEditor).focus()
        await pilot.press("slash")
        assert app.query_one("#task-input", TaskEditor).text == "/"
        await pilot.press("ctrl+f")
        assert app.focused is app.query_one("#registry-filter", Input)


async def test_the_picked_model_is_marked_in_the_breakdown(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"write tests")
        panel = app.query_one(TaskPanel)
        await until(pilot, lambda: panel.breakdown is not None and panel.breakdown.task == "write tests")
        last = [r for r in present(panel.breakdown).ranked if not r.skipped][-1].model_id
        panel.pick(last)
        table = app.query_one("#breakdown", DataTable)
        assert "(picked)" in str(table.get_cell(last, "model")) and str(table.get_cell(last, "rank")).startswith("▶")
        assert table.cursor_row == table.get_row_index(last)
        others = [r.model_id for r in present(panel.breakdown).ranked if r.model_id != last]
        assert all("(picked)" not in str(table.get_cell(model_id, "model")) for model_id in others)


async def test_health_lists_failures_first_and_shows_details(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    long_path = "/home/someone/" + "very/" * 30 + "opencode.json"
    report = HealthReport(
        checks=(
            HealthCheck("opencode", "ok", "OpenCode 1.2.15 on PATH"),
            HealthCheck("config", "warn", f"parsed {long_path}", fix="nothing to do"),
            HealthCheck("gateway.custom", "fail", "connection refused", fix="start the gateway"),
        )
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        panel = app.query_one(HealthPanel)
        panel.show(report)
        assert [c.check_id for c in report.by_urgency()] == ["gateway.custom", "config", "opencode"]
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(panel.query_one("#health-body", Static).content)
        headline = console.export_text()
        # A warning is counted, never hidden behind "all checks pass".
        assert "1 failing" in headline and "1 warning" in headline and "all checks pass" not in headline
        checks = panel.query_one("#health-checks", OptionList)
        assert [checks.get_option_at_index(i).id for i in range(checks.option_count)] == [
            "gateway.custom",
            "config",
            "opencode",
        ]
        assert panel.size.width > 50, "at 140 columns the panel is wider than the old fixed 50"
        checks.focus()
        await pilot.press("down", "enter")
        assert isinstance(app.screen, DetailsScreen)
        assert long_path in str(app.screen.body) and "gateway.custom" not in str(app.screen.body)
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailsScreen)
        await pilot.press("d")
        assert isinstance(app.screen, DetailsScreen)
        assert "gateway.custom" in str(app.screen.body) and long_path in str(app.screen.body)
        await pilot.press("escape")


async def test_runs_started_together_mount_together_in_order_and_the_last_is_shown(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    """Tabs queued in one moment (several runs started at once) are mounted as one batch (one
    layout for all: ``python -m bench.streams_bench`` measures what that spares the streaming runs),
    in the order queued, the last one in view; queueing never blocks the caller."""
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        area = app.query_one(RunsArea)
        views = [app.new_run_view(f"task {n}") for n in range(4)]
        for view in views:
            area.queue(view)
        assert not area.views  # nothing is mounted until the batch is
        await until(pilot, lambda: len(area.views) == 4)
        assert [v.run_id for v in area.views] == [v.run_id for v in views]
        assert area.active_view is views[-1]
        area.queue(extra := app.new_run_view("later"))
        await until(pilot, lambda: area.active_view is extra)
        assert len(area.views) == 5
