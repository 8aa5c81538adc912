"""``nexus-agents models``: the registry as a table or JSON."""

from __future__ import annotations

import argparse
import sys

from rich import box
from rich.table import Table
from rich.text import Text

from nexus_core.cli._common import console, load_project, print_json
from nexus_core.config.loader import MergedConfig
from nexus_core.routing.crosscheck import Mismatch, declared_file, declared_models, overlay_hint, registry_mismatch
from nexus_core.routing.registry import Registry


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model registry (built-ins, opencode.json, overlay)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def _mismatches(config: MergedConfig, registry: Registry) -> list[tuple[str, Mismatch]]:
    """Registry models whose CLI model name opencode.json does not declare, worded as the doctor and route word it."""
    out = []
    for m in registry.models:
        pid = m.provider_id
        if m.source == "opencode.json" or not m.cli_model_name or pid not in config.providers:
            continue
        found = registry_mismatch(
            m, declared_models(config, pid), None, declared_in=declared_file(config, pid), overlay=overlay_hint(config)
        )
        if found is not None:
            out.append((m.id, found))
    return out


def run(args: argparse.Namespace) -> int:
    config, registry = load_project(args)
    mismatches = _mismatches(config, registry)
    if args.json:
        print_json(
            {
                "models": [m.model_dump(mode="json") for m in registry.models],
                "problems": [p.model_dump(mode="json") for p in registry.problems],
                "mismatches": [{"model": mid, "summary": m.summary, "fix": m.fix} for mid, m in mismatches],
            }
        )
        return 0
    table = Table(
        title="Model registry",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption="scores: reasoning/code/speed/cost-efficiency, 0–10",
        caption_justify="left",
    )
    table.add_column("id", no_wrap=True)
    table.add_column("CLI model name", no_wrap=True)
    table.add_column("provider", overflow="fold", min_width=8)
    table.add_column("scores", no_wrap=True)
    table.add_column("context", justify="right", no_wrap=True)
    table.add_column("source", overflow="fold", min_width=8)
    for m in registry.models:
        q = m.quality
        table.add_row(
            *map(
                Text,
                (
                    m.id,
                    m.cli_model_name or "(no default model)",
                    m.provider,
                    f"{q.reasoning:g}/{q.code:g}/{q.speed:g}/{q.cost:g}",
                    f"{m.context_limit // 1000}k" if m.context_limit else "—",
                    m.source,
                ),
            )
        )
    out = console()
    out.print(table)
    for problem in registry.problems:
        print(f"warning: {problem.sentence()}", file=sys.stderr)
    for _, mismatch in mismatches:
        print(f"warning: {mismatch.sentence()}", file=sys.stderr)
    return 0
