"""The run store: every delegation, its routing, attempts, events and answer, kept in SQLite.

    store = RunStore.open()                      # $NEXUS_STATE_DIR or $XDG_STATE_HOME/nexus
    run = store.begin_run(task, project=cwd, routing=decision, chain=[m.id for m in decision.chain])
    run.attempt_started(1, model_id="sonnet", cli_model_name="custom/sonnet")
    run.add_events(batch)                        # cheap: queued for the writer thread
    run.attempt_finished(1, outcome)
    run.finish(result)                           # queued too; wait=True waits for it
    store.list_runs(limit=20, failed=True); store.show(run.id); store.prune()

Writes: :meth:`RunStore.begin_run` inserts the run at once (so a process killed right after
still leaves it); everything else goes through a bounded queue to one writer thread per store,
which commits whatever is queued in one short transaction (serialising and redacting there, off
the stream's path). :meth:`flush` and :meth:`close` wait for the queue. Events are kept up to
``max_events_per_run`` per run (then counted, not stored), in chunks (JSON arrays). Every string
stored passes the redactor.

A ``running`` run whose process is gone (same host; pid and process start time via psutil) is
read as ``interrupted`` and written so. Retention keeps at most ``max_runs`` runs and
``max_bytes`` of used pages, pruning the oldest finished runs every ``PRUNE_EVERY`` runs.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
from pydantic import TypeAdapter

from nexus_core.opencode.events import RunEvent, event_adapter
from nexus_core.opencode.serve.events import (
    PermissionAsked,
    PermissionReplied,
    ReasoningDelta,
    SessionIdle,
    SessionRetry,
    TextDelta,
    ToolState,
)
from nexus_core.store.db import StoreError, connect, default_path
from nexus_core.store.handle import PRUNE_EVERY, RunHandle  # noqa: F401  (re-exported)
from nexus_core.store.records import AttemptRecord, PruneReport, RunDetail, RunStatus, RunSummary
from nexus_core.store.redact import StoreRedactor

__all__ = [
    "AttemptRecord",
    "PruneReport",
    "RunDetail",
    "RunHandle",
    "RunStatus",
    "RunStore",
    "RunSummary",
]

FAILED_STATUSES = ("failed", "interrupted")
QUEUE_BATCHES = 1_024
MAX_OPS_PER_TRANSACTION = 256
POLL_S = 0.2
FLUSH_TIMEOUT_S = 30.0
_PID_START_SLACK_S = 1.0
_HOST = socket.gethostname()
_CHUNK = TypeAdapter(list[RunEvent])
# The serve transport's events (deltas, tool states, permission questions) are stored beside RunEvent's.
_SERVE_EVENTS: dict[str, Any] = {
    cls.model_fields["kind"].default: cls
    for cls in (TextDelta, ReasoningDelta, ToolState, SessionRetry, PermissionAsked, PermissionReplied, SessionIdle)
}


def _stored_event(item: Any) -> Any:
    """One stored event read back; None for one this version does not know (a newer writer's)."""
    try:
        kind = item.get("kind") if isinstance(item, dict) else None
        serve = _SERVE_EVENTS.get(kind) if isinstance(kind, str) else None
        return serve.model_validate(item) if serve is not None else event_adapter.validate_python(item)
    except ValueError:
        return None


class RunStore:
    """The run store of one SQLite file; safe to share between threads and processes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        redactor: StoreRedactor | None = None,
        max_runs: int = 10_000,
        max_bytes: int = 256 * 1024 * 1024,
        max_events_per_run: int = 10_000,
    ) -> None:
        self.path = Path(path)
        self.redact = redactor if redactor is not None else StoreRedactor.from_env()
        self.max_runs = max_runs
        self.max_bytes = max_bytes
        self.max_events_per_run = max_events_per_run
        self._conn = connect(self.path)
        # Checkpoints are the writer thread's: one here would land in begin_run, on the stream's path.
        self._conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Callable[[sqlite3.Connection], object], threading.Event | None]] = queue.Queue(
            QUEUE_BATCHES
        )
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._wake = threading.Event()
        self.write_errors: list[str] = []
        self._me = psutil.Process()
        self._me_started = self._me.create_time()

    @classmethod
    def open(cls, env: Mapping[str, str] | None = None, **options: Any) -> RunStore:
        """The store at :func:`~nexus_core.store.db.default_path` for ``env``, redacting ``env``'s secrets."""
        options.setdefault("redactor", StoreRedactor.from_env(env))
        return cls(default_path(env), **options)

    def flush(self) -> None:
        """Wait until every write queued so far is committed."""
        if self._writer is not None:
            self._call(None)

    def close(self) -> None:
        """Flush queued writes and close the file."""
        if self._writer is not None:
            self._call(None)
            self._queue.put((_STOP, None))
            self._wake.set()
            self._writer.join(FLUSH_TIMEOUT_S)
            self._writer = None
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- writing

    def begin_run(
        self,
        task: str,
        *,
        project: str | os.PathLike[str] | None = None,
        routing: Any = None,
        chain: Sequence[str] = (),
        chosen_model: str | None = None,
        source: str = "cli",
        continues: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
    ) -> RunHandle:
        """Record a new ``running`` run now and return its handle.

        ``routing`` is a :class:`~nexus_core.routing.RoutingDecision` (its ``as_dict()`` is
        kept) or JSON data; ``chain`` the model ids to try; ``continues`` the id of a run this one
        continues.
        """
        if routing is not None and hasattr(routing, "as_dict"):
            if chosen_model is None and getattr(routing, "chosen", None) is not None:
                chosen_model = routing.chosen.id
            routing = routing.as_dict()
        run_id = f"{int(time.time() * 1000):x}-{secrets.token_hex(4)}"
        red = self.redact
        row = (
            run_id,
            red(str(Path(project).resolve() if project is not None else Path.cwd())),
            red(task),
            red(source),
            time.time(),
            _HOST,
            self._me.pid,
            self._me_started,
            red(json.dumps(routing, ensure_ascii=False)) if routing is not None else None,
            red(json.dumps(list(chain))),
            red(chosen_model) if chosen_model else None,
            red(continues) if continues else None,
            red(str(workdir)) if workdir is not None else None,
        )
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(
                    "INSERT INTO runs (id, project, task, source, status, started_at, host, pid, pid_started,"
                    " routing, chain, chosen_model, continues, workdir)"
                    " VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                seq = cur.lastrowid
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        assert seq is not None
        return RunHandle(self, run_id, seq)

    def _submit(self, op: Callable[[sqlite3.Connection], object]) -> None:
        self._ensure_writer()
        self._queue.put((op, None))
        if self._queue.qsize() >= MAX_OPS_PER_TRANSACTION:
            self._wake.set()

    def _call(self, op: Callable[[sqlite3.Connection], object] | None) -> None:
        """Queue ``op`` and wait until it and everything queued before it is committed."""
        self._ensure_writer()
        done = threading.Event()
        self._queue.put((op or _NOTHING, done))
        self._wake.set()
        if not done.wait(FLUSH_TIMEOUT_S):
            raise StoreError(
                f"the run store {self.path} did not finish writing in {FLUSH_TIMEOUT_S:g} s",
                "Check that the disk is not full and that no process holds the file locked",
            )

    def _ensure_writer(self) -> None:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_loop, name="nexus-run-store", daemon=True)
                    self._writer.start()

    def _next_ops(self) -> list[tuple[Callable[[sqlite3.Connection], object], threading.Event | None]]:
        """The next group of queued writes, taken every ``POLL_S`` or at once when someone waits (a
        flush, a close) or the queue fills. Queueing a write never wakes the writer: a woken thread
        takes the GIL from the stream that queued it, so the writer comes by on its own time."""
        while True:
            self._wake.wait(POLL_S)
            self._wake.clear()
            ops: list[tuple[Callable[[sqlite3.Connection], object], threading.Event | None]] = []
            while len(ops) < MAX_OPS_PER_TRANSACTION:
                try:
                    ops.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if ops:
                if len(ops) == MAX_OPS_PER_TRANSACTION:
                    self._wake.set()  # more may be queued: come back at once
                return ops

    def _write_loop(self) -> None:
        conn = connect(self.path, migrate=False)
        try:
            while True:
                ops = self._next_ops()
                stop = any(op is _STOP for op, _ in ops)
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    for op, _ in ops:
                        if op is not _STOP:
                            op(conn)
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self.write_errors.append(str(exc))
                for _, done in ops:
                    if done is not None:
                        done.set()
                ops.clear()  # the events the writes held go now, not when the next batch comes
                if stop:
                    return
        finally:
            conn.close()

    # ---------------------------------------------------------------- reading

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def list_runs(
        self,
        *,
        limit: int = 20,
        project: str | os.PathLike[str] | None = None,
        all_projects: bool = False,
        model: str | None = None,
        failed: bool = False,
    ) -> list[RunSummary]:
        """Runs newest first: this project's (``project``, default the working directory) unless
        ``all_projects``; ``model`` keeps runs with an attempt of that model id or CLI model name;
        ``failed`` keeps failed and interrupted runs."""
        where, args = [], []
        if not all_projects:
            where.append("project = ?")
            args.append(self.redact(str(Path(project).resolve() if project is not None else Path.cwd())))
        if model is not None:
            where.append(
                "(chosen_model = ? OR EXISTS (SELECT 1 FROM attempts a WHERE a.run = runs.seq"
                " AND (a.model_id = ? OR a.cli_model_name = ?)))"
            )
            args += [model, model, model]
        if failed:
            self._settle_running()
            where.append(f"status IN ({', '.join('?' * len(FAILED_STATUSES))})")
            args += FAILED_STATUSES
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = self._read(sql, [*args, max(0, limit)])
        return [self._summary(row) for row in rows]

    def show(self, run_id: str) -> RunDetail | None:
        """The run ``run_id`` in full (None when no run has that id)."""
        rows = self._read(
            f"SELECT {_SUMMARY_COLUMNS}, seq, routing, chain, final_text, events_stored, events_dropped, continues"
            " FROM runs WHERE id = ?",
            (run_id,),
        )
        if not rows:
            return None
        row = rows[0]
        summary = self._summary(row[: len(_SUMMARY_FIELDS)])
        seq, routing, chain, final_text, stored, dropped, continues = row[len(_SUMMARY_FIELDS) :]
        attempts = tuple(
            AttemptRecord(*a)
            for a in self._read(
                "SELECT number, model_id, cli_model_name, transport, server, session_id, started_at, finished_at,"
                " tokens_input, tokens_output, tokens_reasoning, cost, outcome_class, outcome_message, retry_after_s"
                " FROM attempts WHERE run = ? ORDER BY number",
                (seq,),
            )
        )
        return RunDetail(
            summary=summary,
            routing=json.loads(routing) if routing else None,
            chain=tuple(json.loads(chain)),
            attempts=attempts,
            final_text=final_text or "",
            events_stored=stored,
            events_dropped=dropped,
            continues=continues,
            _events=lambda: self._events_of(seq),
        )

    def _events_of(self, seq: int) -> list[RunEvent]:
        out: list[RunEvent] = []
        for (data,) in self._read("SELECT data FROM events WHERE run = ? ORDER BY chunk", (seq,)):
            items = (
                json.loads(data) if data.startswith("[") else [json.loads(line) for line in data.split("\n") if line]
            )
            out.extend(event for item in items if (event := _stored_event(item)) is not None)
        return out

    def task_history(self, *, limit: int = 50, project: str | os.PathLike[str] | None = None) -> list[str]:
        """Distinct tasks, most recent first (``project``'s only when given), for recall in the dashboard."""
        where, args = "", []
        if project is not None:
            where = "WHERE project = ?"
            args.append(self.redact(str(Path(project).resolve())))
        rows = self._read(
            f"SELECT task FROM runs {where} GROUP BY task ORDER BY max(seq) DESC LIMIT ?", [*args, max(0, limit)]
        )
        return [task for (task,) in rows]

    def _summary(self, row: Sequence[Any]) -> RunSummary:
        summary = RunSummary(*row)
        if summary.status == "running" and self._is_dead(row):
            self._mark_interrupted([summary.id])
            return RunSummary(**{**summary.__dict__, "status": "interrupted"})
        return summary

    def _is_dead(self, row: Sequence[Any]) -> bool:
        rows = self._read("SELECT host, pid, pid_started FROM runs WHERE id = ?", (row[0],))
        return bool(rows) and not _alive(*rows[0])

    def _settle_running(self) -> None:
        """Mark every dead ``running`` run ``interrupted`` (the partial index makes this cheap)."""
        rows = self._read("SELECT id, host, pid, pid_started FROM runs WHERE status = 'running'")
        dead = [run_id for run_id, host, pid, started in rows if not _alive(host, pid, started)]
        if dead:
            self._mark_interrupted(dead)

    def _mark_interrupted(self, run_ids: Sequence[str]) -> None:
        message = "the process running it ended without finishing it (killed or crashed)"
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "UPDATE runs SET status = 'interrupted', outcome_message = ? WHERE id = ? AND status = 'running'",
                    [(message, run_id) for run_id in run_ids],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # ---------------------------------------------------------------- retention

    def bytes_used(self) -> int:
        """Bytes of the file's pages in use (freed pages are reused, so this is what retention bounds)."""
        (pages,), (free,), (size,) = (
            self._read("PRAGMA page_count")[0],
            self._read("PRAGMA freelist_count")[0],
            self._read("PRAGMA page_size")[0],
        )
        return (pages - free) * size

    def prune(self) -> PruneReport:
        """Remove the oldest finished runs beyond ``max_runs``, then while more than ``max_bytes`` is used."""
        removed = 0
        with self._lock:
            (count,) = self._conn.execute("SELECT count(*) FROM runs").fetchone()
        excess = count - self.max_runs
        if excess > 0:
            removed += self._delete_oldest(excess)
        while self.bytes_used() > self.max_bytes:
            (left,) = self._read("SELECT count(*) FROM runs")[0]
            batch = self._delete_oldest(max(1, left // 10))
            if not batch:
                break
            removed += batch
        (left,) = self._read("SELECT count(*) FROM runs")[0]
        return PruneReport(removed=removed, runs_left=left, bytes_used=self.bytes_used())

    def _prune_with(self, conn: sqlite3.Connection) -> None:
        """The automatic prune, inside the writer thread's transaction: by count, then a tenth by size."""
        (count,) = conn.execute("SELECT count(*) FROM runs").fetchone()
        excess = count - self.max_runs
        (pages,), (free,), (size,) = (
            conn.execute("PRAGMA page_count").fetchone(),
            conn.execute("PRAGMA freelist_count").fetchone(),
            conn.execute("PRAGMA page_size").fetchone(),
        )
        if (pages - free) * size > self.max_bytes:
            excess = max(excess, count // 10, 1)
        if excess > 0:
            conn.execute(_DELETE_OLDEST, (excess,))

    def _delete_oldest(self, n: int) -> int:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(_DELETE_OLDEST, (n,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return cur.rowcount


_DELETE_OLDEST = "DELETE FROM runs WHERE seq IN (SELECT seq FROM runs WHERE status != 'running' ORDER BY seq LIMIT ?)"
_SUMMARY_FIELDS = tuple(RunSummary.__dataclass_fields__)
_SUMMARY_COLUMNS = ", ".join(_SUMMARY_FIELDS)


def _STOP(conn: sqlite3.Connection) -> None:
    """The writer thread's end marker."""


def _NOTHING(conn: sqlite3.Connection) -> None:
    """A flush marker: writes nothing."""


def _alive(host: str, pid: int, pid_started: float) -> bool:
    """Whether the process that began a run still runs it (a run of another host is taken as alive)."""
    if host != _HOST:
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(process.create_time() - pid_started) <= _PID_START_SLACK_S
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
