"""The registry: built-ins, config-declared models, overlays, and the `models`/`config` commands."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli
from nexus_core.config.loader import load_config
from nexus_core.routing.registry import ModelProfile, Registry, build_registry

ACME = """// the team's gateway
{
  "provider": {
    "custom": {
      "npm": "@ai-sdk/openai-compatible",
      "options": {
        "baseURL": "{env:CUSTOM_API_BASE_URL}",
        "apiKey": "{env:CUSTOM_API_KEY}", // never printed
      },
      "models": {
        "acme-large": { "name": "Acme Large", "limit": { "context": 128000, "output": 8192 }, },
        "claude-opus-4-5": { "name": "Opus via Acme", "limit": { "context": 180000, "output": 32000 } },
      },
    },
  },
}
"""


def _found(registry: Registry, hint: str) -> ModelProfile:
    """The model ``hint`` names (by id, alias or CLI model name); the test fails when there is none."""
    model = registry.find(hint)
    assert model is not None, hint
    return model


def _project(tmp_path: Path, text: str = ACME, name: str = "opencode.jsonc") -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / name).write_text(text)
    return project


def test_models_json_lists_config_models_beside_the_builtins(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = _project(tmp_path)
    result = run_cli(["models", "--json"], hermetic_env, project)
    assert result.returncode == 0, result.stderr
    models = {m["cli_model_name"]: m for m in json.loads(result.stdout)["models"]}
    acme = models["custom/acme-large"]
    assert acme["source"] == "opencode.json"
    assert (acme["context_limit"], acme["output_limit"], acme["name"]) == (128000, 8192, "Acme Large")
    opus = models["custom/claude-opus-4-5"]
    assert opus["id"] == "opencode-custom-opus"
    assert opus["quality"] == {"reasoning": 10, "code": 9, "speed": 5, "cost": 3}
    assert (opus["context_limit"], opus["name"]) == (180000, "Opus via Acme")  # enriched, not duplicated
    assert sum(1 for m in json.loads(result.stdout)["models"] if m["cli_model_name"] == "custom/claude-opus-4-5") == 1
    sonnet = models["custom/claude-sonnet-4-5"]
    assert sonnet["quality"] == {"reasoning": 9, "code": 9, "speed": 7, "cost": 6}


def test_overlay_sets_scores_and_aliases_and_skips_bad_entries(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = _project(tmp_path)
    overlay = project / ".nexus" / "models.json"
    overlay.parent.mkdir()
    overlay.write_text(
        json.dumps(
            {
                "models": {
                    "opencode-custom-acme-large": {"quality": {"code": 8}, "aliases": ["acme"]},
                    "opencode-custom-opus": {"cli_model_name": "custom/claude-opus-4-6"},
                    "broken": {"quality": {"code": 42}},
                    "no-cli": {"name": "x"},
                }
            }
        )
    )
    config = load_config(project, hermetic_env)
    registry = build_registry(config, [overlay])
    acme = registry.find("acme")
    assert acme is not None and acme.quality.code == 8 and acme.scores_from == "overlay"
    assert _found(registry, "opencode-custom-opus").cli_model_name == "custom/claude-opus-4-6"
    reasons = {p.entry: p.reason for p in registry.problems}
    assert set(reasons) == {"broken", "no-cli"}
    assert "cli_model_name" in reasons["no-cli"]


def test_an_id_wins_over_another_models_alias_and_an_alias_over_a_cli_model_name(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    project = _project(tmp_path)
    overlay = project / ".nexus" / "models.json"
    overlay.parent.mkdir()
    overlay.write_text(
        json.dumps(
            {
                "models": {
                    "opencode-custom-opus": {"aliases": ["opencode-custom-sonnet"]},
                    "opencode-custom-sonnet": {"aliases": ["custom/acme-large"]},
                }
            }
        )
    )
    registry = build_registry(load_config(project, hermetic_env), [overlay])
    assert _found(registry, "opencode-custom-sonnet").id == "opencode-custom-sonnet"
    assert _found(registry, "OPENCODE-CUSTOM-SONNET").id == "opencode-custom-sonnet"
    assert _found(registry, "custom/acme-large").id == "opencode-custom-sonnet"
    assert _found(registry, "custom/claude-opus-4-5").id == "opencode-custom-opus"


def test_a_config_model_nexus_cannot_take_is_reported_not_dropped_silently(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    project = _project(
        tmp_path,
        json.dumps(
            {
                "provider": {
                    "custom": {
                        "models": {
                            "llama3 8b": {},
                            "acme-large": {},
                            "Acme-Large": {},
                        }
                    }
                }
            }
        ),
        name="opencode.json",
    )
    result = run_cli(["models", "--json"], hermetic_env, project)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert "custom/acme-large" in {m["cli_model_name"] for m in shown["models"]}
    problems = {p["entry"]: p for p in shown["problems"]}
    assert set(problems) == {"custom/llama3 8b", "custom/Acme-Large"}
    assert problems["custom/llama3 8b"]["source"] == str(project / "opencode.json")
    assert "rename" in problems["custom/llama3 8b"]["reason"]
    assert "opencode-custom-acme-large" in problems["custom/Acme-Large"]["reason"]
    table = run_cli(["models"], hermetic_env, project)
    assert "custom/llama3 8b" in table.stdout + table.stderr


def test_malformed_config_is_one_line_with_file_line_column(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = _project(
        tmp_path,
        '{\n  "provider": {\n    "custom": { "models": { "a": {} } \n  }\n  "model": "x/y"\n}\n',
        "opencode.json",
    )
    for command in (["models"], ["models", "--json"], ["config"]):
        result = run_cli(command, hermetic_env, project)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"{project / 'opencode.json'}:5:3" in lines[0]


def test_no_command_prints_the_api_key(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = _project(tmp_path)
    secret = "sk-live-0123456789abcdefq7w9"
    env = {**hermetic_env, "CUSTOM_API_KEY": secret, "CUSTOM_API_BASE_URL": "http://127.0.0.1:1/v1"}
    for command in (["models"], ["models", "--json"], ["config"], ["config", "--json"]):
        result = run_cli(command, env, project)
        assert result.returncode == 0, result.stderr
        assert secret not in result.stdout + result.stderr
        assert "q7w9" not in result.stdout + result.stderr
    shown = json.loads(run_cli(["config", "--json"], env, project).stdout)
    api_key = next(v for v in shown["values"] if v["key"] == "provider.custom.options.apiKey")
    assert api_key["value"] == "(secret) set, from {env:CUSTOM_API_KEY}"
    assert api_key["source"] == str(project / "opencode.jsonc")


def test_config_describes_credentials_substituted_inside_text_or_from_files(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    project = _project(
        tmp_path,
        json.dumps(
            {
                "provider": {
                    "custom": {
                        "options": {
                            "baseURL": "https://gw.example/{env:CUSTOM_API_KEY}/v1",
                            "headers": {
                                "Authorization": "Bearer {env:GW_BEARER}",
                                "X-Gateway-Pass": "{file:pass.txt}",
                                "X-Team": "platform",
                            },
                        }
                    }
                }
            }
        ),
        name="opencode.json",
    )
    (project / "pass.txt").write_text("file-held-pass-4321")
    env = {**hermetic_env, "CUSTOM_API_KEY": "tenantkey8765abcd", "GW_BEARER": "bearer-value-1357"}
    result = run_cli(["config", "--json"], env, project)
    assert result.returncode == 0, result.stderr
    for secret in ("tenantkey8765abcd", "bearer-value-1357", "file-held-pass-4321"):
        assert secret not in result.stdout + result.stderr
    shown = {v["key"]: v["value"] for v in json.loads(result.stdout)["values"]}
    options = "provider.custom.options"
    assert shown[f"{options}.baseURL"] == "(secret) set, from {env:CUSTOM_API_KEY}"
    assert shown[f"{options}.headers.Authorization"] == "(secret) set, from {env:GW_BEARER}"
    assert shown[f"{options}.headers.X-Gateway-Pass"] == "(secret) set, from {file:pass.txt}"
    assert shown[f"{options}.headers.X-Team"] == "platform"


def test_config_reports_an_unset_key_variable(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = _project(tmp_path)
    shown = json.loads(run_cli(["config", "--json"], hermetic_env, project).stdout)
    assert "CUSTOM_API_KEY" in shown["unset_env"]
    api_key = next(v for v in shown["values"] if v["key"] == "provider.custom.options.apiKey")
    assert "NOT SET" in api_key["value"]


def test_tables_show_bracketed_text_literally(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    # Rich would read "[redacted]" or "[bold]" as markup and drop it from the table.
    project = _project(
        tmp_path,
        '{"provider": {"custom": {"options": {"baseURL": "http://me:hunter22@gw.local/v1"}, '
        '"models": {"m[bold]x": {"name": "Odd [red]name"}}}}}',
        "opencode.json",
    )
    config = run_cli(["config"], hermetic_env, project)
    assert config.returncode == 0, config.stderr
    assert "hunter22" not in config.stdout
    assert "me:[redacted]@gw.local" in config.stdout
    assert "m[bold]x" in config.stdout and "Odd [red]name" in config.stdout
