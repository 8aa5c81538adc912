"""What delegating through nexus costs over running ``opencode run`` by hand, against the same gateway.

Three ways to get the same answer from the loopback reference gateway, interleaved round by
round (the order rotating) so that machine load hits them alike:

* raw: ``opencode run --format json --model custom/claude-sonnet-4-5``, prompt on stdin (a user's command);
* delegation: :func:`nexus_core.routing.chain.delegate` in this process (what the dashboard and the MCP server do);
* CLI: ``nexus-agents orchestrate --model custom/claude-sonnet-4-5`` as a new process (Python start-up included).

Each ratio is the median of the per-round ratios (each run over the raw run of its round);
the goal is at most 1.05. Run it with ``python -m bench.orchestrate_bench``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Measure, emit, median
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.routing.chain import DelegationSpec, delegate
from nexus_core.routing.registry import ModelProfile

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 7
GOAL = 1.05
MODEL = "custom/claude-sonnet-4-5"
PROMPT = "Answer with one word: ready?"
RUN_TIMEOUT_S = 60


def _opencode(env: dict[str, str]) -> str:
    """The launcher to measure: ``$NEXUS_BENCH_OPENCODE`` (another release), else the pinned one in .tools."""
    if env.get("NEXUS_BENCH_OPENCODE"):
        return env["NEXUS_BENCH_OPENCODE"]
    local = ROOT / ".tools" / "opencode" / "node_modules" / ".bin"
    found = shutil.which("opencode", path=f"{local}{os.pathsep}{env.get('PATH', '')}")
    if found is None:
        raise SystemExit("opencode is not installed: run `python3 bootstrap.py test` once first.")
    return found


def _nexus_agents() -> list[str]:
    script = Path(sys.executable).parent / "nexus-agents"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nexus_core"]


def _environment(home: Path, opencode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCODE_", "XDG_", "NEXUS_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_DISABLE_AUTOUPDATE="1",
        PATH=f"{Path(opencode).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def _timed_process(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, input=PROMPT, env=env, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "ready" not in done.stdout.lower():
        raise SystemExit(f"{argv[0]} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return elapsed


def _timed_delegation(env: dict[str, str], cwd: Path) -> float:
    profile = ModelProfile(id="bench", name="bench", provider="custom", cli_model_name=MODEL)
    spec = DelegationSpec(
        prompt=PROMPT,
        chain=(profile,),
        env=env,
        workdir=cwd,
        timeout_s=RUN_TIMEOUT_S,
        stats_interval_s=None,
        transport="run",  # this bench measures nexus's overhead over the same `opencode run`
    )
    started = time.perf_counter()
    result = asyncio.run(delegate(spec))
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"the delegation failed: {result.outcome.sentence()}")
    return elapsed


def measure() -> list[Measure]:
    """Interleaved rounds of raw / delegation / CLI; two ratio measures."""
    with (
        tempfile.TemporaryDirectory(prefix="nexus-bench-") as tmp,
        ReferenceGateway(models=("claude-sonnet-4-5",)) as gateway,
    ):
        gateway.script("ready?", "ready")
        project = Path(tmp) / "project"
        path = write_opencode_config(project, gateway.base_url, models=("claude-sonnet-4-5",))
        config = json.loads(path.read_text())
        config["small_model"] = MODEL
        path.write_text(json.dumps(config))
        opencode = _opencode(dict(os.environ))
        env = _environment(Path(tmp) / "home", opencode)
        raw_argv = [opencode, "run", "--format", "json", "--model", MODEL]
        cli_argv = [*_nexus_agents(), "orchestrate", "--transport", "run", "--model", MODEL, "--no-fallback"]
        cli_argv += ["--dir", str(project)]
        _timed_process(raw_argv, env, project)  # the one-time database migration of a fresh HOME
        runs = {
            "raw": lambda: _timed_process(raw_argv, env, project),
            "delegation": lambda: _timed_delegation(env, project),
            "cli": lambda: _timed_process(cli_argv, env, project),
        }
        timings: dict[str, list[float]] = {name: [] for name in runs}
        order = list(runs)
        for _ in range(ROUNDS):
            for name in order:
                timings[name].append(runs[name]())
            order = order[1:] + order[:1]  # no way of running goes first every round
        raw, in_process, cli = timings["raw"], timings["delegation"], timings["cli"]
    delegation_ratios = [d / r for d, r in zip(in_process, raw, strict=True)]
    cli_ratios = [c / r for c, r in zip(cli, raw, strict=True)]
    note = f"median raw `opencode run` {median(raw):.2f} s"
    return [
        Measure(
            name="orchestrate (delegation API) wall / raw opencode run wall",
            value=median(delegation_ratios),
            unit="x",
            goal=f"<= {GOAL}",
            holds=median(delegation_ratios) <= GOAL,
            samples=tuple(delegation_ratios),
            note=f"{note}, delegation {median(in_process):.2f} s",
        ),
        Measure(
            name="nexus-agents orchestrate (CLI) wall / raw opencode run wall",
            value=median(cli_ratios),
            unit="x",
            goal=f"<= {GOAL}",
            holds=median(cli_ratios) <= GOAL,
            samples=tuple(cli_ratios),
            note=f"{note}, CLI {median(cli):.2f} s (Python start-up included)",
        ),
    ]


if __name__ == "__main__":
    emit(measure())
