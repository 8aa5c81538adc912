"""What the run store gives back: a run's summary row, its attempts, the run in full, a prune report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from nexus_core.opencode.events import RunEvent

__all__ = ["AttemptRecord", "PruneReport", "RunDetail", "RunStatus", "RunSummary"]

RunStatus = Literal["running", "ok", "failed", "cancelled", "interrupted"]


@dataclass(frozen=True)
class RunSummary:
    """One row of :meth:`RunStore.list_runs`. Times are Unix seconds."""

    id: str
    project: str
    task: str
    source: str
    status: RunStatus
    started_at: float
    finished_at: float | None
    chosen_model: str | None
    outcome_class: str | None
    outcome_message: str | None
    workdir: str | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a stored run."""

    number: int
    model_id: str | None
    cli_model_name: str
    transport: str
    server: str | None
    session_id: str | None
    started_at: float
    finished_at: float | None
    tokens_input: int
    tokens_output: int
    tokens_reasoning: int
    cost: float
    outcome_class: str | None
    outcome_message: str | None
    retry_after_s: float | None


@dataclass(frozen=True)
class RunDetail:
    """A stored run in full: :meth:`RunStore.show`. ``routing`` is the decision's JSON view."""

    summary: RunSummary
    routing: dict[str, Any] | None
    chain: tuple[str, ...]
    attempts: tuple[AttemptRecord, ...]
    final_text: str
    events_stored: int
    events_dropped: int
    continues: str | None
    _events: Callable[[], list[RunEvent]]

    @property
    def session_ids(self) -> tuple[str, ...]:
        """OpenCode session ids of the attempts, in order (to continue the run)."""
        return tuple(a.session_id for a in self.attempts if a.session_id)

    def events(self) -> list[RunEvent]:
        """The stored events in order (a replay)."""
        return self._events()


@dataclass(frozen=True)
class PruneReport:
    """What :meth:`RunStore.prune` removed and what is left."""

    removed: int
    runs_left: int
    bytes_used: int
