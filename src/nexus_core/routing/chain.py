"""A delegation: one task tried along a fallback chain of models, every attempt kept.

    spec = DelegationSpec(prompt="Fix the failing test", chain=(opus, sonnet, default))
    async with Delegation(spec) as delegation:
        async for event in delegation.events():
            ...
    delegation.result.ok, delegation.result.text, delegation.result.attempts

The chain is given, not computed here (the routing core computes it). The fallback rule:

* a failure **another model may cure** moves on to the next model of the chain:
  model not found, connection, gateway error (5xx, malformed answers), stalled, rate limited,
  cut stream — the fault lies with one model or one route, and the next one may not share it;
* a failure **every model would meet alike** ends the delegation: auth (one key for the
  gateway), config invalid, bad request (the same prompt goes to every model), OpenCode not
  found, timeout (the delegation's time budget is spent), a permission question nobody
  answered (the user's rule applies to every model), cancelled and unclassified failures.

Each attempt runs with ``--model`` set to its own CLI model name: OpenCode never substitutes
its default model for one asked for. A chain entry with no CLI model name (``opencode-default``
when the config names no ``model``) is recorded as a failed attempt and skipped. ``timeout_s``
bounds the whole delegation: each attempt gets what is left of it.

Each attempt runs on the spec's ``transport``: ``serve`` (the default) prompts a session on an
``opencode serve`` that the delegation holds for all its attempts (a managed server per working
directory, shared with the other delegations of the event loop, or an attached one), so text
arrives as deltas and permission questions can be answered (``approve``); ``run`` starts one
``opencode run`` per attempt. Both give the same outcome classes, and each attempt's result
names its OpenCode ``session_id``. A permission question nobody answered ends the delegation:
every model would meet the same rule. A caller that can ask a human (the dashboard) passes
``ask`` to :class:`Delegation`: questions ``approve`` does not cover are put to it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nexus_core.diagnosis.known import KnownCause, known_cause_for, with_known_cause
from nexus_core.opencode.attempt import (
    DEFAULT_MAX_GATEWAY_RETRIES,
    DEFAULT_STALL_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    Attempt,
    AttemptResult,
    AttemptSpec,
)
from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    FailureClass,
    FallbackTaken,
    Outcome,
    RunEvent,
)
from nexus_core.opencode.serve.server import ServerPool
from nexus_core.opencode.serve.session import PermissionAsk, ServeAttempt
from nexus_core.opencode.transport import ServeLease, Transport, serve_attempt
from nexus_core.routing.registry import ModelProfile

__all__ = [
    "CURABLE_BY_FALLBACK",
    "Delegation",
    "DelegationResult",
    "DelegationSpec",
    "chain_of",
    "curable_by_fallback",
    "delegate",
]

STDERR_SUMMARY_CHARS = 4_000

CURABLE_BY_FALLBACK = frozenset(
    {
        FailureClass.MODEL_NOT_FOUND,
        FailureClass.CONNECTION,
        FailureClass.GATEWAY_ERROR,
        FailureClass.STALLED,
        FailureClass.RATE_LIMITED,
        FailureClass.CUT_STREAM,
    }
)


def curable_by_fallback(outcome: Outcome) -> bool:
    """Whether the next model of the chain may succeed where this attempt failed."""
    return outcome.failure in CURABLE_BY_FALLBACK


class DelegationSpec(BaseModel):
    """A task and the models to try, first to last. Timeouts are in seconds."""

    model_config = ConfigDict(frozen=True)

    prompt: str
    chain: tuple[ModelProfile, ...] = Field(min_length=1)
    variant: str | None = None
    thinking: bool = False
    workdir: Path | None = None
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, description="for the whole delegation")
    stall_timeout_s: float = Field(DEFAULT_STALL_TIMEOUT_S, gt=0)
    max_gateway_retries: int = Field(DEFAULT_MAX_GATEWAY_RETRIES, ge=0)
    stats_interval_s: float | None = Field(1.0, gt=0)
    env: dict[str, str] | None = None
    opencode: str | None = None
    transport: Transport = "serve"
    approve: frozenset[str] = Field(frozenset(), description="permissions answered `once` (serve; `all`: every one)")
    session_id: str | None = Field(None, description="continue this OpenCode session (serve)")
    attach_url: str | None = Field(None, description="run on this `opencode serve` and never end it (serve)")
    attach_password: SecretStr | None = None
    #: Causes known before running (provider id → cause, from :func:`~nexus_core.diagnosis.known.known_causes`):
    #: such a provider's attempt gets no gateway retries, and its failure says the cause first.
    known_causes: dict[str, KnownCause] = Field(default_factory=dict)


class DelegationResult(BaseModel):
    """Every attempt, in order; the last one's outcome is the delegation's."""

    model_config = ConfigDict(frozen=True)

    attempts: tuple[AttemptResult, ...]
    duration_s: float

    @property
    def final(self) -> AttemptResult:
        return self.attempts[-1]

    @property
    def outcome(self) -> Outcome:
        return self.final.outcome

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    @property
    def text(self) -> str:
        return self.final.text if self.ok else ""

    @property
    def session_id(self) -> str | None:
        """The session of the last attempt (``--continue`` takes it)."""
        return self.final.session_id

    def summary(self) -> dict[str, Any]:
        """The result without the events, as plain JSON data (the CLI's final object)."""
        return {
            "ok": self.ok,
            "model_id": self.final.model_id,
            "cli_model_name": self.final.cli_model_name,
            "text": self.text,
            "outcome": self.outcome.model_dump(mode="json"),
            "duration_s": self.duration_s,
            "session_id": self.session_id,
            "attempts": [
                {
                    "attempt": a.attempt,
                    "model_id": a.model_id,
                    "cli_model_name": a.cli_model_name,
                    "session_id": a.session_id,
                    "outcome": a.outcome.model_dump(mode="json"),
                    "stderr_tail": a.stderr_tail[-STDERR_SUMMARY_CHARS:],
                }
                for a in self.attempts
            ],
        }


class Delegation:
    """Runs a :class:`DelegationSpec`. Use as ``async with``; iterate :meth:`events` once.

    ``pool`` serves the managed servers (default: the event loop's shared pool); ``ask`` answers
    the permission questions the spec's ``approve`` does not cover (serve; default: rejected).
    """

    def __init__(
        self, spec: DelegationSpec, *, pool: ServerPool | None = None, ask: PermissionAsk | None = None
    ) -> None:
        self.spec = spec
        self.ask = ask
        self.result: DelegationResult | None = None
        self._current: Attempt | ServeAttempt | None = None
        self._cancelled = False
        self.lease = ServeLease.of(
            spec.workdir,
            env=spec.env,
            opencode=spec.opencode,
            attach_url=spec.attach_url,
            attach_password=spec.attach_password.get_secret_value() if spec.attach_password else None,
            pool=pool,
        )

    async def __aenter__(self) -> Delegation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if isinstance(self._current, Attempt):
            await self._current.__aexit__(None, None, None)
        await self.lease.aclose()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def cancel(self) -> None:
        """Stop the running attempt (its tree is ended, or its session aborted) and try no further model."""
        self._cancelled = True
        if self._current is not None:
            self._current.cancel()

    async def events(self) -> AsyncIterator[RunEvent]:
        """Every attempt's events in order, with a :class:`FallbackTaken` between attempts."""
        spec = self.spec
        chain = chain_of(spec.chain)
        started = time.monotonic()
        attempts: list[AttemptResult] = []
        try:
            for number, profile in enumerate(chain, start=1):
                result = None
                async for event in self._one(number, profile, spec.timeout_s - (time.monotonic() - started)):
                    if isinstance(event, AttemptResult):
                        result = event
                    else:
                        yield event
                assert result is not None
                attempts.append(result)
                following = chain[number] if number < len(chain) else None
                unnamed = profile.cli_model_name is None
                if self._cancelled or following is None or not (unnamed or curable_by_fallback(result.outcome)):
                    break
                yield FallbackTaken(
                    attempt=number,
                    at=result.outcome.duration_s,
                    from_model=profile.id,
                    to_model=following.id,
                    # curable_by_fallback is only true for a failure; an unnamed model moves on after any.
                    reason=result.outcome.failure or FailureClass.FAILED,
                )
        finally:
            if attempts:
                self.result = DelegationResult(
                    attempts=tuple(attempts), duration_s=round(time.monotonic() - started, 3)
                )

    async def _one(
        self, number: int, profile: ModelProfile, remaining: float
    ) -> AsyncIterator[RunEvent | AttemptResult]:
        """One attempt's events, then its :class:`AttemptResult`."""
        if profile.cli_model_name is None or remaining <= 0:
            if profile.cli_model_name is None:
                result = _skipped(
                    number, profile, 'OpenCode\'s config names no default model (set "model" in opencode.json)'
                )
            else:
                result = _skipped(
                    number, profile, f"no time left of the {self.spec.timeout_s:g} s timeout", FailureClass.TIMEOUT
                )
            yield AttemptStarted(attempt=number, model_id=profile.id, cli_model_name=result.cli_model_name)
            yield AttemptFinished(attempt=number, cli_model_name=result.cli_model_name, outcome=result.outcome)
            yield result
            return
        known = known_cause_for(profile.cli_model_name, self.spec.known_causes)
        if self.spec.transport == "serve":
            async for item in self._serve_one(number, profile, remaining, known):
                yield item
            return
        attempt = Attempt(self._attempt_spec(profile, remaining, retry=known is None), attempt=number)
        self._current = attempt
        if self._cancelled:  # cancelled between two attempts
            attempt.cancel()
        try:
            async with attempt:
                async for event in attempt.events():
                    if known is not None and isinstance(event, AttemptFinished):
                        event = event.model_copy(update={"outcome": with_known_cause(event.outcome, known)})
                    yield event
        finally:
            self._current = None
        assert attempt.result is not None
        result = attempt.result
        yield result.model_copy(update={"outcome": with_known_cause(result.outcome, known)}) if known else result

    async def _serve_one(
        self, number: int, profile: ModelProfile, remaining: float, known: KnownCause | None
    ) -> AsyncIterator[RunEvent | AttemptResult]:
        started: list[ServeAttempt] = []
        try:
            async for item in serve_attempt(
                self.lease,
                self._attempt_spec(profile, remaining, retry=known is None),
                number=number,
                approve=self.spec.approve,
                session_id=self.spec.session_id,
                started=started,
                ask=self.ask,
            ):
                if started and self._current is None:
                    self._current = started[0]
                    if self._cancelled:
                        started[0].cancel()
                if known is not None and isinstance(item, AttemptFinished | AttemptResult):
                    item = item.model_copy(update={"outcome": with_known_cause(item.outcome, known)})
                yield item
        finally:
            self._current = None

    def _attempt_spec(self, profile: ModelProfile, remaining: float, *, retry: bool = True) -> AttemptSpec:
        spec = self.spec
        assert profile.cli_model_name is not None
        return AttemptSpec(
            cli_model_name=profile.cli_model_name,
            model_id=profile.id,
            prompt=spec.prompt,
            variant=spec.variant,
            thinking=spec.thinking,
            workdir=spec.workdir,
            timeout_s=remaining,
            stall_timeout_s=spec.stall_timeout_s,
            max_gateway_retries=spec.max_gateway_retries if retry else 0,
            stats_interval_s=spec.stats_interval_s,
            env=spec.env,
            opencode=spec.opencode,
        )


def _skipped(
    number: int, profile: ModelProfile, why: str, failure: FailureClass = FailureClass.CONFIG_INVALID
) -> AttemptResult:
    return AttemptResult(
        attempt=number,
        cli_model_name=profile.cli_model_name or "(none)",
        model_id=profile.id,
        outcome=Outcome(
            failure=failure,
            message=why,
            fix=""
            if failure is FailureClass.TIMEOUT
            else 'Name a model in opencode.json ("model": "custom/claude-sonnet-4-5") or use --model',
        ),
    )


async def delegate(spec: DelegationSpec, on_event: Callable[[RunEvent], object] | None = None) -> DelegationResult:
    """Run a delegation to its end; ``on_event`` sees each event as it comes."""
    async with Delegation(spec) as delegation:
        async for event in delegation.events():
            if on_event is not None:
                on_event(event)
    assert delegation.result is not None
    return delegation.result


def chain_of(profiles: Sequence[ModelProfile]) -> tuple[ModelProfile, ...]:
    """``profiles`` without repeats, first kept.

    A chain may name a model twice through aliases, or through two ids with one CLI model name
    (``opencode-default`` is whatever the config's ``model`` names, often the first model
    itself): a model that has just failed is not tried again.
    """
    seen_ids: set[str] = set()
    seen_names: set[str] = set()
    chain = []
    for profile in profiles:
        if profile.id in seen_ids or profile.cli_model_name in seen_names:
            continue
        seen_ids.add(profile.id)
        if profile.cli_model_name is not None:
            seen_names.add(profile.cli_model_name)
        chain.append(profile)
    return tuple(chain)
