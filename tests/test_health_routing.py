"""Health feeds routing: the doctor's report and the outcome of runs mark models unavailable with the reason.

Against the reference gateway (real OpenCode for the runs and the smoke): a gateway that is down, a
key that is missing, a model the gateway does not serve, a model whose probe fails; `route --probe`,
the routing core and the dashboard say why a model is left out, and a later passing check puts it back.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from nexus_core.doctor.checks import TESTED_OPENCODE, run_doctor
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.routing.health import apply_health, health_marks, unavailable_models
from nexus_core.routing.score import build_snapshot, profile_task, route
from nexus_core.store.observed import ObservedStats
from nexus_tui.widgets.health import HealthPanel
from nexus_tui.widgets.registry import RegistryPanel
from nexus_tui.widgets.task import TaskPanel
from tui_support import SIZE, RecordingApp, settle, until

KEY = "sk-health-" + secrets.token_hex(12)
OPUS, SONNET = "claude-opus-4-5", "claude-sonnet-4-5"
OPUS_ID, SONNET_ID = "opencode-custom-opus", "opencode-custom-sonnet"
TASK = "refactor the parser module"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    return directory


@pytest.fixture
def env(hermetic_env: dict[str, str]) -> dict[str, str]:
    return {**hermetic_env, "CUSTOM_API_KEY": KEY}


@pytest.fixture(scope="module")
def standin_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose ``opencode`` answers ``--version`` as the pinned release, at once (one for the module)."""
    directory = tmp_path_factory.mktemp("standin-bin")
    exe = directory / "opencode"
    exe.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo {TESTED_OPENCODE}; exit 0; fi\n'
        'echo "stand-in opencode (tests/test_health_routing.py) only answers --version" >&2\n'
        "exit 2\n"
    )
    exe.chmod(0o755)
    return directory


@pytest.fixture
def quick_env(env: dict[str, str], standin_bin: Path) -> dict[str, str]:
    """``env`` with an ``opencode`` first on PATH that answers ``--version`` as the pinned release, at once.

    For the tests whose doctor runs no OpenCode (no ``--probe``, so no smoke): the doctor still
    runs ``opencode --version`` (once per process), over a second of CPU with the real binary, and its OpenCode check
    is ``ok`` either way. Anything but ``--version`` fails loudly. The runs and smokes stay real.
    """
    return {**env, "PATH": f"{standin_bin}{os.pathsep}{env['PATH']}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def configure(project: Path, base_url: str) -> None:
    write_opencode_config(project, base_url, api_key_env="CUSTOM_API_KEY", default_model=SONNET)


def route_json(project: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    result = run_cli(["route", "--json", *extra, TASK], env, project, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    assert KEY not in result.stdout + result.stderr
    return json.loads(result.stdout)


def skipped(decision: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["reason"] for s in decision["skipped"]}


def ranked(decision: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {m["id"]: {t["name"]: t["value"] for t in m["terms"]} for m in decision["models"]}


# ---------------------------------------------------------------- the core function


async def test_a_report_becomes_model_reasons_and_a_passing_one_clears_them(
    project: Path, quick_env: dict[str, str]
) -> None:
    env = quick_env
    port = free_port()
    configure(project, f"http://127.0.0.1:{port}/v1")
    snapshot = build_snapshot(project, env, history=False)
    down = unavailable_models(await run_doctor(project, env), snapshot)
    assert set(down) >= {OPUS_ID, SONNET_ID}
    assert all(reason.startswith("gateway down (custom): connection refused") for reason in down.values())
    assert "fix: start the gateway" in down[OPUS_ID]
    async with ReferenceGateway(port=port, api_key=KEY):
        back = health_marks(await run_doctor(project, env), snapshot)
    assert back.unavailable == {}
    assert {OPUS_ID, SONNET_ID} <= back.listed


async def test_a_missing_key_marks_the_provider_and_not_the_gateway(project: Path, quick_env: dict[str, str]) -> None:
    env = quick_env
    async with ReferenceGateway(api_key=KEY) as gw:
        configure(project, gw.base_url)
        no_key = {k: v for k, v in env.items() if k != "CUSTOM_API_KEY"}
        snapshot = build_snapshot(project, no_key, history=False)
        reasons = unavailable_models(await run_doctor(project, no_key), snapshot)
    assert reasons[OPUS_ID].startswith("key missing for custom: NOT SET, from {env:CUSTOM_API_KEY}")
    assert "export CUSTOM_API_KEY" in reasons[OPUS_ID] and "gateway down" not in reasons[OPUS_ID]


async def test_a_rest_observed_before_a_passing_check_is_lifted(project: Path, quick_env: dict[str, str]) -> None:
    env = quick_env
    async with ReferenceGateway(api_key=KEY) as gw:
        configure(project, gw.base_url)
        snapshot = build_snapshot(project, env, history=False)
        report = await run_doctor(project, env)
    marks = health_marks(report, snapshot)
    at = marks.checked_at
    observed = ObservedStats(now=at, rests={OPUS_ID: (at - 5, at + 600)}, rest_kinds={OPUS_ID: "model_not_found"})
    resting = snapshot.with_observed(observed)
    assert "model not found" in (resting.unavailable_reason(OPUS_ID) or "")
    assert apply_health(resting, marks).unavailable_reason(OPUS_ID) is None
    # A rest that began after the check is not lifted by it.
    later = ObservedStats(now=at, rests={OPUS_ID: (at + 1, at + 600)}, rest_kinds={OPUS_ID: "model_not_found"})
    assert apply_health(snapshot.with_observed(later), marks).unavailable_reason(OPUS_ID) is not None


# ---------------------------------------------------------------- route --probe


def test_route_probe_skips_a_model_whose_probe_fails_and_recovers(project: Path, env: dict[str, str]) -> None:
    with ReferenceGateway(api_key=KEY) as gw:
        configure(project, gw.base_url)
        gw.add_fault(f"status=429,model={OPUS}")
        decision = route_json(project, env, "--probe", "--model", OPUS_ID)
        # Forced by the hint: scored, but with no availability bonus and the reason in its detail.
        opus = next(m for m in decision["models"] if m["id"] == OPUS_ID)
        availability = next(t for t in opus["terms"] if t["name"] == "availability")
        assert availability["value"] == 0 and "its chat probe failed" in availability["detail"]
        decision = route_json(project, env, "--probe")
        assert "its chat probe failed" in skipped(decision)[OPUS_ID] and "429" in skipped(decision)[OPUS_ID]
        assert decision["chosen"] == SONNET_ID and ranked(decision)[SONNET_ID]["availability"] > 0
        assert decision["health"]["unavailable"].keys() == {OPUS_ID}
        gw.clear_faults()
        recovered = route_json(project, env, "--probe")
    assert OPUS_ID not in skipped(recovered) and recovered["health"]["unavailable"] == {}
    assert ranked(recovered)[OPUS_ID]["availability"] > 0


def test_route_probe_says_the_gateway_is_down_and_puts_the_models_back(
    project: Path, env: dict[str, str], quick_env: dict[str, str]
) -> None:
    port = free_port()
    configure(project, f"http://127.0.0.1:{port}/v1")
    # The gateway is down, so no model passes its chat probe and the smoke is skipped: no OpenCode run.
    result = run_cli(["route", "--probe", TASK], quick_env, project, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Health: 1 failed" in result.stdout or "failed" in result.stdout.splitlines()[0]
    assert f"{OPUS_ID}: gateway down (custom): connection refused" in result.stdout
    assert "start the gateway" in result.stdout
    with ReferenceGateway(port=port, api_key=KEY):
        back = run_cli(["route", "--probe", TASK], env, project, timeout=120)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "gateway down" not in back.stdout and "Chosen:" in back.stdout


def test_a_model_not_served_is_named_with_the_fix(project: Path, env: dict[str, str]) -> None:
    with ReferenceGateway(api_key=KEY, models=[SONNET]) as gw:
        configure(project, gw.base_url)
        decision = route_json(project, env, "--probe")
    reason = skipped(decision)[OPUS_ID]
    assert f"the gateway does not serve {OPUS}" in reason
    assert decision["chosen"] == SONNET_ID


def test_a_run_that_met_model_not_found_rests_the_model_until_a_passing_check(
    project: Path, env: dict[str, str]
) -> None:
    with ReferenceGateway(api_key=KEY, models=[SONNET]) as gw:
        configure(project, gw.base_url)
        run = run_cli(
            ["orchestrate", "--transport", "run", "--no-fallback", "--model", OPUS_ID, "say hi"],
            env,
            project,
            timeout=120,
        )
        assert run.returncode == 1, run.stdout + run.stderr
        # The live outcome of the run: the model rests, and routing says why.
        after_run = route_json(project, env)
        assert "the last run got “model not found”" in skipped(after_run)[OPUS_ID]
        explained = run_cli(["route", "--explain", TASK], env, project)
        assert "model not found" in explained.stdout
        # The gateway serves the model now: a passing probe puts it back.
        gw.models = (OPUS, SONNET)
        probed = route_json(project, env, "--probe")
        assert OPUS_ID not in skipped(probed), skipped(probed)


def test_route_without_probe_is_unchanged_by_health(project: Path, env: dict[str, str]) -> None:
    configure(project, f"http://127.0.0.1:{free_port()}/v1")
    decision = route_json(project, env)
    assert "health" not in decision and decision["chosen"] is not None
    snapshot = build_snapshot(project, env, history=False)
    assert route(snapshot, profile_task(TASK)).chosen is not None


# ---------------------------------------------------------------- the dashboard


def availability_of(app: RecordingApp, model_id: str) -> str:
    panel = app.query_one("#registry", RegistryPanel)
    return str(panel.table.get_cell(model_id, "availability"))


async def test_dashboard_marks_models_of_a_down_gateway_and_recovers(project: Path, quick_env: dict[str, str]) -> None:
    env = quick_env  # F5 runs the checks without --probe: no OpenCode run
    port = free_port()
    configure(project, f"http://127.0.0.1:{port}/v1")
    app = RecordingApp(project, env=env, test_mode=True, watch_config=False, check_health=False, debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        health = app.query_one(HealthPanel)
        task = app.query_one(TaskPanel)
        await pilot.press(*TASK)
        await until(pilot, lambda: task.breakdown is not None and task.breakdown.task == TASK, what="the breakdown")
        assert availability_of(app, OPUS_ID) == "✓"
        await pilot.press("f5")
        await until(pilot, lambda: health.report is not None and not health.running, timeout=30, what="the check")
        await until(pilot, lambda: "gateway down" in availability_of(app, OPUS_ID), what="the registry mark")
        assert "connection refused" in availability_of(app, SONNET_ID)
        headline = str(app.query_one("#health-body").render())
        assert "failing" in headline and "models unavailable" in headline and "all checks pass" not in headline
        await until(pilot, lambda: task.breakdown is not None and task.breakdown.chosen is None, what="re-scoring")
        assert task.breakdown is not None
        reasons = {r.model_id: r.skipped for r in task.breakdown.ranked}
        assert (reasons[OPUS_ID] or "").startswith("gateway down (custom)")
        async with ReferenceGateway(port=port, api_key=KEY):
            await pilot.press("f5")
            await until(pilot, lambda: not health.running and health.report is not None, timeout=30, what="re-check")
            await until(pilot, lambda: availability_of(app, OPUS_ID) == "✓", what="the model back")
        assert task.breakdown is not None and task.breakdown.chosen is not None
        terms = dict(next(r for r in task.breakdown.ranked if r.model_id == task.breakdown.chosen).terms)
        assert terms["availability"] > 0


async def test_dashboard_shift_f5_probes_every_model_and_marks_the_failing_one(
    project: Path, env: dict[str, str]
) -> None:
    async with ReferenceGateway(api_key=KEY) as gw:
        configure(project, gw.base_url)
        gw.add_fault(f"status=429,model={OPUS}")
        app = RecordingApp(project, env=env, test_mode=True, watch_config=False, check_health=False, debounce=0.01)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            health = app.query_one(HealthPanel)
            await pilot.press("f5")
            await until(pilot, lambda: health.report is not None and not health.running, timeout=30, what="the check")
            assert health.report is not None and not health.report.probed and availability_of(app, OPUS_ID) == "✓"
            await pilot.press("shift+f5")
            await until(
                pilot, lambda: health.report is not None and health.report.probed and not health.running, timeout=90
            )
            await until(pilot, lambda: "its chat probe failed" in availability_of(app, OPUS_ID), what="the mark")
            assert availability_of(app, SONNET_ID) == "✓"
            assert health.report is not None
            first = health.report.by_urgency()[0]
            assert first.status == "fail"
            health.query_one("#health-checks").focus()
            await pilot.press("enter")
            from nexus_tui.screens import DetailsScreen

            assert isinstance(app.screen, DetailsScreen)
            assert first.check_id in str(app.screen.body) and first.summary[:40] in str(app.screen.body)
            await pilot.press("escape")
            gw.clear_faults()
            before = health.report
            await pilot.press("shift+f5")
            await until(pilot, lambda: health.report is not before and not health.running, timeout=90, what="probe")
            await until(pilot, lambda: availability_of(app, OPUS_ID) == "✓", what="the model back")
