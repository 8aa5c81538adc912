"""The config loader: JSONC, substitution, origins, and the merge order checked against the real binary."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import opencode_path
from nexus_core.config import jsonc
from nexus_core.config.loader import ConfigError, candidate_paths, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------ JSONC


def test_jsonc_comments_and_trailing_commas() -> None:
    text = '// head\n{\n  "a": "x // not a comment", /* block\n */ "b": [1, 2,],\n  "c": {"d": "e,}",},\n}\n'
    assert jsonc.loads(text) == {"a": "x // not a comment", "b": [1, 2], "c": {"d": "e,}"}}


def test_jsonc_error_points_at_the_line_and_column_of_the_file() -> None:
    text = '{\n  // a comment keeps its width\n  "a": 1,\n  "b": nope\n}\n'
    with pytest.raises(jsonc.JsoncError) as info:
        jsonc.loads(text)
    assert (info.value.line, info.value.column) == (4, 8)


def test_jsonc_rejects_json5_extras_like_opencode() -> None:
    with pytest.raises(jsonc.JsoncError):
        jsonc.loads("{'a': 1}")


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ('{"plugin": [,]}', 1, 13),
        ("{,}", 1, 2),
        ('{\n "share": ,\n}', 2, 11),
        ('{"a": 1,,}', 1, 9),
        ("[ // c\n , ]", 2, 2),
    ],
)
def test_jsonc_comma_after_no_value_is_an_error_at_the_comma(text: str, line: int, column: int) -> None:
    # jsonc-parser's allowTrailingComma only forgives a comma that follows a value.
    with pytest.raises(jsonc.JsoncError) as info:
        jsonc.loads(text)
    assert (info.value.line, info.value.column) == (line, column)


# ------------------------------------------------------------------ loader


def test_env_substitution_remembers_unset_variables(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = tmp_path / "p"
    write(
        project / "opencode.json",
        '{"provider": {"custom": {"options": {"apiKey": "{env:GW_KEY}", "baseURL": "{env:GW_URL}"}}}}',
    )
    env = {**hermetic_env, "GW_URL": "http://127.0.0.1:9/v1"}
    config = load_config(project, env)
    options = config.data["provider"]["custom"]["options"]
    assert options == {"apiKey": "", "baseURL": "http://127.0.0.1:9/v1"}
    refs = {r.var: r.is_set for r in config.env_refs}
    assert refs == {"GW_KEY": False, "GW_URL": True}
    assert config.env_var_of("provider", "custom", "options", "apiKey") == "GW_KEY"
    assert config.origin("provider", "custom", "options", "apiKey") == str(project / "opencode.json")


def test_file_substitution_is_relative_to_the_config_and_expands_home(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    project = tmp_path / "p"
    write(project / "secrets" / "key.txt", 'k"ey\n')
    write(Path(hermetic_env["HOME"]) / "url.txt", "http://gw/v1")
    write(
        project / "opencode.json",
        '{"provider": {"c": {"options": {"apiKey": "{file:secrets/key.txt}", "baseURL": "{file:~/url.txt}"}}}}',
    )
    options = load_config(project, hermetic_env).data["provider"]["c"]["options"]
    assert options == {"apiKey": 'k"ey', "baseURL": "http://gw/v1"}


def test_missing_file_reference_is_a_clear_error(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    write(tmp_path / "opencode.json", '{"model": "{file:nope.txt}"}')
    with pytest.raises(ConfigError, match=r"nope\.txt does not exist"):
        load_config(tmp_path, hermetic_env)


def test_a_dot_opencode_file_is_a_clear_error_like_opencode_s(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    (tmp_path / ".git").mkdir()
    write(tmp_path / "opencode.json", '{"model": "a/b"}')
    write(tmp_path / ".opencode", "not a directory")
    with pytest.raises(ConfigError, match="is a file where OpenCode expects a config directory") as info:
        load_config(tmp_path, hermetic_env)
    assert info.value.path == str(tmp_path / ".opencode")
    assert candidate_paths(tmp_path, hermetic_env)  # the watcher still gets every path to follow


@pytest.mark.parametrize("where", ["project", "OPENCODE_CONFIG"])
def test_a_directory_where_a_config_file_belongs_is_a_clear_error(
    where: str, tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    (tmp_path / ".git").mkdir()
    env = dict(hermetic_env)
    if where == "project":
        bad = tmp_path / "opencode.json"
    else:
        bad = tmp_path / "custom-config"
        env["OPENCODE_CONFIG"] = str(bad)
    bad.mkdir()
    with pytest.raises(ConfigError, match="is a directory where OpenCode expects a config file") as info:
        load_config(tmp_path, env)
    assert info.value.path == str(bad)


def test_syntax_error_names_file_line_and_column(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    bad = write(tmp_path / "opencode.jsonc", '{\n  "model": "a/b",\n  "provider": {\n}}}\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, hermetic_env)
    assert info.value.location == f"{bad}:4:3"
    assert "\n" not in info.value.sentence()


def test_origins_follow_the_layer_that_set_each_value(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    glob = write(
        Path(hermetic_env["XDG_CONFIG_HOME"]) / "opencode" / "opencode.json",
        '{"model": "g/m", "provider": {"c": {"options": {"baseURL": "http://a"}}}}',
    )
    proj = write(tmp_path / "opencode.json", '{"provider": {"c": {"models": {"x": {}}}}}')
    config = load_config(tmp_path, hermetic_env)
    assert config.origin("model") == str(glob)
    assert config.origin("provider", "c", "options", "baseURL") == str(glob)
    assert config.origin("provider", "c", "models", "x") == str(proj)


def test_candidate_paths_include_files_that_do_not_exist_yet(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    (tmp_path / ".git").mkdir()
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    paths = candidate_paths(inner, {**hermetic_env, "OPENCODE_CONFIG": str(tmp_path / "custom.json")})
    assert tmp_path / "a" / "opencode.jsonc" in paths
    assert tmp_path / "custom.json" in paths
    assert Path(hermetic_env["XDG_CONFIG_HOME"]) / "opencode" / "opencode.jsonc" in paths
    assert tmp_path.parent / "opencode.json" not in paths  # the walk stops at the git root


# ------------------------------------------------------------------ against the real binary

GLOBAL = '{"model": "custom/g", "provider": {"custom": {"npm": "@ai-sdk/openai-compatible", "options": {"baseURL": "http://global/v1"}, "models": {"g": {"name": "G"}}}}, "instructions": ["global.md"]}'

LAYOUTS: dict[str, dict[str, str]] = {
    "global only": {"G/opencode.json": GLOBAL},
    "global config.json then opencode.jsonc": {
        "G/config.json": '{"model": "custom/one", "share": "manual"}',
        "G/opencode.jsonc": '// c\n{"model": "custom/two",}',
    },
    "global + project": {
        "G/opencode.json": GLOBAL,
        "P/opencode.json": '{"provider": {"custom": {"options": {"baseURL": "http://project/v1"}, "models": {"p": {"limit": {"context": 1000, "output": 10}}}}}, "instructions": ["p.md", "global.md"]}',
    },
    "nested jsonc and json, inner wins": {
        "P/opencode.jsonc": '/* outer */ {"model": "custom/outer-jsonc", "small_model": "custom/s1", "provider": {"custom": {"models": {"a": {"name": "outer"}}}},}',
        "P/sub/opencode.jsonc": '{"model": "custom/inner-jsonc", "provider": {"custom": {"models": {"a": {"name": "inner"}}}}}',
        "P/opencode.json": '{"model": "custom/outer-json", "share": "disabled"}',
        "P/sub/work/opencode.json": '{"small_model": "custom/inner-json"}',
    },
    "OPENCODE_CONFIG between global and project": {
        "G/opencode.json": GLOBAL,
        "C/custom.json": '{"model": "custom/from-env-file", "small_model": "custom/env-small", "provider": {"custom": {"options": {"timeout": 5000}}}}',
        "P/opencode.json": '{"small_model": "custom/project-small"}',
    },
    "OPENCODE_CONFIG_CONTENT wins over files": {
        "G/opencode.json": GLOBAL,
        "P/opencode.json": '{"model": "custom/project"}',
        "INLINE": '{"model": "custom/inline", "provider": {"custom": {"models": {"i": {"name": "I"}}}}}',
    },
    ".opencode directories": {
        "P/.opencode/opencode.json": '{"model": "custom/dot-outer"}',
        "P/sub/.opencode/opencode.jsonc": '{"model": "custom/dot-inner", "share": "manual"}',
        "P/opencode.json": '{"model": "custom/project", "small_model": "custom/x"}',
    },
    "OPENCODE_CONFIG_DIR naming the global dir is read before the .opencode dirs": {
        "G/opencode.json": '{"model": "custom/global", "share": "manual"}',
        "P/.opencode/opencode.json": '{"model": "custom/dot"}',
        "CONFIG_DIR": "G",
    },
    "~/.opencode then OPENCODE_CONFIG_DIR after the project .opencode dirs": {
        "P/.opencode/opencode.jsonc": '{"model": "custom/dot", "small_model": "custom/dot", "share": "manual"}',
        "H/.opencode/opencode.json": '{"small_model": "custom/home-dot", "share": "auto"}',
        "D/opencode.json": '{"share": "disabled"}',
        "D/opencode.jsonc": '{"share": "auto", "model": "custom/config-dir"}',
        "CONFIG_DIR": "D",
    },
    "everything with env substitution": {
        "G/opencode.json": GLOBAL,
        "C/custom.json": '{"provider": {"custom": {"options": {"apiKey": "{env:NEXUS_T_KEY}", "headers": {"X-Team": "{env:NEXUS_T_UNSET}"}}}}}',
        "P/opencode.jsonc": '{"provider": {"custom": {"models": {"jc": {"name": "JC"}}}},}',
        "P/sub/opencode.json": '{"instructions": ["sub.md"], "provider": {"custom": {"models": {"g": {"name": "G2"}}}}}',
        "INLINE": '{"small_model": "custom/jc"}',
    },
}


def _materialise(layout: dict[str, str], tmp_path: Path, env: dict[str, str]) -> Path:
    project = tmp_path / "proj"
    (project / ".git").mkdir(parents=True)
    roots = {
        "G": Path(env["XDG_CONFIG_HOME"]) / "opencode",
        "P": project,
        "C": tmp_path / "custom",
        "H": Path(env["HOME"]),
        "D": tmp_path / "config-dir",
    }
    for key, text in layout.items():
        if key == "INLINE":
            env["OPENCODE_CONFIG_CONTENT"] = text
            continue
        if key == "CONFIG_DIR":
            env["OPENCODE_CONFIG_DIR"] = str(roots[text])
            continue
        root, rel = key.split("/", 1)
        path = write(roots[root] / rel, text)
        if root == "C":
            env["OPENCODE_CONFIG"] = str(path)
    workdir = project / "sub" / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


@pytest.mark.opencode
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_merged_config_equals_opencode_debug_config(name: str, tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    env = dict(hermetic_env, NEXUS_T_KEY="sk-test-not-a-real-key")
    workdir = _materialise(LAYOUTS[name], tmp_path, env)
    ours = load_config(workdir, env).data
    result = subprocess.run(
        [opencode_path(), "debug", "config"], cwd=workdir, env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr[-2000:]
    theirs = json.loads(result.stdout)
    assert ours, "the layout loaded nothing"
    for key, value in ours.items():
        assert theirs.get(key) == value, f"{key}: nexus {value!r} != opencode {theirs.get(key)!r}"
    for key in ("provider", "model", "small_model", "instructions", "share"):
        assert theirs.get(key) == ours.get(key), key
