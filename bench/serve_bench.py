"""What the serve transport buys: tokens as they come, warm servers, one process for many sessions.

Against the loopback reference gateway, OpenCode 1.2.15 from ``.tools``:

* **chunk → visible**: ``nexus-agents orchestrate`` runs in a pseudo-terminal (as a user sees it)
  while the gateway streams a numbered answer, one word per SSE chunk, 80 ms apart. For every word,
  the time from the gateway writing its chunk to the word appearing on the terminal; p50 and p95
  over all words of all rounds. Goal p95 ≤ 50 ms.
* **warm server**: a second delegation on a server that is already up (what the MCP server and the
  dashboard do) against a raw ``opencode run`` of the same prompt, paired rounds, order rotating;
  the median of the per-round ratios. Goal ≤ 0.5×.
* **8 sessions**: the summed RSS of one server's process tree while 8 sessions answer at once,
  against the summed RSS of 8 concurrent ``opencode run`` processes (peaks, sampled every 50 ms).

Run it with ``python -m bench.serve_bench``.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import h11
import psutil

from bench.common import Measure, emit, median, percentile
from bench.orchestrate_bench import _environment, _nexus_agents, _opencode
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.opencode.transport import shared_pool
from nexus_core.routing.chain import DelegationSpec, delegate
from nexus_core.routing.registry import ModelProfile

MODEL = "custom/claude-sonnet-4-5"
WORDS = [f"w{i:02d}" for i in range(1, 31)]
CHUNK_DELAY_S = 0.08
STREAM_ROUNDS = int(os.environ.get("NEXUS_BENCH_STREAM_ROUNDS", "3"))
WARM_ROUNDS = int(os.environ.get("NEXUS_BENCH_WARM_ROUNDS", "6"))
SESSIONS = 8
RUN_TIMEOUT_S = 90
LATENCY_GOAL_MS = 50.0
WARM_GOAL = 0.5


class _TimedGateway(ReferenceGateway):
    """The reference gateway, noting when it wrote each streamed word (``time.monotonic()``)."""

    def __init__(self, *args: Any, delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delay_s = delay_s
        self.written: dict[str, float] = {}

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Event) -> None:  # type: ignore[override]
        data = bytes(event.data) if isinstance(event, h11.Data) else b""
        if data.startswith(b"data: {") and self.delay_s:
            await asyncio.sleep(self.delay_s)
        await ReferenceGateway._send(conn, writer, event)
        for word in re.findall(rb"w\d\d", data):
            self.written.setdefault(word.decode(), time.monotonic())


def _project(root: Path, gateway: ReferenceGateway) -> Path:
    project = root / "project"
    path = write_opencode_config(project, gateway.base_url, models=("claude-sonnet-4-5",))
    config = json.loads(path.read_text())
    config["small_model"] = MODEL
    path.write_text(json.dumps(config))
    return project


def _read_pty(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Run ``argv`` on a pseudo-terminal; when each word first showed on it."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=secondary, stderr=subprocess.DEVNULL, env=env, cwd=cwd
    )
    os.close(secondary)
    seen: dict[str, float] = {}
    text = b""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            now = time.monotonic()
            text = (text + chunk)[-4096:]
            for word in re.findall(rb"w\d\d", text):
                seen.setdefault(word.decode(), now)
    finally:
        os.close(primary)
        proc.wait(timeout=30)
    return seen


def _latencies(root: Path, opencode: str) -> list[float]:
    samples: list[float] = []
    for round_number in range(STREAM_ROUNDS):
        with _TimedGateway(models=("claude-sonnet-4-5",), delay_s=CHUNK_DELAY_S) as gateway:
            gateway.script("count", " ".join(WORDS))
            project = _project(root / f"stream-{round_number}", gateway)
            env = _environment(root / "home", opencode) | {"COLUMNS": "200", "LINES": "50"}
            argv = [*_nexus_agents(), "orchestrate", "--model", MODEL, "--no-fallback", "--dir", str(project)]
            seen = _read_pty([*argv, "please count"], env, project)
            for word in WORDS:
                if word in seen and word in gateway.written:
                    samples.append(max(0.0, seen[word] - gateway.written[word]) * 1000)
    return samples


def _raw_run(opencode: str, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [opencode, "run", "--format", "json", "--model", MODEL],
        input="Answer with one word: ready?",
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    if done.returncode != 0 or "ready" not in done.stdout.lower():
        raise SystemExit(f"opencode run failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return time.perf_counter() - started


def _spec(env: dict[str, str], cwd: Path, prompt: str) -> DelegationSpec:
    profile = ModelProfile(id="bench", name="bench", provider="custom", cli_model_name=MODEL)
    return DelegationSpec(
        prompt=prompt, chain=(profile,), env=env, workdir=cwd, timeout_s=RUN_TIMEOUT_S, stats_interval_s=None
    )


async def _serve_delegation(env: dict[str, str], cwd: Path, prompt: str = "Answer with one word: ready?") -> float:
    started = time.perf_counter()
    result = await delegate(_spec(env, cwd, prompt))
    if not result.ok:
        raise SystemExit(f"the serve delegation failed: {result.outcome.sentence()}")
    return time.perf_counter() - started


class _PeakRss:
    """The peak of the summed RSS of some processes, sampled every 50 ms in a thread."""

    def __init__(self, find: Any) -> None:
        self.find = find
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            total = 0
            for proc in self.find():
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _opencode_processes_in(cwd: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cwd"]):
        try:
            if proc.info["cwd"] == str(cwd) and "opencode" in (proc.info["name"] or ""):
                found.append(proc)
        except psutil.Error:
            pass
    return found


async def _warm_and_sessions(root: Path, opencode: str) -> tuple[list[float], list[float], int, int]:
    with ReferenceGateway(models=("claude-sonnet-4-5",)) as gateway:
        gateway.script("ready?", "ready")
        project = _project(root / "warm", gateway)
        env = _environment(root / "home", opencode)
        await asyncio.to_thread(_raw_run, opencode, env, project)  # the one-time migration of a fresh HOME
        await _serve_delegation(env, project)  # starts the pool's server for this directory
        pool = shared_pool(env, None)
        holder = await pool.acquire(project)  # keeps the server up between delegations
        try:
            raw: list[float] = []
            warm: list[float] = []
            for round_number in range(WARM_ROUNDS):
                pair = [
                    ("raw", lambda: asyncio.to_thread(_raw_run, opencode, env, project)),
                    ("warm", lambda: _serve_delegation(env, project)),
                ]
                for name, run in pair if round_number % 2 == 0 else pair[::-1]:
                    (raw if name == "raw" else warm).append(await run())
            with _PeakRss(lambda: _tree(holder.pid)) as serve_rss:
                await asyncio.gather(*(_serve_delegation(env, project) for _ in range(SESSIONS)))
            with _PeakRss(lambda: _opencode_processes_in(project)) as run_rss:
                await asyncio.gather(*(asyncio.to_thread(_raw_run, opencode, env, project) for _ in range(SESSIONS)))
        finally:
            await pool.release(holder)
            await pool.aclose()
    return raw, warm, serve_rss.peak, run_rss.peak


def _tree(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def measure() -> list[Measure]:
    """Chunk → visible latency on a terminal, warm-server ratio, RSS of 8 sessions vs 8 runs."""
    opencode = _opencode(dict(os.environ))
    with tempfile.TemporaryDirectory(prefix="nexus-bench-serve-") as tmp:
        root = Path(tmp)
        latencies = _latencies(root, opencode)
        raw, warm, serve_peak, run_peak = asyncio.run(_warm_and_sessions(root, opencode))
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    ratios = [w / r for w, r in zip(warm, raw, strict=True)]
    mib = 1024 * 1024
    return [
        Measure(
            name="gateway chunk -> text on the terminal, nexus-agents orchestrate (serve), p95",
            value=p95,
            unit="ms",
            goal=f"p95 <= {LATENCY_GOAL_MS:g} ms",
            holds=bool(latencies) and p95 <= LATENCY_GOAL_MS,
            samples=tuple(latencies),
            note=f"p50 {p50:.1f} ms over {len(latencies)} words of {STREAM_ROUNDS} answers",
        ),
        Measure(
            name="second delegation on a warm server / raw opencode run (wall, paired)",
            value=median(ratios),
            unit="x",
            goal=f"<= {WARM_GOAL:g}x",
            holds=median(ratios) <= WARM_GOAL,
            samples=tuple(ratios),
            note=f"median warm {median(warm):.2f} s, raw {median(raw):.2f} s",
        ),
        Measure(
            name=f"RSS of {SESSIONS} concurrent sessions on one server / {SESSIONS} opencode run processes",
            value=serve_peak / run_peak if run_peak else float("nan"),
            unit="x",
            goal="reported",
            holds=bool(run_peak),
            note=f"one server {serve_peak / mib:.0f} MiB, {SESSIONS} runs {run_peak / mib:.0f} MiB (peaks)",
        ),
    ]


if __name__ == "__main__":
    emit(measure())
