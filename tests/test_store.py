"""The run store and the observed routing term, on real SQLite files and real processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from nexus_core.opencode.events import FailureClass, Outcome, StepFinish, StepStart, Text, TokenUsage
from nexus_core.store.db import MIGRATIONS, SCHEMA_VERSION, connect
from nexus_core.store.observed import ObservedWeights, observed_stats
from nexus_core.store.redact import StoreRedactor
from nexus_core.store.runs import RunStore

KEY = "sk-live-THISISTHESECRETKEY0123456789"
FAIL = Outcome(failure=FailureClass.GATEWAY_ERROR, message="502 from the gateway")


def _store(tmp_path: Path, **options) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite3", redactor=StoreRedactor([KEY]), **options)


def _attempt(store: RunStore, model: str, outcome: Outcome, end: float, start: float | None = None, **kw) -> None:
    run = store.begin_run("task", project=store.path.parent)
    run.attempt_started(1, model_id=model, cli_model_name=f"custom/{model}", started_at=start or end - 1)
    run.attempt_finished(1, outcome, finished_at=end, **kw)
    run.finish(None)


def test_migrates_an_old_version_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    old.execute(
        "INSERT INTO runs (id, project, task, source, status, started_at, host, pid, pid_started, chain)"
        " VALUES ('old', '/p', 'old task', 'cli', 'ok', 1, 'h', 1, 1, '[]')"
    )
    old.commit()
    old.close()
    conn = connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert conn.execute("SELECT task, continues FROM runs").fetchall() == [("old task", None)]
    assert "retry_after_s" in {r[1] for r in conn.execute("PRAGMA table_info(attempts)")}


def test_a_run_round_trips_with_events_and_session(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        run = store.begin_run("Fix it", project=tmp_path, chain=["a", "b"])
        run.attempt_started(1, model_id="a", cli_model_name="custom/a")
        run.add_events([StepStart(session_id="ses_1"), Text(text="hello")])
        run.add_events([StepFinish(tokens=TokenUsage(input=10, output=5), cost=0.5)])
        run.attempt_finished(1, Outcome(message="ok"))
        assert run.finish(None) == "failed"
        detail = store.show(run.id)
        assert detail is not None
        assert detail.session_ids == ("ses_1",)
        assert [e.kind for e in detail.events()] == ["step_start", "text", "step_finish"]
        assert (detail.attempts[0].tokens_input, detail.attempts[0].cost) == (10, 0.5)
        assert [r.id for r in store.list_runs(project=tmp_path)] == [run.id]
        assert store.list_runs(project=tmp_path / "other") == []
        assert store.task_history() == ["Fix it"]


_WRITER = """
import sys
from nexus_core.opencode.events import Outcome, Text
from nexus_core.store.runs import RunStore
store = RunStore(sys.argv[1])
for i in range(25):
    run = store.begin_run(f"task {sys.argv[2]} {i}", project=sys.argv[3])
    run.attempt_started(1, model_id="m", cli_model_name="custom/m")
    run.add_events([Text(text="x" * 100)] * 20)
    run.attempt_finished(1, Outcome(message="ok"))
    run.finish(None)
store.close()
assert not store.write_errors, store.write_errors
"""


def test_eight_writer_processes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(n), str(tmp_path)], stderr=subprocess.PIPE)
        for n in range(8)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 200
    assert conn.execute("SELECT sum(count) FROM events").fetchone()[0] == 200 * 20


_KILLED = """
import sys, time
from nexus_core.store.runs import RunStore
run = RunStore(sys.argv[1]).begin_run("doomed", project=sys.argv[2])
print(run.id, flush=True)
time.sleep(60)
"""


def test_a_killed_run_reads_as_interrupted(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(tmp_path / "runs.sqlite3"), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    with _store(tmp_path) as store:
        assert store.list_runs(project=tmp_path)[0].status == "running"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        shown = store.show(run_id)
        assert shown is not None and shown.summary.status == "interrupted"
        assert [r.id for r in store.list_runs(project=tmp_path, failed=True)] == [run_id]


def test_prune_by_count_and_by_size(tmp_path: Path) -> None:
    with _store(tmp_path, max_runs=5) as store:
        for i in range(12):
            run = store.begin_run(f"t{i}", project=tmp_path)
            run.add_events([Text(text="y" * 2000)] * 10)
            run.finish(None)
        assert store.prune().runs_left == 5
        assert store.list_runs(project=tmp_path, limit=1)[0].task == "t11"
        store.max_bytes = store.bytes_used() // 2
        report = store.prune()
        assert report.bytes_used <= store.max_bytes and report.runs_left < 5


def test_no_secret_reaches_the_file(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        run = store.begin_run(f"use {KEY}", project=tmp_path, routing={"why": KEY})
        run.attempt_started(1, model_id="m", cli_model_name="custom/m", server=f"http://u:{KEY}@h")
        run.add_events([Text(text=f"the key is {KEY}"), Text(text='"quoted ' + KEY + '"')])
        run.attempt_finished(1, Outcome(failure=FailureClass.AUTH, message=f"bad key {KEY}"))
        run.finish(None)
        shown = store.show(run.id)
        assert shown is not None
        first = shown.events()[0]
        assert isinstance(first, Text) and "[redacted]" in first.text
        files = [p for p in tmp_path.iterdir() if p.name.startswith("runs.sqlite3")]
        assert any(p.name.endswith("-wal") for p in files)
        for p in files:
            assert KEY.encode() not in p.read_bytes()
            assert b"THISISTHESECRETKEY" not in p.read_bytes()


def test_observed_term(tmp_path: Path) -> None:
    now = time.time()
    with _store(tmp_path) as store:
        for _ in range(2):
            _attempt(store, "flaky", FAIL, now - 60)
        _attempt(store, "locked", Outcome(failure=FailureClass.AUTH, message="401"), now - 60)
        _attempt(store, "busy", Outcome(failure=FailureClass.RATE_LIMITED, message="429"), now - 20, retry_after_s=60)
        stats = observed_stats(store, now=now)
        assert stats.term("flaky").value < 0
        assert "2 of the last 2 attempts failed (gateway_error ×2)" in stats.term("flaky").detail
        assert stats.term("locked").value == 0
        resting = stats.unavailable("busy")
        assert resting is not None
        until, reason = resting
        assert until == now + 40 and reason == "rate limited 20 s ago; resting 40 s more"
        assert stats.unavailable("busy", now + 41) is None
        later = observed_stats(store, now=now + 3600)
        assert stats.term("flaky").value < later.term("flaky").value <= 0
        assert observed_stats(store, now=now).term("flaky").value >= ObservedWeights().floor
