"""``nexus-agents models``: the registry as a table or JSON."""

from __future__ import annotations

import argparse
import sys

from rich import box
from rich.table import Table
from rich.text import Text

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
    table = Table(title="Model registry", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="scores: reasoning/code/speed/cost-efficiency, 0–10", caption_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("CLI model name", no_wrap=True)
    table.add_column("provider", overflow="fold", min_width=8)
    table.add_column("scores", no_wrap=True)
    table.add_column("context", justify="right", no_wrap=True)
    table.add_column("source", overflow="fold", min_width=8)
    for m in registry.models:
        q = m.quality
        table.add_row(*map(Text, (
            m.id, m.cli_model_name or "(no default model)", m.provider,
            f"{q.reasoning:g}/{q.code:g}/{q.speed:g}/{q.cost:g}",
            f"{m.context_limit // 1000}k" if m.context_limit else "—", m.source,
        )))
    out = console()
    out.print(table)
    for problem in registry.problems:
        print(f"warning: {problem.sentence()}", file=sys.stderr)
    return 0
