"""Latency from saving opencode.json to the watcher publishing the new snapshot (goal: <= 300 ms).

A real :class:`~nexus_core.config.watch.ConfigWatcher` on a temporary project; each save is an
editor-style atomic save (temp file, rename over) that adds one model, and the clock runs
from just before the rename until the update with that model reaches a subscriber.
``python -m bench.reload_bench``.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from bench.common import Measure, emit, median, percentile
from nexus_core.config.watch import ConfigWatcher

GOAL_MS = 300.0
SAVES = 15
WAIT_S = 10


def _config(count: int) -> str:
    models = {f"bench-{i:03d}": {"name": f"Bench {i}"} for i in range(count)}
    return json.dumps(
        {
            "provider": {
                "custom": {
                    "npm": "@ai-sdk/openai-compatible",
                    "options": {"baseURL": "http://127.0.0.1:9/v1"},
                    "models": models,
                }
            }
        }
    )


async def _run(root: Path) -> list[float]:
    project = root / "project"
    project.mkdir()
    (project / ".git").mkdir()
    target = project / "opencode.json"
    target.write_text(_config(1))
    home = root / "home"
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": os.environ.get("PATH", ""),
        "OPENCODE_TEST_MANAGED_CONFIG_DIR": str(root / "managed"),
    }
    samples: list[float] = []
    async with ConfigWatcher(project, env) as watcher:
        updates = watcher.updates()
        for n in range(2, SAVES + 2):
            tmp = target.with_name(".opencode.json.tmp")
            tmp.write_text(_config(n))
            start = time.perf_counter()
            os.replace(tmp, target)
            wanted = f"opencode-custom-bench-{n - 1:03d}"
            async with asyncio.timeout(WAIT_S):
                async for update in updates:
                    if wanted in update.diff.added:
                        break
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def measure() -> list[Measure]:
    with tempfile.TemporaryDirectory() as tmp:
        samples = asyncio.run(_run(Path(tmp)))
    value = median(samples)
    return [
        Measure(
            name="config saved -> new snapshot (median)",
            value=value,
            unit="ms",
            goal=f"<= {GOAL_MS:g} ms",
            holds=value <= GOAL_MS,
            samples=tuple(samples),
            note=f"{len(samples)} atomic saves",
        ),
        Measure(
            name="config saved -> new snapshot (p95)",
            value=percentile(samples, 95),
            unit="ms",
            goal=f"<= {GOAL_MS:g} ms",
            holds=percentile(samples, 95) <= GOAL_MS,
            samples=tuple(samples),
        ),
    ]


if __name__ == "__main__":
    emit(measure())
