"""``nexus-agents setup``: add the nexus-agents MCP server to an OpenCode config file."""

from __future__ import annotations

import argparse
import sys

from nexus_core.cli._common import print_json
from nexus_core.config.setup import run_setup


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup",
        help="add the nexus-agents MCP server to opencode.json[c], keeping comments and layout",
        description="Add mcp.nexus-agents to an OpenCode config file. Without a flag: the file in "
        "OPENCODE_CONFIG when set, else the project's opencode.jsonc or opencode.json.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--project",
        dest="scope",
        action="store_const",
        const="project",
        help="the project's opencode.jsonc / opencode.json (--dir or the cwd)",
    )
    where.add_argument(
        "--global",
        dest="scope",
        action="store_const",
        const="global",
        help="$XDG_CONFIG_HOME/opencode/opencode.jsonc / opencode.json",
    )
    where.add_argument("--config", dest="config_path", metavar="PATH", help="this config file")
    p.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
    p.add_argument("--force", action="store_true", help="replace a different existing mcp.nexus-agents entry")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run, scope=None)


def run(args: argparse.Namespace) -> int:
    result = run_setup(args.scope, args.config_path, directory=args.project_dir, dry_run=args.dry_run, force=args.force)
    if args.json:
        print_json(result.model_dump(mode="json"))
        return 0
    if result.diff:
        sys.stdout.write(result.diff)
    print(result.sentence())
    return 0
