"""``nexus-agents runs``: the delegations the run store kept, newest first; ``show`` one; ``prune``.

    nexus-agents runs [--json] [--limit N] [--model M] [--failed] [--all-projects]
    nexus-agents runs show ID [--events] [--json]
    nexus-agents runs prune [--json]

This project's runs by default (the ones started from ``--dir`` or the current directory). A run
whose process died without finishing it reads as ``interrupted``. ``show`` prints the routing,
every attempt, and the final text; ``--events`` replays the stored events as ``orchestrate``
printed them live.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nexus_core.errors import NexusError
from nexus_core.store.records import RunDetail, RunSummary
from nexus_core.store.runs import RunStore

TASK_CHARS = 60


def print_json(data: Any) -> None:
    # Not _common's: this module avoids importing the config loader and rich (``runs`` starts fast).
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runs",
        help="list the delegations nexus recorded (show one, prune old ones)",
        description="The run store: every delegation of the CLI, the MCP server and the dashboard.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="runs to list (default 20)")
    p.add_argument("--model", metavar="M", help="only runs that tried this model (id or provider/model)")
    p.add_argument("--failed", action="store_true", help="only failed and interrupted runs")
    p.add_argument("--all-projects", action="store_true", help="runs of every project, not only this one")
    p.set_defaults(handler=run_list)
    actions = p.add_subparsers(dest="runs_command", metavar="ACTION")
    show = actions.add_parser("show", help="one run in full: routing, attempts, final text")
    show.add_argument("run_id", metavar="ID", help="the run's id (from nexus-agents runs)")
    show.add_argument("--events", action="store_true", help="replay the stored events")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run_show)
    prune = actions.add_parser("prune", help="remove the oldest runs beyond the retention limits")
    prune.add_argument("--json", action="store_true", help="print JSON")
    prune.set_defaults(handler=run_prune)


def _open() -> RunStore:
    return RunStore.open()


def _project(args: argparse.Namespace) -> Path:
    return Path(args.project_dir).resolve() if args.project_dir else Path.cwd()


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _took(summary: RunSummary) -> str:
    end = summary.finished_at or (time.time() if summary.status == "running" else None)
    return f"{end - summary.started_at:.1f} s" if end is not None else "-"


def _one_line(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def run_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise NexusError(f"--limit must be at least 1, not {args.limit}", "Pass --limit 20, for example")
    with _open() as store:
        runs = store.list_runs(
            limit=args.limit,
            project=_project(args),
            all_projects=args.all_projects,
            model=args.model,
            failed=args.failed,
        )
        path = store.path
    if args.json:
        print_json([asdict(r) for r in runs])
        return 0
    if not runs:
        where = "any project" if args.all_projects else str(_project(args))
        print(f"No runs recorded for {where} (the store is {path}).", file=sys.stderr)
        return 0
    out = sys.stdout
    header = ("ID", "STARTED", "STATUS", "MODEL", "TOOK", "TASK")
    rows = [
        (
            r.id,
            _when(r.started_at),
            r.status + (f" ({r.outcome_class})" if r.outcome_class and r.status != "ok" else ""),
            r.chosen_model or "-",
            _took(r),
            _one_line(r.task, TASK_CHARS),
        )
        for r in runs
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]), file=out)
    return 0


def _detail_json(detail: RunDetail, events: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        **asdict(detail.summary),
        "routing": detail.routing,
        "chain": list(detail.chain),
        "attempts": [asdict(a) for a in detail.attempts],
        "final_text": detail.final_text,
        "events_stored": detail.events_stored,
        "events_dropped": detail.events_dropped,
        "continues": detail.continues,
        "session_ids": list(detail.session_ids),
    }
    if events:
        data["events"] = [e.model_dump(mode="json") for e in detail.events()]
    return data


def run_show(args: argparse.Namespace) -> int:
    with _open() as store:
        detail = store.show(args.run_id)
        if detail is None:
            raise NexusError(
                f"no run has the id {args.run_id!r}", "Run `nexus-agents runs --all-projects` to list the ids"
            )
        if args.json:
            print_json(_detail_json(detail, args.events))
            return 0
        _print_detail(detail)
        if args.events:
            _replay(detail)
        elif detail.final_text:
            print(detail.final_text)
    return 0


def _print_detail(detail: RunDetail) -> None:
    s = detail.summary
    note = print_note
    note(f"run {s.id} · {s.status} · started {_when(s.started_at)} · took {_took(s)} · from {s.source}")
    note(f"task: {_one_line(s.task, 200)}")
    note(f"project: {s.project}" + (f" · worked in {s.workdir}" if s.workdir and s.workdir != s.project else ""))
    if detail.routing:
        note(f"routing: {detail.routing.get('chosen')} — {detail.routing.get('reason')}")
    note(f"chain: {' → '.join(detail.chain) or '-'}")
    for a in detail.attempts:
        took = f"{a.finished_at - a.started_at:.1f} s" if a.finished_at else "unfinished"
        outcome = "ok" if a.finished_at and a.outcome_class is None else (a.outcome_class or "-")
        via = a.transport + (f" {a.server}" if a.server else "") + (f", session {a.session_id}" if a.session_id else "")
        tokens = f"tokens in {a.tokens_input} / out {a.tokens_output}" + (f" · ${a.cost:.4f}" if a.cost else "")
        message = f": {a.outcome_message}" if a.outcome_class and a.outcome_message else ""
        note(
            f"  attempt {a.number}: {a.model_id or a.cli_model_name} via {via} · {took} · {tokens} · {outcome}{message}"
        )
    if s.status not in ("ok", "running") and s.outcome_message:
        note(f"✗ {s.status}" + (f" ({s.outcome_class})" if s.outcome_class else "") + f": {s.outcome_message}")
    if detail.events_dropped:
        note(f"({detail.events_dropped} events beyond the per-run limit were counted, not kept)")


def print_note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _replay(detail: RunDetail) -> None:
    from nexus_core.cli.stream import Printer

    printer = Printer(sys.stdout, sys.stderr)
    for event in detail.events():
        printer(event)
    if printer.wrote_nothing and detail.final_text:
        print(detail.final_text)  # the text came as deltas, which the store does not keep one by one


def run_prune(args: argparse.Namespace) -> int:
    with _open() as store:
        report = store.prune()
    if args.json:
        print_json(asdict(report))
    else:
        print(f"Removed {report.removed} run(s); {report.runs_left} left, {report.bytes_used / 1e6:.1f} MB used.")
    return 0
