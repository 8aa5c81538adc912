"""``nexus-agents orchestrate``: delegate one task through OpenCode and watch it happen.

Prints the events live (text as it streams, tool calls, step finishes with tokens, retries,
permission questions, fallbacks) and exits 0 only when a model finished the task; otherwise it
prints the classified cause and its fix and exits 1. ``--json`` prints one JSON object per event
(text deltas included), then a ``result`` object with the ``session_id`` that ``--continue`` takes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus_core.errors import NexusError
from nexus_core.opencode.defaults import DEFAULT_MAX_GATEWAY_RETRIES, DEFAULT_STALL_TIMEOUT_S, DEFAULT_TIMEOUT_S

# Only what the parser and the server's head start need is imported here: the rest (pydantic
# models, routing, the store) loads in a thread while OpenCode starts (see _orchestrate).
if TYPE_CHECKING:
    from nexus_core.cli.stream import Printer
    from nexus_core.opencode.head_start import HeadStart
    from nexus_core.opencode.serve.server import ServerPool
    from nexus_core.routing.chain import DelegationResult, DelegationSpec
    from nexus_core.routing.registry import ModelProfile
    from nexus_core.routing.snapshot import RoutingSnapshot
    from nexus_core.routing.workdir import WorkdirConfig
    from nexus_core.store.recorder import DelegationRecorder
    from nexus_core.store.runs import RunStore

    ChainFor = Callable[[str | None], tuple[tuple[ModelProfile, ...], str]]
    # Starts the run's record once its spec (and so its chain) is known; None: nothing is recorded.
    RecordFor = Callable[[DelegationSpec], DelegationRecorder | None]

MAX_STDIN_TASK_BYTES = 16 * 1024 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL = re.compile(r"^https?://[^\s/]+")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "orchestrate",
        help="delegate a task to a model through OpenCode, with fallbacks",
        description="Delegate a task through OpenCode (a session on `opencode serve`, or `opencode run`). The task "
        "is the arguments, or stdin when there are none; `--` ends the options so a task may start with '-'.",
    )
    p.add_argument("task", nargs="*", help="the task (default: read from stdin)")
    p.add_argument("--model", "-m", help="registry id, alias, or provider/model (default: the routing choice)")
    p.add_argument("--variant", help="reasoning effort: high, max or minimal (anything else is ignored)")
    p.add_argument("--thinking", action="store_true", help="ask OpenCode for the model's thinking blocks")
    p.add_argument("--dir", dest="workdir", help="the directory the task works in (default: the current one)")
    p.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds for the whole delegation (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--stall-timeout",
        type=_positive,
        default=DEFAULT_STALL_TIMEOUT_S,
        metavar="S",
        help=f"seconds without an event before an attempt counts as stalled (default {DEFAULT_STALL_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=DEFAULT_MAX_GATEWAY_RETRIES,
        metavar="N",
        help=f"gateway retries OpenCode may make before the attempt fails (default {DEFAULT_MAX_GATEWAY_RETRIES})",
    )
    p.add_argument("--no-fallback", action="store_true", help="try only the chosen model")
    p.add_argument("--json", action="store_true", help="print NDJSON events and a final result object")
    p.add_argument(
        "--transport",
        choices=("serve", "run"),
        default="serve",
        help="serve (default): a session on `opencode serve`, text as it streams; run: one `opencode run` per attempt",
    )
    p.add_argument(
        "--continue",
        dest="continue_session",
        metavar="SESSION",
        help="send the task as a follow-up into this session (the session_id of an earlier result)",
    )
    p.add_argument(
        "--approve",
        action="append",
        default=[],
        metavar="PERMISSION",
        help="answer OpenCode's permission questions for this one `once` (bash, edit, webfetch, …, or all); repeatable",
    )
    p.add_argument("--attach", metavar="URL", help="run on this `opencode serve` (local or remote); never ended")
    p.add_argument("--password-env", metavar="VAR", help="the variable that holds the attached server's password")
    p.add_argument("--no-history", action="store_true", help="do not record this run, nor route by observed outcomes")
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


def choose_chain(
    snapshot: RoutingSnapshot, task: str, hint: str | None, *, fallback: bool = True
) -> tuple[tuple[ModelProfile, ...], str]:
    """The models to try, first to last, and why the first one (the core's planner decides:
    :func:`~nexus_core.routing.planner.plan_delegation`, as the MCP tools do)."""
    from nexus_core.routing.planner import plan_delegation

    plan = plan_delegation(snapshot, task, hint, fallback=fallback)
    return plan.chain, plan.why


async def _delegate(
    fields: dict[str, Any],
    chain_for: ChainFor,
    as_json: bool,
    printer: Printer,
    record_for: RecordFor,
    pool: ServerPool | None = None,
) -> DelegationResult | None:
    """Route (a follow-up takes its session's model unless one was asked for), then run and print
    (on ``pool``'s server when given: the one started ahead)."""
    from nexus_core.cli.stream import json_line
    from nexus_core.diagnosis.known import known_cause_for
    from nexus_core.opencode.transport import ServeLease, session_model
    from nexus_core.routing.chain import Delegation, DelegationSpec
    from nexus_core.store.recorder import recorded

    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    # SIGHUP (the terminal closed, the SSH session dropped) ends the run like SIGTERM: OpenCode runs in
    # its own session, so nothing else would stop it.
    stop_signals = (signal.SIGTERM, signal.SIGHUP)
    if task is not None:
        for stop_signal in stop_signals:
            loop.add_signal_handler(stop_signal, task.cancel)
    # A follow-up's session is checked (and its model read) on the server the delegation then uses:
    # the lease holds it (one pool, refcounted) until the delegation is done.
    lease = None
    try:
        session_model_name = None
        if fields.get("session_id"):
            password = fields.get("attach_password")
            lease = ServeLease.of(
                fields.get("workdir"),
                attach_url=fields.get("attach_url"),
                attach_password=password.get_secret_value() if password else None,
                pool=pool,
            )
            session_model_name = await session_model(await lease.client(), fields["session_id"])
        chain, why = chain_for(session_model_name)
        if not as_json:
            print(f"{why}; chain: {' → '.join(m.id for m in chain)}", file=sys.stderr, flush=True)
            known = fields.get("known_causes") or {}
            for cause in {id(c): c for m in chain if (c := known_cause_for(m.cli_model_name, known))}.values():
                print(f"note: {cause.summary}. {cause.fix}.", file=sys.stderr, flush=True)
        spec = DelegationSpec(chain=chain, **fields)
        recorder = record_for(spec)
        async with Delegation(spec, pool=lease.pool if lease else pool) as delegation:
            async for event in recorded(delegation.events(), recorder, delegation):
                if as_json:
                    json_line(event.model_dump(mode="json"))
                else:
                    printer(event)
        return delegation.result
    finally:
        if lease is not None:
            await lease.aclose()
        for stop_signal in stop_signals:
            loop.remove_signal_handler(stop_signal)


def _serve_options(args: argparse.Namespace) -> dict[str, object]:
    """The serve-only options as DelegationSpec fields, or one sentence on what is wrong."""
    from nexus_core.opencode.transport import check_permissions

    serve_only = [
        flag
        for flag, value in (
            ("--continue", args.continue_session),
            ("--approve", args.approve),
            ("--attach", args.attach),
            ("--password-env", args.password_env),
        )
        if value
    ]
    if args.transport == "run":
        if serve_only:
            raise NexusError(f"{serve_only[0]} needs the serve transport", "Leave out --transport run")
        return {"transport": "run"}
    options: dict[str, object] = {"transport": "serve", "approve": check_permissions(args.approve)}
    if args.continue_session:
        options["session_id"] = args.continue_session.strip()
    if args.password_env and not args.attach:
        raise NexusError("--password-env is for an attached server", "Add --attach URL")
    if args.attach:
        if not _URL.match(args.attach):
            raise NexusError(f"{args.attach!r} is not a server URL", "Pass one like http://127.0.0.1:4096")
        options["attach_url"] = args.attach
        if args.password_env:
            if not _ENV_NAME.match(args.password_env):
                raise NexusError(f"{args.password_env!r} is not a variable name", "Pass a name like OPENCODE_PASSWORD")
            password = os.environ.get(args.password_env)
            if not password:
                raise NexusError(f"{args.password_env} is not set", f"Export {args.password_env} with the password")
            from pydantic import SecretStr

            options["attach_password"] = SecretStr(password)
    return options


def _workdir_config(project_dir: str | None, workdir: Path | None, snapshot: RoutingSnapshot) -> WorkdirConfig | None:
    """The working directory's config against the project's (None: no --dir, or the project's does not load)."""
    from nexus_core.config.loader import ConfigError
    from nexus_core.routing.workdir import workdir_config

    if workdir is None:
        return None
    try:
        return workdir_config(project_dir, workdir, os.environ, workdir_loaded=snapshot.config)
    except ConfigError:
        return None


@dataclass
class _Plan:
    """A delegation made ready: what ``_delegate`` takes, and what the verdict is explained with."""

    fields: dict[str, Any]
    chain_for: ChainFor
    printer: Printer
    record_for: RecordFor
    store: RunStore | None
    where: WorkdirConfig | None
    runs: list[DelegationRecorder]
    first_name: str | None  # the first attempt's OpenCode model name (None: a follow-up's, known later)


def _plan(args: argparse.Namespace, task: str, workdir: Path | None) -> _Plan:
    """Everything before OpenCode is asked: the options checked, the routing snapshot, the chain
    (a bad --model is refused here), the history store."""
    from nexus_core.cli.stream import Printer
    from nexus_core.diagnosis.known import known_causes
    from nexus_core.routing.snapshot import build_snapshot
    from nexus_core.store.recorder import DelegationRecorder, history_store, routing_for

    options = _serve_options(args)
    if options["transport"] == "serve":
        # Loaded here, while the server starts, rather than on the event loop's thread when it
        # first answers (its warm-up, on the delegation's critical path): the HTTP stack, the serve
        # session, and anyio's asyncio backend, which httpx's transport would load on its first
        # request (0.04 s there). A zero-length anyio run in this thread loads the backend.
        import anyio
        import httpx  # noqa: F401

        import nexus_core.opencode.serve.session  # noqa: F401

        anyio.run(anyio.sleep, 0)
    snapshot = build_snapshot(str(workdir) if workdir else args.project_dir, history=False if args.no_history else None)
    known = known_causes(snapshot.config, os.environ)
    where = _workdir_config(args.project_dir, workdir, snapshot)
    if where is not None and where.difference:
        # Said before routing: a "no model is available" that follows comes from that directory's config.
        print(f"note: {where.difference}.", file=sys.stderr, flush=True)

    def chain_for(session_model_name: str | None) -> tuple[tuple[ModelProfile, ...], str]:
        if args.continue_session:
            # A follow-up stays in its session: one model, no fallbacks.
            chain, why = choose_chain(snapshot, task, args.model or session_model_name, fallback=False)
            return chain, f"a follow-up in session {args.continue_session} ({why})"
        return choose_chain(snapshot, task, args.model, fallback=not args.no_fallback)

    first_name = None
    if not args.continue_session:
        first_name = chain_for(None)[0][0].cli_model_name  # a bad --model is refused before any attempt
    fields = dict(
        prompt=task,
        variant=args.variant,
        thinking=args.thinking,
        workdir=workdir,
        timeout_s=args.timeout,
        stall_timeout_s=args.stall_timeout,
        max_gateway_retries=args.max_retries,
        stats_interval_s=1.0 if args.json else None,
        **options,
        known_causes=known,
    )
    store = None if args.no_history else history_store()
    runs: list[DelegationRecorder] = []

    def record_for(spec: DelegationSpec) -> DelegationRecorder | None:
        if store is None:
            return None
        decision = routing_for(snapshot, task, args.model)
        recorder = DelegationRecorder.begin(store, spec, decision=decision, source="cli", project=args.project_dir)
        runs.append(recorder)
        if not args.json:
            print(f"run {recorder.run_id} (nexus-agents runs show {recorder.run_id})", file=sys.stderr, flush=True)
        return recorder

    printer = Printer(sys.stdout, sys.stderr, thinking=args.thinking)
    return _Plan(fields, chain_for, printer, record_for, store, where, runs, first_name)


async def _orchestrate(
    args: argparse.Namespace, task: str, workdir: Path | None
) -> tuple[DelegationResult | None, _Plan]:
    """Plan, then delegate. On the serve transport the managed server is started first: its start
    (a second or more) then covers the planning and the imports it needs, which run meanwhile in
    a thread, instead of coming after them. The server is spawned from this thread, the event
    loop's, as the pool requires."""
    pool: ServerPool | None = None
    head: asyncio.Task[Any] | None = None
    run_head: HeadStart | None = None
    if args.transport == "serve" and not args.attach:
        from nexus_core.opencode.serve.server import ServerPool

        pool = ServerPool()
        head = asyncio.create_task(pool.acquire(workdir or Path.cwd()))
    elif args.transport == "run" and args.model:
        # `opencode run` for a model named outright starts now and waits for its prompt; the first
        # attempt takes it over when the plan made it the same run (see nexus_core.opencode.head_start).
        from nexus_core.opencode import head_start

        run_head = await head_start.HeadStart.begin(
            args.model.strip(), variant=args.variant, thinking=args.thinking, workdir=workdir
        )
        head_start.CURRENT.set(run_head)
    try:
        plan = await asyncio.to_thread(_plan, args, task, workdir)
        if args.transport == "run" and args.model and plan.first_name and plan.store is not None:
            from nexus_core.opencode.head_start import remember_name

            remember_name(args.model, workdir or Path.cwd(), plan.first_name)  # the next run's head start
        try:
            result = await _delegate(plan.fields, plan.chain_for, args.json, plan.printer, plan.record_for, pool)
        finally:
            if plan.store is not None:
                plan.store.close()  # the run's queued writes are committed before the process ends
        return result, plan
    finally:
        if run_head is not None:
            await run_head.aclose()  # not taken: the plan chose another model, or failed
        if head is not None:
            head.cancel()  # a start still under way (the plan failed) is ended, its tree with it
            # A failed head start is the delegation's to report: its own start fails alike, with its verdict.
            await asyncio.gather(head, return_exceptions=True)
        if pool is not None:
            await pool.aclose()


def run(args: argparse.Namespace) -> int:
    task = _task_text(args)
    workdir = Path(args.workdir).resolve() if args.workdir else None
    if workdir is not None and not workdir.is_dir():
        raise NexusError(f"the directory {args.workdir} does not exist", "Pass an existing directory to --dir")
    if args.max_retries < 0:
        raise NexusError("--max-retries must be 0 or more", "Pass a whole number such as 3")
    try:
        result, plan = asyncio.run(_orchestrate(args, task, workdir))
    except asyncio.CancelledError:
        if not args.json:
            print("nexus-agents: cancelled; OpenCode was stopped.", file=sys.stderr)
        return 130
    if result is None:
        return 130
    from nexus_core.cli.stream import json_line
    from nexus_core.routing.last_word import last_word
    from nexus_core.routing.workdir import explain_result

    result = explain_result(result, plan.where)
    if args.json:
        json_line(
            {
                "kind": "result",
                "run_id": plan.runs[0].run_id if plan.runs else None,
                **result.summary(),
                "last_word": last_word(result, args.timeout),
            }
        )
    else:
        plan.printer.result(result, args.timeout)
    return 0 if result.ok else 1
