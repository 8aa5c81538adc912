"""An attempt's OpenCode process: its pipes, its tree's CPU and memory, and what it left behind.

Every process group still registered in :data:`LIVE_GROUPS` is killed by an ``atexit`` hook, so an
interrupted parent leaves nothing behind; :func:`kill_orphans` finds what escaped both the group
and the tree (a daemonised child) by the per-attempt id in its environment.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import time
from typing import Any

import psutil

from nexus_core.opencode.argv import ATTEMPT_VAR
from nexus_core.opencode.events import ProcessStats
from nexus_core.opencode.head_start import STDOUT_LINE_LIMIT
from nexus_core.opencode.outcome import StderrTail

__all__ = [
    "LIVE_GROUPS",
    "ORPHAN_SWEEPS",
    "STDOUT_LINE_LIMIT",
    "TERMINATE_GRACE_S",
    "feed_stdin",
    "kill_orphans",
    "read_stderr",
    "read_stdout",
    "sample",
    "sample_tree",
]

TERMINATE_GRACE_S = 3.0
ORPHAN_SWEEPS = 3

#: Process groups of the attempts running now (killed at exit).
LIVE_GROUPS: set[int] = set()

Queue = asyncio.Queue[tuple[str, Any]]


def _kill_live_groups() -> None:
    for pgid in list(LIVE_GROUPS):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    LIVE_GROUPS.clear()


atexit.register(_kill_live_groups)


async def feed_stdin(proc: asyncio.subprocess.Process, prompt: str) -> None:
    """Write the prompt to OpenCode's stdin and close it (OpenCode may have gone already)."""
    assert proc.stdin is not None
    stdin = proc.stdin
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(prompt.encode("utf-8"))
        await stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.close()


async def read_stdout(proc: asyncio.subprocess.Process, queue: Queue, spoke: asyncio.Event) -> None:
    """Queue each stdout line as ``("stdout", line)`` (setting ``spoke``), then ``("eof", None)`` and
    ``("exit", returncode)``. A line over :data:`STDOUT_LINE_LIMIT` is replaced by a notice."""
    assert proc.stdout is not None
    stdout = proc.stdout
    while True:
        try:
            line = await stdout.readline()
        except ValueError:
            await queue.put(("stdout", f"[a line over {STDOUT_LINE_LIMIT} bytes was dropped]"))
            continue
        if not line:
            break
        spoke.set()
        await queue.put(("stdout", line.decode("utf-8", "replace")))
    await queue.put(("eof", None))
    await proc.wait()
    await queue.put(("exit", proc.returncode))


async def read_stderr(proc: asyncio.subprocess.Process, queue: Queue, tail: StderrTail) -> None:
    """Keep every stderr line in ``tail``; queue the ``ERROR`` log lines as ``("stderr", line)``."""
    assert proc.stderr is not None
    stderr = proc.stderr
    while True:
        try:
            line = await stderr.readline()
        except ValueError:
            continue
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip("\n")
        tail.add(text)
        if text.startswith("ERROR ") or " level=ERROR " in text:
            await queue.put(("stderr", text))


async def sample(queue: Queue, pid: int, interval: float) -> None:
    """Every ``interval`` seconds queue ``("stats", ProcessStats)`` for the tree under ``pid`` (dropped when full)."""
    known: dict[int, psutil.Process] = {}
    while True:
        await asyncio.sleep(interval)
        stats = sample_tree(pid, known)
        if stats is not None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(("stats", stats))


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def kill_orphans(marker: str, since: float) -> None:
    """SIGKILL what the attempt started that escaped both its group and its tree (a daemonised child).

    Only processes created since the attempt began are looked at, so this stays cheap. A process
    killed may have forked a moment before; the sweep repeats until it finds nothing.
    """
    own = os.getpid()
    for _ in range(ORPHAN_SWEEPS):
        killed = []
        for proc in psutil.process_iter(["create_time"]):
            try:
                if proc.pid == own or (proc.info["create_time"] or 0) < since - 1:
                    continue
                if proc.environ().get(ATTEMPT_VAR) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
                    killed.append(proc)
            except psutil.Error:
                continue
        if not killed:
            return
        deadline = time.monotonic() + TERMINATE_GRACE_S
        while any(_alive(p) for p in killed) and time.monotonic() < deadline:
            time.sleep(0.02)  # a thread polling processes that are not our children; no event to wait on


def sample_tree(pid: int, known: dict[int, psutil.Process]) -> ProcessStats | None:
    """CPU % and RSS summed over the live processes of the tree; None when none is left."""
    procs = _tree(pid)
    if not procs:
        return None
    cpu = 0.0
    rss = 0
    pids: list[int] = []
    for proc in procs:
        cached = known.setdefault(proc.pid, proc)
        try:
            with cached.oneshot():
                if cached.status() == psutil.STATUS_ZOMBIE:
                    continue
                cpu += cached.cpu_percent(None)
                rss += cached.memory_info().rss
            pids.append(proc.pid)
        except psutil.Error:
            known.pop(proc.pid, None)
    if not pids:
        return None
    return ProcessStats(cpu_percent=round(cpu, 1), rss_bytes=rss, pids=tuple(pids))
