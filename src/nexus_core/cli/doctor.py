"""``nexus-agents doctor``: the health of the path nexus → OpenCode → gateway → model."""

from __future__ import annotations

import argparse
import asyncio

from rich.markup import escape

from nexus_core.cli._common import console, print_json
from nexus_core.doctor.checks import DoctorReport, run_doctor

_MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "skipped": ("·", "dim")}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", help="check OpenCode, the config, the gateway and the models; exit 1 if anything fails"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON (schema in the README)")
    p.add_argument(
        "--probe", action="store_true", help="also stream a tiny chat completion and run a real `opencode run` smoke"
    )
    p.set_defaults(handler=run)


def render(report: DoctorReport) -> None:
    """Print the report: one line per check (mark, title, summary, time), then detail and fix."""
    out = console()
    for check in report.checks:
        mark, colour = _MARKS[check.status]
        took = ""
        if check.duration_ms >= 1000:
            took = f" [dim]({check.duration_ms / 1000:.1f} s)[/]"
        elif check.duration_ms >= 1:
            took = f" [dim]({check.duration_ms:.0f} ms)[/]"
        out.print(f"[{colour}]{mark}[/] [bold]{escape(check.title)}[/]: {escape(check.summary)}{took}")
        if check.status in ("warn", "fail") and check.detail:
            for line in check.detail.splitlines():
                out.print(f"    [dim]{escape(line)}[/]")
        if check.fix and check.status in ("warn", "fail"):
            out.print(f"    [{colour}]fix:[/] {escape(check.fix)}")
    counts = report.counts
    verdict = "[green]nothing failed[/]" if report.ok else f"[red]{counts['fail']} failed[/]"
    latency = f"; gateway {report.gateway_latency_ms:.0f} ms" if report.gateway_latency_ms is not None else ""
    out.print(
        f"{verdict}: {counts['ok']} ok, {counts['warn']} warning(s), {counts['skipped']} skipped "
        f"in {report.duration_ms / 1000:.1f} s{latency}"
    )


def run(args: argparse.Namespace) -> int:
    report = asyncio.run(run_doctor(args.project_dir, probe=args.probe))
    if args.json:
        print_json(report.model_dump(mode="json"))
    else:
        render(report)
    return report.exit_code
