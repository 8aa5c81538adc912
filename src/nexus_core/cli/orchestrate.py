"""``nexus-agents orchestrate``: delegate one task through OpenCode and watch it happen.

Prints the events live (text, tool calls, step finishes with tokens, retries, fallbacks) and
exits 0 only when a model finished the task; otherwise it prints the classified cause and
its fix and exits 1. ``--json`` prints one JSON object per event, then a ``result`` object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
from pathlib import Path
from typing import TextIO

from nexus_core.adapter import DEFAULT_MAX_GATEWAY_RETRIES, DEFAULT_STALL_TIMEOUT_S, DEFAULT_TIMEOUT_S
from nexus_core.errors import NexusError
from nexus_core.events import (
    AttemptFinished,
    AttemptStarted,
    ErrorEvent,
    FailureClass,
    FallbackTaken,
    GatewayRetrying,
    OutputLine,
    Reasoning,
    RunEvent,
    StepFinish,
    Text,
    ToolUse,
)
from nexus_core.registry import CLI_MODEL_RE, ModelProfile
from nexus_core.routing import RoutingSnapshot, build_snapshot, fallback_chain, profile_task, resolve_hint, route
from nexus_core.runs import Delegation, DelegationResult, DelegationSpec, chain_of

MAX_STDIN_TASK_BYTES = 16 * 1024 * 1024
STDERR_LINES_SHOWN = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "orchestrate",
        help="delegate a task to a model through OpenCode, with fallbacks",
        description="Delegate a task through `opencode run`. The task is the arguments, or stdin when there are "
        "none; `--` ends the options so a task may start with '-'.",
    )
    p.add_argument("task", nargs="*", help="the task (default: read from stdin)")
    p.add_argument("--model", "-m", help="registry id, alias, or provider/model (default: the routing choice)")
    p.add_argument("--variant", help="reasoning effort: high, max or minimal (anything else is ignored)")
    p.add_argument("--thinking", action="store_true", help="ask OpenCode for the model's thinking blocks")
    p.add_argument("--dir", dest="workdir", help="the directory the task works in (default: the current one)")
    p.add_argument("--timeout", type=_positive, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds for the whole delegation (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--stall-timeout", type=_positive, default=DEFAULT_STALL_TIMEOUT_S, metavar="S",
                   help=f"seconds without an event before an attempt counts as stalled (default {DEFAULT_STALL_TIMEOUT_S:g})")
    p.add_argument("--max-retries", type=int, default=DEFAULT_MAX_GATEWAY_RETRIES, metavar="N",
                   help=f"gateway retries OpenCode may make before the attempt fails (default {DEFAULT_MAX_GATEWAY_RETRIES})")
    p.add_argument("--no-fallback", action="store_true", help="try only the chosen model")
    p.add_argument("--json", action="store_true", help="print NDJSON events and a final result object")
    p.set_defaults(handler=run)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds more than 0")
    return value


def _task_text(args: argparse.Namespace) -> str:
    if args.task:
        task = " ".join(args.task)
    elif sys.stdin is None or sys.stdin.isatty():
        raise NexusError("no task was given", 'Pass it as an argument (nexus-agents orchestrate "task") or on stdin')
    else:
        task = sys.stdin.read(MAX_STDIN_TASK_BYTES + 1)
        if len(task) > MAX_STDIN_TASK_BYTES:
            raise NexusError(f"the task on stdin is over {MAX_STDIN_TASK_BYTES // (1024 * 1024)} MiB", "Shorten it")
    if not task.strip():
        raise NexusError("the task is empty", "Pass the task as an argument or on stdin")
    return task


def _adhoc(cli_model_name: str) -> ModelProfile:
    provider = cli_model_name.split("/", 1)[0]
    return ModelProfile(id=cli_model_name, name=cli_model_name, provider=provider, cli_model_name=cli_model_name,
                        source="opencode.json")


def choose_chain(snapshot: RoutingSnapshot, task: str, hint: str | None, *, fallback: bool = True) -> tuple[tuple[ModelProfile, ...], str]:
    """The models to try, first to last, and why the first one.

    A hint (id, alias or CLI model name) is always tried first, available or not, so that a
    model asked for is never silently replaced; a ``provider/model`` the registry does not know
    is tried alone. Without a hint the routing core chooses. Fallbacks are the routing core's
    chain for the first model (unavailable ones left out).
    """
    if hint and snapshot.registry.find(hint) is None and CLI_MODEL_RE.match(hint.strip()):
        return (_adhoc(hint.strip()),), f"asked for {hint.strip()} (not in the registry: no fallbacks)"
    if hint:
        first = resolve_hint(snapshot, hint)
        chain, why = fallback_chain(snapshot, first.id), f"asked for {hint!r}"
    else:
        decision = route(snapshot, profile_task(task))
        chosen = decision.chosen_or_raise()
        chain, why = list(decision.chain) or [chosen.model], f"routed: {decision.reason}"
    return chain_of(chain if fallback else chain[:1]), why


class _Printer:
    """Readable live output: the answer on stdout, progress and causes on stderr."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, AttemptStarted):
            name = f"{event.model_id} ({event.cli_model_name})" if event.model_id and event.model_id != event.cli_model_name else event.cli_model_name
            self.note(f"→ attempt {event.attempt}: {name}")
        elif isinstance(event, Text):
            print(event.text, file=self.out, flush=True)
        elif isinstance(event, Reasoning):
            self.note(f"  thinking: {event.text}")
        elif isinstance(event, ToolUse):
            mark = "✓" if event.status == "completed" else "✗"
            title = event.title or json.dumps(event.input)[:120]
            self.note(f"  {mark} {event.tool} {title}" + (f": {event.error}" if event.error else ""))
        elif isinstance(event, StepFinish):
            t = event.tokens
            cost = f" · ${event.cost:.4f}" if event.cost else ""
            self.note(f"  step finished ({event.reason}) · tokens in {t.input} / out {t.output}"
                      + (f" / reasoning {t.reasoning}" if t.reasoning else "") + cost)
        elif isinstance(event, ErrorEvent):
            self.note(f"  error from OpenCode: {event.message}")
        elif isinstance(event, GatewayRetrying):
            self.note(f"  … the gateway is being retried by OpenCode (retry {event.retry}): {event.message}")
        elif isinstance(event, OutputLine):
            self.note(f"  {event.line}")
        elif isinstance(event, AttemptFinished) and not event.outcome.ok:
            self.note(f"✗ attempt {event.attempt} failed ({event.outcome.failure}): {event.outcome.message}")
        elif isinstance(event, FallbackTaken):
            self.note(f"↪ falling back from {event.from_model} to {event.to_model} ({event.reason})")

    def result(self, result: DelegationResult) -> None:
        final = result.final
        if result.ok:
            self.note(f"✓ done in {result.duration_s:.1f} s by {final.model_id or final.cli_model_name}")
        else:
            if result.outcome.failure is FailureClass.FAILED:
                for line in final.stderr_tail.splitlines()[-STDERR_LINES_SHOWN:]:
                    self.note(f"  opencode: {line[:300]}")
            self.note(f"✗ failed ({result.outcome.failure}): {result.outcome.sentence()}")


def _json_line(data: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


async def _delegate(spec: DelegationSpec, as_json: bool) -> DelegationResult | None:
    printer = _Printer(sys.stdout, sys.stderr)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    # SIGHUP (the terminal closed, the SSH session dropped) ends the run like SIGTERM: OpenCode runs in
    # its own session, so nothing else would stop it.
    stop_signals = (signal.SIGTERM, signal.SIGHUP)
    if task is not None:
        for stop_signal in stop_signals:
            loop.add_signal_handler(stop_signal, task.cancel)
    try:
        async with Delegation(spec) as delegation:
            async for event in delegation.events():
                if as_json:
                    _json_line(event.model_dump(mode="json"))
                else:
                    printer(event)
        return delegation.result
    finally:
        for stop_signal in stop_signals:
            loop.remove_signal_handler(stop_signal)


def run(args: argparse.Namespace) -> int:
    task = _task_text(args)
    workdir = Path(args.workdir).resolve() if args.workdir else None
    if workdir is not None and not workdir.is_dir():
        raise NexusError(f"the directory {args.workdir} does not exist", "Pass an existing directory to --dir")
    if args.max_retries < 0:
        raise NexusError("--max-retries must be 0 or more", "Pass a whole number such as 3")
    snapshot = build_snapshot(str(workdir) if workdir else args.project_dir)
    chain, why = choose_chain(snapshot, task, args.model, fallback=not args.no_fallback)
    if not args.json:
        print(f"{why}; chain: {' → '.join(m.id for m in chain)}", file=sys.stderr, flush=True)
    spec = DelegationSpec(
        prompt=task, chain=chain, variant=args.variant, thinking=args.thinking, workdir=workdir,
        timeout_s=args.timeout, stall_timeout_s=args.stall_timeout, max_gateway_retries=args.max_retries,
        stats_interval_s=1.0 if args.json else None,
    )
    try:
        result = asyncio.run(_delegate(spec, args.json))
    except asyncio.CancelledError:
        if not args.json:
            print("nexus-agents: cancelled; OpenCode was stopped.", file=sys.stderr)
        return 130
    if result is None:
        return 130
    if args.json:
        _json_line({"kind": "result", **result.summary()})
    else:
        _Printer(sys.stdout, sys.stderr).result(result)
    return 0 if result.ok else 1
