"""``nexus-agents models``: the registry as a table or JSON."""

from __future__ import annotations

import argparse
import sys

from rich.table import Table

from nexus_core.cli._common import console, load_project, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model registry (built-ins, opencode.json, overlay)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    _, registry = load_project(args)
    if args.json:
        print_json({
            "models": [m.model_dump(mode="json") for m in registry.models],
            "problems": [p.model_dump(mode="json") for p in registry.problems],
        })
        return 0
    table = Table(title="Model registry", title_justify="left")
    for column in ("id", "CLI model name", "provider", "reason.", "code", "speed", "cost", "context", "source"):
        table.add_column(column, no_wrap=column in {"id", "CLI model name"})
    for m in registry.models:
        q = m.quality
        table.add_row(
            m.id, m.cli_model_name or "(no default model)", m.provider,
            f"{q.reasoning:g}", f"{q.code:g}", f"{q.speed:g}", f"{q.cost:g}",
            f"{m.context_limit:,}" if m.context_limit else "—", m.source,
        )
    out = console()
    out.print(table)
    for problem in registry.problems:
        print(f"warning: {problem.sentence()}", file=sys.stderr)
    return 0
