"""Run one ``opencode run`` attempt: argv, environment, live typed events, bounded waits, classified outcome.

    spec = AttemptSpec(cli_model_name="custom/claude-sonnet-4-5", prompt="Fix the failing test")
    async with Attempt(spec) as attempt:
        async for event in attempt.events():
            ...
    attempt.result.outcome   # success, or a FailureClass with a one-line message and fix

What OpenCode 1.2.15 does, and what the adapter does about it:

* The prompt goes on **stdin**, then stdin is closed: argv has a 128 KiB per-argument limit,
  and ``opencode run "--help"`` prints help instead of sending it. No positional message is
  passed, so OpenCode sends ``"\\n" + prompt`` (it joins the positional words and stdin with a
  newline).
* ``--model`` is always passed: a model asked for is never silently replaced by the config's
  default. ``--variant`` is passed only when it is one of :data:`VARIANT_ALLOWLIST`.
* It exits 0 on most failures (401, unknown model, connection refused): the ``error`` event
  is the truth, and an attempt succeeds only on a terminal ``step_finish`` with reason
  ``stop`` (or ``length`` with some text).
* On 5xx, 429 and dropped connections it retries forever and prints nothing on stdout. The
  adapter runs it with ``--print-logs --log-level ERROR``: every failed model request then
  writes one ``ERROR … service=session.processor error=<message> … process`` line to stderr.
  Such a line not followed by an ``error`` event within :data:`RETRY_SETTLE_S` is a retry:
  the adapter yields :class:`~nexus_core.opencode.events.GatewayRetrying`; when the request fails once
  more after ``max_gateway_retries`` retries (or at the stall timeout) it ends the attempt with
  the class the message implies (rate limited, connection, cut stream, gateway error).
* The npm launcher ``bin/opencode`` (node) only starts the real binary; the adapter starts that
  binary itself (:func:`native_opencode`). OpenCode may spawn MCP servers and tools. The
  attempt runs in its own session (process group); ending it signals the group and every
  descendant: SIGTERM, a grace period, SIGKILL. A process-wide ``atexit`` hook kills any group
  still registered, so an interrupted parent leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from nexus_core.config.loader import config_secrets
from nexus_core.errors import NexusError
from nexus_core.opencode import head_start, lifeline, process
from nexus_core.opencode.argv import (
    ATTEMPT_VAR,
    DEPTH_VAR,
    VARIANT_ALLOWLIST,
    allowed_variant,
    build_argv,
    check_model_name,
    child_env,
    opencode_database,
)
from nexus_core.opencode.classify import (
    FIXES,
    PROCESSOR_ERROR,
    STREAM_ERROR_1_18,
    classify_error,
    one_line,
    retry_class,
)
from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    ErrorEvent,
    FailureClass,
    GatewayRetrying,
    Outcome,
    OutputLine,
    ProcessStats,
    RunEvent,
    StepStart,
    Text,
    parse_line,
)
from nexus_core.opencode.locate import find_opencode, native_opencode
from nexus_core.opencode.outcome import Progress, StderrTail, Verdict, final_verdict, retry_verdict
from nexus_core.opencode.process import LIVE_GROUPS, TERMINATE_GRACE_S
from nexus_core.opencode.spec import (
    DEFAULT_MAX_GATEWAY_RETRIES,
    DEFAULT_STALL_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    AttemptResult,
    AttemptSpec,
)
from nexus_core.secrets import Redactor
from nexus_core.wording import seconds

__all__ = [
    "ATTEMPT_VAR",
    "DEFAULT_MAX_GATEWAY_RETRIES",
    "DEFAULT_STALL_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "DEPTH_VAR",
    "VARIANT_ALLOWLIST",
    "Attempt",
    "AttemptResult",
    "AttemptSpec",
    "allowed_variant",
    "build_argv",
    "check_model_name",
    "child_env",
    "classify_error",
    "find_opencode",
    "native_opencode",
    "run_attempt",
]

# The names these had before the split, still imported by nexus_core.opencode.serve.session.
_FIXES, _one_line, _retry_class = FIXES, one_line, retry_class

log = logging.getLogger(__name__)

# Time for OpenCode to turn a failed request into an `error` event; a failure without one is a retry.
RETRY_SETTLE_S = 0.5
# After stdout closes OpenCode has nothing left to say; it gets this long to exit on its own.
EXIT_AFTER_EOF_S = 10.0
STDERR_DRAIN_S = 2.0
# OpenCode runs started together in a fresh HOME race to migrate one SQLite database; a loser
# exits with "database is locked" before doing anything and is simply started again.
BUSY_RELAUNCHES = 2
BUSY_RELAUNCH_DELAY_S = 1.0
# Losers of that race do not always say "database is locked", so the race is avoided too: the
# first run of a data directory with no database yet starts alone, and runs beside it wait (at
# most this long) until it has written its first event or ended.
FIRST_RUN_WAIT_S = 30.0
EVENT_QUEUE_SIZE = 1024
# An attempt's result keeps its first events up to this many (the answer text is kept whole).
KEPT_EVENTS_LIMIT = 20_000
# A gateway that answers 200 with something that is not a chat completion (an HTML login page)
# makes OpenCode loop forever on empty steps; this many in a row end the attempt.
EMPTY_STEP_LIMIT = 3

_FIRST_RUNS: dict[tuple[int, str], asyncio.Lock] = {}


class Attempt:
    """One ``opencode run`` for one model. Use as ``async with``; iterate :meth:`events` once.

    Leaving the ``async with`` block (normally, by an exception, or by cancellation) ends the
    whole process tree. :attr:`result` is set once the events are exhausted.
    """

    def __init__(self, spec: AttemptSpec, *, attempt: int = 1) -> None:
        check_model_name(spec.cli_model_name)
        if spec.workdir is not None and not Path(spec.workdir).is_dir():
            raise NexusError(
                f"the working directory {spec.workdir} does not exist", "Pass an existing directory to --dir"
            )
        self.spec = spec
        self.number = attempt
        self.env = {**child_env(spec.env), ATTEMPT_VAR: uuid.uuid4().hex}
        self.opencode = spec.opencode or find_opencode(self.env)
        self.argv: tuple[str, ...] = tuple(
            build_argv(
                self.opencode or "opencode",
                spec.cli_model_name,
                variant=spec.variant,
                thinking=spec.thinking,
                workdir=spec.workdir,
            )
        )
        self.result: AttemptResult | None = None
        self._redact = Redactor.from_env(self.env, config_secrets(spec.workdir, self.env))
        self._proc: asyncio.subprocess.Process | None = None
        self._lifeline: lifeline.Lifeline | None = None
        self._stderr = StderrTail()
        self._cancel = asyncio.Event()
        self._started = 0.0
        self._iterated = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._spoke = asyncio.Event()
        self._first_run: asyncio.Lock | None = None
        self._launched_at = float("inf")
        self._failed_requests = 0

    async def __aenter__(self) -> Attempt:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._end()

    @property
    def pid(self) -> int | None:
        """The pid of OpenCode (the process-group leader), while it runs."""
        return self._lifeline.child_pid if self._lifeline and self._proc else None

    def cancel(self) -> None:
        """Ask the attempt to stop: the tree is ended and the outcome is ``cancelled``."""
        self._cancel.set()

    def _elapsed(self) -> float:
        return round(time.monotonic() - self._started, 3) if self._started else 0.0

    def _outcome(
        self, failure: FailureClass | None, message: str, *, status: int | None = None, fix: str | None = None
    ) -> Outcome:
        return Outcome(
            failure=failure,
            message=self._redact(one_line(message)),
            fix=self._redact(fix) if fix else FIXES[failure] if failure else "",
            exit_code=self._proc.returncode if self._proc else None,
            duration_s=self._elapsed(),
            status_code=status,
            failed_requests=self._failed_requests,
        )

    async def events(self) -> AsyncIterator[RunEvent]:
        """OpenCode's events as they arrive, with :class:`ProcessStats` and retry notices between them.

        The first event is :class:`AttemptStarted`, the last :class:`AttemptFinished`.
        """
        if self._iterated:
            raise RuntimeError("Attempt.events() can be iterated once")
        self._iterated = True
        self._started = time.monotonic()
        spec = self.spec
        yield AttemptStarted(
            attempt=self.number, model_id=spec.model_id, cli_model_name=spec.cli_model_name, argv=self.argv
        )
        collected: list[RunEvent] = []
        answer: list[str] = []
        outcome: Outcome | None = None
        try:
            if self.opencode is None:
                outcome = self._outcome(FailureClass.OPENCODE_NOT_FOUND, "OpenCode (opencode) was not found on PATH")
            else:
                for launch in range(BUSY_RELAUNCHES + 1):
                    outcome = None
                    launched_at = len(collected)
                    run = self._run()
                    try:
                        async for event in run:
                            if isinstance(event, Outcome):
                                outcome = event
                                break
                            if isinstance(event, Text) and event.text.strip():
                                answer.append(event.text.strip())
                            if len(collected) < KEPT_EVENTS_LIMIT and not isinstance(event, ProcessStats):
                                collected.append(event)
                            yield event
                    finally:
                        await run.aclose()
                    if launch == BUSY_RELAUNCHES or not self._database_busy(outcome, collected[launched_at:]):
                        break
                    log.debug("OpenCode found its database locked by another run; starting it again")
                    await self._end()
                    self._proc, self._stderr = None, StderrTail()
                    await asyncio.sleep(BUSY_RELAUNCH_DELAY_S)
        except asyncio.CancelledError:
            outcome = self._outcome(FailureClass.CANCELLED, "the attempt was cancelled")
            raise
        finally:
            await self._end()
            if outcome is None:
                outcome = self._outcome(FailureClass.CANCELLED, "the attempt was cancelled")
            self.result = AttemptResult(
                attempt=self.number,
                cli_model_name=spec.cli_model_name,
                model_id=spec.model_id,
                argv=self.argv,
                outcome=outcome,
                text="\n\n".join(answer),
                events=tuple(collected),
                stderr_tail=self._redact(self._stderr.text()),
                session_id=next((e.session_id for e in collected if isinstance(e, StepStart) and e.session_id), None),
            )
        yield AttemptFinished(
            attempt=self.number, at=self._elapsed(), cli_model_name=spec.cli_model_name, outcome=outcome
        )

    def _database_busy(self, outcome: Outcome | None, events: list[RunEvent]) -> bool:
        """OpenCode quit at start because another run held its database, having done nothing."""
        return (
            outcome is not None
            and outcome.failure is FailureClass.FAILED
            and not any(isinstance(e, (StepStart, ErrorEvent)) for e in events)
            and "database is locked" in self._stderr.text()
            and time.monotonic() + BUSY_RELAUNCH_DELAY_S < self._started + self.spec.timeout_s
        )

    async def _launch(self) -> None:
        """Start OpenCode; the first run of a fresh data directory starts alone (see FIRST_RUN_WAIT_S)."""
        database = opencode_database(self.env)
        first_run: asyncio.Lock | None = None
        if not database.exists():
            first_run = _FIRST_RUNS.setdefault((id(asyncio.get_running_loop()), str(database)), asyncio.Lock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_run.acquire(), FIRST_RUN_WAIT_S)
            if not first_run.locked() or database.exists():
                if first_run.locked():
                    first_run.release()
                first_run = None
        try:
            taken = await head_start.take(self.argv, self.env)  # the CLI's, started while it planned
            if taken is not None:
                self._lifeline, self.env[ATTEMPT_VAR], started = taken
                self._launched_at = min(self._launched_at, started)
            else:
                self._lifeline = await head_start.spawn_run(self.argv, self.env)
            assert isinstance(self._lifeline.process, asyncio.subprocess.Process)  # spawn, not popen
            self._proc = self._lifeline.process
        except BaseException:
            if first_run is not None:
                first_run.release()
            raise
        if first_run is not None:
            self._first_run = first_run
            self._tasks.append(asyncio.create_task(self._release_when_started()))

    async def _release_when_started(self) -> None:
        assert self._proc is not None
        waits = [asyncio.ensure_future(self._spoke.wait()), asyncio.ensure_future(self._proc.wait())]
        try:
            await asyncio.wait(waits, timeout=FIRST_RUN_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            self._release_first_run()

    def _release_first_run(self) -> None:
        if self._first_run is not None:
            self._first_run.release()
            self._first_run = None

    async def _run(self) -> AsyncGenerator[RunEvent | Outcome, None]:
        spec = self.spec
        self._launched_at = min(self._launched_at, time.time())
        self._tasks = []
        self._spoke.clear()
        try:
            await self._launch()
        except OSError as exc:
            yield self._outcome(
                FailureClass.OPENCODE_NOT_FOUND, f"OpenCode could not be started ({exc.strerror or exc})"
            )
            return
        assert self._lifeline is not None
        LIVE_GROUPS.add(self._lifeline.pgid)
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(EVENT_QUEUE_SIZE)
        assert self._proc is not None
        stderr_reader = asyncio.create_task(process.read_stderr(self._proc, queue, self._stderr))
        self._tasks += [
            asyncio.create_task(process.feed_stdin(self._proc, spec.prompt)),
            asyncio.create_task(process.read_stdout(self._proc, queue, self._spoke)),
            stderr_reader,
        ]
        if spec.stats_interval_s:
            pid = self._lifeline.child_pid
            self._tasks.append(asyncio.create_task(process.sample(queue, pid, spec.stats_interval_s)))
        cancel_wait = asyncio.create_task(self._cancel.wait())
        self._tasks.append(cancel_wait)

        deadline = self._started + spec.timeout_s
        last_output = time.monotonic()
        progress = Progress()
        retry_candidate: tuple[float, str] | None = None
        settled: list[str] = []  # failed requests known to be retried, not yet announced
        stdout_done = False
        eof_at: float | None = None

        while True:
            now = time.monotonic()
            waits = [deadline, last_output + spec.stall_timeout_s]
            if retry_candidate:
                waits.append(retry_candidate[0] + RETRY_SETTLE_S)
            if eof_at is not None:
                waits.append(eof_at + EXIT_AFTER_EOF_S)
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, cancel_wait}, timeout=max(0.0, min(waits) - now), return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
            now = time.monotonic()
            if cancel_wait in done and getter not in done:
                yield self._outcome(FailureClass.CANCELLED, "the attempt was cancelled")
                return
            if getter in done:
                source, payload = getter.result()
                if source == "stdout":
                    last_output = now
                    event = parse_line(payload, attempt=self.number, at=self._elapsed())
                    if event is None:
                        continue
                    if isinstance(event, ErrorEvent):
                        body = self._redact(event.response_body) if event.response_body else None
                        event = event.model_copy(update={"message": self._redact(event.message), "response_body": body})
                        retry_candidate = None
                    elif isinstance(event, OutputLine):
                        event = event.model_copy(update={"line": self._redact(event.line)})
                    progress.see(event)
                    yield event
                    if progress.empty_steps >= EMPTY_STEP_LIMIT:
                        yield self._outcome(
                            FailureClass.GATEWAY_ERROR,
                            (
                                f"the gateway answered {progress.empty_steps} times without any model output "
                                "(OpenCode saw empty steps with reason 'unknown'): it may be sending an HTML page "
                                "or something other than OpenAI-style chat completions"
                            ),
                        )
                        return
                elif source == "stderr":
                    match = PROCESSOR_ERROR.match(payload) or STREAM_ERROR_1_18.match(payload)
                    # After an `error` event the session is over: its log line is no retry.
                    if match and not progress.errors:
                        if retry_candidate:
                            # Another request failed before any error event: OpenCode retried the
                            # first (with Retry-After: 0 it does so at once, within the settle time).
                            settled.append(retry_candidate[1])
                        retry_candidate = (now, match.group("error"))
                elif source == "stats":
                    yield payload.model_copy(update={"attempt": self.number, "at": self._elapsed()})
                elif source == "eof":
                    stdout_done = True
                    eof_at = now
                elif source == "exit":
                    break
            if retry_candidate and now >= retry_candidate[0] + RETRY_SETTLE_S:
                settled.append(retry_candidate[1])
                retry_candidate = None
            for raw in settled:
                message = self._redact(one_line(raw))
                progress.retries.append(message)
                self._failed_requests = len(progress.retries)
                failures = len(progress.retries)
                if failures > spec.max_gateway_retries:
                    yield self._verdict(retry_verdict(progress, f"{failures} requests failed in a row"))
                    return
                yield GatewayRetrying(attempt=self.number, at=self._elapsed(), retry=failures, message=message)
            settled.clear()
            if now >= deadline:
                yield self._outcome(FailureClass.TIMEOUT, f"no result within the {seconds(spec.timeout_s)} s timeout")
                return
            if now >= last_output + spec.stall_timeout_s and not stdout_done:
                if progress.retries:
                    how = f"no progress for {seconds(spec.stall_timeout_s)} s while OpenCode retried"
                    yield self._verdict(retry_verdict(progress, how))
                    return
                yield self._outcome(
                    FailureClass.STALLED, f"no event from OpenCode for {seconds(spec.stall_timeout_s)} s"
                )
                return
            if eof_at is not None and now >= eof_at + EXIT_AFTER_EOF_S:
                break
        # OpenCode has exited; its last stderr lines (a config error) may still be in the pipe.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(stderr_reader), STDERR_DRAIN_S)
        code = self._proc.returncode if self._proc else None
        yield self._verdict(final_verdict(progress, self._stderr, code))

    def _verdict(self, verdict: Verdict) -> Outcome:
        return self._outcome(verdict.failure, verdict.message, status=verdict.status, fix=verdict.fix)

    async def _end(self) -> None:
        """End the tree (when still running), reap the launcher, stop the helper tasks. Idempotent."""
        running = self._lifeline
        try:
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
            self._release_first_run()  # a helper cancelled before it ever ran cannot release it
            if self._proc is None or running is None:
                return
            await lifeline.end_tree(running, TERMINATE_GRACE_S)
            LIVE_GROUPS.discard(running.pgid)
            await asyncio.to_thread(process.kill_orphans, self.env[ATTEMPT_VAR], self._launched_at)
        finally:
            # Cut short (a caller cancelled again mid-way, as anyio does at every await of a cancelled
            # scope): dropping the line makes the supervisor end the group all the same.
            if running is not None:
                running.close()


async def run_attempt(spec: AttemptSpec, *, attempt: int = 1) -> AttemptResult:
    """Run one attempt to its end and return its result (events included)."""
    async with Attempt(spec, attempt=attempt) as running:
        async for _ in running.events():
            pass
    assert running.result is not None
    return running.result
