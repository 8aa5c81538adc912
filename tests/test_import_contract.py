"""The core must stay importable without the dashboard: nexus_core never imports Textual."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import nexus_core


def test_nexus_core_never_imports_textual_or_the_dashboard() -> None:
    modules = [
        m.name for m in pkgutil.walk_packages(nexus_core.__path__, "nexus_core.") if not m.name.endswith("__main__")
    ]
    assert len(modules) >= 5
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'nexus_tui'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"nexus_core pulled in: {result.stdout.strip()}"
