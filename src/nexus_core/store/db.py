"""The run store's SQLite file: where it lives, how it is opened, its schema and migrations.

One file, ``runs.sqlite3``, in ``$NEXUS_STATE_DIR`` or ``$XDG_STATE_HOME/nexus`` (default
``~/.local/state/nexus``). Several processes (CLI, MCP server, dashboard) write it at once, so
every connection uses WAL, a busy timeout, and short transactions; a migration runs under
``BEGIN IMMEDIATE`` and re-reads the version inside it, so two processes opening an old file at
once migrate it once. The schema version is SQLite's ``user_version``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from nexus_core.errors import NexusError

__all__ = [
    "BUSY_TIMEOUT_S",
    "DB_NAME",
    "MIGRATIONS",
    "NO_HISTORY_VAR",
    "SCHEMA_VERSION",
    "StoreError",
    "connect",
    "default_path",
    "history_enabled",
    "state_dir",
]

DB_NAME = "runs.sqlite3"
NO_HISTORY_VAR = "NEXUS_NO_HISTORY"
BUSY_TIMEOUT_S = 30.0

_V1 = """
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    task TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_started REAL NOT NULL,
    routing TEXT,
    chain TEXT NOT NULL,
    chosen_model TEXT,
    final_text TEXT,
    outcome_class TEXT,
    outcome_message TEXT,
    events_stored INTEGER NOT NULL DEFAULT 0,
    events_dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_project ON runs (project, seq DESC);
CREATE INDEX runs_by_status ON runs (status) WHERE status = 'running';
CREATE TABLE attempts (
    run INTEGER NOT NULL REFERENCES runs (seq) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    model_id TEXT,
    cli_model_name TEXT NOT NULL,
    transport TEXT NOT NULL,
    server TEXT,
    session_id TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    tokens_input INTEGER NOT NULL DEFAULT 0,
    tokens_output INTEGER NOT NULL DEFAULT 0,
    tokens_reasoning INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    outcome_class TEXT,
    outcome_message TEXT,
    PRIMARY KEY (run, number)
) WITHOUT ROWID;
CREATE INDEX attempts_by_model ON attempts (model_id, run);
CREATE TABLE events (
    run INTEGER NOT NULL REFERENCES runs (seq) ON DELETE CASCADE,
    chunk INTEGER NOT NULL,
    count INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run, chunk)
) WITHOUT ROWID;
"""

# v2: the rest a rate limit asks for, the run a run continues, and the index the observed term reads.
_V2 = """
ALTER TABLE attempts ADD COLUMN retry_after_s REAL;
ALTER TABLE runs ADD COLUMN continues TEXT;
CREATE INDEX attempts_by_finish ON attempts (finished_at) WHERE finished_at IS NOT NULL;
"""

# v3: the directory the task worked in (``project`` is the one it was started from).
_V3 = """
ALTER TABLE runs ADD COLUMN workdir TEXT;
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)
"""``MIGRATIONS[n]`` takes a file from version ``n`` to ``n + 1``."""
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(NexusError):
    """The run store cannot be opened or used."""


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$NEXUS_STATE_DIR``, else ``$XDG_STATE_HOME/nexus``, else ``~/.local/state/nexus``."""
    env = os.environ if env is None else env
    if env.get("NEXUS_STATE_DIR"):
        return Path(env["NEXUS_STATE_DIR"])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "nexus"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "nexus"


def history_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether runs are recorded and observed (``NEXUS_NO_HISTORY`` unset, empty, ``0``, ``false`` or ``no``)."""
    env = os.environ if env is None else env
    return env.get(NO_HISTORY_VAR, "").strip().lower() in ("", "0", "false", "no")


def default_path(env: Mapping[str, str] | None = None) -> Path:
    """The run store file for ``env``."""
    return state_dir(env) / DB_NAME


def connect(path: str | os.PathLike[str], *, migrate: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, busy timeout, foreign keys on."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        if migrate:
            _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"the run store {path} cannot be opened: {exc}",
            "Move the file aside (nexus starts a new one) or set NEXUS_STATE_DIR to another directory",
        ) from exc
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the run store {path} has schema version {version}, newer than this nexus knows ({SCHEMA_VERSION})",
                "Upgrade nexus, or set NEXUS_STATE_DIR to another directory",
            )
        for step in MIGRATIONS[version:]:
            for statement in (s.strip() for s in step.split(";")):
                if statement:
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
