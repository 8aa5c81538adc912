"""The doctor asks a binary for its version once, and again only when the binary is replaced."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nexus_core.doctor.checks import run_doctor


def _counting_opencode(bin_dir: Path, version: str) -> Path:
    """An ``opencode`` that says ``version`` and notes each call in ``calls`` beside it."""
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "opencode"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import pathlib, sys\n"
        f"with open({str(bin_dir / 'calls')!r}, 'a') as out: out.write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"print({version!r})\n"
    )
    exe.chmod(0o755)
    return exe


def _calls(bin_dir: Path) -> list[str]:
    path = bin_dir / "calls"
    return path.read_text().splitlines() if path.exists() else []


async def test_a_binary_that_answered_is_not_asked_again_until_it_is_replaced(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    bin_dir = tmp_path / "bin"
    exe = _counting_opencode(bin_dir, "1.2.15")
    env = {**hermetic_env, "NEXUS_OPENCODE": str(exe)}

    first = (await run_doctor(project, env)).check("opencode")
    again = (await run_doctor(project, env)).check("opencode")
    assert (first.status, first.data["version"]) == ("ok", "1.2.15"), first
    assert (again.status, again.data["version"]) == ("ok", "1.2.15"), again
    assert _calls(bin_dir) == ["--version"], "a binary that answered was asked again"

    # An upgrade writes another file: it is asked, and what it says now is what the doctor reports.
    replaced = _counting_opencode(tmp_path / "next", "1.1.0")
    os.replace(replaced, exe)
    upgraded = (await run_doctor(project, env)).check("opencode")
    assert (upgraded.status, upgraded.cause) == ("warn", "opencode_version_untested"), upgraded
    assert _calls(tmp_path / "next") == ["--version"]


async def test_a_failing_binary_is_asked_every_time(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "opencode"
    exe.write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(bin_dir / 'calls')!r}, 'a').write('--version\\n')\nsys.exit(3)\n"
    )
    exe.chmod(0o755)
    env = {**hermetic_env, "NEXUS_OPENCODE": str(exe)}
    for _ in range(2):
        check = (await run_doctor(project, env)).check("opencode")
        assert (check.status, check.cause) == ("fail", "opencode_broken"), check
    assert _calls(bin_dir) == ["--version", "--version"], "a failure was remembered"
