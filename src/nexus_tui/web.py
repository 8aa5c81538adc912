"""``nexus-tui --web``: the dashboard in a browser, served by ``textual-serve`` on 127.0.0.1.

Each browser tab gets its own dashboard process. ``textual-serve`` starts that process through a
shell from a command string, so the command is built from an argv list with :func:`shlex.join`
(every part quoted): no path or option can be read as shell syntax.
"""

from __future__ import annotations

import shlex
import socket
import sys
from pathlib import Path

__all__ = ["DEFAULT_PORT", "HOST", "serve", "web_command"]

HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def web_command(project_dir: str | None, demo: bool) -> str:
    """The command each browser session runs: this Python, the dashboard, the same options."""
    argv = [sys.executable, "-m", "nexus_tui"]
    if demo:
        argv.append("--demo")
    if project_dir:
        argv += ["--dir", str(Path(project_dir).resolve())]
    return shlex.join(argv)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def serve(port: int, project_dir: str | None, demo: bool) -> int:
    """Serve the dashboard at ``http://127.0.0.1:<port>`` until Ctrl+C; an exit status."""
    try:
        from textual_serve.server import Server
    except ImportError:
        print(
            "nexus-tui: --web needs the textual-serve package; install it with "
            "pip install 'textual-serve==1.1.3' (or reinstall nexus-agents).",
            file=sys.stderr,
        )
        return 2
    if not 0 < port < 65536:
        print(f"nexus-tui: --port {port} is not a TCP port; use 1-65535.", file=sys.stderr)
        return 2
    if not _port_free(port):
        print(f"nexus-tui: {HOST}:{port} is already in use; pick another with --port N.", file=sys.stderr)
        return 2
    print(f"nexus-tui: serving the dashboard at http://{HOST}:{port} (Ctrl+C stops it)", file=sys.stderr)
    Server(web_command(project_dir, demo), host=HOST, port=port, title="nexus").serve()
    return 0
