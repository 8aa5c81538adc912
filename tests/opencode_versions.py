"""The OpenCode releases the serve tests run on: 1.2.15 (.tools/opencode) and 1.18.33 (.tools/opencode-1.18.33)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nexus_core.opencode.attempt import native_opencode

ROOT = Path(__file__).resolve().parent.parent
RELEASES = {
    "1.2.15": ("NEXUS_OPENCODE_BIN_DIR", ROOT / ".tools" / "opencode" / "node_modules" / ".bin"),
    "1.18.33": ("NEXUS_OPENCODE_1_18_BIN_DIR", ROOT / ".tools" / "opencode-1.18.33" / "node_modules" / ".bin"),
}


@pytest.fixture(params=sorted(RELEASES), ids=lambda v: f"opencode-{v}")
def opencode_binary(request: pytest.FixtureRequest) -> str:
    """The native OpenCode binary of one release (skipped when bootstrap.py did not install it)."""
    var, default = RELEASES[request.param]
    launcher = Path(os.environ.get(var) or default) / "opencode"
    if not launcher.exists():
        pytest.skip(f"OpenCode {request.param} is not installed: run python3 bootstrap.py test")
    return native_opencode(str(launcher))
