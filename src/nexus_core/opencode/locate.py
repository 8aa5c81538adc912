"""The one way nexus finds OpenCode: ``$NEXUS_OPENCODE``, then ``opencode`` on PATH, then the project's ``.tools``.

Routing, the doctor, the adapter, the serve transport, the MCP server and the dashboard all
ask here, so a set-up that runs a delegation is never called "OpenCode missing" elsewhere.

* :func:`locate_opencode` gives the path the user knows (their ``NEXUS_OPENCODE``, the launcher
  on PATH, or the one ``python3 bootstrap.py`` installed into ``.tools/opencode``);
* :func:`find_opencode` gives what nexus runs: the native binary behind the npm launcher, so
  that ending the process ends OpenCode itself (a killed node launcher leaves its child running).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

__all__ = ["LOCATOR_HINT", "find_opencode", "locate_opencode", "native_opencode", "npm_release", "tools_opencode"]

LOCATOR_HINT = "Install OpenCode (npm install -g opencode-ai) and put it on PATH, or set NEXUS_OPENCODE to its path"

# src/nexus_core/opencode/locate.py -> the checkout root, where bootstrap.py installs into .tools.
_CHECKOUT = Path(__file__).resolve().parents[3]


def tools_opencode(root: Path | None = None) -> str | None:
    """The launcher ``python3 bootstrap.py`` installed into ``<root>/.tools/opencode``, when there is one."""
    launcher = (root or _CHECKOUT) / ".tools" / "opencode" / "node_modules" / ".bin" / "opencode"
    return str(launcher) if os.access(launcher, os.X_OK) else None


def locate_opencode(env: Mapping[str, str] | None = None) -> str | None:
    """OpenCode as the user knows it: ``$NEXUS_OPENCODE`` when set, else ``opencode`` on PATH, else ``.tools``.

    A ``NEXUS_OPENCODE`` that is set but not executable finds nothing: the user named a path,
    and a different OpenCode found elsewhere would be a surprise.
    """
    env = os.environ if env is None else env
    explicit = env.get("NEXUS_OPENCODE")
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    return shutil.which("opencode", path=env.get("PATH", os.defpath)) or tools_opencode()


def find_opencode(env: Mapping[str, str] | None = None) -> str | None:
    """The executable nexus starts: :func:`locate_opencode`, resolved past the npm launcher (:func:`native_opencode`)."""
    env = os.environ if env is None else env
    found = locate_opencode(env)
    return native_opencode(found, env) if found else None


def native_opencode(launcher: str, env: Mapping[str, str] | None = None) -> str:
    """The binary the npm launcher ``bin/opencode`` runs, or ``launcher`` itself when it is not that launcher.

    The launcher (a node script) only picks a binary and runs it with the same argv, stdio and
    environment; starting the binary directly saves a node process per attempt. Its own
    order is kept: ``$OPENCODE_BIN_PATH``, then the ``bin/.opencode`` copy made at install.
    """
    env = os.environ if env is None else env
    real = Path(launcher).resolve()
    try:
        with real.open("rb") as handle:
            head = handle.read(64)
    except OSError:
        return launcher
    if not head.startswith(b"#!/usr/bin/env node") or real.parent.parent.name != "opencode-ai":
        return launcher
    override = env.get("OPENCODE_BIN_PATH")
    if override:
        return override
    cached = real.parent / ".opencode"
    return str(cached) if os.access(cached, os.X_OK) else launcher


def npm_release(binary: str) -> tuple[int, int, int] | None:
    """The release of an OpenCode installed from npm, read from the package the binary (or its
    launcher) belongs to: ``opencode-ai``'s ``bin/.opencode`` or ``bin/opencode``, or a platform
    package's ``bin/opencode``. None for any other install, or when it cannot be read."""
    package = Path(binary).resolve().parent.parent / "package.json"
    try:
        meta = json.loads(package.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not str(meta.get("name", "")).startswith("opencode"):
        return None
    found = re.match(r"^(\d+)\.(\d+)\.(\d+)", str(meta.get("version", "")))
    return (int(found[1]), int(found[2]), int(found[3])) if found else None
