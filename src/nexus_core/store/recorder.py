"""Recording a delegation into the run store, as an observer of its event stream.

    store = history_store(env)                         # None when history is off or unusable
    recorder = DelegationRecorder.begin(store, spec, decision=decision, source="cli", project=cwd)
    async for event in recorded(delegation.events(), recorder, delegation):
        ...                                            # the stream, unchanged

:meth:`DelegationRecorder.see` costs a list append per event: events are handed to the store's
writer thread in batches (every ``FLUSH_EVERY`` events or ``FLUSH_INTERVAL_S`` seconds, and at
every attempt boundary), where they are serialised, redacted and written.

History is on unless ``NEXUS_NO_HISTORY`` is set (to anything but ``0``/``false``/empty) or a
command passes ``--no-history``; then nothing is recorded and the router's ``observed`` term is
off. A store that cannot be opened never fails a delegation: :func:`history_store` returns None
and says why once on stderr.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from nexus_core.opencode.events import AttemptFinished, AttemptStarted, FailureClass, RunEvent
from nexus_core.store.db import NO_HISTORY_VAR, StoreError, history_enabled
from nexus_core.store.handle import RunHandle
from nexus_core.store.runs import RunStore

__all__ = [
    "FLUSH_EVERY",
    "FLUSH_INTERVAL_S",
    "NO_HISTORY_VAR",
    "DelegationRecorder",
    "history_enabled",
    "history_store",
    "recorded",
    "retry_after_of",
]

FLUSH_EVERY = 4_096
FLUSH_INTERVAL_S = 1.0
_CHECK_EVERY = 32  # events between looks at the clock
_BOUNDARIES = frozenset({AttemptStarted, AttemptFinished})
_RETRY_AFTER = re.compile(r"retry[- ]after[\"':= ]+(\d+(?:\.\d+)?)", re.IGNORECASE)


def history_store(env: Mapping[str, str] | None = None, *, quiet: bool = False) -> RunStore | None:
    """The run store for ``env``, or None when history is off or the store cannot be opened."""
    if not history_enabled(env):
        return None
    try:
        return RunStore.open(env)
    except StoreError as exc:
        if not quiet:
            print(f"nexus: run history is off for this run: {exc.sentence()}", file=sys.stderr)
        return None


def retry_after_of(message: str) -> float | None:
    """The seconds a ``Retry-After`` in an outcome's message asks for, if it names one."""
    found = _RETRY_AFTER.search(message)
    return float(found.group(1)) if found else None


class DelegationRecorder:
    """Writes one delegation's events, attempts and result to a :class:`RunHandle`."""

    def __init__(self, handle: RunHandle, *, transport: str = "run") -> None:
        self.handle = handle
        self.transport = transport
        self.started_at = time.time()
        self.attempt: int | None = None
        self.model: str | None = None
        self.end_message: str | None = None
        self._buffer: list[RunEvent] = []
        self._append = self._buffer.append
        self._seen = 0
        self._flushed_at = time.monotonic()

    @property
    def run_id(self) -> str:
        return self.handle.id

    @classmethod
    def begin(
        cls,
        store: RunStore,
        spec: Any,
        *,
        decision: Any = None,
        source: str = "cli",
        project: str | os.PathLike[str] | None = None,
        task: str | None = None,
    ) -> DelegationRecorder:
        """Record a new run for ``spec`` (a :class:`~nexus_core.routing.chain.DelegationSpec`) now.

        ``decision`` is the routing decision behind the chain (kept with its breakdown); ``task``
        the task as the user gave it (default: the spec's prompt).
        """
        chain = [m.id for m in spec.chain]
        handle = store.begin_run(
            spec.prompt if task is None else task,
            project=project,
            routing=decision,
            chain=chain,
            chosen_model=chain[0] if decision is None and chain else None,
            source=source,
            workdir=spec.workdir,
        )
        return cls(handle, transport=getattr(spec, "transport", None) or "run")

    def see(self, event: RunEvent) -> None:
        """One event of the stream, in order. Cheap (a list append): this runs on the stream's path."""
        if event.__class__ in _BOUNDARIES:
            self._boundary(event)
            return
        self._append(event)
        self._seen += 1
        if not self._seen % _CHECK_EVERY and (
            len(self._buffer) >= FLUSH_EVERY or time.monotonic() - self._flushed_at >= FLUSH_INTERVAL_S
        ):
            self.flush()

    def _boundary(self, event: RunEvent) -> None:
        if isinstance(event, AttemptStarted):
            self.flush()
            self.attempt, self.model = event.attempt, event.model_id or event.cli_model_name
            self.handle.attempt_started(
                event.attempt,
                model_id=event.model_id,
                cli_model_name=event.cli_model_name,
                transport=getattr(event, "transport", None) or self.transport,
                server=getattr(event, "server", None),
                session_id=getattr(event, "session_id", None),
            )
            self._append(event)
        elif isinstance(event, AttemptFinished):
            self._append(event)
            self.flush()
            outcome = event.outcome
            retry = retry_after_of(outcome.message) if outcome.failure is FailureClass.RATE_LIMITED else None
            self.handle.attempt_finished(event.attempt, outcome, retry_after_s=retry)

    def flush(self) -> None:
        """Hand the buffered events to the store's writer."""
        if self._buffer:
            self.handle.add_events(self._buffer)  # it copies them
            self._buffer.clear()
        self._flushed_at = time.monotonic()

    def finish(self, result: Any, *, cancelled: bool = False, message: str | None = None, wait: bool = False) -> None:
        """End the run with the delegation's result (None: it never tried a model)."""
        if self.handle.finished:
            return
        self.flush()
        message = message if message is not None else self.end_message
        self.handle.finish(result, cancelled=cancelled, message=message, wait=wait)


async def recorded(
    events: AsyncIterator[RunEvent], recorder: DelegationRecorder | None, delegation: Any
) -> AsyncIterator[RunEvent]:
    """``events`` passed through unchanged, each seen by ``recorder`` (None: not recorded).

    When the stream ends, however it ends (finished, failed, cancelled, the consumer gone), the
    run is finished with ``delegation.result``; an exception other than a failure of the
    delegation itself counts as cancelled.
    """
    if recorder is None:
        async for event in events:
            yield event
        return
    finished = False
    try:
        async for event in events:
            recorder.see(event)
            yield event
        finished = True
    finally:
        aclose = getattr(events, "aclose", None)
        if not finished and aclose is not None:
            await aclose()  # so that the delegation settles its result before it is recorded
        result = getattr(delegation, "result", None)
        cancelled = bool(getattr(delegation, "_cancelled", False)) or (not finished and result is None)
        recorder.finish(result, cancelled=cancelled)


def routing_for(snapshot: Any, task: str, hint: str | None) -> Any:
    """The routing decision to keep with a run: the router's view of ``task`` (with ``hint`` when the
    registry knows it), or None when it cannot be had (an ad-hoc ``provider/model``)."""
    from nexus_core.errors import NexusError
    from nexus_core.routing.profile import profile_task
    from nexus_core.routing.score import route

    try:
        return route(snapshot, profile_task(task), hint if hint and snapshot.registry.find(hint) else None)
    except NexusError:
        return None
