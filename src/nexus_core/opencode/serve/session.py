"""One delegation attempt on an ``opencode serve`` session, with the outcome ``run_attempt`` gives.

    async with ServeClient(server) as client:
        attempt = ServeAttempt(client, spec, approve={"bash"})
        async for event in attempt.events():
            ...
        attempt.result.outcome

Success is ``idle`` after some answer text. A ``session.error`` is classified as for ``run``;
more than ``max_gateway_retries`` retries abort the session and end it as rate limited,
connection or gateway error. A permission question outside ``approve`` goes to the ``ask``
callback when there is one (awaited at most ``ask_timeout_s``, while the stall timer waits too:
a human may be deciding); with no callback, or when it answers ``reject`` or not in time, the
question is rejected and the attempt ends as ``permission``. ``events(prompt)`` sends another
prompt on the same session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any, Literal, get_args

from nexus_core.config.loader import config_secrets
from nexus_core.opencode.attempt import _FIXES, AttemptResult, AttemptSpec, _one_line
from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    ErrorEvent,
    FailureClass,
    GatewayRetrying,
    Outcome,
    RunEvent,
    Text,
    _Event,
)
from nexus_core.opencode.outcome import error_verdict, gateway_retry_verdict
from nexus_core.opencode.serve.client import ServeClient
from nexus_core.opencode.serve.events import PermissionAsked, SessionIdle, SessionRetry, TextDelta, map_event
from nexus_core.secrets import Redactor

__all__ = ["ASK_TIMEOUT_S", "PERMISSION_FIX", "PermissionAsk", "PermissionReply", "ServeAttempt"]

PERMISSION_FIX = "Allow it with --approve {permission} (or --approve all)"
ASKED_FIX = "Run it again and allow it when OpenCode asks"
#: How long a permission question waits for the ``ask`` callback's answer.
ASK_TIMEOUT_S = 600.0
#: How long an abort may take: on a cancel (Ctrl-C) the exit waits on it, and a busy server can
#: be slow to answer; an owned server is ended anyway, so a late abort only costs the user time.
ABORT_TIMEOUT_S = 2.0

#: OpenCode's answers to a permission question.
PermissionReply = Literal["once", "always", "reject"]
#: Asked for a permission question ``approve`` does not cover; returns the answer to send.
PermissionAsk = Callable[[PermissionAsked], Awaitable[PermissionReply]]
_REPLIES = frozenset(("once", "always", "reject"))
EVENT_QUEUE_SIZE = 4096
KEPT_EVENTS_LIMIT = 20_000
# The events an AttemptResult keeps: those both transports share (step finishes carry the tokens).
_RUN_EVENT_TYPES = tuple(get_args(get_args(RunEvent)[0]))


class ServeAttempt:
    """One prompt (and any follow-ups) on one session. :attr:`result` is set when :meth:`events` ends."""

    def __init__(
        self,
        client: ServeClient,
        spec: AttemptSpec,
        *,
        attempt: int = 1,
        approve: Collection[str] = (),
        agent: str | None = None,
        session_id: str | None = None,
        ask: PermissionAsk | None = None,
        ask_timeout_s: float = ASK_TIMEOUT_S,
    ) -> None:
        self.client = client
        self.spec = spec
        self.number = attempt
        self.approve = frozenset(approve)
        self.agent = agent
        self.session_id = session_id
        env = spec.env if spec.env is not None else dict(os.environ)
        self._redact = Redactor.from_env(env, config_secrets(spec.workdir, env))
        self.ask = ask
        self.ask_timeout_s = ask_timeout_s
        self.result: AttemptResult | None = None
        self._started = 0.0
        self._cancel = asyncio.Event()

    def cancel(self) -> None:
        """Abort the session; the outcome is ``cancelled``."""
        self._cancel.set()

    def _at(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def _outcome(
        self, failure: FailureClass | None, message: str, *, fix: str | None = None, status: int | None = None
    ) -> Outcome:
        return Outcome(
            failure=failure,
            message=self._redact(_one_line(message)),
            fix=self._redact(fix) if fix else (_FIXES.get(failure, "") if failure else ""),
            duration_s=self._at(),
            status_code=status,
        )

    async def events(self, prompt: str | None = None) -> AsyncIterator[_Event]:
        """Send ``prompt`` (the spec's when None) and yield this session's events until the attempt ends."""
        import httpx  # the HTTP stack loads only on the serve transport (see serve.server.http_client)

        self._started = time.monotonic()
        provider, _, model = self.spec.cli_model_name.partition("/")
        yield AttemptStarted(attempt=self.number, model_id=self.spec.model_id, cli_model_name=self.spec.cli_model_name)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(EVENT_QUEUE_SIZE)
        connected = asyncio.Event()
        reader = asyncio.create_task(self._read(queue, connected))
        collected: list[_Event] = []
        answer: list[str] = []
        deltas: list[str] = []
        outcome: Outcome | None = None
        retries: list[str] = []
        asks: dict[asyncio.Task[PermissionReply], PermissionAsked] = {}
        try:
            await asyncio.wait_for(connected.wait(), 30)
            if self.session_id is None:
                self.session_id = await self.client.create_session()
            if self._cancel.is_set():  # cancelled while the server started: the gateway is never asked
                outcome = self._outcome(FailureClass.CANCELLED, "the attempt was cancelled")
            else:
                await self.client.prompt(
                    self.session_id,
                    prompt if prompt is not None else self.spec.prompt,
                    provider_id=provider,
                    model_id=model,
                    agent=self.agent,
                    variant=self.spec.variant,
                )
            part_kinds: dict[str, str] = {}
            deadline = self._started + self.spec.timeout_s
            last = time.monotonic()
            errors: list[ErrorEvent] = []
            busy_seen = False
            while outcome is None:
                now = time.monotonic()
                # While a question waits for its answer, OpenCode is silent by design: no stall.
                wait = (deadline if asks else min(deadline, last + self.spec.stall_timeout_s)) - now
                getter = asyncio.ensure_future(queue.get())
                cancel = asyncio.ensure_future(self._cancel.wait())
                done, _ = await asyncio.wait(
                    {getter, cancel, *asks}, timeout=max(0.0, wait), return_when="FIRST_COMPLETED"
                )
                getter.cancel()
                cancel.cancel()
                now = time.monotonic()
                if cancel in done:
                    await self._abort()
                    outcome = self._outcome(FailureClass.CANCELLED, "the attempt was cancelled")
                    break
                answered = [task for task in asks if task in done]
                for task in answered:
                    asked = asks.pop(task)
                    last = now
                    outcome = await self._answer(asked, task)
                    if outcome is not None:
                        break
                if outcome is not None:
                    break
                if answered and getter not in done:
                    continue
                if getter not in done:
                    await self._abort()
                    if now >= deadline:
                        outcome = self._outcome(
                            FailureClass.TIMEOUT, f"no result within the {self.spec.timeout_s:g} s timeout"
                        )
                    else:
                        outcome = self._outcome(
                            FailureClass.STALLED, f"no event from OpenCode for {self.spec.stall_timeout_s:g} s"
                        )
                    break
                payload = getter.result()
                if payload is None:
                    outcome = self._outcome(
                        FailureClass.FAILED, "the OpenCode server ended its event stream (did it die?)"
                    )
                    break
                last = now
                if payload.get("type") == "session.status":
                    busy_seen = True
                event = map_event(payload, self.session_id, attempt=self.number, at=self._at(), part_kinds=part_kinds)
                if event is None:
                    continue
                if len(collected) < KEPT_EVENTS_LIMIT and isinstance(event, _RUN_EVENT_TYPES):
                    collected.append(event)
                yield event
                if isinstance(event, TextDelta):
                    deltas.append(event.delta)
                elif isinstance(event, Text) and event.text.strip():
                    answer.append(event.text.strip())
                elif isinstance(event, ErrorEvent):
                    errors.append(event)
                elif isinstance(event, SessionRetry):
                    retries.append(event.message)
                    # Kept as the run transport keeps it, so the result says what the gateway answered.
                    if len(collected) < KEPT_EVENTS_LIMIT:
                        collected.append(
                            GatewayRetrying(attempt=self.number, at=event.at, retry=event.retry, message=event.message)
                        )
                    if len(retries) > self.spec.max_gateway_retries:
                        await self._abort()
                        verdict = gateway_retry_verdict(
                            event.message, f"{len(retries)} retries", answering=bool(answer or deltas)
                        )
                        outcome = self._outcome(
                            verdict.failure, verdict.message, fix=verdict.fix, status=verdict.status
                        )
                elif isinstance(event, PermissionAsked):
                    allowed = "all" in self.approve or event.permission in self.approve
                    if not allowed and self.ask is not None:
                        asks[asyncio.ensure_future(self._ask(event))] = event
                        continue
                    await self.client.reply_permission(
                        self.session_id, event.permission_id, "once" if allowed else "reject"
                    )
                    if not allowed:
                        pattern = ", ".join(event.patterns) or "*"
                        outcome = self._outcome(
                            FailureClass.PERMISSION,
                            f"OpenCode asked for permission {event.permission!r} ({pattern}) and nobody allowed it",
                            fix=PERMISSION_FIX.format(permission=event.permission),
                        )
                        await self._abort()
                elif isinstance(event, SessionIdle) and busy_seen:
                    if errors:
                        # As `run` judges its error events: the gateway recognised, its own fix.
                        verdict = error_verdict(errors[-1])
                        outcome = self._outcome(
                            verdict.failure, verdict.message, fix=verdict.fix, status=verdict.status
                        )
                    elif answer or "".join(deltas).strip():
                        outcome = self._outcome(None, "finished")
                    else:
                        outcome = self._outcome(FailureClass.CUT_STREAM, "the session went idle without an answer")
        except asyncio.CancelledError:
            # The server may be shared (or attached): the session must stop, not only this reader.
            await asyncio.shield(self._abort())
            raise
        except httpx.HTTPStatusError as exc:
            if outcome is None and exc.response.status_code == 401:
                outcome = self._outcome(
                    FailureClass.AUTH,
                    "the OpenCode server refused nexus's password (HTTP 401)",
                    fix="Name the variable that holds the server's password with --password-env",
                )
            elif outcome is None:
                outcome = self._outcome(FailureClass.FAILED, f"the OpenCode server refused a request ({exc})")
        except (TimeoutError, OSError, Exception) as exc:
            if outcome is None:
                outcome = self._outcome(FailureClass.CONNECTION, f"the OpenCode server could not be reached ({exc})")
        finally:
            # A question still open (the attempt was cancelled, failed or timed out) is withdrawn.
            for task in asks:
                task.cancel()
            reader.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(reader, *asks, return_exceptions=True)
        assert outcome is not None
        if retries and outcome.failure in (FailureClass.TIMEOUT, FailureClass.STALLED):
            # Out of time while OpenCode retried: the gateway did answer, with failures.
            outcome = outcome.model_copy(update={"failed_requests": len(retries)})
        text = "\n".join(answer) or "".join(deltas).strip()
        self.result = AttemptResult(
            attempt=self.number,
            cli_model_name=self.spec.cli_model_name,
            model_id=self.spec.model_id,
            outcome=outcome,
            text=text,
            events=tuple(collected),  # type: ignore[arg-type]
            session_id=self.session_id,
        )
        yield AttemptFinished(
            attempt=self.number, at=self._at(), cli_model_name=self.spec.cli_model_name, outcome=outcome
        )

    async def _ask(self, event: PermissionAsked) -> PermissionReply:
        assert self.ask is not None
        return await asyncio.wait_for(self.ask(event), self.ask_timeout_s)

    async def _answer(self, event: PermissionAsked, task: asyncio.Task[PermissionReply]) -> Outcome | None:
        """Send the answer ``task`` got (no answer in time, or a failed callback, is ``reject``);
        the outcome that ends the attempt when it was rejected."""
        error = None if task.cancelled() else task.exception()
        reply: str = "reject" if task.cancelled() or error is not None else task.result()
        if reply not in _REPLIES:
            reply = "reject"
        assert self.session_id is not None
        await self.client.reply_permission(self.session_id, event.permission_id, reply)
        if reply != "reject":
            return None
        pattern = ", ".join(event.patterns) or "*"
        if isinstance(error, TimeoutError):
            why = f"nobody answered within {self.ask_timeout_s:g} s"
        elif error is not None:
            why = f"the question could not be asked ({type(error).__name__}: {error})"
        else:
            why = "it was rejected"
        await self._abort()
        return self._outcome(
            FailureClass.PERMISSION,
            f"OpenCode asked for permission {event.permission!r} ({pattern}) and {why}",
            fix=ASKED_FIX,
        )

    async def _abort(self) -> None:
        if self.session_id:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.abort(self.session_id), ABORT_TIMEOUT_S)

    async def _read(self, queue: asyncio.Queue[dict[str, Any] | None], connected: asyncio.Event) -> None:
        try:
            async for payload in self.client.events():
                connected.set()
                await queue.put(payload)
        finally:
            connected.set()
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
