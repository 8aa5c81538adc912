"""How long the doctor takes to give its verdict when the gateway is dead or silent (goal <= 3.5 s).

Three broken gateways, each a whole ``run_doctor`` over a temporary project (OpenCode's own
``--version`` check included when the pinned OpenCode is installed):

* refused — nothing listens on the port;
* blackholed — a listener whose accept queue is full, so the kernel drops the SYNs (a firewall);
* silent — the reference gateway accepts and never answers;
* silent, timed around the whole ``nexus-agents doctor --json`` process (interpreter start-up included).

``python -m bench.doctor_bench``
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import Measure, emit, median
from nexus_core.doctor.checks import run_doctor
from nexus_core.gateway import ReferenceGateway, write_opencode_config

GOAL_S = 3.5
RUNS = 3
ROOT = Path(__file__).resolve().parents[1]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCODE_", "CUSTOM_API_", "NEXUS_", "XDG_"))}
    pinned = ROOT / ".tools" / "opencode" / "node_modules" / ".bin"
    if pinned.is_dir():
        env["PATH"] = f"{pinned}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_DISABLE_AUTOUPDATE="1",
        CUSTOM_API_KEY="sk-bench-not-a-real-key",
    )
    return env


@contextlib.contextmanager
def _refused_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port


@contextlib.contextmanager
def _blackholed_port() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in (*fillers, listener):
            sock.close()


async def _verdict_seconds(base_url: str, expected_cause: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        write_opencode_config(project, base_url, api_key_env="CUSTOM_API_KEY")
        began = time.perf_counter()
        report = await run_doctor(project, _env(Path(tmp) / "home"))
        elapsed = time.perf_counter() - began
    cause = report.get("gateway.custom").cause
    if cause != expected_cause:
        raise RuntimeError(f"expected {expected_cause}, the doctor said {cause}")
    return elapsed


def _cli_seconds(base_url: str) -> float:
    """``nexus-agents doctor --json`` as a user runs it: interpreter start-up included."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        write_opencode_config(project, base_url, api_key_env="CUSTOM_API_KEY")
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "nexus_core", "--dir", str(project), "doctor", "--json"],
            env=_env(Path(tmp) / "home"),
            capture_output=True,
            timeout=30,
            check=False,
        )
        return time.perf_counter() - began


async def _measure() -> list[Measure]:
    samples: dict[str, list[float]] = {"refused gateway": [], "blackholed gateway": [], "silent gateway": []}
    for _ in range(RUNS):
        with _refused_port() as port:
            samples["refused gateway"].append(
                await _verdict_seconds(f"http://127.0.0.1:{port}/v1", "connection_refused")
            )
        with _blackholed_port() as port:
            samples["blackholed gateway"].append(
                await _verdict_seconds(f"http://127.0.0.1:{port}/v1", "connect_timeout")
            )
        async with ReferenceGateway(faults=["silent"]) as gw:
            samples["silent gateway"].append(await _verdict_seconds(gw.base_url, "timeout"))
    silent = ReferenceGateway(faults=["silent"]).start_in_thread()
    try:
        samples["silent gateway, whole CLI process"] = [_cli_seconds(silent.base_url) for _ in range(RUNS)]
    finally:
        silent.stop()
    return [
        Measure(
            name=f"doctor verdict, {kind}",
            value=max(runs),
            unit="s",
            goal=f"<= {GOAL_S} s",
            holds=max(runs) <= GOAL_S,
            samples=tuple(round(r, 3) for r in runs),
            note=f"worst of {len(runs)} runs; median {median(runs):.2f} s",
        )
        for kind, runs in samples.items()
    ]


def measure() -> list[Measure]:
    """Doctor verdict time (whole run) with a refused, a blackholed and a silent gateway."""
    return asyncio.run(_measure())


if __name__ == "__main__":
    emit(measure())
