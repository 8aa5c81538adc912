"""Files OpenCode refuses are refused by nexus too, and setup never clobbers what it may not write."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import opencode_path
from nexus_core.config import jsonc
from nexus_core.config.loader import ConfigError, load_config
from nexus_core.config.setup import run_setup
from nexus_core.errors import NexusError

BOM = b"\xef\xbb\xbf"
COMMAND = ["/opt/nexus/bin/nexus-agents", "--mode=server"]


@pytest.mark.parametrize("name", ["opencode.json", "opencode.jsonc"])
def test_a_bom_is_refused_with_file_line_column_and_the_fix(
    name: str, tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    path = tmp_path / name
    path.write_bytes(BOM + b'// c\n{"model": "a/b",}\n' if name.endswith("c") else BOM + b'{"model": "a/b"}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, hermetic_env)
    assert caught.value.location == f"{path}:1:1"
    assert "remove the byte-order mark" in str(caught.value)


def test_opencode_1_18_accepts_a_bom() -> None:
    assert jsonc.loads('\ufeff{"a": 1}', opencode_version="1.18.33") == {"a": 1}
    assert jsonc.loads("\ufeff", opencode_version="1.18.33") == {}
    with pytest.raises(jsonc.JsoncError):
        jsonc.loads('\ufeff{"a": 1}', opencode_version="1.2.15")


@pytest.mark.parametrize("text", ["  \n\n", "// only\n", "[1]", "null", '{"a": 1}\x00', '{"a": "x\x00y"}', "{} x"])
def test_files_both_releases_reject_are_rejected(text: str, tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    (tmp_path / "opencode.json").write_text(text)
    with pytest.raises(ConfigError):
        load_config(tmp_path, hermetic_env)


@pytest.mark.parametrize("text", ["", '{\r\n  "model": "a/b", // c\r\n}\r\n', '{"model": "a\\u0000b"}'])
def test_files_both_releases_accept_are_accepted(text: str, tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    (tmp_path / "opencode.json").write_text(text, newline="")
    load_config(tmp_path, hermetic_env)


def test_setup_refuses_to_write_into_a_bom_file(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    path = tmp_path / "opencode.json"
    before = BOM + b'{"model": "a/b"}\n'
    path.write_bytes(before)
    with pytest.raises(ConfigError, match="remove the byte-order mark"):
        run_setup(config_path=path, command=COMMAND, env=hermetic_env)
    assert path.read_bytes() == before
    assert not (tmp_path / "opencode.json.bak").exists()


def test_setup_cli_refuses_a_bom_file_with_exit_2(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    path = tmp_path / "opencode.json"
    before = BOM + b"{}\n"
    path.write_bytes(before)
    proc = subprocess.run(
        [sys.executable, "-m", "nexus_core", "setup", "--config", str(path)],
        env=hermetic_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "byte-order mark" in proc.stderr and "Traceback" not in proc.stderr
    assert path.read_bytes() == before


def test_setup_refuses_a_0444_file_even_as_root(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    path = tmp_path / "opencode.json"
    before = b'{"model": "a/b"}\n'
    path.write_bytes(before)
    path.chmod(0o444)
    with pytest.raises(NexusError, match="read-only"):
        run_setup(config_path=path, command=COMMAND, env=hermetic_env)
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to uid 65534 and own the file as root")
def test_an_unprivileged_user_cannot_replace_a_root_owned_file(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    # pytest's tmp root is 0700, which nobody cannot enter: use a folder of its own under /tmp.
    folder = Path(tempfile.mkdtemp(prefix="nexus-ro-"))
    made = folder
    path = folder / "opencode.json"
    before = b'{"model": "a/b"}\n'
    path.write_bytes(before)
    path.chmod(0o444)
    folder.chmod(0o755)  # nobody may read but not write here
    env = {**hermetic_env, "HOME": str(folder)}
    code = (
        "import sys\nfrom nexus_core.config.setup import run_setup\n"
        "from nexus_core.errors import NexusError\n"
        "try:\n    run_setup(config_path=sys.argv[1], command=['x'])\n"
        "except NexusError as exc:\n    print(exc); sys.exit(3)\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(path)], env=env, user=NOBODY, capture_output=True, text=True, timeout=60
        )
        st = path.stat()
        after = path.read_bytes()
    finally:
        shutil.rmtree(made)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "read-only" in proc.stdout
    assert after == before
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o444)


def test_an_existing_backup_is_never_overwritten(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    path = tmp_path / "opencode.json"
    (tmp_path / "opencode.json.bak").write_text("old backup")
    (tmp_path / "opencode.json.bak.1").write_text("older backup")
    path.write_text('{"model": "a/b"}\n')
    result = run_setup(config_path=path, command=COMMAND, env=hermetic_env)
    assert result.backup == str(tmp_path / "opencode.json.bak.2")
    assert "opencode.json.bak.2" in result.sentence()
    assert (tmp_path / "opencode.json.bak").read_text() == "old backup"
    assert (tmp_path / "opencode.json.bak.1").read_text() == "older backup"
    assert (tmp_path / "opencode.json.bak.2").read_text() == '{"model": "a/b"}\n'


def _opencode_accepts(project: Path, env: dict[str, str]) -> tuple[bool, str]:
    proc = subprocess.run(
        [opencode_path(), "debug", "config"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.opencode
@pytest.mark.parametrize("content", [BOM + b'{"model": "a/b"}\n', b'{"model": "a/b"}\n'])
def test_nexus_and_opencode_1_2_15_agree_on_a_bom(content: bytes, tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True, timeout=30)
    (project / "opencode.json").write_bytes(content)
    try:
        load_config(project, hermetic_env)
        nexus_ok = True
    except ConfigError:
        nexus_ok = False
    opencode_ok, output = _opencode_accepts(project, hermetic_env)
    assert nexus_ok == opencode_ok == (not content.startswith(BOM)), output
    if not opencode_ok:
        assert "InvalidSymbol at line 1, column 1" in output
