"""``nexus-agents``: the command-line face of nexus.

Each subcommand lives in its own module with ``register(subparsers)``; the module list below
is the only place that names them. A :class:`~nexus_core.errors.NexusError` or
:class:`~nexus_core.opencode_config.ConfigError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from nexus_core import __version__
from nexus_core.errors import NexusError
from nexus_core.opencode_config import ConfigError

__all__ = ["build_parser", "main"]

SUBCOMMANDS = ("models", "config", "route", "gateway", "orchestrate", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus-agents",
        description="Delegate coding tasks to AI models through the OpenCode CLI.",
    )
    parser.add_argument("--version", action="version", version=f"nexus-agents {__version__}")
    parser.add_argument("--mode", choices=["cli", "server"], default="cli", help="server: run the MCP server on stdio")
    parser.add_argument("--dir", dest="project_dir", default=None, help="project directory (default: the current one)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"nexus_core.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.mode == "server":
            from nexus_core.mcp_server import serve

            return serve()
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except (NexusError, ConfigError) as exc:
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
        print(f"nexus-agents: unexpected error: {type(exc).__name__}: {exc}. Run again with NEXUS_DEBUG=1 for details.", file=sys.stderr)
        return 1
