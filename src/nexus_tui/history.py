"""This project's past runs, read from the run store for the dashboard: the list, one run in full, task recall.

Every read is bounded: the list is one ``ORDER BY seq DESC LIMIT`` query over the project's index
(:data:`SCAN_RUNS` rows at most, whatever the store holds), and a replay reads one run's events
(the store keeps at most ``max_events_per_run`` of them). Reads run off the event loop (the
callers use a thread). History off (``NEXUS_NO_HISTORY``) or a store that cannot be opened reads
as no history at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "HISTORY_LIMIT",
    "SCAN_RUNS",
    "TASK_LIMIT",
    "HistoryEntry",
    "PastRuns",
    "StoreTaskHistory",
    "StoredRun",
    "load_past_runs",
    "load_stored_run",
    "opencode_db",
    "session_known",
]

HISTORY_LIMIT = 50
"""Past runs listed in the History tab."""
TASK_LIMIT = 200
"""Distinct earlier tasks Up/Down recall."""
SCAN_RUNS = 400
"""Rows read at start, newest first: the listed runs and the tasks to recall come from them."""


@dataclass(frozen=True)
class HistoryEntry:
    """One past run as the History tab lists it. ``status`` is the store's (``running``, ``ok``,
    ``failed``, ``cancelled``, ``interrupted``); times are Unix seconds."""

    run_id: str
    task: str
    status: str
    started_at: float
    finished_at: float | None
    model: str | None
    source: str
    outcome: str | None = None
    workdir: str | None = None


@dataclass(frozen=True)
class StoredRun:
    """A past run in full, for a replay: its entry, stored events, final text and the session to continue."""

    entry: HistoryEntry
    events: tuple[Any, ...]
    final_text: str
    session_id: str | None
    model_id: str | None
    cli_model_name: str | None
    events_dropped: int = 0
    session_exists: bool | None = None
    """Whether OpenCode still has ``session_id`` (None: it cannot be told; F6 is offered anyway)."""


@dataclass(frozen=True)
class PastRuns:
    """What the dashboard reads at start: the runs to list (newest first) and the tasks to recall (newest first)."""

    entries: tuple[HistoryEntry, ...]
    tasks: tuple[str, ...]


def _store(env: Mapping[str, str]) -> Any:
    # The dashboard's one store per state directory (shared with the runs it records).
    from nexus_core.store.db import history_enabled
    from nexus_tui.backend import _history_store

    return _history_store(env) if history_enabled(env) else None


def _entry(summary: Any) -> HistoryEntry:
    return HistoryEntry(
        run_id=summary.id,
        task=summary.task,
        status=summary.status,
        started_at=summary.started_at,
        finished_at=summary.finished_at,
        model=summary.chosen_model,
        source=summary.source,
        outcome=summary.outcome_message if summary.status != "ok" else None,
        workdir=summary.workdir,
    )


def distinct_tasks(tasks: Iterable[str], limit: int = TASK_LIMIT) -> tuple[str, ...]:
    """``tasks`` without repeats (the first occurrence kept) and blank ones, at most ``limit``."""
    seen: dict[str, None] = {}
    for task in tasks:
        text = task.strip()
        if text and text not in seen:
            seen[text] = None
            if len(seen) >= limit:
                break
    return tuple(seen)


def load_past_runs(
    env: Mapping[str, str], project_dir: Path, *, limit: int = HISTORY_LIMIT, scan: int = SCAN_RUNS
) -> PastRuns:
    """The project's newest ``limit`` runs and up to :data:`TASK_LIMIT` distinct tasks, from one bounded query.

    A run whose process died is read (and written) as ``interrupted`` by the store.
    """
    store = _store(env)
    if store is None:
        return PastRuns((), ())
    summaries = store.list_runs(limit=max(limit, scan), project=project_dir)
    return PastRuns(
        entries=tuple(_entry(s) for s in summaries[:limit]),
        tasks=distinct_tasks(s.task for s in summaries),
    )


def load_stored_run(env: Mapping[str, str], run_id: str) -> StoredRun | None:
    """One past run with its stored events (None when the store no longer has it)."""
    store = _store(env)
    if store is None:
        return None
    detail = store.show(run_id)
    if detail is None:
        return None
    last = detail.attempts[-1] if detail.attempts else None
    sessions = detail.session_ids
    session = sessions[-1] if sessions else None
    return StoredRun(
        entry=_entry(detail.summary),
        events=tuple(detail.events()),
        final_text=detail.final_text,
        session_id=session,
        session_exists=session_known(session, env) if session else None,
        model_id=(last.model_id if last is not None else None) or detail.summary.chosen_model,
        cli_model_name=last.cli_model_name if last is not None else None,
        events_dropped=detail.events_dropped,
    )


def opencode_db(env: Mapping[str, str]) -> Path:
    """OpenCode's own database (1.2: ``$XDG_DATA_HOME/opencode/opencode.db``), where its sessions are kept."""
    data = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(data) / "opencode" / "opencode.db"


def session_known(session_id: str, env: Mapping[str, str]) -> bool | None:
    """Whether OpenCode still keeps ``session_id``: read-only, from its database; None when that cannot be
    told (no database where OpenCode 1.2 keeps it, another layout, a lock that does not clear in 1 s)."""
    import sqlite3

    path = opencode_db(env)
    if not path.is_file():
        return None
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1.0) as conn:
            row = conn.execute("SELECT 1 FROM session WHERE id = ?", (session_id,)).fetchone()
    except sqlite3.Error:
        return None
    return row is not None


class StoreTaskHistory:
    """The editor's Up/Down history backed by the run store: earlier tasks, oldest first, no repeats, bounded.

    It starts empty and takes the store's tasks with :meth:`load` once they are read (off the event
    loop); tasks submitted meanwhile stay the newest.
    """

    def __init__(self, limit: int = TASK_LIMIT) -> None:
        self.limit = limit
        self._entries: list[str] = []

    def entries(self) -> Sequence[str]:
        """Earlier tasks, oldest first."""
        return tuple(self._entries)

    def add(self, task: str) -> None:
        """Remember a submitted task as the newest (an earlier copy of it goes)."""
        text = task.strip()
        if not text:
            return
        if text in self._entries:
            self._entries.remove(text)
        self._entries.append(text)
        del self._entries[: -self.limit]

    def load(self, newest_first: Iterable[str]) -> None:
        """Put the store's tasks (newest first) before the ones added since start."""
        added = self._entries
        stored = [task for task in distinct_tasks(newest_first, self.limit) if task not in added]
        self._entries = [*reversed(stored), *added][-self.limit :]
