"""OpenCode's argv and environment for one ``opencode run`` attempt.

The prompt is never in argv (it goes on stdin); ``--model`` is always passed; ``--variant`` only
when it is on :data:`VARIANT_ALLOWLIST`. The child's environment is the parent's, with the
delegation depth one higher so that a nexus MCP server inside OpenCode can refuse to recurse.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from nexus_core.errors import NexusError

__all__ = [
    "ATTEMPT_VAR",
    "CLI_MODEL_RE",
    "DEPTH_VAR",
    "VARIANT_ALLOWLIST",
    "allowed_variant",
    "build_argv",
    "check_model_name",
    "child_env",
    "opencode_database",
]

log = logging.getLogger(__name__)

# The ``<provider-id>/<model-key>`` shape of a name OpenCode's ``--model`` takes.
CLI_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._:@/+-]*$")
VARIANT_ALLOWLIST = frozenset({"high", "max", "minimal"})
DEPTH_VAR = "NEXUS_DELEGATION_DEPTH"
# A per-attempt id in OpenCode's environment: every process it starts inherits it, so a
# daemonised one can still be found and ended.
ATTEMPT_VAR = "NEXUS_ATTEMPT_ID"


def allowed_variant(variant: str | None) -> str | None:
    """The variant when it is on the allowlist; anything else is dropped (with a debug log), never passed on."""
    if variant is None or variant == "":
        return None
    if variant in VARIANT_ALLOWLIST:
        return variant
    log.debug("variant %r is not one of %s; dropped", variant, ", ".join(sorted(VARIANT_ALLOWLIST)))
    return None


def check_model_name(name: str) -> str:
    """``name`` when it has the ``<provider-id>/<model-key>`` shape OpenCode's ``--model`` takes."""
    if not isinstance(name, str) or not CLI_MODEL_RE.match(name):
        raise NexusError(
            f"{name!r} is not a model name of the form <provider-id>/<model-key>",
            "Use a registry id or alias (nexus-agents models) or a name such as custom/claude-sonnet-4-5",
        )
    return name


def opencode_database(env: Mapping[str, str]) -> Path:
    """Where OpenCode keeps its SQLite database for this environment (``$XDG_DATA_HOME/opencode``)."""
    data = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return Path(data) / "opencode" / "opencode.db"


def build_argv(
    opencode: str,
    cli_model_name: str,
    *,
    variant: str | None = None,
    thinking: bool = False,
    workdir: str | os.PathLike[str] | None = None,
) -> list[str]:
    """OpenCode's argv for one attempt. The prompt is not in it: it goes on stdin."""
    argv = [
        opencode,
        "run",
        "--format",
        "json",
        "--print-logs",
        "--log-level",
        "ERROR",
        "--model",
        check_model_name(cli_model_name),
    ]
    chosen = allowed_variant(variant)
    if chosen:
        argv += ["--variant", chosen]
    if thinking:
        argv.append("--thinking")
    if workdir is not None:
        argv += ["--dir", str(workdir)]
    return argv


def child_env(base: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment OpenCode runs with.

    The whole parent environment is passed on on purpose: OpenCode needs PATH, HOME, the XDG
    dirs, proxy settings and every ``{env:VAR}`` its config names (the gateway's key among
    them), and nexus cannot know them all. ``NEXUS_DELEGATION_DEPTH`` is the parent's plus
    one, so a nexus MCP server started inside OpenCode can refuse to recurse.
    """
    env = dict(os.environ if base is None else base)
    if overrides:
        env.update(overrides)
    try:
        depth = int(env.get(DEPTH_VAR, "0") or 0)
    except ValueError:
        depth = 0
    env[DEPTH_VAR] = str(max(depth, 0) + 1)
    return env
