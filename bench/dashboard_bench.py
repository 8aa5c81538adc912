"""Latencies through the running dashboard (headless Textual, the real app and core).

* **event line → in the task log**: an ``opencode`` stand-in first on PATH writes ``text``
  events, each carrying the wall-clock time it was written to stdout, every 20 ms; the app runs
  it as a delegation like any OpenCode, and the bench polls the run's ``Log`` every millisecond
  for each line. The figure is p50 and p95 of (seen in the log − written) (goal p95 <= 50 ms).
  The stand-in is used because the real OpenCode writes a whole answer at once, so it gives one
  sample per run; its events go through the same adapter, parser, run view and log.
* **config saved → registry table updated**: an atomic save (temp file + rename) of
  opencode.json adding a model, until its row is in the registry table (goal <= 300 ms), median
  of several saves.

``python -m bench.dashboard_bench``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Measure, emit, median, percentile
from bench.tui_bench import _CONFIG, SIZE, _project

EVENTS = 100
EVENT_INTERVAL_S = 0.02
SAVES = 7
POLL_S = 0.001

_STAND_IN = """#!{python}
import json, sys, time
sys.stdin.read()
def emit(kind, part):
    sys.stdout.write(json.dumps({{"type": kind, "timestamp": int(time.time() * 1000), "sessionID": "bench", "part": part}}) + "\\n")
    sys.stdout.flush()
emit("step_start", {{"type": "step-start"}})
for n in range({events}):
    emit("text", {{"type": "text", "text": "sent-at %.6f #%d" % (time.time(), n)}})
    time.sleep({interval})
emit("step_finish", {{"type": "step-finish", "reason": "stop", "cost": 0, "tokens": {{"input": 1, "output": {events}, "reasoning": 0, "cache": {{"read": 0, "write": 0}}}}}})
"""


def _stand_in(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "opencode"
    script.write_text(_STAND_IN.format(python=sys.executable, events=EVENTS, interval=EVENT_INTERVAL_S))
    script.chmod(0o755)


async def _event_to_log(project: Path, env: dict[str, str]) -> list[float]:
    from nexus_tui.app import NexusApp
    from nexus_tui.widgets.task import RunRequest

    app = NexusApp(project, env=env, test_mode=True, watch_config=False, check_health=False)
    latencies: dict[str, float] = {}
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        run_id = app.start_run(RunRequest(task="bench: stream events"))
        if run_id is None:
            raise RuntimeError("the dashboard did not start the run")
        handle = app.runs[run_id]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = time.time()
            for view in app.query("RunView"):
                for line in view.log_widget.lines:
                    if line.startswith("sent-at ") and line not in latencies:
                        latencies[line] = (now - float(line.split()[1])) * 1000
            if handle.finished and len(latencies) >= EVENTS:
                break
            await asyncio.sleep(POLL_S)
        await app.shutdown()
        await pilot.pause()
    if len(latencies) < EVENTS:
        raise RuntimeError(f"only {len(latencies)} of {EVENTS} event lines reached the log")
    return list(latencies.values())


async def _save_to_table(project: Path, env: dict[str, str]) -> list[float]:
    from nexus_tui.app import NexusApp
    from nexus_tui.widgets.registry import RegistryPanel

    app = NexusApp(project, env=env, test_mode=True, watch_config=True, check_health=False)
    samples: list[float] = []
    config = json.loads(json.dumps(_CONFIG))
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        panel = app.query_one(RegistryPanel)
        deadline = time.monotonic() + 30
        while "opencode-custom-opus" not in panel.shown_ids and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause(0.5)  # let the watcher settle on the initial files
        target = project / "opencode.json"
        for n in range(SAVES):
            key = f"bench-model-{n}"
            config["provider"]["custom"]["models"][key] = {"name": key}
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps(config))
            start = time.perf_counter()
            os.replace(tmp, target)
            wanted = f"opencode-custom-{key}"
            deadline = time.monotonic() + 10
            while wanted not in panel.shown_ids:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{wanted} never reached the registry table")
                await asyncio.sleep(POLL_S)
            samples.append((time.perf_counter() - start) * 1000)
            await pilot.pause(0.3)
        await app.shutdown()
    return samples


def measure() -> list[Measure]:
    with tempfile.TemporaryDirectory() as tmp:
        project, env = _project(Path(tmp))
        bin_dir = Path(tmp) / "bin"
        _stand_in(bin_dir)
        # The stand-in speaks `opencode run --format json`: this measures the view and its log, not serve.
        stream_env = dict(env, PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]), NEXUS_TRANSPORT="run")
        latencies = asyncio.run(_event_to_log(project, stream_env))
        saves = asyncio.run(_save_to_table(project, env))
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    return [
        Measure("event line on stdout -> in the task log (p50)", p50, "ms", "report", True, samples=tuple(latencies)),
        Measure(
            "event line on stdout -> in the task log (p95)",
            p95,
            "ms",
            "<= 50 ms",
            p95 <= 50,
            samples=tuple(latencies),
            note=f"{len(latencies)} lines, one every {EVENT_INTERVAL_S * 1000:.0f} ms; the log is written in batches at 30 Hz",
        ),
        Measure(
            "config saved -> registry table updated",
            median(saves),
            "ms",
            "<= 300 ms",
            median(saves) <= 300,
            samples=tuple(saves),
            note=f"{len(saves)} atomic saves, each adding a model",
        ),
    ]


if __name__ == "__main__":
    emit(measure())
