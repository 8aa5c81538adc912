"""Time to route 1,000 and 10,000 models with the full score breakdown (goal: <= 5 ms for 1,000).

The models come from a real opencode.json in a temporary project, each with its own context
limit and pricing so no two breakdowns are alike. The snapshot is built once (as the watcher
does); the figure is one ``route()`` call on it, the median of several runs. As ``timeit`` does,
the garbage collector is off while timing; a second 1,000 figure with it on shows its cost on
a loaded machine. ``python -m bench.route_bench``.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.common import Measure, emit, median
from nexus_core.routing.score import RoutingSnapshot, build_snapshot, profile_task, route

GOAL_MS_PER_1000 = 5.0
RUNS = 31
TASK = "Refactor the session module and fix the failing concurrency test; explain the design tradeoffs."
FAMILIES = ("opus", "sonnet", "haiku", "mini", "flash", "plain")


def _config(count: int) -> dict:
    models = {
        f"model-{FAMILIES[i % len(FAMILIES)]}-{i:05d}": {
            "name": f"Model {i}",
            "limit": {"context": 8_000 + 997 * i, "output": 4_096},
            "cost": {"input": round(0.1 + (i % 97) * 0.05, 2), "output": round(0.4 + (i % 89) * 0.2, 2)},
        }
        for i in range(count)
    }
    return {
        "provider": {
            "custom": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": "http://127.0.0.1:9/v1"},
                "models": models,
            }
        }
    }


def _snapshot(root: Path, count: int) -> RoutingSnapshot:
    project = root / "project"
    project.mkdir(parents=True)
    (project / ".git").mkdir()
    (project / "opencode.json").write_text(json.dumps(_config(count)))
    home = root / "home"
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": os.environ.get("PATH", ""),
        "OPENCODE_TEST_MANAGED_CONFIG_DIR": str(root / "managed"),
    }
    snapshot = build_snapshot(project, env)
    # Routing must score every model: stand in for opencode when this machine has none on PATH.
    return snapshot if snapshot.opencode_path else replace(snapshot, opencode_path="opencode")


def _time_route(snapshot: RoutingSnapshot, collect: bool) -> tuple[list[float], int]:
    profile = profile_task(TASK)
    decision = route(snapshot, profile)  # warm-up; also the per-snapshot precomputation
    samples = []
    gc.collect()
    if not collect:
        gc.disable()
    try:
        for _ in range(RUNS):
            start = time.perf_counter()
            decision = route(snapshot, profile)
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        gc.enable()
    assert all(sum(t.value for t in s.terms) == s.total for s in decision.ranked)
    return samples, len(decision.ranked)


def measure() -> list[Measure]:
    out: list[Measure] = []
    with tempfile.TemporaryDirectory() as tmp:
        for count, collect in ((1_000, False), (1_000, True), (10_000, False)):
            snapshot = _snapshot(Path(tmp) / f"{count}-{collect}", count)
            samples, scored = _time_route(snapshot, collect)
            value = median(samples)
            goal = GOAL_MS_PER_1000 * count / 1_000
            out.append(
                Measure(
                    name=f"route {count:,} models with breakdown" + (", GC on" if collect else ""),
                    value=value,
                    unit="ms",
                    goal=f"<= {goal:g} ms" + (" (the 1,000 goal, scaled)" if count != 1_000 else ""),
                    holds=value <= goal,
                    samples=tuple(samples),
                    note=f"{scored:,} scored, {len(snapshot.registry.models) - scored} skipped",
                )
            )
    return out


if __name__ == "__main__":
    emit(measure())
