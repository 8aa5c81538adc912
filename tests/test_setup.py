"""``nexus-agents setup``: the MCP entry lands in the right file, and nothing else changes."""

from __future__ import annotations

import difflib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import opencode_path, run_cli
from nexus_core.config import jsonc
from nexus_core.config.loader import ConfigError
from nexus_core.config.setup import apply_entry, desired_entry, resolve_target, server_command
from nexus_core.errors import NexusError

ENTRY = desired_entry(["/opt/nexus/bin/nexus-agents", "--mode=server"])

USER_JSONC = """{
  // the gateway my team uses
  "$schema": "https://opencode.ai/config.json",
  /* block comment
     over two lines */
  "provider": {
    "custom": {
      "npm": "@ai-sdk/openai-compatible",
      "options": { "baseURL": "{env:CUSTOM_API_BASE_URL}", "apiKey": "{env:CUSTOM_API_KEY}", }, // keys from env
      "models": { "claude-opus-4-5": {}, },
    },
  },
  "model": "custom/claude-opus-4-5", // default
  // the end
}
"""


def only_insertions(before: str, after: str) -> str:
    """Every byte of ``before`` survives in order; return what was inserted."""
    inserted = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        assert op in {"equal", "insert"}, f"{op} of {before[i1:i2]!r} -> {after[j1:j2]!r}"
        if op == "insert":
            inserted.append(after[j1:j2])
    return "".join(inserted)


def test_jsonc_with_comments_and_trailing_commas_keeps_every_byte() -> None:
    after, action = apply_entry(USER_JSONC, "opencode.jsonc", ENTRY)
    assert action == "added"
    assert after.startswith(USER_JSONC[: USER_JSONC.index("}\n", len(USER_JSONC) - 3)])
    inserted = only_insertions(USER_JSONC, after)
    assert "nexus-agents" in inserted and "//" not in inserted
    parsed = jsonc.loads(after)
    assert parsed["mcp"] == {"nexus-agents": ENTRY}
    assert list(parsed) == ["$schema", "provider", "model", "mcp"]
    assert after.endswith(
        '  // the end\n  "mcp": {\n    "nexus-agents": {\n      "type": "local",\n'
        '      "command": ["/opt/nexus/bin/nexus-agents", "--mode=server"],\n      "enabled": true\n    }\n  },\n}\n'
    )


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        (
            '{\n    "model": "x/y" // mine\n}',
            (
                '{\n    "model": "x/y", // mine\n    "mcp": {\n        "nexus-agents": {\n            "type": "local",\n'
                '            "command": ["/opt/nexus/bin/nexus-agents", "--mode=server"],\n            "enabled": true\n'
                "        }\n    }\n}"
            ),
        ),
        (
            '{\n\t"mcp": {\n\t\t"other": {"type": "remote", "url": "http://127.0.0.1:1"}, // theirs\n\t},\n}\n',
            (
                '{\n\t"mcp": {\n\t\t"other": {"type": "remote", "url": "http://127.0.0.1:1"}, // theirs\n\t\t"nexus-agents": {\n'
                '\t\t\t"type": "local",\n\t\t\t"command": ["/opt/nexus/bin/nexus-agents", "--mode=server"],\n\t\t\t"enabled": true\n'
                "\t\t},\n\t},\n}\n"
            ),
        ),
        (
            '{"a": 1}\n',
            '{"a": 1, "mcp": {"nexus-agents": {"type": "local", "command": ["/opt/nexus/bin/nexus-agents", "--mode=server"], "enabled": true}}}\n',
        ),
    ],
    ids=["four-spaces-no-trailing-comma", "tabs-existing-mcp", "one-line"],
)
def test_layout_follows_the_file(before: str, expected: str) -> None:
    after, _ = apply_entry(before, "f", ENTRY)
    assert after == expected
    only_insertions(before, after)


def test_crlf_file_stays_crlf() -> None:
    before = USER_JSONC.replace("\n", "\r\n")
    after, _ = apply_entry(before, "f", ENTRY)
    assert after.count("\n") == after.count("\r\n")
    only_insertions(before, after)


def test_second_run_is_unchanged_and_extra_user_keys_are_kept() -> None:
    once, _ = apply_entry(USER_JSONC, "f", ENTRY)
    assert apply_entry(once, "f", ENTRY) == (once, "unchanged")
    with_timeout = once.replace('"enabled": true', '"enabled": true, "timeout": 600000')
    assert apply_entry(with_timeout, "f", ENTRY) == (with_timeout, "unchanged")


def test_different_entry_needs_force() -> None:
    before = '{\n  "mcp": {\n    "nexus-agents": { "type": "local", "command": ["old"], "timeout": 900000 }, // keep me\n  },\n}\n'
    with pytest.raises(NexusError, match="--force"):
        apply_entry(before, "f", ENTRY)
    after, action = apply_entry(before, "f", ENTRY, force=True)
    assert action == "replaced"
    assert jsonc.loads(after)["mcp"]["nexus-agents"] == {**ENTRY, "timeout": 900000}
    assert after.endswith("}, // keep me\n  },\n}\n")


@pytest.mark.parametrize(
    ("text", "where"),
    [('{\n  "a": 1\n  "b": 2\n}', ":3:3"), ("{'a': 1}", ":1:2"), ('{"mcp": []}', ""), ("[1]", "")],
)
def test_broken_or_wrong_file_is_a_config_error(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_entry(text, "/p/opencode.json", ENTRY)
    assert str(info.value).startswith(f"/p/opencode.json{where}:")


def test_server_command_is_absolute_and_points_at_this_installation() -> None:
    command = server_command()
    assert os.path.isabs(command[0]) and os.access(command[0], os.X_OK)
    assert command[-1] == "--mode=server"


def test_target_prefers_jsonc_and_honours_opencode_config(tmp_path: Path) -> None:
    (tmp_path / "opencode.json").write_text("{}")
    assert resolve_target("project", None, tmp_path, {}) == (tmp_path / "opencode.json", "project")
    (tmp_path / "opencode.jsonc").write_text("{}")
    assert resolve_target("project", None, tmp_path, {}) == (tmp_path / "opencode.jsonc", "project")
    custom = tmp_path / "elsewhere.json"
    assert resolve_target(None, None, tmp_path, {"OPENCODE_CONFIG": str(custom)}) == (custom, "env")
    assert resolve_target("project", None, tmp_path, {"OPENCODE_CONFIG": str(custom)})[0] == tmp_path / "opencode.jsonc"
    xdg = tmp_path / "xdg"
    assert resolve_target("global", None, tmp_path, {"XDG_CONFIG_HOME": str(xdg)}) == (
        xdg / "opencode" / "opencode.json",
        "global",
    )


# ---------------------------------------------------------------- the command, as a user runs it


def test_cli_project_writes_backup_keeps_mode_and_second_run_writes_nothing(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    config = project / "opencode.jsonc"
    config.write_text(USER_JSONC)
    config.chmod(0o600)
    first = run_cli(["setup", "--project"], hermetic_env, project)
    assert first.returncode == 0, first.stderr
    assert '+  "mcp": {' in first.stdout and "Added mcp.nexus-agents" in first.stdout
    text = config.read_text()
    only_insertions(USER_JSONC, text)
    assert jsonc.loads(text)["mcp"]["nexus-agents"]["command"][0] == server_command()[0]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert (project / "opencode.jsonc.bak").read_text() == USER_JSONC
    assert sorted(p.name for p in project.iterdir()) == ["opencode.jsonc", "opencode.jsonc.bak"]

    (project / "opencode.jsonc.bak").unlink()
    stamp = config.stat().st_mtime_ns
    second = run_cli(["setup", "--project"], hermetic_env, project)
    assert second.returncode == 0, second.stderr
    assert "already configured" in second.stdout and "+" not in second.stdout
    assert config.read_text() == text and config.stat().st_mtime_ns == stamp
    assert not (project / "opencode.jsonc.bak").exists()


def test_cli_dry_run_writes_nothing(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    result = run_cli(["setup", "--dry-run", "--json"], hermetic_env, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["action"] == "added" and report["dry_run"] and report["created"]
    assert '+    "nexus-agents": {' in report["diff"]
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]


def test_cli_global_creates_the_file(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    result = run_cli(["setup", "--global", "--json"], hermetic_env, tmp_path)
    assert result.returncode == 0, result.stderr
    target = Path(hermetic_env["XDG_CONFIG_HOME"]) / "opencode" / "opencode.json"
    assert json.loads(result.stdout)["file"] == str(target)
    assert json.loads(target.read_text())["mcp"]["nexus-agents"]["enabled"] is True


def test_cli_opencode_config_env_is_the_default_target(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    custom = tmp_path / "custom.json"
    custom.write_text('{"model": "custom/x"}')
    env = {**hermetic_env, "OPENCODE_CONFIG": str(custom)}
    result = run_cli(["setup"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nexus-agents" in jsonc.loads(custom.read_text())["mcp"]
    assert not (tmp_path / "opencode.json").exists()


def test_cli_broken_file_is_one_line_with_position_and_nothing_written(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    config = tmp_path / "opencode.json"
    config.write_text('{\n  "model": "custom/x"\n  "provider": {}\n}\n')
    before = config.read_bytes()
    result = run_cli(["setup", "--project"], hermetic_env, tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"nexus-agents: {config}:3:3: Expecting ',' delimiter. Fix the file and save it again."
    )
    assert result.stdout == ""
    assert config.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "opencode.json"]


def test_cli_force_replaces_and_redacts_secrets_in_the_diff(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    config = tmp_path / "opencode.json"
    secret = "literal-gateway-key-1234567"
    config.write_text(
        f'{{\n  "provider": {{"custom": {{"options": {{"apiKey": "{secret}"}}}}}},\n  "mcp": {{\n    "nexus-agents": {{"type": "local", "command": ["old"]}}\n  }}\n}}\n'
    )
    refused = run_cli(["setup"], hermetic_env, tmp_path)
    assert refused.returncode == 2 and "--force" in refused.stderr
    replaced = run_cli(["setup", "--force"], hermetic_env, tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert "Replaced mcp.nexus-agents" in replaced.stdout
    assert secret not in replaced.stdout and secret in config.read_text()


REMOTE_ENTRY = '{"mcp": {"nexus-agents": {"type": "remote", "url": "http://127.0.0.1:9/mcp", "headers": {"X-Auth": "%s"}, "oauth": false, "timeout": 9000}}}\n'


def test_refusal_names_what_the_entry_runs_but_never_its_headers(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    secret = "zz-header-value-98765"
    (tmp_path / "opencode.json").write_text(REMOTE_ENTRY % secret)
    refused = run_cli(["setup", "--project"], hermetic_env, tmp_path)
    assert refused.returncode == 2
    assert "remote: http://127.0.0.1:9/mcp" in refused.stderr and "--force" in refused.stderr
    assert secret not in refused.stderr + refused.stdout


@pytest.mark.opencode
def test_forced_replacement_of_a_remote_entry_is_a_config_opencode_accepts(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    config = tmp_path / "opencode.json"
    config.write_text(REMOTE_ENTRY % "zz-header-value-98765")
    replaced = run_cli(["setup", "--project", "--force"], hermetic_env, tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    entry = jsonc.loads(config.read_text())["mcp"]["nexus-agents"]
    assert set(entry) == {"type", "command", "enabled", "timeout"} and entry["timeout"] == 9000
    result = subprocess.run(
        [opencode_path(), "debug", "config"], cwd=tmp_path, env=hermetic_env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert json.loads(result.stdout)["mcp"]["nexus-agents"]["type"] == "local"


def test_cli_keeps_a_symlink_and_edits_its_target(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    real = tmp_path / "dotfiles" / "opencode.json"
    real.parent.mkdir()
    real.write_text("{}\n")
    link = tmp_path / "opencode.json"
    link.symlink_to(real)
    assert run_cli(["setup"], hermetic_env, tmp_path).returncode == 0
    assert link.is_symlink()
    assert "nexus-agents" in json.loads(real.read_text())["mcp"]


def test_the_example_config_declares_the_gateway_and_the_mcp_entry(hermetic_env: dict[str, str]) -> None:
    from conftest import ROOT

    example = jsonc.loads((ROOT / "opencode.json").read_text())
    custom = example["provider"]["custom"]
    assert custom["options"] == {"baseURL": "{env:CUSTOM_API_BASE_URL}", "apiKey": "{env:CUSTOM_API_KEY}"}
    assert example["mcp"]["nexus-agents"] == {
        "type": "local",
        "command": ["nexus-agents", "--mode=server"],
        "enabled": True,
    }


def test_cli_config_in_a_missing_directory_is_refused(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    result = run_cli(["setup", "--config", str(tmp_path / "typo" / "opencode.json")], hermetic_env, tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"nexus-agents: the directory of {tmp_path / 'typo' / 'opencode.json'} does not exist. Create it first, or name another file with --config."
    )
    assert not (tmp_path / "typo").exists()
