"""Shared fixtures: a hermetic environment for OpenCode and nexus, and the pinned binary."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The image build runs in the background while the suite runs (tests/container_plugin.py).
pytest_plugins = ["container_plugin"]

# Variables from the developer's shell that would leak their own OpenCode set-up into a test.
_LEAKY_PREFIXES = ("OPENCODE_", "CUSTOM_API_", "NEXUS_", "XDG_")


def _weight(item: pytest.Item) -> int:
    """0 for a test on both OpenCode releases (the longest), 1 for one on one release, 2 for the rest."""
    if "opencode_binary" in getattr(item, "fixturenames", ()):
        return 0
    return 1 if item.get_closest_marker("opencode") else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest tests run first, the container's last; ``live_gateway`` ones only when asked for.

    xdist hands tests out in this order, so the run ends on short tests that fill every worker
    rather than on one worker's long OpenCode test while the others are idle. The container tests
    wait for the image that builds in the background (tests/container_plugin.py) and stay last.
    Live-gateway tests run only with ``python3 bootstrap.py test --live-gateways``.
    """
    items.sort(key=lambda item: (item.get_closest_marker("container_build") is not None, _weight(item)))
    if os.environ.get("NEXUS_LIVE_GATEWAYS") == "1":
        return
    skip = pytest.mark.skip(reason="needs a real LiteLLM proxy: python3 bootstrap.py test --live-gateways")
    for item in items:
        if "live_gateway" in item.keywords:
            item.add_marker(skip)


def opencode_path() -> str:
    """The pinned OpenCode launcher that bootstrap.py installed (first on PATH in the suite)."""
    found = shutil.which("opencode")
    if found is None:
        pytest.fail("opencode is not on PATH: run the suite with `python3 bootstrap.py test`.")
    return found


# What OpenCode 1.2.15 installs into a fresh HOME on its first start (its default plugins into the
# cache dir, @opencode-ai/plugin into the config dir), each time from the npm registry.
_INSTALLED_DIRS = (".cache/opencode", ".config/opencode")


def _write_template(home: Path) -> Path | None:
    launcher = ROOT / ".tools" / "opencode" / "node_modules" / ".bin" / "opencode"
    if not launcher.exists():
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}
    env.update(_xdg(home), OPENCODE_DISABLE_MODELS_FETCH="1", OPENCODE_DISABLE_AUTOUPDATE="1")
    (home / "project").mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [str(launcher), "models"], cwd=home / "project", env=env, capture_output=True, timeout=90, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    if not all((home / sub / "node_modules").is_dir() for sub in _INSTALLED_DIRS):
        return None
    return home


@pytest.fixture(scope="session")
def opencode_home_template(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A HOME in which OpenCode has already installed its plugins (None when that could not be done).

    Every test gets a fresh HOME, so without it every OpenCode test would download and install the
    same packages again (seconds each, and a third of a run's CPU): the suite would test OpenCode's
    first start two hundred times and a user's everyday start never.
    """
    return _write_template(tmp_path_factory.mktemp("opencode-home-template"))


def _xdg(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }


# OpenCode's start is most of this suite's CPU, and most of that start is spent on what no test
# looks at: the catalog of every public provider's models (all tests use the `custom` provider of
# their own opencode.json) and the optimising tiers of its JavaScript engine (no test runs long
# enough for them to pay off; they took 1.18.33 from 3 to 5.5 s of CPU per run). Both are only
# performance: the binary, its config handling and its behaviour towards the gateway are the same.
# A test about the catalog's load (the serve warm-up) is marked `opencode_catalog` and keeps it.
_EMPTY_CATALOG = {"OPENCODE_MODELS_PATH": str(Path(__file__).parent / "data" / "empty-models-catalog.json")}
_ENGINE = {"BUN_JSC_useFTLJIT": "0", "BUN_JSC_useConcurrentGC": "0"}


def _uses_opencode(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("opencode") is not None or "opencode_binary" in request.fixturenames


@pytest.fixture
def hermetic_env(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """A clean environment: a temporary HOME and XDG dirs, no model fetches, no auto-update.

    For a test that runs OpenCode, the HOME holds what OpenCode installs on its first start (shared,
    read-only, from :func:`opencode_home_template`); its data dir is still fresh.
    """
    home = tmp_path / "home"
    if _uses_opencode(request):
        template = request.getfixturevalue("opencode_home_template")
        if template is not None:
            for sub in _INSTALLED_DIRS:
                target = home / sub
                target.mkdir(parents=True)
                for entry in (template / sub).iterdir():
                    if entry.name == "node_modules":
                        (target / entry.name).symlink_to(entry, target_is_directory=True)
                    elif entry.is_file():
                        shutil.copy2(entry, target / entry.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}
    env.update(
        _xdg(home),
        OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_DISABLE_AUTOUPDATE="1",
        OPENCODE_TEST_MANAGED_CONFIG_DIR=str(tmp_path / "managed"),
        NO_COLOR="1",
    )
    env.update(_ENGINE)
    if request.node.get_closest_marker("opencode_catalog") is None:
        env.update(_EMPTY_CATALOG)
    for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


_T = TypeVar("_T")


def present(value: _T | None, what: str = "value") -> _T:
    """``value``, failing the test when it is None (for the optional results a test expects to be there)."""
    assert value is not None, f"expected a {what}, got None"
    return value


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``nexus-agents`` as a user would (a real subprocess, argv list, no shell)."""
    exe = shutil.which("nexus-agents", path=env.get("PATH"))
    assert exe, "nexus-agents is not installed in the test environment"
    return subprocess.run([exe, *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout)
