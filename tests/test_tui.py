"""The dashboard's behaviour, driven through Textual's Pilot: messages posted and widget state."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import cast

import pytest
from textual.command import CommandList
from textual.widgets import Checkbox, DataTable, Input, Select
from textual.widgets.data_table import RowKey

from conftest import present
from nexus_tui.app import NexusApp
from nexus_tui.backend import RunHandle
from nexus_tui.screens import ConfirmQuitScreen, HelpScreen
from nexus_tui.widgets.editor import TaskEditor
from nexus_tui.widgets.health import HealthPanel, HealthReport
from nexus_tui.widgets.registry import RegistryPanel
from nexus_tui.widgets.run_log import RunLog
from nexus_tui.widgets.runs import RunView
from nexus_tui.widgets.task import TaskPanel
from tui_support import SIZE, RecordingApp, project_config, settle, until, write_project


def make_app(tmp_path: Path, env: dict[str, str], **kwargs) -> RecordingApp:
    project = write_project(tmp_path)
    options = {"test_mode": True, "watch_config": False, "check_health": False, "debounce": 0.01} | kwargs
    return RecordingApp(project, env=env, **options)


async def test_task_input_has_focus_and_the_breakdown_follows_typing(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    app = make_app(tmp_path, hermetic_env, debounce=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.focused is app.query_one("#task-input", TaskEditor)
        await pilot.press(*"refactor the parser module")
        panel = app.query_one(TaskPanel)
        await until(
            pilot,
            lambda: panel.breakdown is not None and panel.breakdown.task == "refactor the parser module",
            what="the breakdown",
        )
        wanted = app.seen(TaskPanel.ScoreWanted)
        # Debounced: far fewer scorings than key presses, the last one for the whole text.
        assert wanted and len(wanted) < len("refactor the parser module")
        assert wanted[-1].task == "refactor the parser module"
        breakdown = present(panel.breakdown)
        assert breakdown.chosen == breakdown.ranked[0].model_id
        for ranked in breakdown.ranked:
            if not ranked.skipped:
                assert sum(value for _, value in ranked.terms) == ranked.total
                assert {"reasoning", "code", "speed", "cost", "context"} <= {name for name, _ in ranked.terms}
        table = app.query_one("#breakdown", DataTable)
        assert next(str(row.key.value) for row in table.ordered_rows) == breakdown.chosen
        assert {"term:reasoning", "term:code", "total"} <= {str(key.value) for key in table.columns}
        chosen_line = str(app.query_one("#task-chosen").render())
        assert breakdown.chosen in chosen_line and "fallback" in chosen_line


async def test_a_model_is_picked_from_the_keyboard(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = make_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"write tests")
        panel = app.query_one(TaskPanel)
        await until(pilot, lambda: panel.breakdown is not None and panel.breakdown.task == "write tests")
        second = present(panel.breakdown).ranked[1].model_id
        app.query_one("#breakdown", DataTable).focus()
        await pilot.press("down", "enter")
        assert panel.picked_model == second
        assert [m.model_id for m in app.seen(TaskPanel.ModelPicked)] == [second]
        assert app.focused is app.query_one("#task-input", TaskEditor)
        assert panel.request("write tests").model_id == second
        await pilot.press("escape")
        assert panel.picked_model is None
        assert panel.request("write tests").model_id is None


async def test_run_options_reach_the_request(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = make_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.query_one("#task-variant", Select).value = "high"
        app.query_one("#task-thinking", Checkbox).value = True
        app.query_one("#task-workdir", Input).value = str(tmp_path)
        request = app.query_one(TaskPanel).request("explain this")
        assert (request.variant, request.thinking, request.workdir) == ("high", True, tmp_path)


async def test_enter_with_no_usable_model_says_why_and_starts_nothing(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    env = hermetic_env | {"PATH": str(tmp_path / "empty-bin"), "NEXUS_OPENCODE": str(tmp_path / "no-opencode")}
    app = make_app(tmp_path, env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"fix the bug", "enter")
        await settle(pilot)
        assert [m.request.task for m in app.seen(TaskPanel.RunRequested)] == ["fix the bug"]
        assert app.runs == {}
        errors = [n for n in app.notices if n.severity == "error"]
        assert errors and "opencode" in errors[-1].message.lower()
        assert "Traceback" not in errors[-1].message
        availability = app.query_one(RegistryPanel).table.get_cell("opencode-custom-opus", "availability")
        assert "not found" in str(availability)


async def test_registry_filters_and_sorts(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = make_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        registry = app.query_one(RegistryPanel)
        assert set(registry.shown_ids) == {"opencode-custom-opus", "opencode-custom-sonnet", "opencode-default"}
        registry.sort_by("speed")
        assert registry.shown_ids[0] == "opencode-custom-sonnet"
        registry.sort_by("reasoning")
        assert registry.shown_ids[0] == "opencode-custom-opus"
        app.query_one("#registry-filter", Input).focus()
        await pilot.press(*"sonnet")
        await pilot.pause()
        assert registry.shown_ids == ["opencode-custom-sonnet"]
        await pilot.press(*["backspace"] * 6)
        await pilot.pause()
        assert len(registry.shown_ids) == 3


async def test_reload_updates_rows_in_place_and_a_broken_edit_keeps_the_last_good_state(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    app = make_app(tmp_path, hermetic_env, watch_config=True)
    config_file = app.project_dir / "opencode.json"
    async with app.run_test(size=SIZE) as pilot:
        registry = app.query_one(RegistryPanel)
        await until(pilot, lambda: len(registry.shown_ids) == 3, what="the first registry")
        table = registry.table
        sonnet_row = table.rows[RowKey("opencode-custom-sonnet")]
        assert str(table.get_cell("opencode-custom-sonnet", "context")) == "200k"

        models = project_config("http://127.0.0.1:9/v1")["provider"]["custom"]["models"]
        models["claude-sonnet-4-5"]["limit"]["context"] = 1_000_000
        models["acme-large"] = {"name": "Acme Large", "limit": {"context": 64000, "output": 8000}}
        config_file.write_text(json.dumps(project_config("http://127.0.0.1:9/v1", models), indent=2))

        def reloads() -> list:
            return [m.change for m in app.seen(NexusApp.ConfigReloaded)]

        await until(pilot, lambda: "opencode-custom-acme-large" in registry.shown_ids, what="the reload")
        await until(pilot, lambda: any("acme-large" in c.summary for c in reloads()), what="the reload message")
        assert str(table.get_cell("opencode-custom-sonnet", "context")) == "1000k"
        assert table.rows[RowKey("opencode-custom-sonnet")] is sonnet_row, "the row was replaced, not updated in place"
        assert reloads()[-1].error is None and "opencode-custom-acme-large" in reloads()[-1].summary
        assert any("acme-large" in n.message for n in app.notices)
        assert "opencode-custom-acme-large" in {r.model_id for r in present(app.query_one(TaskPanel).breakdown).ranked}

        config_file.write_text('{\n  "provider": {\n    "custom": ,\n  }\n}\n')
        await until(pilot, lambda: reloads()[-1].error is not None, what="the error")
        error = reloads()[-1].error
        assert re.match(r"opencode\.json:\d+:\d+: \S", error) and "last good config" in error
        assert "opencode-custom-acme-large" in registry.shown_ids
        assert app.state is not None and app.state.registry.get("opencode-custom-acme-large") is not None


async def test_run_view_follows_the_tail_only_at_the_bottom_and_stays_bounded() -> None:
    from textual.app import App

    class Host(App[None]):
        def compose(self):
            yield RunView("run-1", "a task", show_timings=False, line_cap=1_000, id="view")

    async with Host().run_test(size=(100, 30)) as pilot:
        view = pilot.app.query_one(RunView)
        log = view.query_one(RunLog)
        view.write_lines(f"line {i}" for i in range(200))
        view.flush()
        await pilot.pause()
        assert log.is_vertical_scroll_end and view.unseen_lines == 0
        log.scroll_home(animate=False)
        await pilot.pause()
        view.write_lines(f"more {i}" for i in range(50))
        view.flush()
        await pilot.pause()
        assert view.unseen_lines == 50 and log.scroll_y == 0
        assert "50 new" in str(view.query_one("#run-new-lines").render())
        await pilot.press("end")
        await pilot.pause()
        assert view.unseen_lines == 0 and log.is_vertical_scroll_end
        view.write_lines(f"flood {i}" for i in range(20_000))
        view.flush()
        assert log.line_count <= 1_000
        assert log.lines[-1] == "flood 19999"


async def test_help_screen_and_palette_commands(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = make_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert {"Run task", "Pick model", "Re-check", "Probe models", "Open config path"} <= set(titles)
        app.action_pick_model()
        await pilot.pause()
        await pilot.press(*"sonnet")
        await until(
            pilot,
            lambda: app.screen.query(CommandList) and app.screen.query_one(CommandList).option_count == 1,
            what="the model list",
        )
        await pilot.press("enter")
        await until(pilot, lambda: app.query_one(TaskPanel).picked_model == "opencode-custom-sonnet", what="the pick")

        # Open config path: with no $EDITOR the path is shown (and copied) instead.
        app.action_open_config()
        await pilot.pause()
        await pilot.press(*"project/opencode.json")
        await until(
            pilot,
            lambda: app.screen.query(CommandList) and app.screen.query_one(CommandList).option_count >= 1,
            what="the paths",
        )
        await pilot.press("enter")
        config_file = str(app.project_dir / "opencode.json")
        await until(pilot, lambda: any(config_file in n.message for n in app.notices), what="the path notice")


async def test_health_panel_shows_doctor_and_reprobes(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = make_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        panel = app.query_one(HealthPanel)
        assert panel.report is None
        await pilot.press("f5")
        await until(pilot, lambda: panel.report is not None, timeout=30, what="doctor")
        report: HealthReport = present(panel.report)
        statuses = {check.check_id: check.status for check in report.checks}
        gateway = [status for check_id, status in statuses.items() if check_id.startswith("gateway")]
        assert gateway and all(status == "fail" for status in gateway), statuses
        assert report.failed >= 1 and panel.border_subtitle == f"{len(report.checks)} checks"


async def test_quit_without_runs_exits_at_once(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = make_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmQuitScreen)
    assert app.return_code == 0


@pytest.mark.parametrize("answer", ["n", "y"])
async def test_quit_with_a_run_in_progress_asks_first(
    tmp_path: Path, hermetic_env: dict[str, str], answer: str
) -> None:
    app = make_app(tmp_path, hermetic_env)

    class EndlessRun:
        label = "opencode-custom-opus"

        def __init__(self) -> None:
            self.finished = False
            self.cancelled = False

        def cancel(self) -> None:
            self.cancelled = True
            self.finished = True

        async def wait(self) -> None:
            return None

    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        run = EndlessRun()
        app.runs["run-9"] = cast(RunHandle, run)  # a stand-in with what the quit question reads
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuitScreen), what="the question")
        await pilot.press(answer)
        await pilot.pause()
        if answer == "n":
            assert not run.cancelled and app.is_running
            run.finished = True
    assert run.cancelled is (answer == "y")
