"""How each panel looks, as SVG snapshots in snapshots/ (``--snapshot-update`` rewrites them).

Deterministic: test mode (no cursor blink, no elapsed times or durations), no config watcher,
no health run at start (the panel gets a fixed report), workers awaited before the shot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_textual_snapshot import SVGImageExtension
from textual.pilot import Pilot

from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    FailureClass,
    FallbackTaken,
    Outcome,
    ProcessStats,
    StepFinish,
    StepStart,
    Text,
    TokenUsage,
    ToolUse,
)
from nexus_tui.app import NexusApp
from nexus_tui.live import PermissionAsked, PermissionQuestion, TextDelta
from nexus_tui.screens import ConfirmQuitScreen
from nexus_tui.widgets.health import HealthCheck, HealthPanel, HealthReport
from nexus_tui.widgets.runs import RunStatus
from tui_support import SIZE, write_project

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"

HEALTH = HealthReport(
    checks=(
        HealthCheck("opencode", "ok", "OpenCode 1.2.15 on PATH (supported >=1.2.15,<1.3)", duration_ms=120),
        HealthCheck("config", "ok", "1 file(s) parsed; custom (opencode.json)", duration_ms=4),
        HealthCheck(
            "provider.custom.api_key",
            "warn",
            "NOT SET, from {env:CUSTOM_API_KEY}",
            fix="export CUSTOM_API_KEY",
            duration_ms=0,
        ),
        HealthCheck(
            "gateway.custom",
            "fail",
            "http://127.0.0.1:9/v1/models: connection refused",
            fix="start the gateway or correct baseURL in opencode.json",
            duration_ms=3,
        ),
    ),
    gateway_latency_ms=None,
)


class DashboardSVG(SVGImageExtension):
    """The dashboard's snapshots live in the project's snapshots/ folder."""

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        return str(SNAPSHOTS / test_location.basename)


@pytest.fixture
def snap(snapshot: Any, tmp_path: Path, hermetic_env: dict[str, str]):
    """``snap(run_before)``: the dashboard over a fixed project, shot at 140x45 after ``run_before``."""
    snapshot = snapshot.use_extension(DashboardSVG)
    project = write_project(tmp_path)

    def compare(run_before, app: NexusApp | None = None, size: tuple[int, int] = SIZE) -> bool:
        app = app or NexusApp(
            project, env=hermetic_env, test_mode=True, watch_config=False, check_health=False, debounce=0.01
        )

        shots: list[str] = []

        async def shoot(pilot: Pilot[Any]) -> None:
            await pilot.app.workers.wait_for_complete()
            pilot.app.query_one(HealthPanel).show(HEALTH)
            await run_before(pilot)
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.pause()
            await pilot.wait_for_scheduled_animations()
            await pilot.pause()
            await pilot.pause()
            await pilot.wait_for_scheduled_animations()
            shots.append(pilot.app.export_screenshot(title=pilot.app.title, simplify=True))
            pilot.app.exit()

        app.run(headless=True, auto_pilot=shoot, size=size)
        assert shots, "the app ended before the screenshot"
        return snapshot == shots[0]

    return compare


async def type_task(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*text)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.05)
    await pilot.app.workers.wait_for_complete()


def test_dashboard_with_a_breakdown(snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await type_task(pilot, "refactor the parser module and add tests")

    assert snap(run_before)


def test_registry_filtered(snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("tab", "tab", "tab", "tab", "tab")
        pilot.app.query_one("#registry-filter").focus()
        await pilot.press(*"sonnet")

    assert snap(run_before)


def test_runs_with_a_fallback_and_new_lines(snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app: NexusApp = pilot.app  # type: ignore[assignment]
        first = app.new_run_view("fix the failing test in tests/test_parser.py")
        await app.show_run_view(first, "opencode-custom-opus")
        failed = Outcome(
            failure=FailureClass.CONNECTION, message="the gateway refused the connection", fix="check baseURL"
        )
        for event in (
            AttemptStarted(attempt=1, model_id="opencode-custom-opus", cli_model_name="custom/claude-opus-4-5"),
            AttemptFinished(attempt=1, cli_model_name="custom/claude-opus-4-5", outcome=failed),
            FallbackTaken(
                attempt=1,
                from_model="opencode-custom-opus",
                to_model="opencode-custom-sonnet",
                reason=FailureClass.CONNECTION,
            ),
            AttemptStarted(attempt=2, model_id="opencode-custom-sonnet", cli_model_name="custom/claude-sonnet-4-5"),
            StepStart(attempt=2),
            ToolUse(attempt=2, tool="read", status="completed", title="tests/test_parser.py"),
            StepFinish(attempt=2, reason="tool-calls", tokens=TokenUsage(input=2144, output=38)),
            Text(attempt=2, text="The test expected a trailing newline; the parser now keeps it.\nAll 14 tests pass."),
            StepFinish(attempt=2, reason="stop", tokens=TokenUsage(input=2301, output=112)),
            ProcessStats(attempt=2, cpu_percent=12.5, rss_bytes=182 * 1_048_576, pids=(1,)),
            AttemptFinished(attempt=2, cli_model_name="custom/claude-sonnet-4-5", outcome=Outcome(message="finished")),
        ):
            first.feed(event)
        first.finish(RunStatus.SUCCEEDED, "custom/claude-sonnet-4-5 answered")

        second = app.new_run_view("summarise the changelog")
        await app.show_run_view(second, "opencode-custom-sonnet")
        second.feed(
            AttemptStarted(attempt=1, model_id="opencode-custom-sonnet", cli_model_name="custom/claude-sonnet-4-5")
        )
        for cpu in (5.0, 40.0, 80.0, 35.0, 60.0):
            second.feed(ProcessStats(cpu_percent=cpu, rss_bytes=96 * 1_048_576, pids=(1,)))
        second.write_lines(f"line {i}" for i in range(60))
        second.flush()
        await pilot.pause()
        second.log_widget.scroll_home(animate=False)
        await pilot.pause()
        second.write_lines(f"later line {i}" for i in range(25))
        second.flush()

    assert snap(run_before)


def test_help_screen(snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("f1")

    assert snap(run_before)


def test_quit_question(snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.app.push_screen(ConfirmQuitScreen(2))

    assert snap(run_before)


def test_broken_config_at_start(snap, tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = tmp_path / "broken"
    project.mkdir()
    (project / "opencode.json").write_text('{\n  "provider": {\n    "custom": ,\n  }\n}\n')
    app = NexusApp(project, env=hermetic_env, test_mode=True, watch_config=False, check_health=False, debounce=0.01)

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.pause()

    assert snap(run_before, app)


async def a_finished_run(pilot: Pilot[Any]) -> None:
    """One run with a tool call, some output and a reply, finished."""
    app: NexusApp = pilot.app  # type: ignore[assignment]
    view = app.new_run_view("fix the failing test in tests/test_parser.py")
    await app.show_run_view(view)
    view.feed(AttemptStarted(attempt=1, model_id="opencode-custom-sonnet", cli_model_name="custom/claude-sonnet-4-5"))
    view.feed(ToolUse(attempt=1, tool="read", status="completed", title="tests/test_parser.py", output="def test_x():"))
    view.write_lines(f"output line {i}" for i in range(30))
    view.feed(
        Text(attempt=1, text="The test expected a trailing newline; the parser now keeps it.\nAll 14 tests pass.")
    )
    view.feed(StepFinish(attempt=1, reason="stop", tokens=TokenUsage(input=2301, output=112)))
    view.feed(AttemptFinished(attempt=1, cli_model_name="custom/claude-sonnet-4-5", outcome=Outcome(message="ok")))
    view.finish(RunStatus.SUCCEEDED, "custom/claude-sonnet-4-5 answered")
    await pilot.pause()


def test_small_terminal_80x24_shows_the_reply(snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await a_finished_run(pilot)

    assert snap(run_before, size=(80, 24))


def test_100x30_with_a_streaming_run(snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app: NexusApp = pilot.app  # type: ignore[assignment]
        await a_finished_run(pilot)
        view = app.new_run_view("explain the parser")
        await app.show_run_view(view)
        view.feed(
            AttemptStarted(attempt=1, model_id="opencode-custom-sonnet", cli_model_name="custom/claude-sonnet-4-5")
        )
        view.tool_call("call-1", "bash", "running", title="pytest -q tests/test_parser.py")
        for piece in ("Here is a walk ", "through the parser, ", "step by step.\n\n## 1. What it does\nIt reads"):
            app.post_message(TextDelta(view.run_id, piece))
        await pilot.pause()

    assert snap(run_before, size=(100, 30))


def test_zoomed_run(snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await a_finished_run(pilot)
        await pilot.press("f7")

    assert snap(run_before)


def test_permission_question(snap) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app: NexusApp = pilot.app  # type: ignore[assignment]
        view = app.new_run_view("clean the build folder and rebuild")
        await app.show_run_view(view)
        view.feed(
            AttemptStarted(attempt=1, model_id="opencode-custom-sonnet", cli_model_name="custom/claude-sonnet-4-5")
        )
        for detail in ("rm -rf build/ && make all", "git push --force"):
            question = PermissionQuestion(run_id=view.run_id, tool="bash", detail=detail, answer=lambda reply: None)
            app.post_message(PermissionAsked(question))
        await pilot.pause()
        await pilot.pause()

    assert snap(run_before, size=(100, 30))
