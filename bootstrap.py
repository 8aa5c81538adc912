#!/usr/bin/env python3
"""Set up everything nexus needs, then run the dashboard or the test suite.

    python3 bootstrap.py demo   # the dashboard in demo mode (loopback gateway, no key)
    python3 bootstrap.py test   # the whole test suite
    python3 bootstrap.py test --live-gateways   # only the tests against a real LiteLLM proxy

Creates ``.venv`` (the package and its dependencies) and installs the pinned OpenCode
CLI from npm into ``.tools/opencode``. Both steps are skipped when already up to date,
so a second run starts at once. Extra arguments are passed on to the dashboard or pytest.
``--live-gateways`` also installs LiteLLM proxy from PyPI into ``.tools/litellm`` (its own
venv) on first use and runs the tests marked ``live_gateway``, which are skipped otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

OPENCODE_VERSION = "1.2.15"
# The newer release the serve transport is also tested on (tests/opencode_versions.py).
OPENCODE_NEXT_VERSION = "1.18.33"
ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TOOLS = ROOT / ".tools" / "opencode"
TOOLS_NEXT = ROOT / ".tools" / f"opencode-{OPENCODE_NEXT_VERSION}"
BIN = "Scripts" if os.name == "nt" else "bin"
LITELLM_VERSION = "1.108.7"
TOOLS_LITELLM = ROOT / ".tools" / "litellm"


def _say(message: str) -> None:
    print(f"[bootstrap] {message}", file=sys.stderr, flush=True)


def _fail(message: str) -> None:
    print(f"bootstrap: {message}", file=sys.stderr)
    raise SystemExit(2)


def _run(argv: list[str], **kwargs) -> None:
    result = subprocess.run(argv, **kwargs)
    if result.returncode != 0:
        _fail(f"'{' '.join(argv[:4])} …' failed with exit code {result.returncode}; see the output above.")


def ensure_venv(extras: str) -> Path:
    """Create the virtual environment and install the package (editable) when stale."""
    if sys.version_info < (3, 11):
        _fail(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}. Run it with python3.11 or later.")
    python = VENV / BIN / "python"
    if not python.exists():
        _say("creating .venv")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes() + extras.encode()
    ).hexdigest()
    stamp = VENV / f".nexus-installed-{extras or 'base'}"
    if not stamp.exists() or stamp.read_text() != digest:
        _say(f"installing nexus{f'[{extras}]' if extras else ''} into .venv")
        target = f".[{extras}]" if extras else "."
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", "constraints.txt", "-e", target], cwd=ROOT)
        stamp.write_text(digest)
    # Bytecode for the editable sources, written even where PYTHONDONTWRITEBYTECODE is set (then
    # Python reads .pyc but never writes it, and every nexus-agents start would compile the core
    # again: a tenth of a second). Only changed files are compiled.
    subprocess.run([str(python), "-m", "compileall", "-q", "src"], cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
    return python


def ensure_opencode(version: str = OPENCODE_VERSION, tools: Path = TOOLS) -> Path:
    """Install OpenCode ``version`` from npm into ``tools`` (.tools/opencode) when missing."""
    bin_dir = tools / "node_modules" / ".bin"
    package = tools / "node_modules" / "opencode-ai" / "package.json"
    try:
        installed = json.loads(package.read_text()).get("version")
    except (OSError, ValueError):
        installed = None
    if installed != version:
        npm = shutil.which("npm")
        if npm is None:
            _fail("npm was not found on PATH; install Node.js 18+ with npm, then run this again.")
        _say(f"installing opencode-ai@{version} into {tools.relative_to(ROOT)}")
        tools.mkdir(parents=True, exist_ok=True)
        _run(
            [
                npm,
                "install",
                "--prefix",
                str(tools),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--no-save",
                f"opencode-ai@{version}",
            ],
            cwd=tools,
        )
    return bin_dir


def ensure_litellm(home: Path = TOOLS_LITELLM) -> Path:
    """Install ``litellm[proxy]`` (pinned) into its own venv at ``home`` when missing or stale."""
    python = home / BIN / "python"
    stamp = home / ".nexus-litellm"
    if python.exists() and stamp.exists() and stamp.read_text() == LITELLM_VERSION:
        return home
    if not python.exists():
        _say(f"creating {home.relative_to(ROOT) if home.is_relative_to(ROOT) else home}")
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
    _say(f"installing litellm[proxy]=={LITELLM_VERSION} (this takes a few minutes once)")
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"litellm[proxy]=={LITELLM_VERSION}",
        ]
    )
    stamp.write_text(LITELLM_VERSION)
    return home


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test"}:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    live = command == "test" and "--live-gateways" in rest
    rest = [a for a in rest if a != "--live-gateways"]
    python = ensure_venv("test" if command == "test" else "")
    opencode_bin = ensure_opencode()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(opencode_bin), str(VENV / BIN), env.get("PATH", "")])
    env["NEXUS_OPENCODE_BIN_DIR"] = str(opencode_bin)
    if command == "test":
        env["NEXUS_OPENCODE_1_18_BIN_DIR"] = str(ensure_opencode(OPENCODE_NEXT_VERSION, TOOLS_NEXT))
    if live:
        home = Path(env["NEXUS_LITELLM_HOME"]) if env.get("NEXUS_LITELLM_HOME") else TOOLS_LITELLM
        env["NEXUS_LITELLM_HOME"] = str(ensure_litellm(home))
        env["NEXUS_LIVE_GATEWAYS"] = "1"
        rest = ["-m", "live_gateway", *rest]
    if command == "test":
        # In parallel (pytest-xdist), one worker more than there are cores: about a third of the suite's
        # test time waits on OpenCode (its retry backoff, a silent gateway's timeout) rather than
        # computing, and the extra worker fills it (on 2 cores: 8.7 instead of 11-12 minutes).
        # `-n 0` among the extra arguments runs it serially. loadgroup: the tests that share an
        # expensive module fixture (a built wheel) stay on one worker.
        workers = str((os.cpu_count() or 1) + 1)
        argv_out = [str(python), "-m", "pytest", "-n", workers, "--dist", "loadgroup", *rest]
    else:
        argv_out = [str(VENV / BIN / "nexus-tui"), "--demo", *rest]
    os.chdir(ROOT)
    if os.name == "nt":
        return subprocess.call(argv_out, env=env)
    os.execve(argv_out[0], argv_out, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
