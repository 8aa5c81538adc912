"""The linters and the type checker, as configured in pyproject.toml, find nothing.

ruff (lint and format) over src/, tests/ and bench/, and mypy over what its ``files`` setting
names (src/ and tests/). A finding fails the test with the tool's own report.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import ROOT

TIMEOUT_S = 300
LINTED = ["src", "tests", "bench"]


def _tool(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: install the test extras (pip install -e '.[test]')")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def _report(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n{done.stdout[-20_000:]}\n{done.stderr[-5_000:]}"


def test_ruff_check_finds_nothing() -> None:
    _tool("ruff")
    done = _run(["ruff", "check", "--no-cache", "--output-format", "concise", *LINTED])
    assert done.returncode == 0, _report(done)


def test_ruff_format_would_change_nothing() -> None:
    _tool("ruff")
    done = _run(["ruff", "format", "--no-cache", "--check", *LINTED])
    assert done.returncode == 0, _report(done)


def test_mypy_finds_nothing() -> None:
    _tool("mypy")
    # The incremental cache in the checkout's .mypy_cache keeps a second run to a few seconds.
    done = _run(["mypy", "--no-error-summary", "--hide-error-context"])
    assert done.returncode == 0, _report(done)
    assert done.stdout.strip() == "", _report(done)
