"""The dashboard's start with a full run store (10,000 runs of the project, each with events).

* **cold first frame with 10,000 stored runs**: a fresh interpreter from spawn to the dashboard's
  first refresh (goal <= 0.6 s), median of 5, and its ratio to the same start with an empty store
  (interleaved). The history is read after that frame.
* **cold start → History listed**: the same, until the History tab shows its rows (reported).
* **history read, 10,000 vs 1,000 stored runs**: the in-process read the dashboard makes at start
  (:func:`nexus_tui.history.load_past_runs`, at most 400 rows), median of 20 each; a ratio near 1
  shows it is bounded (it reads the newest rows through the project's index, whatever the store holds).

``python -m bench.history_bench``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Measure, emit, median
from bench.tui_bench import _project

STORED_RUNS = 10_000
SMALL_STORE = 1_000
COLD_RUNS = 5
READS = 20

_COLD_CHILD = """
import sys
from nexus_tui.app import NexusApp
from textual.widgets import DataTable
from nexus_tui.widgets.history import HistoryPanel

class Timed(NexusApp):
    def on_mount(self):
        self.call_after_refresh(self._first_frame)
        self.set_interval(0.005, self._listed)

    def _first_frame(self):
        print("frame", flush=True)
        if sys.argv[2] == "frame":
            self.exit(0)

    def _listed(self):
        panel = next(iter(self.query(HistoryPanel)), None)
        tables = panel.query(DataTable) if panel is not None else []
        if tables and tables.first().row_count:
            print("listed", tables.first().row_count, flush=True)
            self.exit(0)

Timed(sys.argv[1]).run(headless=True, size=(140, 45))
"""


def _seed(env: dict[str, str], project: Path, runs: int) -> Path:
    """``runs`` finished runs of ``project``, each with an attempt, a few events and an answer."""
    from nexus_core.opencode.events import AttemptFinished, AttemptStarted, Outcome, StepFinish, StepStart, Text
    from nexus_core.store.runs import RunStore

    with RunStore.open(env) as store:
        for n in range(runs):
            run = store.begin_run(f"task {n}: fix the flaky test number {n % 97}", project=project, chain=["m"])
            run.attempt_started(1, model_id="m", cli_model_name="custom/m")
            run.add_events(
                [
                    AttemptStarted(attempt=1, model_id="m", cli_model_name="custom/m"),
                    StepStart(attempt=1, session_id=f"ses_{n:06d}"),
                    Text(attempt=1, text=f"answer {n}: " + "the fix is to await the fixture. " * 8),
                    StepFinish(attempt=1, reason="stop"),
                    AttemptFinished(attempt=1, cli_model_name="custom/m", outcome=Outcome(message="ok")),
                ]
            )
            run.attempt_finished(1, Outcome(message="ok"))
            run.finish(None, wait=False)
        store.flush()
        return store.path


def _cold(project: Path, env: dict[str, str], *, listed: bool = True) -> tuple[float, float]:
    """(spawn → first frame, spawn → History listed) in seconds; the second is NaN with ``listed=False``."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _COLD_CHILD, str(project), "list" if listed else "frame"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert proc.stdout is not None
        frame = proc.stdout.readline()
        first = time.perf_counter() - start
        rows = proc.stdout.readline() if listed else "listed"
        both = time.perf_counter() - start if listed else float("nan")
        proc.wait(timeout=30)
        if frame.strip() != "frame" or not rows.startswith("listed"):
            err.seek(0)
            last = (err.read().strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the dashboard did not list its history: {last}")
    return first, both


def _reads(env: dict[str, str], project: Path) -> list[float]:
    from nexus_tui.history import load_past_runs

    load_past_runs(env, project)  # opens the store
    times = []
    for _ in range(READS):
        start = time.perf_counter()
        past = load_past_runs(env, project)
        times.append(time.perf_counter() - start)
    assert len(past.entries) == 50
    return times


def _plan(path: Path, project: Path) -> str:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM runs WHERE project = ? ORDER BY seq DESC LIMIT 400",
            (str(project.resolve()),),
        ).fetchall()
    return "; ".join(str(row[-1]) for row in rows)


def measure() -> list[Measure]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project, env = _project(root)
        env = {**env, "NEXUS_STATE_DIR": str(root / "state")}
        small_env = {**env, "NEXUS_STATE_DIR": str(root / "small-state")}
        seeding = time.perf_counter()
        path = _seed(env, project, STORED_RUNS)
        seeded_s = time.perf_counter() - seeding
        _seed(small_env, project, SMALL_STORE)
        size_mb = sum(p.stat().st_size for p in path.parent.iterdir()) / 1e6
        empty_env = {**env, "NEXUS_STATE_DIR": str(root / "empty-state")}
        cold = []
        empty = []
        for _ in range(COLD_RUNS):  # interleaved, so that the machine's load hits both alike
            cold.append(_cold(project, env))
            empty.append(_cold(project, empty_env, listed=False)[0])
        big = _reads(env, project)
        small = _reads(small_env, project)
        plan = _plan(path, project)
    first = [c[0] for c in cold]
    listed = [c[1] for c in cold]
    ratio = median(big) / median(small)
    return [
        Measure(
            f"tui cold first frame with {STORED_RUNS:,} stored runs",
            median(first),
            "s",
            "<= 0.6",
            median(first) <= 0.6,
            samples=tuple(first),
            note=f"{median(first) / median(empty):.2f}x the empty store's {median(empty):.3f} s;"
            f" store {size_mb:.1f} MB, seeded in {seeded_s:.1f} s",
        ),
        Measure(
            f"tui cold start → History listed ({STORED_RUNS:,} stored runs)",
            median(listed),
            "s",
            "reported",
            True,
            samples=tuple(listed),
        ),
        Measure(
            f"history read at start, {STORED_RUNS:,} vs {SMALL_STORE} stored runs",
            ratio,
            "x",
            "~1 (bounded)",
            ratio < 2,
            samples=tuple(big),
            note=f"median {median(big) * 1000:.2f} ms vs {median(small) * 1000:.2f} ms; plan: {plan}",
        ),
    ]


if __name__ == "__main__":
    emit(measure())
