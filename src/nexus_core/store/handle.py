"""The writer of one run: :class:`RunHandle` queues its writes to the store's writer thread.

Nothing here runs on the caller's path but a queue put: events are serialised (one pydantic call
per chunk), redacted and inserted by the writer thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from nexus_core.opencode.events import FailureClass, Outcome, RunEvent, StepFinish, StepStart
from nexus_core.store.db import StoreError
from nexus_core.store.records import RunStatus

if TYPE_CHECKING:
    from nexus_core.store.runs import RunStore

__all__ = ["PRUNE_EVERY", "RunHandle"]

PRUNE_EVERY = 50


class RunHandle:
    """The writer of one run. Methods queue their writes; ``finish(wait=True)`` waits for them."""

    def __init__(self, store: RunStore, run_id: str, seq: int) -> None:
        self.store = store
        self.id = run_id
        self._seq = seq
        self._chunk = 0
        self._stored = 0
        self._dropped = 0
        self._tokens: dict[int, list[float]] = {}
        self._sessions: dict[int, str] = {}
        self._finished = False

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` was called."""
        return self._finished

    def attempt_started(
        self,
        number: int,
        *,
        model_id: str | None,
        cli_model_name: str,
        transport: str = "run",
        server: str | None = None,
        session_id: str | None = None,
        started_at: float | None = None,
    ) -> None:
        """An attempt began. ``transport`` is ``run`` or ``serve``; ``server`` the serve URL."""
        red = self.store.redact
        row = (
            self._seq,
            number,
            red(model_id) if model_id else None,
            red(cli_model_name),
            red(transport),
            red(server) if server else None,
            red(session_id) if session_id else None,
            time.time() if started_at is None else started_at,
        )
        self.store._submit(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO attempts (run, number, model_id, cli_model_name, transport, server,"
                " session_id, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    def add_events(self, batch: Iterable[RunEvent]) -> None:
        """Queue a batch of events (tokens, cost and session ids are read from them in the writer)."""
        events = list(batch)
        if events:
            self.store._submit(lambda conn: self._write_events(conn, events))

    def _write_events(self, conn: sqlite3.Connection, events: list[RunEvent]) -> None:
        for e in events:
            if isinstance(e, StepFinish):
                acc = self._tokens.setdefault(e.attempt, [0, 0, 0, 0.0])
                acc[0] += e.tokens.input
                acc[1] += e.tokens.output
                acc[2] += e.tokens.reasoning
                acc[3] += e.cost
            elif isinstance(e, StepStart) and e.session_id and e.attempt not in self._sessions:
                self._sessions[e.attempt] = e.session_id
                conn.execute(
                    "UPDATE attempts SET session_id = ? WHERE run = ? AND number = ?",
                    (self.store.redact(e.session_id), self._seq, e.attempt),
                )
        room = self.store.max_events_per_run - self._stored
        if room < len(events):
            self._dropped += len(events) - max(0, room)
            events = events[: max(0, room)]
        if not events:
            return
        # Each event by its own model: the run's stream also carries serve events (deltas, tool states,
        # permission questions) that the RunEvent union does not name.
        data = self.store.redact.json_line(json.dumps([e.model_dump(mode="json") for e in events]))
        conn.execute(
            "INSERT INTO events (run, chunk, count, data) VALUES (?, ?, ?, ?)",
            (self._seq, self._chunk, len(events), data),
        )
        self._chunk += 1
        self._stored += len(events)

    def attempt_finished(
        self, number: int, outcome: Outcome, *, retry_after_s: float | None = None, finished_at: float | None = None
    ) -> None:
        """An attempt ended with ``outcome``; tokens and cost are those of its events.

        ``retry_after_s`` is the rest a rate-limited gateway asked for (``Retry-After``).
        """
        red = self.store.redact
        end = time.time() if finished_at is None else finished_at
        failure = outcome.failure.value if outcome.failure is not None else None
        message = red(outcome.message)

        def write(conn: sqlite3.Connection) -> None:
            acc = self._tokens.get(number, [0, 0, 0, 0.0])
            conn.execute(
                "UPDATE attempts SET finished_at = ?, outcome_class = ?, outcome_message = ?, retry_after_s = ?,"
                " tokens_input = ?, tokens_output = ?, tokens_reasoning = ?, cost = ? WHERE run = ? AND number = ?",
                (end, failure, message, retry_after_s, *acc, self._seq, number),
            )

        self.store._submit(write)

    def finish(
        self, result: Any = None, *, cancelled: bool = False, message: str | None = None, wait: bool = True
    ) -> RunStatus:
        """End the run with a :class:`~nexus_core.routing.chain.DelegationResult` (or None when it never ran).

        ``message`` replaces the outcome message (e.g. why a run was cancelled). With ``wait`` it
        returns once every queued write of the run is committed; otherwise the writes stay queued
        (:meth:`RunStore.flush` or :meth:`RunStore.close` waits for them). Prunes now and then.
        Returns the status stored.
        """
        if self._finished:
            raise StoreError(f"run {self.id} is already finished", "Call finish() once per run")
        self._finished = True
        red = self.store.redact
        outcome: Outcome | None = getattr(result, "outcome", None)
        if cancelled or (outcome is not None and outcome.failure is FailureClass.CANCELLED):
            status: RunStatus = "cancelled"
        elif outcome is not None and outcome.ok:
            status = "ok"
        else:
            status = "failed"
        said = getattr(result, "text", None)
        text = red(said) if isinstance(said, str) and said else None
        final = getattr(result, "final", None)
        chosen = red(final.model_id) if final is not None and final.model_id else None
        failure = outcome.failure.value if outcome is not None and outcome.failure is not None else None
        if message is None:
            message = outcome.message if outcome is not None else ("cancelled" if cancelled else None)
        message = red(message) if message is not None else None
        finished_at = time.time()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, final_text = ?, outcome_class = ?, outcome_message = ?,"
                " chosen_model = coalesce(?, chosen_model), events_stored = ?, events_dropped = ? WHERE seq = ?",
                (status, finished_at, text, failure, message, chosen, self._stored, self._dropped, self._seq),
            )

        if wait:
            self.store._call(write)
        else:
            self.store._submit(write)
        if self._seq % PRUNE_EVERY == 0:
            self.store._submit(lambda conn: self.store._prune_with(conn))
        return status
