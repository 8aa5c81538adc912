"""``nexus-agents``: the command-line face of nexus.

Each subcommand lives in its own module with ``register(subparsers)``; the module list below
is the only place that names them. A :class:`~nexus_core.errors.NexusError` (a
:class:`~nexus_core.config.loader.ConfigError` is one) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from nexus_core import __version__
from nexus_core.errors import NexusError

__all__ = ["build_parser", "main"]

SUBCOMMANDS = ("models", "config", "route", "orchestrate", "runs", "doctor", "setup", "gateway")


def build_parser(commands: Sequence[str] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus-agents",
        description="Delegate coding tasks to AI models through the OpenCode CLI.",
    )
    parser.add_argument("--version", action="version", version=f"nexus-agents {__version__}")
    parser.add_argument("--mode", choices=["cli", "server"], default="cli", help="server: run the MCP server on stdio")
    parser.add_argument("--dir", dest="project_dir", default=None, help="project directory (default: the current one)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands:
        importlib.import_module(f"nexus_core.cli.{name}").register(sub)
    return parser


def _named_command(argv: Sequence[str]) -> str | None:
    """The subcommand in ``argv``, looking past the global options (``--dir D``, ``--mode M``)."""
    tokens = iter(argv)
    for token in tokens:
        if token in ("--dir", "--mode"):
            next(tokens, None)
        elif not token.startswith("-"):
            return token if token in SUBCOMMANDS else None
    return None


def _without_httpx_cli() -> None:
    """Keep httpx from loading its own command-line client (click, rich, pygments: about 100
    modules, 0.05-0.1 s of every ``orchestrate`` on serve, ``doctor`` and the MCP server).

    httpx imports ``httpx._main`` only to offer ``httpx.main`` and falls back to a stub when that
    import fails, as it does where its ``cli`` extra is not installed; a ``None`` in
    ``sys.modules`` makes the import fail. Only this process's entry point does it (it owns its
    imports), and only before httpx is loaded.
    """
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None blocks an import


def main(argv: Sequence[str] | None = None) -> int:
    _without_httpx_cli()
    argv = list(sys.argv[1:] if argv is None else argv)
    # A named command needs only its own module: the others' imports would slow every start.
    command = _named_command(argv)
    parser = build_parser((command,) if command else SUBCOMMANDS)
    args = parser.parse_args(argv)
    try:
        if args.mode == "server":
            from nexus_core.mcp.server import serve

            return serve(args.project_dir)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except NexusError as exc:
        print(f"nexus-agents: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nexus-agents: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the last guard: one line, never a traceback
        if os.environ.get("NEXUS_DEBUG"):
            raise
        print(
            f"nexus-agents: unexpected error: {type(exc).__name__}: {exc}. Run again with NEXUS_DEBUG=1 for details.",
            file=sys.stderr,
        )
        return 1
