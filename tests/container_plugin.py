"""The container build as part of the suite: ``scripts/container-test`` runs in the background.

Building the image takes minutes (cold) or about one (warm cache), so the test that checks it
must not hold the rest of the suite up. When collection is done this plugin starts
``scripts/container-test`` in a process group of its own (niced, so the other tests keep the
CPU), moves the tests marked ``container_build`` to the end of the run, and hands them the
running build through the ``container_run`` fixture. Where the machine cannot run the script
(not Linux, not root, no Debian mirror, too little disk) nothing is started and the fixture
carries the one-sentence reason, which the test reports as its skip reason (``-ra`` shows it).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "container-test"
MARKER = "container_build"
# Turns the build off for one run (the skip says so): NEXUS_CONTAINER_TEST=0.
SWITCH = "NEXUS_CONTAINER_TEST"
# A cold build (debootstrap, npm, pip, every layer copied by vfs) on two busy cores.
RUN_SECONDS = 45 * 60
MIRROR_SECONDS = 10.0
STOP_SECONDS = 60.0
_RUN_KEY = pytest.StashKey["ContainerRun"]()


# The build runs under this wrapper, which writes its exit code to a file when it ends, so that
# whichever process runs the test (an xdist worker, or the suite's only process) can wait for it.
_RUNNER = """
import os, subprocess, sys
os.nice(10)
try:  # and the disk only when nothing else wants it: vfs copies every layer in full
    import psutil
    psutil.Process().ionice(psutil.IOPRIO_CLASS_IDLE)
except Exception:
    pass
code = subprocess.call(sys.argv[2:], stdin=subprocess.DEVNULL)
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(str(code))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
"""
# Where the suite's main process (the xdist controller, or the only process) tells the tests about the build.
STATE_VAR = "NEXUS_CONTAINER_RUN_DIR"
POLL_S = 1.0


@dataclass
class ContainerRun:
    """One background ``scripts/container-test`` run, or why there is none, as seen from any test process."""

    skip_reason: str | None = None
    state_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = None  # only in the process that started it
    started: float = field(default_factory=time.time)
    seconds: float | None = None

    @property
    def log_path(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / "log"

    @classmethod
    def read(cls, state_dir: Path) -> ContainerRun:
        """The run the main process recorded in ``state_dir``."""
        skip = state_dir / "skip"
        if skip.exists():
            return cls(skip_reason=skip.read_text(encoding="utf-8"))
        started = state_dir / "started"
        if not started.exists():
            return cls(skip_reason="the container build was not started at collection time")
        return cls(state_dir=state_dir, started=float(started.read_text()))

    def wait(self, timeout: float) -> tuple[int, str]:
        """The run's exit code and output, waiting at most ``timeout`` seconds (-1 when it had not ended)."""
        assert self.state_dir is not None and self.log_path is not None
        rc_file = self.state_dir / "rc"
        deadline = time.monotonic() + max(1.0, timeout)
        while not rc_file.exists() and time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None and not rc_file.exists():
                break  # the wrapper was killed before it could write the code
            time.sleep(POLL_S)  # another process owns the build: its exit code file is the only signal
        returncode = int(rc_file.read_text()) if rc_file.exists() else -1
        self.seconds = time.time() - self.started
        return returncode, self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """End the run: SIGTERM (the script stops its dockerd on it), then SIGKILL for the group."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def load_script() -> ModuleType:
    """``scripts/container-test`` as a module (its ``main`` does not run on import)."""
    loader = importlib.machinery.SourceFileLoader("nexus_container_test", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _mirror_answers(mirror: str) -> str | None:
    """None when the mirror serves bookworm's Release file, else what went wrong."""
    url = f"{mirror}/dists/bookworm/Release"
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=MIRROR_SECONDS) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def why_it_cannot_run(env: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The one-sentence reason this machine cannot run ``scripts/container-test``, or None."""
    if env.get(SWITCH, "").strip().lower() in ("0", "no", "off", "false"):
        return f"{SWITCH}={env[SWITCH]} turned the container build off for this run"
    if sys.platform != "linux":
        return f"scripts/container-test runs its own dockerd and needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return (
            "scripts/container-test starts its own dockerd and debootstraps the base image, which needs root "
            "(run the suite as root, as CI does, or run `sudo scripts/container-test`)"
        )
    script = load_script()
    missing = [cmd for cmd in ("dockerd", "debootstrap", "docker-compose") if not _installed(cmd)]
    if missing and shutil.which("apt-get") is None:
        return f"{', '.join(missing)} missing and no apt-get to install them"
    mirror, _ = script.debian_mirrors(None)
    problem = _mirror_answers(mirror)
    if problem is not None:
        return f"the Debian mirror {mirror} did not answer ({problem}); the base image is built from it"
    state = Path(script.DEFAULT_STATE_DIR)
    probe = next((p for p in (state, *state.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    if free < script.MIN_FREE_BYTES:
        return (
            f"only {free / 1024**3:.1f} GiB free under {probe}; the vfs build needs "
            f"{script.MIN_FREE_BYTES / 1024**3:.0f} GiB (set NEXUS_CONTAINER_CACHE to a larger disk)"
        )
    return None


def _installed(command: str) -> bool:
    return shutil.which(command) is not None or Path("/usr/sbin", command).exists()


def _start(state_dir: Path) -> ContainerRun:
    reason = why_it_cannot_run()
    if reason is not None:
        (state_dir / "skip").write_text(reason, encoding="utf-8")
        return ContainerRun(skip_reason=reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    started = time.time()
    with (state_dir / "log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RUNNER,
                str(state_dir / "rc"),
                sys.executable,
                str(SCRIPT),
                "--lock-wait",
                str(RUN_SECONDS // 2),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (state_dir / "started").write_text(repr(started))
    return ContainerRun(state_dir=state_dir, process=process, started=started)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: collects the background scripts/container-test run")
    if not _is_worker(config):
        # Set before xdist starts its workers, so that they inherit it.
        os.environ[STATE_VAR] = tempfile.mkdtemp(prefix="nexus-container-test-")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The container tests go last, so that everything else runs while the image builds."""
    items.sort(key=lambda item: item.get_closest_marker(MARKER) is not None)


def _start_once(config: pytest.Config) -> None:
    if _RUN_KEY not in config.stash:
        config.stash[_RUN_KEY] = _start(Path(os.environ[STATE_VAR]))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Without xdist: start the build when its test was collected (and this is no --collect-only)."""
    config = session.config
    if _is_worker(config) or config.option.collectonly:
        return
    if any(item.get_closest_marker(MARKER) for item in session.items):
        _start_once(config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """Under xdist the controller owns the build: it starts when a worker has collected its test."""
    config = getattr(node, "config", None)
    if config is not None and any("test_container.py::" in test_id for test_id in ids):
        _start_once(config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    run = config.stash.get(_RUN_KEY, None)
    if run is None:
        return
    if run.skip_reason is not None:
        line = f"not run: {run.skip_reason}"
    else:
        rc_file = run.state_dir / "rc" if run.state_dir else None
        ended = rc_file is not None and rc_file.exists()
        line = (
            f"scripts/container-test ended with {rc_file.read_text()} (log: {run.log_path})"
            if ended and rc_file is not None
            else f"scripts/container-test had not ended when the suite did (log: {run.log_path})"
        )
    terminalreporter.write_sep("-", "container build")
    terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(_RUN_KEY, None)
    if run is not None:
        run.stop()


@pytest.fixture(scope="session")
def container_run(request: pytest.FixtureRequest) -> ContainerRun:
    """The background ``scripts/container-test`` run of this session (see the module docstring)."""
    own = request.config.stash.get(_RUN_KEY, None)
    if own is not None:
        return own
    state = os.environ.get(STATE_VAR)
    if not state:
        return ContainerRun(skip_reason="the container build was not started at collection time")
    return ContainerRun.read(Path(state))
