"""The lifeline: a supervised process group that ends when nexus ends, and an end_tree that never spins.

Real processes throughout: a Python "nexus" process spawns a tree through the API and is then
killed; every member must be gone within a bound. The last test does the same with the real
pinned OpenCode against a reference gateway that stays silent.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from conftest import opencode_path
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.opencode.lifeline import end_tree, group_alive, popen, spawn

ENDED_WITHIN_S = 5.0

# A child that forks two grandchildren into its group; one of them, and the child, ignore SIGTERM.
TREE = """
import os, signal, time
for ignore in (False, True):
    if os.fork() == 0:
        if ignore:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
        os._exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""

# A group leader that ignores SIGTERM and lives a second; its child exits at once, never reaped.
ZOMBIE_LEADER = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = os.fork()
if child == 0:
    os._exit(0)
# Wait for the child to exit but leave it unreaped (WNOWAIT): a zombie before "ready" is said.
os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
print("ready", flush=True)
time.sleep(1)
"""

# The stand-in for nexus: spawns argv (asyncio, or popen from a worker thread that then ends),
# reports the group and its own pid, then lives until it is killed.
PARENT = """
import asyncio, json, subprocess, sys, threading
from nexus_core.opencode.lifeline import popen, spawn

how, argv, cwd = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
kept = []

def report(lifeline):
    print(json.dumps({"pgid": lifeline.pgid, "supervisor": lifeline.pid}), flush=True)

async def main():
    lifeline = await spawn(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kept.append(lifeline)
    lifeline.process.stdin.write(sys.stdin.buffer.read())
    lifeline.process.stdin.close()
    report(lifeline)
    await asyncio.sleep(600)

if how == "thread":
    worker = threading.Thread(target=lambda: kept.append(popen(argv, cwd=cwd, stdout=subprocess.DEVNULL)))
    worker.start()
    worker.join()
    report(kept[0])
    threading.Event().wait(600)
else:
    asyncio.run(main())
"""


def _live(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.Error:
            continue
    return alive


def _group(pgid: int) -> set[int]:
    found = set()
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.add(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def _until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def _start_parent(how: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: bytes = b""):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, how, json.dumps(argv), str(cwd)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert parent.stdin is not None and parent.stdout is not None
    parent.stdin.write(stdin)
    parent.stdin.close()
    line = parent.stdout.readline()
    assert line, f"the parent process ended (exit {parent.wait(10)}) before it started the child"
    return parent, json.loads(line)


def _kill_parent(parent: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    parent.send_signal(sig)
    parent.wait(ENDED_WITHIN_S)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_parent_takes_the_whole_group_with_it(tmp_path: Path, sig: signal.Signals) -> None:
    parent, started = _start_parent("asyncio", [sys.executable, "-c", TREE], tmp_path)
    try:
        pgid = started["pgid"]
        assert _until(lambda: len(_group(pgid)) == 3, 10), f"the tree did not start: {_group(pgid)}"
        members = _group(pgid) | {started["supervisor"]}
        assert pgid != parent.pid and os.getpgid(pgid) == pgid
        _kill_parent(parent, sig)
        assert _until(lambda: not _live(members), ENDED_WITHIN_S), f"left running: {_live(members)}"
    finally:
        parent.kill()
        parent.wait()


def test_spawned_from_a_thread_that_ends_the_child_lives_until_the_parent_dies(tmp_path: Path) -> None:
    parent, started = _start_parent("thread", [sys.executable, "-c", TREE], tmp_path)
    try:
        pgid = started["pgid"]
        assert _until(lambda: len(_group(pgid)) == 3, 10)
        members = _group(pgid)
        # The spawning thread has ended; no event marks "still alive", so the check is after a pause
        # longer than the supervisor's own grace (what a thread-bound death signal would take).
        time.sleep(1.5)
        assert _live(members) == members, "the child died with the thread that started it"
        _kill_parent(parent, signal.SIGKILL)
        assert _until(lambda: not _live(members), ENDED_WITHIN_S), f"left running: {_live(members)}"
    finally:
        parent.kill()
        parent.wait()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def test_end_tree_waits_on_events_while_zombies_sit_in_the_group() -> None:
    # The leader ignores SIGTERM and lives one more second; its child exits at once and is never
    # reaped, so the group holds a zombie all along, and the leader is one (ours, unreaped) at the end.
    leader = subprocess.Popen(
        [sys.executable, "-c", ZOMBIE_LEADER],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    try:
        assert leader.stdout is not None and leader.stdout.readline() == b"ready\n"
        zombie = [p for p in psutil.Process(leader.pid).children() if p.status() == psutil.STATUS_ZOMBIE]
        assert zombie, "the test needs a zombie in the group"
        cpu, wall = _cpu_s(), time.monotonic()
        assert await end_tree(leader.pid, grace=5.0)
        cpu, wall = _cpu_s() - cpu, time.monotonic() - wall
        assert 0.3 < wall < 3.0, f"end_tree took {wall:.2f}s for a leader living about 1 s"
        assert cpu < 0.2, f"end_tree burnt {cpu:.2f}s of CPU waiting {wall:.2f}s"
        assert psutil.Process(leader.pid).status() == psutil.STATUS_ZOMBIE
        assert not group_alive(leader.pid), "a group of zombies counts as ended"
    finally:
        leader.kill()
        leader.wait()


async def test_end_tree_on_a_zombie_only_group_returns_at_once() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    try:
        assert _until(lambda: psutil.Process(gone.pid).status() == psutil.STATUS_ZOMBIE, 10)
        wall = time.monotonic()
        assert await end_tree(gone.pid, grace=5.0)
        assert time.monotonic() - wall < 0.5
        assert not group_alive(gone.pid)
    finally:
        gone.wait()


async def test_spawn_relays_output_and_exit_status_and_end_tree_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    done = await spawn([sys.executable, "-c", "import sys; print('hi'); sys.exit(3)"], stdout=subprocess.PIPE)
    process = done.process
    assert isinstance(process, asyncio.subprocess.Process) and process.stdout is not None
    assert await process.stdout.read() == b"hi\n"
    assert await process.wait() == 3
    assert await end_tree(done)

    stubborn = await spawn([sys.executable, "-c", TREE], stdout=subprocess.PIPE)
    stubborn_process = stubborn.process
    assert isinstance(stubborn_process, asyncio.subprocess.Process) and stubborn_process.stdout is not None
    assert await stubborn_process.stdout.readline() == b"ready\n"
    members = _group(stubborn.pgid)
    assert len(members) == 3 and stubborn.pid not in members
    assert await end_tree(stubborn, grace=0.5)
    assert not _live(members) and not group_alive(stubborn.pgid)
    assert stubborn.process.returncode == -signal.SIGKILL


async def test_the_program_s_pwd_names_the_directory_it_starts_in(tmp_path: Path) -> None:
    """OpenCode 1.18 takes its project from PWD: a stale inherited one would load another directory's config."""
    show = [sys.executable, "-c", "import os; print(os.environ['PWD'], os.getcwd())"]
    stale = {**os.environ, "PWD": "/"}
    started = await spawn(show, env=stale, cwd=tmp_path, stdout=subprocess.PIPE)
    assert isinstance(started.process, asyncio.subprocess.Process) and started.process.stdout is not None
    assert (await started.process.stdout.read()).decode().split() == [str(tmp_path), os.path.realpath(tmp_path)]
    assert await end_tree(started)
    here = popen(show, env=stale, stdout=subprocess.PIPE)
    assert isinstance(here.process, subprocess.Popen) and here.process.stdout is not None
    assert here.process.stdout.read().decode().split()[0] == os.getcwd()
    assert await end_tree(here)


async def test_a_program_that_cannot_start_raises_oserror() -> None:
    with pytest.raises(FileNotFoundError):
        await spawn(["/nonexistent/opencode", "run"])
    with pytest.raises(FileNotFoundError):
        popen(["/nonexistent/opencode", "run"])


@pytest.mark.opencode
def test_a_killed_parent_leaves_no_opencode_even_when_the_gateway_answers_later(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    marker = uuid.uuid4().hex
    model = "custom/claude-sonnet-4-5"
    with ReferenceGateway(models=("claude-sonnet-4-5",)) as gateway:
        gateway.add_fault("silent")
        project = tmp_path / "project"
        path = write_opencode_config(project, gateway.base_url, models=("claude-sonnet-4-5",))
        config = json.loads(path.read_text())
        config["small_model"] = model
        path.write_text(json.dumps(config))
        subprocess.run(["git", "init", "-q", str(project)], check=True)
        env = {**hermetic_env, "NEXUS_TEST_RUN": marker}
        argv = [opencode_path(), "run", "--format", "json", "--print-logs", "--model", model]
        # stdout and stderr are pipes the parent never reads: the case that made OpenCode spin.
        parent, _ = _start_parent("asyncio", argv, project, env=env, stdin=b"say hi")
        try:
            assert _until(lambda: any(r.kind == "chat" for r in gateway.requests), 60, 0.1), "no chat request"
            marked = _marked(marker)
            assert marked, "no OpenCode process carries the marker"
            _kill_parent(parent, signal.SIGKILL)
            gateway.clear_faults()
            assert _until(lambda: not _marked(marker), ENDED_WITHIN_S), f"left running: {_marked(marker)}"
        finally:
            parent.kill()
            parent.wait()
            for proc in _marked(marker):
                proc.kill()


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("NEXUS_TEST_RUN") == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found
