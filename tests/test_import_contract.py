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


def test_a_cli_run_on_serve_loads_no_command_line_client_and_spawns_before_the_core() -> None:
    """What `nexus-agents orchestrate` loads before it starts OpenCode stays light (no pydantic,
    no routing core), and the HTTP stack it loads later brings no click, rich or pygments (httpx's
    own command-line client), while httpx itself still works."""
    code = (
        "import sys\n"
        "from nexus_core.cli import _without_httpx_cli\n"
        "_without_httpx_cli()\n"
        "import nexus_core.cli.orchestrate, nexus_core.opencode.serve.server, nexus_core.opencode.head_start\n"
        "early = sorted(m for m, mod in sys.modules.items() if mod is not None and m.split('.')[0] in ('pydantic', 'httpx', 'psutil') or m.startswith('nexus_core.routing'))\n"
        "import httpx\n"
        "late = sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'rich', 'pygments'))\n"
        "client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, text='ok')))\n"
        "print(repr((early, late, client.get('http://x/').text)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(([], [], "ok")), result.stdout
