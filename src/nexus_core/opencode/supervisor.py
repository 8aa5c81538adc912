"""The supervisor program :mod:`nexus_core.opencode.lifeline` starts for every process tree it ties to nexus.

:data:`SOURCE` runs as ``python -I -S -c SOURCE FD GRACE ARGV...``; stdlib only, so that it starts fast.
It reports ``P<pid>`` (started) or ``E<errno>`` (exec failed) on the socket ``FD``, then waits: on a
hang-up of that socket it ends the program's group (SIGTERM, ``GRACE`` seconds, SIGKILL); when the
program exits it exits with the program's status (see the lifeline module for why).
"""

from __future__ import annotations

__all__ = ["SOURCE"]

SOURCE = r"""
import os, select, signal, socket, sys
fd, grace, argv = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
line = socket.socket(fileno=fd)
os.set_inheritable(fd, False)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
prctl = None
if sys.platform.startswith("linux"):
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        pass
me = os.getpid()
report_r, report_w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(s, signal.SIG_DFL)
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != me:
            os._exit(1)
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(report_w, str(exc.errno or 0).encode())
    os._exit(127)
os.close(report_w)
failed = os.read(report_r, 32)
if failed:
    line.sendall(b"E" + failed + b"\n")
    os.waitpid(pid, 0)
    os._exit(127)
line.sendall(b"P%d\n" % pid)
null = os.open(os.devnull, os.O_RDWR)
for target in (0, 1, 2):
    os.dup2(null, target)
poll = select.poll()
poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
poll.register(wake_r, select.POLLIN)


def reaped():
    done, status = os.waitpid(pid, os.WNOHANG)
    return status if done else None


def drain():
    try:
        while os.read(wake_r, 512):
            pass
    except BlockingIOError:
        pass


status = None
while status is None:
    hung_up = False
    for ready, _ in poll.poll():
        if ready == wake_r:
            drain()
        else:
            try:
                hung_up = not line.recv(64)
            except OSError:
                hung_up = True
    status = reaped()
    if status is None and hung_up:
        with_grace = select.poll()
        with_grace.register(wake_r, select.POLLIN)
        os.killpg(pid, signal.SIGTERM)
        end = os.times().elapsed + grace
        while reaped() is None and os.times().elapsed < end:
            with_grace.poll(max(1, int((end - os.times().elapsed) * 1000)))
            drain()
        os.killpg(pid, signal.SIGKILL)
        os.kill(me, signal.SIGKILL)
try:
    os.killpg(pid, signal.SIGTERM)
except OSError:
    pass
code = os.waitstatus_to_exitcode(status)
if code < 0:
    if code != -signal.SIGKILL and code != -signal.SIGSTOP:
        signal.signal(-code, signal.SIG_DFL)
    os.kill(me, -code)
os._exit(code)
"""
