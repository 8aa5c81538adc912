"""``nexus-agents route``: which model a task goes to, its fallback chain, and why (``--explain``).

``--probe`` first runs the doctor's checks and probes (``doctor --probe``) and routes with the
result: a model whose gateway is down, whose key is missing, that the gateway does not serve or
whose probe failed is skipped with that reason (:mod:`nexus_core.routing.health`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from nexus_core.cli._common import console, print_json
from nexus_core.errors import NexusError
from nexus_core.routing.profile import profile_task
from nexus_core.routing.score import RoutingDecision, route
from nexus_core.routing.snapshot import RoutingSnapshot, build_snapshot
from nexus_core.routing.weights import TERM_NAMES

MAX_TASK_BYTES = 8 * 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("route", help="choose a model for a task and show why")
    p.add_argument("task", help='the task text ("-" reads it from stdin)')
    p.add_argument("--model", dest="hint", default=None, help="force a model by id, alias or CLI model name")
    p.add_argument("--explain", action="store_true", help="show the score breakdown and the skipped models")
    p.add_argument("--json", action="store_true", help="print JSON (every model's terms and total)")
    p.add_argument("--top", type=int, default=5, metavar="N", help="rows in the --explain table (default 5)")
    for dim in ("reasoning", "code", "speed", "cost"):
        p.add_argument(
            f"--{dim}",
            type=float,
            default=None,
            metavar="0-10",
            help=f"how much {dim} matters (replaces the derived emphasis)",
        )
    p.add_argument("--context", type=int, default=None, metavar="TOKENS", help="context window the task needs")
    p.add_argument("--no-history", action="store_true", help="leave out the observed term (the run store)")
    p.add_argument(
        "--probe",
        action="store_true",
        help="run the doctor's checks and probes first and route with the result (unavailable models say why)",
    )
    p.set_defaults(handler=run)


def _task_text(raw: str) -> str:
    text = sys.stdin.read(MAX_TASK_BYTES + 1) if raw == "-" else raw
    if len(text) > MAX_TASK_BYTES:
        raise NexusError(
            f"the task is longer than {MAX_TASK_BYTES // (1024 * 1024)} MiB",
            "Shorten it or point the model at files instead",
        )
    if not text.strip():
        raise NexusError("the task is empty", 'Pass the task text, e.g. nexus-agents route "fix the failing test"')
    return text


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise NexusError(f"--top must be at least 1, not {args.top}", "Pass --top 5, for example")
    text = _task_text(args.task)
    profile = profile_task(
        text, reasoning=args.reasoning, code=args.code, speed=args.speed, cost=args.cost, context=args.context
    )
    snapshot = build_snapshot(args.project_dir, history=False if args.no_history else None)
    health: dict[str, Any] | None = None
    if args.probe:
        snapshot, health = _probed(snapshot)
    decision = route(snapshot, profile, args.hint)
    if args.json:
        print_json(decision.as_dict() | ({"health": health} if health is not None else {}))
    else:
        if health is not None:
            _print_health(health)
        _print(decision, args.explain or args.probe, args.top)
    return 0 if decision.chosen else 1


def _probed(snapshot: RoutingSnapshot) -> tuple[RoutingSnapshot, dict[str, Any]]:
    """``snapshot`` routed with a fresh ``doctor --probe`` (its gateways' model lists and health marks)."""
    from nexus_core.doctor.checks import run_doctor
    from nexus_core.routing.health import apply_health, gateway_models_of, health_marks

    report = asyncio.run(run_doctor(snapshot.directory, probe=True))
    for provider_id, model_ids in gateway_models_of(report).items():
        snapshot = snapshot.with_gateway_models(provider_id, model_ids)
    marks = health_marks(report, snapshot)
    failing = [c for c in report.checks if c.status == "fail"]
    summary = {
        "ok": report.ok,
        "counts": report.counts,
        "failing": [{"id": c.id, "summary": c.summary, "fix": c.fix} for c in failing],
        "unavailable": dict(marks.unavailable),
    }
    return apply_health(snapshot, marks), summary


def _print_health(health: dict[str, Any]) -> None:
    out = console()
    counts = health["counts"]
    verdict = "[green]nothing failed[/]" if health["ok"] else f"[red]{counts['fail']} failed[/]"
    out.print(
        f"[bold]Health:[/] {verdict}, {counts['warn']} warning(s) "
        f"(`nexus-agents doctor --probe` shows every check); "
        f"{len(health['unavailable'])} model(s) unavailable"
    )


def _print(decision: RoutingDecision, explain: bool, top: int) -> None:
    out = console()
    chosen = decision.chosen
    if chosen is None:
        out.print(f"[bold red]No model chosen[/]: {escape(decision.reason)}.")
    else:
        out.print(
            f"[bold]Chosen:[/] {escape(chosen.id)} ({escape(str(chosen.model.cli_model_name))}), score {chosen.total} — {escape(decision.reason)}"
        )
        out.print(f"[bold]Fallback chain:[/] {escape(' → '.join(m.id for m in decision.chain))}")
    if not explain:
        if decision.skipped and chosen is None:
            _print_skipped(decision)
        return
    p = decision.profile
    weights = ", ".join(f"{d} {w:.3f}" for d, w in p.weights.items())
    keywords = "; ".join(f"{d}: {', '.join(k)}" for d, k in p.keywords.items() if k) or "none"
    out.print(
        f"[bold]Task:[/] {p.size}, ~{p.token_estimate:,} tokens, needs ~{p.context_tokens:,} tokens of context; keywords: {keywords}"
    )
    out.print(f"[bold]Weights:[/] {weights}")
    if decision.ranked:
        table = Table(
            title=f"Score breakdown (top {min(top, len(decision.ranked))} of {len(decision.ranked)})",
            title_justify="left",
        )
        table.add_column("#", justify="right")
        table.add_column("model", no_wrap=True)
        for name in TERM_NAMES:
            table.add_column(name, justify="right")
        table.add_column("total", justify="right", style="bold")
        for rank, scored in enumerate(decision.ranked[:top], 1):
            table.add_row(str(rank), Text(scored.id), *(str(t.value) for t in scored.terms), str(scored.total))
        out.print(table)
        seen = [(s.id, s.term("observed")) for s in decision.ranked[:top] if s.term("observed").value]
        if seen:
            out.print("[bold]Observed:[/]")
            for model_id, term in seen:
                out.print(f"  {escape(model_id)} {term.value:+d}: {escape(term.detail)}")
    _print_skipped(decision)


def _print_skipped(decision: RoutingDecision) -> None:
    out = console()
    if not decision.skipped:
        return
    out.print("[bold]Skipped:[/]")
    for skipped in decision.skipped:
        out.print(f"  {escape(skipped.id)}: {escape(skipped.reason)}")
