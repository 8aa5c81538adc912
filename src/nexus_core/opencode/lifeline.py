"""A child process tree that cannot outlive nexus, and an event-driven way to end one.

Why a supervisor, not ``PR_SET_PDEATHSIG`` in the child alone: the death signal fires when the
parent *thread* ends (a run started from a worker thread would die with the thread), it reaches
only the one process (OpenCode's git, MCP servers and shell tools live on), and it needs a
``preexec_fn``, which is unsafe in a threaded program. Instead :func:`spawn` starts a tiny
single-threaded supervisor (``python -I -S -c``, about 10 MB and tens of milliseconds against
OpenCode's second of start-up) in a session of its own; it forks the real program into *its own*
process group (a new one, id = the program's pid) and holds one end of
a socket pair whose other end only nexus holds. The kernel closes that end when the nexus
*process* ends, however it ends (SIGKILL included, any thread), and the supervisor, which only
sleeps in ``poll``, wakes on the hang-up and ends the group: SIGTERM, up to ``grace`` seconds,
then SIGKILL (itself included). The forked program also gets ``PR_SET_PDEATHSIG(SIGKILL)`` from
the single-threaded supervisor, so a supervisor killed on its own does not leave it running.
The supervisor keeps no copy of the program's stdio, so pipes close with the program; a group
left without nexus is ended within ``grace`` seconds, so nothing is left writing into a pipe
that nobody reads.

The program's process group is :attr:`Lifeline.pgid` (the program's pid, not the supervisor's,
which stays outside it). The supervisor ignores SIGTERM/SIGINT/SIGHUP, waits for the program and
exits with its status (a signal is passed on as the same signal), so ``process.returncode``
reads as the program's. When the program exits,
whatever it left in the group is sent SIGTERM at once; :func:`end_tree` finishes the job.

:func:`end_tree` never polls with short sleeps: it waits on a pidfd per member
(``os.pidfd_open`` + ``loop.add_reader``) and looks at the group again only after one fired, and
a member that has exited but is not yet reaped (a zombie, which PID 1 may reap late or never in a
container) counts as ended. Linux is the target. Elsewhere on POSIX the supervisor still works
(no death signal), the group is listed through psutil and waiting falls back to
``psutil.wait_procs`` in a thread; on other systems :func:`spawn` raises :class:`OSError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nexus_core.opencode.supervisor import SOURCE as _SUPERVISOR

__all__ = [
    "SUPERVISOR_GRACE_S",
    "Lifeline",
    "end_tree",
    "group_alive",
    "popen",
    "spawn",
]

#: What the supervisor gives the group between SIGTERM and SIGKILL once nexus is gone.
SUPERVISOR_GRACE_S = 1.0
# The supervisor is a Python start-up; on a loaded machine that can take a while, never this long.
START_TIMEOUT_S = 20.0

_LINUX = sys.platform.startswith("linux")
_PIDFD = _LINUX and hasattr(os, "pidfd_open")


@dataclass
class Lifeline:
    """A program running under its supervisor, and nexus's end of the line that keeps it alive.

    Keep this object (not only :attr:`process`) for as long as the program should run: closing
    it, or losing it to garbage collection, tells the supervisor to end the group.
    """

    #: The supervisor: its stdio pipes are the program's, its exit status is the program's.
    process: asyncio.subprocess.Process | subprocess.Popen[bytes]
    #: The program's own pid (the supervisor's child); its process group is its pid.
    child_pid: int
    _line: socket.socket | None = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        """The supervisor's pid."""
        return self.process.pid

    @property
    def pgid(self) -> int:
        """The program's process group: every process it starts without leaving it is in there."""
        return self.child_pid

    def close(self) -> None:
        """Drop nexus's end: the supervisor ends the group (SIGTERM, its grace, SIGKILL). Idempotent."""
        if self._line is not None:
            self._line.close()
            self._line = None


def _command(argv: Sequence[str], fd: int, grace: float) -> list[str]:
    if os.name != "posix":
        raise OSError(f"a supervised process tree needs a POSIX system, not {sys.platform}")
    if not argv:
        raise ValueError("argv must name a program")
    return [sys.executable, "-I", "-S", "-c", _SUPERVISOR, str(fd), repr(float(grace)), *argv]


def _child_env(env: Mapping[str, str] | None, cwd: str | os.PathLike[str] | None) -> dict[str, str]:
    """``env`` (default: this process's) with ``PWD`` naming the directory the program starts in.

    A shell keeps ``PWD`` in step with the directory; a program started with another ``cwd`` would
    inherit this process's ``PWD``, and OpenCode 1.18 takes its project directory from ``PWD``: with
    a stale one it loads another directory's config (an MCP server started by an editor in the project
    has the editor's ``PWD``).
    """
    full = dict(os.environ if env is None else env)
    full["PWD"] = os.path.abspath(cwd) if cwd is not None else os.getcwd()
    return full


def _parse_report(report: bytes, argv: Sequence[str]) -> int:
    if report.startswith(b"P") and report[1:].strip().isdigit():
        return int(report[1:])
    if report.startswith(b"E") and report[1:].strip().isdigit():
        errno = int(report[1:])
        raise OSError(errno, os.strerror(errno), argv[0])
    raise OSError(f"the supervisor of {Path(argv[0]).name} ended before it started the program")


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    limit: int = 2**16,
    grace: float = SUPERVISOR_GRACE_S,
) -> Lifeline:
    """Start ``argv`` (no shell) supervised, in its own process group, tied to this process's life.

    ``stdin``/``stdout``/``stderr``/``limit``/``env``/``cwd`` mean what they mean for
    :func:`asyncio.create_subprocess_exec`. Raises :class:`OSError` as that does when the
    program cannot be executed (e.g. :class:`FileNotFoundError`).
    """
    ours, theirs = socket.socketpair()
    try:
        process = await asyncio.create_subprocess_exec(
            *_command(argv, theirs.fileno(), grace),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=_child_env(env, cwd),
            cwd=cwd,
            limit=limit,
            start_new_session=True,
            pass_fds=(theirs.fileno(),),
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    ours.setblocking(False)
    try:
        report = await asyncio.wait_for(_read_line(ours), START_TIMEOUT_S)
        child = _parse_report(report, argv)
    except BaseException:
        ours.close()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), START_TIMEOUT_S)
        raise
    return Lifeline(process=process, child_pid=child, _line=ours)


async def _read_line(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while not data.endswith(b"\n"):
        chunk = await loop.sock_recv(sock, 64)
        if not chunk:
            break
        data += chunk
    return data


def popen(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    grace: float = SUPERVISOR_GRACE_S,
) -> Lifeline:
    """:func:`spawn` for code without an event loop (any thread): :attr:`Lifeline.process` is a Popen."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            _command(argv, theirs.fileno(), grace),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=_child_env(env, cwd),
            cwd=cwd,
            start_new_session=True,
            pass_fds=(theirs.fileno(),),
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    try:
        ours.settimeout(START_TIMEOUT_S)
        report = b""
        while not report.endswith(b"\n"):
            chunk = ours.recv(64)
            if not chunk:
                break
            report += chunk
        ours.settimeout(None)
        child = _parse_report(report, argv)
    except BaseException:
        ours.close()
        process.kill()
        process.wait(START_TIMEOUT_S)
        raise
    return Lifeline(process=process, child_pid=child, _line=ours)


Member = tuple[int, float]  # pid and start time: a pid alone may have been reused


def _linux_members(pgid: int) -> set[Member]:
    found: set[Member] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # fields[0] is the state, [2] the process group, [19] the start time (clock ticks).
        if len(fields) > 19 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            found.add((int(name), float(fields[19])))
    return found


def _members(pgid: int) -> set[Member]:
    """The live (not zombie) processes of group ``pgid``."""
    import psutil  # here: a CLI run spawns its server before psutil is needed (0.01 s sooner)

    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return set()
    except PermissionError:
        pass
    if _LINUX:
        return _linux_members(pgid)
    found: set[Member] = set()
    for proc in psutil.process_iter(["status", "create_time"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.add((proc.pid, proc.info["create_time"]))
    return found


def group_alive(pgid: int) -> bool:
    """Whether group ``pgid`` still has a process that has not exited (zombies do not count)."""
    return bool(_members(pgid))


def _identity(pid: int) -> Member | None:
    """A live process outside the group (a descendant that left it), as a member."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if _LINUX:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            return (pid, float(stat[stat.rfind(b")") + 2 :].split()[19]))
        return (pid, proc.create_time())
    except (psutil.Error, OSError, IndexError):
        return None


def _descendants_outside(root: int, pgid: int) -> list[int]:
    import psutil

    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return []
    outside = []
    for child in children:
        with contextlib.suppress(OSError):
            if os.getpgid(child.pid) != pgid:
                outside.append(child.pid)
    return outside


def _signal(pgid: int, pids: Iterable[int], sig: signal.Signals) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


async def _wait_pidfds(pending: set[Member], ended: set[Member], timeout: float) -> None:
    """Until one of ``pending`` exits (or ``timeout``); every one seen exited goes into ``ended``."""
    loop = asyncio.get_running_loop()
    fired = asyncio.Event()
    opened: dict[int, Member] = {}

    def on_exit(fd: int) -> None:
        loop.remove_reader(fd)
        ended.add(opened[fd])
        fired.set()

    try:
        for member in pending:
            try:
                fd = os.pidfd_open(member[0])
            except OSError:  # already reaped
                ended.add(member)
                fired.set()
                continue
            opened[fd] = member
            if _identity(member[0]) != member:  # gone, or the pid is someone else's now
                ended.add(member)
                fired.set()
                continue
            loop.add_reader(fd, on_exit, fd)
        if not fired.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fired.wait(), timeout)
    finally:
        for fd in opened:
            loop.remove_reader(fd)
            os.close(fd)


def _wait_psutil(pending: set[Member], ended: set[Member], timeout: float) -> None:
    import psutil

    procs = []
    for member in pending:
        try:
            procs.append((psutil.Process(member[0]), member))
        except psutil.Error:
            ended.add(member)
    if len(procs) < len(pending) or not procs:
        return
    done, _ = psutil.wait_procs([p for p, _ in procs], timeout=timeout)
    for proc, member in procs:
        if proc in done:
            ended.add(member)


async def _wait_group(pgid: int, outside: set[Member], timeout: float) -> bool:
    """Wait (on events only) until group ``pgid`` and ``outside`` hold no live process; False on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    ended: set[Member] = set()
    while True:
        live = _members(pgid) | {m for m in outside if _identity(m[0]) == m}
        pending = live - ended
        left = deadline - loop.time()
        if not pending:
            return True
        if left <= 0:
            return False
        # Each pass waits for an exit (or the deadline), so the loop turns once per event.
        if _PIDFD:
            await _wait_pidfds(pending, ended, left)
        else:
            await asyncio.to_thread(_wait_psutil, pending, ended, left)


async def end_tree(
    target: Lifeline | asyncio.subprocess.Process | subprocess.Popen[bytes] | int, grace: float = 2.0
) -> bool:
    """End a process group: SIGTERM, wait up to ``grace`` s, SIGKILL what is left, wait again.

    ``target`` is a :class:`Lifeline` (its program's group; the supervisor is reaped and the line
    closed), a process started with ``start_new_session=True`` (its group is its pid; it is
    reaped), or a bare process group id. Descendants that left the group are signalled too.
    Zombies count as ended. Returns whether everything ended within the two waits.
    """
    process: asyncio.subprocess.Process | subprocess.Popen[bytes] | None = None
    if isinstance(target, Lifeline):
        pgid, root, process = target.pgid, target.pid, target.process
    elif isinstance(target, int):
        pgid = root = target
    else:
        pgid = root = target.pid
        process = target
    outside_pids = _descendants_outside(root, pgid)
    outside = {m for m in map(_identity, outside_pids) if m is not None}
    _signal(pgid, outside_pids, signal.SIGTERM)
    ended = await _wait_group(pgid, outside, grace)
    if not ended:
        _signal(pgid, [m[0] for m in outside], signal.SIGKILL)
        ended = await _wait_group(pgid, outside, grace)
    if process is not None:
        if isinstance(process, subprocess.Popen):
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, grace)
        else:
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()  # a supervisor that outlived its program's group for long
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), grace)
    if isinstance(target, Lifeline):
        target.close()
    return ended
