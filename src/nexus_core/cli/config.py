"""``nexus-agents config``: the merged OpenCode config, each value with the file it came from."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from nexus_core.cli._common import console, load_project, print_json
from nexus_core.config.loader import MergedConfig
from nexus_core.secrets import Redactor, is_secret_key, is_secret_var

_REF_RE = re.compile(r"\{(?:env|file):[^}]+\}")
_ENV_REF_RE = re.compile(r"\{env:([^}]+)\}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show the merged OpenCode config with the source of each value")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


# Objects whose values are credentials whenever they come from a variable or a file.
_CREDENTIAL_PARENTS = {"headers", "environment"}


def describe_value(config: MergedConfig, path: tuple[str, ...], value: Any, redact: Redactor) -> Any:
    """The value as it may be shown: secrets become a description of where they come from."""
    var = config.env_var_of(*path)
    raw = config.template(*path)
    refs = [m.group(0) for m in _REF_RE.finditer(raw or "")]
    secret = (
        any(is_secret_key(k) for k in path)
        or (var is not None and is_secret_var(var))
        or any(is_secret_var(m.group(1)) for m in _ENV_REF_RE.finditer(raw or ""))
        or (bool(refs) and len(path) > 1 and path[-2] in _CREDENTIAL_PARENTS)
    )
    if secret:
        if var is not None:
            return f"(secret) {'set' if value else 'NOT SET'}, from {{env:{var}}}"
        if refs:
            return f"(secret) {'set' if value else 'EMPTY'}, from {', '.join(refs)}"
        return "(secret) set literally in the file" if value else "(secret) empty"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact(v) if isinstance(v, str) else v for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    config, _ = load_project(args)
    redact = Redactor.from_env()
    rows = [
        {"key": ".".join(path), "value": describe_value(config, path, value, redact), "source": config.origin(*path)}
        for path, value in config.leaves()
        if path
    ]
    if args.json:
        print_json(
            {
                "directory": config.directory,
                "worktree": config.worktree,
                "layers": [layer.source for layer in config.layers],
                "unset_env": sorted({r.var for r in config.env_refs if not r.is_set}),
                "values": rows,
            }
        )
        return 0
    out = console()
    out.print(f"[bold]Config layers[/] (lowest precedence first) for {escape(config.directory)}:")
    for layer in config.layers:
        out.print(f"  {layer.kind:<9} {escape(layer.source)}")
    if not config.layers:
        out.print("  (none found)")
    table = Table(title_justify="left")
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("source", overflow="fold")
    for row in rows:
        value = row["value"]
        table.add_row(
            Text(row["key"]), Text(value if isinstance(value, str) else json.dumps(value)), Text(row["source"] or "")
        )
    out.print(table)
    unset = sorted({r.var for r in config.env_refs if not r.is_set})
    if unset:
        out.print(
            f"[yellow]Unset variables referenced by the config:[/] {escape(', '.join(unset))} (OpenCode substitutes an empty string)."
        )
    return 0
