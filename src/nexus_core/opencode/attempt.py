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
import atexit
import contextlib
import logging
import os
import re
import signal
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field

from nexus_core.config.loader import config_secrets
from nexus_core.diagnosis import classify
from nexus_core.diagnosis.opencode import diagnose_error
from nexus_core.errors import NexusError
from nexus_core.opencode import lifeline
from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    ErrorEvent,
    FailureClass,
    GatewayRetrying,
    Outcome,
    OutputLine,
    ProcessStats,
    Reasoning,
    RunEvent,
    StepFinish,
    StepStart,
    Text,
    ToolUse,
    parse_line,
)
from nexus_core.opencode.locate import find_opencode, native_opencode
from nexus_core.routing.registry import CLI_MODEL_RE
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

log = logging.getLogger(__name__)

VARIANT_ALLOWLIST = frozenset({"high", "max", "minimal"})
DEPTH_VAR = "NEXUS_DELEGATION_DEPTH"
# A per-attempt id in OpenCode's environment: every process it starts inherits it, so a
# daemonised one can still be found and ended.
ATTEMPT_VAR = "NEXUS_ATTEMPT_ID"
DEFAULT_TIMEOUT_S = 900.0
DEFAULT_STALL_TIMEOUT_S = 180.0
DEFAULT_MAX_GATEWAY_RETRIES = 3
TERMINATE_GRACE_S = 3.0
ORPHAN_SWEEPS = 3
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
STDOUT_LINE_LIMIT = 8 * 1024 * 1024
STDERR_TAIL_CHARS = 64 * 1024
STDERR_LINE_CHARS = 4 * 1024
EVENT_QUEUE_SIZE = 1024
# An attempt's result keeps its first events up to this many (the answer text is kept whole).
KEPT_EVENTS_LIMIT = 20_000
# A gateway that answers 200 with something that is not a chat completion (an HTML login page)
# makes OpenCode loop forever on empty steps; this many in a row end the attempt.
EMPTY_STEP_LIMIT = 3
_REAL_REASONS = frozenset({"stop", "length", "tool-calls", "content-filter"})

# The message may hold newlines, so only the first line is relied on: level, service, then `error=`.
_PROCESSOR_ERROR = re.compile(r"^ERROR .*?service=session\.processor error=(?P<error>.*?)(?: stack=.*| process\s*)?$")
# OpenCode 1.18 logs in logfmt: one `stream error` line per failed model request (small=true is the title's).
_STREAM_ERROR_1_18 = re.compile(
    r'^timestamp=\S+ level=ERROR .*?message="stream error" .*?small=false .*?error\.error="(?:AI_\w+: )?(?P<error>(?:[^"\\]|\\.)*)"'
)

_BUN_VERBOSE_HINT = re.compile(r"\s*For more information, pass `verbose: true` in the second argument to fetch\(\)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOCATED = re.compile(r"line \d+, column \d+")

_LIVE_GROUPS: set[int] = set()


def _kill_live_groups() -> None:
    for pgid in list(_LIVE_GROUPS):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    _LIVE_GROUPS.clear()


atexit.register(_kill_live_groups)


def allowed_variant(variant: str | None) -> str | None:
    """The variant when it is on the allowlist; anything else is dropped (with a debug log), never passed on."""
    if variant is None or variant == "":
        return None
    if variant in VARIANT_ALLOWLIST:
        return variant
    log.debug("variant %r is not one of %s; dropped", variant, ", ".join(sorted(VARIANT_ALLOWLIST)))
    return None


def check_model_name(name: str) -> str:
    """``name`` when it has the ``<provider-id>/<model-key>`` shape OpenCode's ``--model`` takes."""
    if not isinstance(name, str) or not CLI_MODEL_RE.match(name):
        raise NexusError(
            f"{name!r} is not a model name of the form <provider-id>/<model-key>",
            "Use a registry id or alias (nexus-agents models) or a name such as custom/claude-sonnet-4-5",
        )
    return name


_FIRST_RUNS: dict[tuple[int, str], asyncio.Lock] = {}


def _opencode_database(env: Mapping[str, str]) -> Path:
    """Where OpenCode keeps its SQLite database for this environment (``$XDG_DATA_HOME/opencode``)."""
    data = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return Path(data) / "opencode" / "opencode.db"


def build_argv(
    opencode: str,
    cli_model_name: str,
    *,
    variant: str | None = None,
    thinking: bool = False,
    workdir: str | os.PathLike[str] | None = None,
) -> list[str]:
    """OpenCode's argv for one attempt. The prompt is not in it: it goes on stdin."""
    argv = [
        opencode,
        "run",
        "--format",
        "json",
        "--print-logs",
        "--log-level",
        "ERROR",
        "--model",
        check_model_name(cli_model_name),
    ]
    chosen = allowed_variant(variant)
    if chosen:
        argv += ["--variant", chosen]
    if thinking:
        argv.append("--thinking")
    if workdir is not None:
        argv += ["--dir", str(workdir)]
    return argv


def child_env(base: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment OpenCode runs with.

    The whole parent environment is passed on on purpose: OpenCode needs PATH, HOME, the XDG
    dirs, proxy settings and every ``{env:VAR}`` its config names (the gateway's key among
    them), and nexus cannot know them all. ``NEXUS_DELEGATION_DEPTH`` is the parent's plus
    one, so a nexus MCP server started inside OpenCode can refuse to recurse.
    """
    env = dict(os.environ if base is None else base)
    if overrides:
        env.update(overrides)
    try:
        depth = int(env.get(DEPTH_VAR, "0") or 0)
    except ValueError:
        depth = 0
    env[DEPTH_VAR] = str(max(depth, 0) + 1)
    return env


class AttemptSpec(BaseModel):
    """Everything one attempt needs. Timeouts are in seconds."""

    model_config = ConfigDict(frozen=True)

    cli_model_name: str
    prompt: str
    model_id: str | None = None
    variant: str | None = None
    thinking: bool = False
    workdir: Path | None = None
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0)
    stall_timeout_s: float = Field(DEFAULT_STALL_TIMEOUT_S, gt=0)
    max_gateway_retries: int = Field(DEFAULT_MAX_GATEWAY_RETRIES, ge=0)
    stats_interval_s: float | None = Field(1.0, gt=0)
    env: dict[str, str] | None = Field(None, description="base environment; None: this process's")
    opencode: str | None = Field(None, description="OpenCode executable; None: find_opencode(env)")


class AttemptResult(BaseModel):
    """One finished attempt: its events, its answer, its outcome and a redacted stderr tail."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    cli_model_name: str
    model_id: str | None = None
    argv: tuple[str, ...] = ()
    outcome: Outcome
    text: str = ""
    events: tuple[RunEvent, ...] = ()
    stderr_tail: str = ""
    session_id: str | None = Field(None, description="OpenCode's session (a follow-up continues it)")


_STATUS_CLASS = (
    ((401, 403), FailureClass.AUTH),
    ((404,), FailureClass.MODEL_NOT_FOUND),
    ((429,), FailureClass.RATE_LIMITED),
    ((400, 405, 409, 413, 415, 422), FailureClass.BAD_REQUEST),
)

_FIXES: dict[FailureClass, str] = {
    FailureClass.OPENCODE_NOT_FOUND: "Install it (python3 bootstrap.py test installs the pinned one) and put it on PATH, or set NEXUS_OPENCODE",
    FailureClass.CONFIG_INVALID: "Fix the OpenCode config it names (nexus-agents config shows where each value comes from)",
    FailureClass.AUTH: "Check the gateway key: export the variable your opencode.json names in apiKey, e.g. CUSTOM_API_KEY",
    FailureClass.MODEL_NOT_FOUND: "Check that the model key in opencode.json matches an id the gateway lists at GET /v1/models",
    FailureClass.BAD_REQUEST: "The gateway refused the request as sent; check the model's limits and the gateway's logs",
    FailureClass.CONNECTION: "Check baseURL in opencode.json and that the gateway is reachable from here (nexus-agents doctor)",
    FailureClass.RATE_LIMITED: "Wait and try again, or use a model with quota left (--model)",
    FailureClass.GATEWAY_ERROR: "The gateway or the model behind it is failing; try again later or another model",
    FailureClass.STALLED: "Raise --stall-timeout if the task has long silent steps, or check the gateway",
    FailureClass.TIMEOUT: "Raise --timeout, or split the task",
    FailureClass.CANCELLED: "",
    FailureClass.CUT_STREAM: "The gateway ended the answer early; try again, or check the gateway's logs",
    FailureClass.FAILED: "OpenCode's last stderr lines are in the attempt's stderr_tail (shown by nexus-agents orchestrate)",
}


_MESSAGE_CLASSES: tuple[tuple[re.Pattern[str], FailureClass], ...] = tuple(
    (re.compile(pattern, re.I), failure)
    for pattern, failure in (
        (r"model not found|model_not_found|no such model", FailureClass.MODEL_NOT_FOUND),
        (r"too many requests|rate[ _]limit|quota", FailureClass.RATE_LIMITED),
        (r"unauthorized|forbidden|invalid api key|authentication", FailureClass.AUTH),
        # Bun's fetch says "Was there a typo in the url or port?" when the host does not resolve.
        (
            (
                r"unable to connect|typo in the url|connection (refused|reset)|econnrefused|econnreset|socket|enotfound|getaddrinfo"
                r"|\bdns\b|certificate|\btls\b|\bssl\b|cannot connect|network|timed out|closed unexpectedly"
            ),
            FailureClass.CONNECTION,
        ),
        (
            (
                r"overloaded|internal server error|bad gateway|service unavailable|gateway timeout"
                r"|jsonparseerror|json parsing failed|invalid json|type validation failed"
            ),
            FailureClass.GATEWAY_ERROR,
        ),
    )
)


def _class_of_message(message: str) -> FailureClass | None:
    return next((failure for pattern, failure in _MESSAGE_CLASSES if pattern.search(message)), None)


def _status_of_message(message: str) -> int | None:
    for status in HTTPStatus:
        if status.value >= 400 and status.phrase.lower() in message.lower():
            return status.value
    return None


def classify_error(event: ErrorEvent) -> tuple[FailureClass, int | None]:
    """The failure class an OpenCode ``error`` event stands for, and the HTTP status when known."""
    status = event.status_code
    if event.name == "ProviderAuthError":
        return FailureClass.AUTH, status
    if event.name in {"ProviderInitError", "ConfigInvalidError", "ConfigJsonError"}:
        return FailureClass.CONFIG_INVALID, status
    if event.name == "MessageAbortedError":
        return FailureClass.CANCELLED, status
    if event.name == "ContextOverflowError":
        return FailureClass.BAD_REQUEST, status
    diagnosis = diagnose_error(event)
    if diagnosis is not None:
        return diagnosis.failure, status
    if status is not None:
        for codes, failure in _STATUS_CLASS:
            if status in codes:
                return failure, status
        if status >= 500:
            return FailureClass.GATEWAY_ERROR, status
    by_message = _class_of_message(event.message)
    return by_message or FailureClass.FAILED, status


def _retry_class(message: str) -> FailureClass:
    failure = _class_of_message(message)
    return failure if failure in {FailureClass.RATE_LIMITED, FailureClass.CONNECTION} else FailureClass.GATEWAY_ERROR


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(_BUN_VERBOSE_HINT.sub("", text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class _StderrTail:
    """The last lines OpenCode wrote to stderr, bounded in lines and characters."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque()
        self._chars = 0

    def add(self, line: str) -> None:
        line = line[:STDERR_LINE_CHARS]
        self._lines.append(line)
        self._chars += len(line)
        while self._chars > STDERR_TAIL_CHARS and self._lines:
            self._chars -= len(self._lines.popleft())

    def text(self) -> str:
        return "\n".join(self._lines)

    def opencode_error(self) -> str:
        """OpenCode's own ``Error: …`` message (ANSI colours removed), with its first located detail."""
        lines = [_ANSI.sub("", line).strip() for line in self._lines]
        for index in range(len(lines) - 1, -1, -1):
            if lines[index].startswith("Error: "):
                message = lines[index].removeprefix("Error: ").rstrip()
                if message.endswith(":"):
                    detail = next((line for line in lines[index + 1 :] if _LOCATED.search(line)), "")
                    message = f"{message} {detail}" if detail else message.rstrip(":")
                return message
        return ""


@dataclass
class _Progress:
    """What an attempt's events have shown so far, for the outcome."""

    errors: list[ErrorEvent] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    finish: StepFinish | None = None
    saw_text: bool = False
    saw_step: bool = False
    empty_steps: int = 0
    _output_in_step: bool = False

    def see(self, event: RunEvent) -> None:
        if isinstance(event, ErrorEvent):
            self.errors.append(event)
        elif isinstance(event, StepStart):
            self.saw_step = True
            self._output_in_step = False
        elif isinstance(event, (Text, Reasoning, ToolUse)):
            self._output_in_step = True
            self.saw_text = self.saw_text or (isinstance(event, Text) and bool(event.text.strip()))
        elif isinstance(event, StepFinish):
            self.finish = event
            empty = event.tokens.total == 0 and not self._output_in_step and event.reason not in _REAL_REASONS
            self.empty_steps = self.empty_steps + 1 if empty else 0


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
        self._stderr = _StderrTail()
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
            message=self._redact(_one_line(message)),
            fix=self._redact(fix) if fix else _FIXES[failure] if failure else "",
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
                    self._proc, self._stderr = None, _StderrTail()
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
        database = _opencode_database(self.env)
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
            # Through a lifeline: OpenCode's whole group ends when this process ends, however it ends.
            self._lifeline = await lifeline.spawn(
                self.argv,
                env=self.env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=STDOUT_LINE_LIMIT,
            )
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
        _LIVE_GROUPS.add(self._lifeline.pgid)
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(EVENT_QUEUE_SIZE)
        stderr_reader = asyncio.create_task(self._read_stderr(queue))
        self._tasks += [
            asyncio.create_task(self._feed_stdin(spec.prompt)),
            asyncio.create_task(self._read_stdout(queue)),
            stderr_reader,
        ]
        if spec.stats_interval_s:
            self._tasks.append(asyncio.create_task(self._sample(queue, spec.stats_interval_s)))
        cancel_wait = asyncio.create_task(self._cancel.wait())
        self._tasks.append(cancel_wait)

        deadline = self._started + spec.timeout_s
        last_output = time.monotonic()
        progress = _Progress()
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
                    match = _PROCESSOR_ERROR.match(payload) or _STREAM_ERROR_1_18.match(payload)
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
                message = self._redact(_one_line(raw))
                progress.retries.append(message)
                self._failed_requests = len(progress.retries)
                failures = len(progress.retries)
                if failures > spec.max_gateway_retries:
                    yield self._retry_outcome(progress, f"{failures} requests failed in a row")
                    return
                yield GatewayRetrying(attempt=self.number, at=self._elapsed(), retry=failures, message=message)
            settled.clear()
            if now >= deadline:
                yield self._outcome(FailureClass.TIMEOUT, f"no result within the {seconds(spec.timeout_s)} s timeout")
                return
            if now >= last_output + spec.stall_timeout_s and not stdout_done:
                if progress.retries:
                    yield self._retry_outcome(
                        progress, f"no progress for {seconds(spec.stall_timeout_s)} s while OpenCode retried"
                    )
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
        yield self._final_outcome(progress)

    def _retry_outcome(self, progress: _Progress, how: str) -> Outcome:
        last = progress.retries[-1]
        failure = _retry_class(last)
        if failure is FailureClass.CONNECTION and progress.saw_step:
            failure = FailureClass.CUT_STREAM
        status = _status_of_message(last)
        diagnosis = classify(status, message=last)
        fix = diagnosis.fix if diagnosis.failure is failure else None
        who = f"{diagnosis.gateway}: " if fix and diagnosis.gateway else ""
        return self._outcome(failure, f"{who}the gateway kept failing ({last}); {how}", status=status, fix=fix)

    def _final_outcome(self, progress: _Progress) -> Outcome:
        code = self._proc.returncode if self._proc else None
        finish = progress.finish
        if progress.errors:
            error = progress.errors[-1]
            failure, status = classify_error(error)
            diagnosis = diagnose_error(error)
            if diagnosis is not None and failure is diagnosis.failure:
                return self._outcome(failure, diagnosis.summary, status=status, fix=diagnosis.fix)
            return self._outcome(failure, error.message, status=status)
        if finish is not None and (finish.reason == "stop" or (finish.reason == "length" and progress.saw_text)):
            if code not in (0, None):
                return self._outcome(FailureClass.FAILED, f"OpenCode exited with code {code} after answering")
            return self._outcome(None, "finished" if finish.reason == "stop" else "finished at the output limit")
        stderr_line = self._stderr.opencode_error()
        if code not in (0, None):
            lowered = stderr_line.lower()
            if "config" in lowered and ("invalid" in lowered or "not valid" in lowered):
                return self._outcome(FailureClass.CONFIG_INVALID, stderr_line)
            if lowered.startswith("model not found"):
                return self._outcome(FailureClass.MODEL_NOT_FOUND, stderr_line)
            detail = f": {stderr_line}" if stderr_line else ""
            return self._outcome(FailureClass.FAILED, f"OpenCode exited with code {code}{detail}")
        if finish is not None:
            return self._outcome(FailureClass.CUT_STREAM, f"the answer ended with reason {finish.reason!r}, not 'stop'")
        return self._outcome(FailureClass.CUT_STREAM, "OpenCode ended without a finished answer")

    async def _feed_stdin(self, prompt: str) -> None:
        assert self._proc and self._proc.stdin
        stdin = self._proc.stdin
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.write(prompt.encode("utf-8"))
            await stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()

    async def _read_stdout(self, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        assert self._proc and self._proc.stdout
        stdout = self._proc.stdout
        while True:
            try:
                line = await stdout.readline()
            except ValueError:
                await queue.put(("stdout", f"[a line over {STDOUT_LINE_LIMIT} bytes was dropped]"))
                continue
            if not line:
                break
            self._spoke.set()
            await queue.put(("stdout", line.decode("utf-8", "replace")))
        await queue.put(("eof", None))
        await self._proc.wait()
        await queue.put(("exit", self._proc.returncode))

    async def _read_stderr(self, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        assert self._proc and self._proc.stderr
        stderr = self._proc.stderr
        while True:
            try:
                line = await stderr.readline()
            except ValueError:
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\n")
            self._stderr.add(text)
            if text.startswith("ERROR ") or " level=ERROR " in text:
                await queue.put(("stderr", text))

    async def _sample(self, queue: asyncio.Queue[tuple[str, Any]], interval: float) -> None:
        assert self._lifeline
        known: dict[int, psutil.Process] = {}
        while True:
            await asyncio.sleep(interval)
            stats = _sample_tree(self._lifeline.child_pid, known)
            if stats is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(("stats", stats))

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
            _LIVE_GROUPS.discard(running.pgid)
            await asyncio.to_thread(_kill_orphans, self.env[ATTEMPT_VAR], self._launched_at)
        finally:
            # Cut short (a caller cancelled again mid-way, as anyio does at every await of a cancelled
            # scope): dropping the line makes the supervisor end the group all the same.
            if running is not None:
                running.close()


def _kill_orphans(marker: str, since: float) -> None:
    """SIGKILL what the attempt started that escaped both its group and its tree (a daemonised child).

    Only processes created since the attempt began are looked at, so this stays cheap. A process
    killed may have forked a moment before; the sweep repeats until it finds nothing.
    """
    own = os.getpid()
    for _ in range(ORPHAN_SWEEPS):
        killed = []
        for proc in psutil.process_iter(["create_time"]):
            try:
                if proc.pid == own or (proc.info["create_time"] or 0) < since - 1:
                    continue
                if proc.environ().get(ATTEMPT_VAR) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
                    killed.append(proc)
            except psutil.Error:
                continue
        if not killed:
            return
        deadline = time.monotonic() + TERMINATE_GRACE_S
        while any(_alive(p) for p in killed) and time.monotonic() < deadline:
            time.sleep(0.02)  # a thread polling processes that are not our children; no event to wait on


def _sample_tree(pid: int, known: dict[int, psutil.Process]) -> ProcessStats | None:
    """CPU % and RSS summed over the live processes of the tree; None when none is left."""
    procs = _tree(pid)
    if not procs:
        return None
    cpu = 0.0
    rss = 0
    pids: list[int] = []
    for proc in procs:
        cached = known.setdefault(proc.pid, proc)
        try:
            with cached.oneshot():
                if cached.status() == psutil.STATUS_ZOMBIE:
                    continue
                cpu += cached.cpu_percent(None)
                rss += cached.memory_info().rss
            pids.append(proc.pid)
        except psutil.Error:
            known.pop(proc.pid, None)
    if not pids:
        return None
    return ProcessStats(cpu_percent=round(cpu, 1), rss_bytes=rss, pids=tuple(pids))


async def run_attempt(spec: AttemptSpec, *, attempt: int = 1) -> AttemptResult:
    """Run one attempt to its end and return its result (events included)."""
    async with Attempt(spec, attempt=attempt) as running:
        async for _ in running.events():
            pass
    assert running.result is not None
    return running.result
