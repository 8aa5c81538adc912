"""One OpenCode locator for routing, the doctor and the adapter: NEXUS_OPENCODE, then PATH, then .tools."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from conftest import opencode_path, run_cli
from nexus_core.opencode import locate

GATEWAY_CONFIG = {
    "$schema": "https://opencode.ai/config.json",
    "model": "custom/claude-sonnet-4-5",
    "provider": {
        "custom": {
            "npm": "@ai-sdk/openai-compatible",
            "options": {"baseURL": "http://127.0.0.1:9/v1", "apiKey": "{env:CUSTOM_API_KEY}"},
            "models": {"claude-sonnet-4-5": {"name": "Sonnet"}},
        }
    },
}


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_named_variable_wins_over_path(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    on_path = _executable(tmp_path / "bin" / "opencode")
    named = _executable(tmp_path / "mine")
    env = {"PATH": str(tmp_path / "bin"), "NEXUS_OPENCODE": str(named)}
    assert locate.locate_opencode(env) == str(named)
    assert locate.locate_opencode({"PATH": str(tmp_path / "bin")}) == str(on_path)


def test_a_named_path_that_is_not_there_finds_nothing_rather_than_another_opencode(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    _executable(tmp_path / "bin" / "opencode")
    assert locate.locate_opencode({"PATH": str(tmp_path / "bin"), "NEXUS_OPENCODE": str(tmp_path / "absent")}) is None
    assert locate.find_opencode({"PATH": str(tmp_path / "bin"), "NEXUS_OPENCODE": str(tmp_path / "absent")}) is None


def test_the_project_tools_folder_is_the_last_resort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = tmp_path / ".tools" / "opencode" / "node_modules" / ".bin"
    launcher.mkdir(parents=True)
    _executable(launcher / "opencode")
    monkeypatch.setattr(locate, "_CHECKOUT", tmp_path)
    assert locate.locate_opencode({"PATH": str(tmp_path / "empty")}) == str(launcher / "opencode")
    assert locate.tools_opencode(tmp_path / "elsewhere") is None


def _no_opencode_path(env: dict[str, str]) -> str:
    """PATH with every folder that holds an ``opencode`` removed (the venv's scripts stay)."""
    keep = [d for d in env["PATH"].split(os.pathsep) if d and not (Path(d) / "opencode").exists()]
    return os.pathsep.join(keep)


@pytest.mark.opencode
def test_route_and_doctor_work_with_only_nexus_opencode(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "opencode.json").write_text(json.dumps(GATEWAY_CONFIG))
    env = {**hermetic_env, "PATH": _no_opencode_path(hermetic_env), "NEXUS_OPENCODE": opencode_path()}
    routed = run_cli(["route", "fix the failing test", "--json"], env, project)
    assert routed.returncode == 0, routed.stderr
    decision = json.loads(routed.stdout)
    assert decision["chosen_cli_model_name"] == "custom/claude-sonnet-4-5", decision["reason"]
    doctor = run_cli(["doctor", "--json"], env, project, timeout=90)
    checks = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["opencode"]["status"] == "ok", checks["opencode"]
    assert opencode_path() in checks["opencode"]["summary"]


def test_route_names_the_variable_when_it_points_nowhere(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "opencode.json").write_text(json.dumps(GATEWAY_CONFIG))
    env = {**hermetic_env, "NEXUS_OPENCODE": str(tmp_path / "no-such-opencode")}
    routed = run_cli(["route", "fix the failing test", "--json"], env, project)
    decision = json.loads(routed.stdout)
    assert decision["chosen"] is None
    assert "NEXUS_OPENCODE" in decision["reason"], decision["reason"]


def test_npm_release_reads_the_package_a_binary_belongs_to(tmp_path: Path) -> None:
    """The serve warm-up is chosen by release: the npm package's version, or None for another install."""
    for package, name, version in (
        ("opencode-ai", ".opencode", "1.2.15"),
        ("opencode-linux-x64", "opencode", "1.18.33"),
    ):
        root = tmp_path / package
        (root / "bin").mkdir(parents=True)
        (root / "package.json").write_text(json.dumps({"name": package, "version": version}))
        (root / "bin" / name).write_text("")
    assert locate.npm_release(str(tmp_path / "opencode-ai" / "bin" / ".opencode")) == (1, 2, 15)
    assert locate.npm_release(str(tmp_path / "opencode-linux-x64" / "bin" / "opencode")) == (1, 18, 33)
    other = tmp_path / "home" / ".opencode" / "bin"
    other.mkdir(parents=True)
    (other / "opencode").write_text("")
    assert locate.npm_release(str(other / "opencode")) is None  # the curl installer's layout: no package
    (tmp_path / "home" / ".opencode" / "package.json").write_text('{"name": "something-else", "version": "9.9.9"}')
    assert locate.npm_release(str(other / "opencode")) is None
