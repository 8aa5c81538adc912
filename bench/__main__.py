"""``python -m bench``: run every benchmark, one line per measure, and write the JSON.

Each ``bench/*_bench.py`` module runs in its own interpreter so that memory figures are its own.
``--only NAME`` runs the modules whose name contains NAME; ``--json PATH`` sets the output file
(default ``bench/results/latest.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Measure, emit, to_json

HERE = Path(__file__).resolve().parent
PER_MODULE_TIMEOUT = 150


def modules() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*_bench.py"))


def bench_env() -> dict[str, str]:
    """The environment for bench modules: the project's pinned OpenCode first on PATH, as in the tests."""
    env = dict(os.environ)
    local = HERE.parent / ".tools" / "opencode" / "node_modules" / ".bin"
    venv_bin = Path(sys.executable).parent
    env["PATH"] = os.pathsep.join(
        p for p in (str(local) if local.is_dir() else "", str(venv_bin), env.get("PATH", "")) if p
    )
    return env


def run_module(name: str) -> list[Measure]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        try:
            result = subprocess.run(
                [sys.executable, "-m", "bench._one", name, str(out)],
                cwd=HERE.parent,
                env=bench_env(),
                timeout=PER_MODULE_TIMEOUT,
                capture_output=True,
                text=True,
            )
        except subprocess.TimeoutExpired:
            return [
                Measure(
                    name=name,
                    value=float("nan"),
                    unit="",
                    goal="completes",
                    holds=False,
                    note=f"timed out after {PER_MODULE_TIMEOUT} s",
                )
            ]
        if result.returncode != 0 or not out.exists():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return [
                Measure(name=name, value=float("nan"), unit="", goal="completes", holds=False, note=f"failed: {last}")
            ]
        return [Measure(**{**m, "samples": tuple(m["samples"])}) for m in json.loads(out.read_text())]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="")
    parser.add_argument("--json", default=str(HERE / "results" / "latest.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    everything: list[Measure] = []
    for name in modules():
        if args.only and args.only not in name:
            continue
        measures = run_module(name)
        emit(measures)
        everything += measures
    elapsed = time.perf_counter() - started
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "seconds": round(elapsed, 1),
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "measures": json.loads(to_json(everything))}, indent=2))
    held = sum(m.holds for m in everything)
    print(f"{held} of {len(everything)} goals hold; {elapsed:.0f} s; results in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
