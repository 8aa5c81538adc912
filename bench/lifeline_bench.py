"""What the lifeline (supervised spawn + event-driven end_tree) costs over a raw ``opencode run``.

Paired rounds in a temporary git repository (OpenCode starts git there), against the loopback
reference gateway, the order rotating each round:

* raw: ``opencode run --format json``, prompt on stdin, as a user runs it;
* lifeline: the same argv through :func:`nexus_core.opencode.lifeline.spawn` + ``end_tree``;
* adapter: today's :func:`nexus_core.opencode.attempt.run_attempt` (the adapter before it ended its tree through the lifeline);
* CLI serve / CLI run: ``nexus-agents orchestrate --model provider/model`` as a new process, prompt
  on stdin, on each transport (what a user types; Python start-up and, on serve, the server's start
  included); on serve also with the run recorded in the history store (the default), and on run
  also with the model named by its registry id (its first run cannot start ``opencode run`` ahead
  of the plan; the later ones start what it resolved to last time).

Wall and CPU (this process plus its reaped children: ``getrusage`` deltas) of each run over the
raw run of its round; each figure is the median of those ratios. Goals (issue 12): wall <= 1.10x,
CPU <= 1.20x. Run it with ``python -m bench.lifeline_bench``; with
``NEXUS_BENCH_OPENCODE=.tools/opencode-1.18.33/node_modules/.bin/opencode`` it measures that release.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Measure, emit, median
from bench.orchestrate_bench import _environment, _nexus_agents, _opencode
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.opencode.attempt import AttemptSpec, run_attempt
from nexus_core.opencode.lifeline import end_tree, spawn

ROUNDS = 6
WALL_GOAL = 1.10
CPU_GOAL = 1.20
MODEL = "custom/claude-sonnet-4-5"
# The built-in profile of MODEL: its first run gets no head start (the name it resolves to is kept for the next).
REGISTRY_ID = "opencode-custom-sonnet"
PROMPT = "Answer with one word: ready?"
RUN_TIMEOUT_S = 60


def _cpu() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _measured(run: Callable[[], str]) -> tuple[float, float]:
    cpu, wall = _cpu(), time.perf_counter()
    out = run()
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    if "ready" not in out.lower():
        raise SystemExit(f"a run did not answer: {out[-300:]}")
    return wall, cpu


def _raw(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    # PWD as a shell's cd would set it: 1.18.33 takes its project from PWD, not from the cwd.
    env = {**env, "PWD": str(cwd)}
    done = subprocess.run(argv, input=PROMPT, env=env, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return done.stdout


async def _supervised(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    pipe = subprocess.PIPE
    lifeline = await spawn(argv, env=env, cwd=cwd, stdin=pipe, stdout=pipe, stderr=pipe)
    proc = lifeline.process
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(PROMPT.encode())
    proc.stdin.close()
    out, _ = await asyncio.wait_for(asyncio.gather(proc.stdout.read(), proc.stderr.read()), RUN_TIMEOUT_S)
    await asyncio.wait_for(proc.wait(), RUN_TIMEOUT_S)
    await end_tree(lifeline)
    return out.decode()


async def _adapter(env: dict[str, str], cwd: Path) -> str:
    spec = AttemptSpec(
        cli_model_name=MODEL, prompt=PROMPT, env=env, workdir=cwd, timeout_s=RUN_TIMEOUT_S, stats_interval_s=None
    )
    result = await run_attempt(spec)
    return result.text


def _cli(transport: str, env: dict[str, str], cwd: Path, model: str = MODEL, history: bool = False) -> str:
    argv = [*_nexus_agents(), "orchestrate", "--model", model, "--transport", transport]
    return _raw(argv if history else [*argv, "--no-history"], env, cwd)


_WHAT = {
    "lifeline": "spawn+end_tree",
    "adapter": "adapter run_attempt (today)",
    "cli-serve": "nexus-agents orchestrate CLI (serve)",
    "cli-run": "nexus-agents orchestrate CLI (--transport run)",
    "cli-serve-history": "nexus-agents orchestrate CLI (serve, history recorded)",
    "cli-run-registry-id": "nexus-agents orchestrate CLI (--transport run, a registry id, history recorded)",
}


def measure() -> list[Measure]:
    """Interleaved rounds of raw / lifeline / adapter / CLI; wall and CPU ratios of each over raw."""
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
        subprocess.run(["git", "init", "-q", str(project)], check=True)
        opencode = _opencode(dict(os.environ))
        env = _environment(Path(tmp) / "home", opencode)
        argv = [opencode, "run", "--format", "json", "--model", MODEL]
        _raw(argv, env, project)  # the one-time database migration of a fresh HOME
        runs: dict[str, Callable[[], str]] = {
            "raw": lambda: _raw(argv, env, project),
            "lifeline": lambda: asyncio.run(_supervised(argv, env, project)),
            "adapter": lambda: asyncio.run(_adapter(env, project)),
            "cli-serve": lambda: _cli("serve", env, project),
            "cli-run": lambda: _cli("run", env, project),
            "cli-serve-history": lambda: _cli("serve", env, project, history=True),
            "cli-run-registry-id": lambda: _cli("run", env, project, model=REGISTRY_ID, history=True),
        }
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        order = list(runs)
        for _ in range(ROUNDS):
            for name in order:
                figures[name].append(_measured(runs[name]))
            order = order[1:] + order[:1]
    raw = figures["raw"]
    note = (
        f"median raw `opencode run` {median([w for w, _ in raw]):.2f} s wall, {median([c for _, c in raw]):.2f} s CPU"
    )
    measures = []
    for name, what in _WHAT.items():
        walls = [w / r[0] for (w, _), r in zip(figures[name], raw, strict=True)]
        cpus = [c / r[1] for (_, c), r in zip(figures[name], raw, strict=True)]
        for label, ratios, goal, seconds in (
            ("wall", walls, WALL_GOAL, [w for w, _ in figures[name]]),
            ("CPU", cpus, CPU_GOAL, [c for _, c in figures[name]]),
        ):
            measures.append(
                Measure(
                    name=f"{what} {label} / raw opencode run {label} (git repo)",
                    value=median(ratios),
                    unit="x",
                    goal=f"<= {goal}",
                    holds=median(ratios) <= goal,
                    samples=tuple(ratios),
                    note=f"{note}; {name} median {median(seconds):.2f} s",
                )
            )
    return measures


if __name__ == "__main__":
    emit(measure())
    sys.exit(0)
