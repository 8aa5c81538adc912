"""The package as users install it: a wheel built from the checkout, installed into a venv outside it.

The suite otherwise runs from an editable install, where the top-level styles/ folder is read in place; only a
real wheel shows whether the dashboard's TCSS (and every module) ships inside the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# One worker builds and installs the wheel once for all of them (bootstrap.py runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("wheel")

MOUNT = """
import asyncio, sys
from nexus_tui.app import STYLES, NexusApp

async def main():
    app = NexusApp(project_dir=sys.argv[1], test_mode=True, watch_config=False, check_health=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        print("STYLES", STYLES)
        print("WIDGETS", len(app.screen.query("*")))

asyncio.run(main())
"""


# The wheel's venv must see only the wheel: a PYTHONPATH pointing at a checkout would shadow it.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away venv outside the checkout holding only the built wheel (dependencies come from the suite's venv)."""
    work = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources, which parallel
    # workers (and the developer's own checkout) must not share.
    source = work / "source"
    for name in ("src", "styles"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_ENV,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (work / "dist").glob("nexus_agents-*.whl")
    target = work / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    # Dependencies come from the suite's own site-packages; its .pth files (the editable finder) are not read from
    # a path added this way, so `nexus_tui` resolves to the wheel alone.
    purelib = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True, env=_ENV
        ).strip()
    )
    (purelib / "suite-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_ENV,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    return wheel


def test_the_wheel_ships_every_module_and_stylesheet(installed_wheel: Path) -> None:
    names = set(zipfile.ZipFile(installed_wheel).namelist())
    sources = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src").rglob("*.py")}
    styles = {f"nexus_tui/styles/{p.name}" for p in (ROOT / "styles").glob("*.tcss")}
    assert styles, "the checkout has no styles/*.tcss"
    assert sources - names == set()
    assert styles - names == set()


def test_the_dashboard_mounts_from_the_wheel_outside_the_checkout(installed_wheel: Path, tmp_path: Path) -> None:
    venv_dir = installed_wheel.parents[1] / "venv"
    project = tmp_path / "project"
    project.mkdir()
    result = subprocess.run(
        [str(venv_dir / "bin" / "python"), "-c", MOUNT, str(project)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    styles_line = next(line for line in result.stdout.splitlines() if line.startswith("STYLES"))
    assert str(venv_dir) in styles_line and str(ROOT) not in styles_line
    widgets = int(next(line for line in result.stdout.splitlines() if line.startswith("WIDGETS")).split()[1])
    assert widgets > 10


def test_nexus_tui_from_the_wheel_answers_help(installed_wheel: Path, tmp_path: Path) -> None:
    exe = installed_wheel.parents[1] / "venv" / "bin" / "nexus-tui"
    result = subprocess.run([str(exe), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=_ENV)
    assert result.returncode == 0, result.stderr
    assert "--demo" in result.stdout
