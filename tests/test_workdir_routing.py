"""Route where OpenCode will run: a working directory is routed with the config OpenCode reads there.

Against the reference gateway and the real OpenCode: `orchestrate --dir DIR` and the dashboard's
working-dir field say before running when DIR's config is not the project's, route with DIR's config,
and a "model not found" that comes from it names that config and the fix.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from textual.widgets import Input

from conftest import run_cli
from nexus_core.config.loader import load_config
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.opencode.events import FailureClass, Outcome
from nexus_core.routing.workdir import compare_workdir, workdir_config
from nexus_tui.widgets.runs import RunStatus, RunView
from nexus_tui.widgets.task import TaskPanel
from tui_support import SIZE, RecordingApp, settle, until

KEY = "sk-workdir-" + secrets.token_hex(12)
OPUS, SONNET = "claude-opus-4-5", "claude-sonnet-4-5"
NOTE = "OpenCode reads another config in"


@pytest.fixture
def env(hermetic_env: dict[str, str]) -> dict[str, str]:
    return {**hermetic_env, "CUSTOM_API_KEY": KEY}


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A project and a working directory outside it (no opencode.json from it up to /)."""
    project, other = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    other.mkdir()
    return project, other


def configure(directory: Path, base_url: str, **options) -> None:
    write_opencode_config(directory, base_url, api_key_env="CUSTOM_API_KEY", **options)


# ---------------------------------------------------------------- the core comparison


def test_a_directory_without_its_own_config_differs_and_a_subdirectory_does_not(
    dirs: tuple[Path, Path], env: dict[str, str]
) -> None:
    project, other = dirs
    configure(project, "http://127.0.0.1:9/v1", default_model=SONNET)
    (project / "src").mkdir()
    assert workdir_config(project, project / "src", env).difference is None
    found = workdir_config(project, other, env)
    assert found.difference is not None and found.difference.startswith(f"{NOTE} {other}")
    assert f"it does not declare custom/{OPUS}, custom/{SONNET}" in found.difference
    assert f"no opencode.json from {other}" in found.difference


def test_another_gateway_in_the_directory_is_named(dirs: tuple[Path, Path], env: dict[str, str]) -> None:
    project, other = dirs
    configure(project, "http://127.0.0.1:9/v1")
    configure(other, "http://127.0.0.1:10/v1", models=[OPUS])
    found = compare_workdir(load_config(project, env), load_config(other, env))
    assert found.difference is not None
    assert "its provider custom points at http://127.0.0.1:10/v1, not http://127.0.0.1:9/v1" in found.difference
    assert f"it does not declare custom/{SONNET}" in found.difference
    explained = found.explain(
        Outcome(failure=FailureClass.MODEL_NOT_FOUND, message="Model not found", fix="ask the gateway"),
        f"custom/{OPUS}",
    )
    assert explained.message == f"Model not found: in {other}, provider custom points at http://127.0.0.1:10/v1"
    assert f"set provider.custom.options.baseURL in {other / 'opencode.json'} to http://127.0.0.1:9/v1" in explained.fix
    # Another failure keeps its own words.
    timeout = Outcome(failure=FailureClass.TIMEOUT, message="no answer")
    assert found.explain(timeout, f"custom/{OPUS}") == timeout


# ---------------------------------------------------------------- orchestrate --dir


def test_orchestrate_dir_says_so_first_and_a_model_not_found_names_that_config(
    dirs: tuple[Path, Path], env: dict[str, str]
) -> None:
    project, other = dirs
    with ReferenceGateway(api_key=KEY) as gw:
        configure(project, gw.base_url, default_model=SONNET)
        result = run_cli(
            ["orchestrate", "--transport", "run", "--dir", str(other), "--model", f"custom/{OPUS}", "say hi"],
            env,
            project,
            timeout=120,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    notes = [line for line in lines if line.startswith("note: ")]
    assert len(notes) == 1 and NOTE in notes[0] and f"it does not declare custom/{OPUS}" in notes[0]
    assert lines.index(notes[0]) < next(i for i, line in enumerate(lines) if "attempt 1:" in line)
    verdict = next(line for line in lines if line.startswith("✗ failed:"))
    # The clause may be cut to its first words on a long path; the fix after it says it whole.
    assert f"custom/{OPUS} is not declared in the config OpenCode read in" in verdict
    assert f"OpenCode read the config of {other} " in verdict
    assert f"declare custom/{OPUS} in {other / 'opencode.json'}" in verdict
    assert f"{project / 'opencode.json'} declares it" in verdict
    assert "the gateway does not serve" not in verdict
    assert KEY not in result.stdout + result.stderr


def test_orchestrate_dir_routes_with_the_directory_config(dirs: tuple[Path, Path], env: dict[str, str]) -> None:
    project, other = dirs
    with ReferenceGateway(api_key=KEY) as gw:
        configure(project, gw.base_url, default_model=OPUS)
        configure(other, gw.base_url, models=[SONNET], default_model=SONNET)
        result = run_cli(
            ["orchestrate", "--json", "--transport", "run", "--dir", str(other), "design a cache"],
            env,
            project,
            timeout=120,
        )
        asked = [r.model for r in gw.requests if r.model]
    assert result.returncode == 0, result.stdout + result.stderr
    assert NOTE in result.stderr and f"it does not declare custom/{OPUS}" in result.stderr
    final = json.loads(result.stdout.splitlines()[-1])
    assert final["kind"] == "result" and final["ok"] is True
    assert OPUS not in asked and SONNET in asked


def test_orchestrate_in_a_subdirectory_says_nothing(dirs: tuple[Path, Path], env: dict[str, str]) -> None:
    project, _ = dirs
    (project / "pkg").mkdir()
    with ReferenceGateway(api_key=KEY) as gw:
        configure(project, gw.base_url, default_model=SONNET)
        result = run_cli(["orchestrate", "--transport", "run", "--dir", "pkg", "say hi"], env, project, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert NOTE not in result.stderr


# ---------------------------------------------------------------- the dashboard's working dir


async def test_dashboard_workdir_toasts_and_names_its_config_in_the_verdict(
    dirs: tuple[Path, Path], env: dict[str, str]
) -> None:
    project, other = dirs
    async with ReferenceGateway(api_key=KEY) as gw, ReferenceGateway(api_key=KEY, models=[SONNET]) as second:
        configure(project, gw.base_url, default_model=SONNET)
        # The working directory declares opus only, on a gateway that does not serve it.
        configure(other, second.base_url, models=[OPUS], default_model=OPUS)
        app = RecordingApp(project, env=env, test_mode=True, watch_config=False, check_health=False, debounce=0.01)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            app.query_one("#task-workdir", Input).value = str(other)
            app.query_one("#task", TaskPanel).pick("opencode-custom-opus")
            app.query_one("#task-input").focus()
            await pilot.press(*"design a cache", "enter")
            await until(pilot, lambda: "run-1" in app.runs, what="the run")
            toasts = [n.message for n in app.notices if n.title == "Working directory"]
            assert toasts and NOTE in toasts[0] and "points at" in toasts[0]
            view = app.query_one("#run-1-view", RunView)
            await until(pilot, lambda: view.status.finished, timeout=120, what="the run to end")
            assert view.status is RunStatus.FAILED
            assert view.verdict is not None
            assert f"Model not found: in {other}, provider custom points at {second.base_url}" in view.verdict
            assert f"baseURL in {other / 'opencode.json'} to {gw.base_url}" in view.verdict
        assert [r.model for r in gw.requests if r.model] == []
