"""The `nexus-agents` entry point: global options before the command, help, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli


def test_global_dir_option_before_the_command(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = tmp_path / "models"  # a directory named like a command must not be taken for one
    project.mkdir()
    (project / "opencode.json").write_text('{"provider": {"custom": {"models": {"acme-large": {}}}}}')
    for argv in (["--dir", str(project), "models", "--json"], [f"--dir={project}", "models", "--json"]):
        result = run_cli(argv, hermetic_env, tmp_path)
        assert result.returncode == 0, result.stderr
        names = {m["cli_model_name"] for m in json.loads(result.stdout)["models"]}
        assert "custom/acme-large" in names


def test_no_command_prints_help_and_fails(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    result = run_cli([], hermetic_env, tmp_path)
    assert result.returncode == 2
    for command in ("models", "config", "route", "orchestrate", "doctor", "setup", "gateway"):
        assert command in result.stdout


def test_unknown_command_is_one_usage_error(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    result = run_cli(["frobnicate"], hermetic_env, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "invalid choice" in result.stderr
