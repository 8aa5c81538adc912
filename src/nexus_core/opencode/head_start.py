"""An ``opencode run`` started ahead of its attempt, while nexus still plans the delegation.

``nexus-agents orchestrate --transport run --model provider/model`` knows the first attempt's
argv before it has loaded the routing core: the model is named outright. OpenCode takes about a
second to start; the plan (config, registry, routing, the store: mostly imports) takes a few
tenths. So the CLI starts that ``opencode run`` first (:meth:`HeadStart.begin`, a light import)
and plans meanwhile; OpenCode waits for its prompt on stdin, which only the attempt writes.

The first attempt takes the process over (:func:`take`) only when its argv and environment are
the very ones the head start was given (its per-attempt id aside, which it adopts): when the
plan chose another model, another binary or another directory, the head start is ended unused
then and the attempt starts its own; when the plan fails, the CLI ends it (:meth:`HeadStart.aclose`).
A registry id or alias names no OpenCode model by itself: it gets a head start with the name it
resolved to at its last run in the project (:func:`remember_name`), and none before that. (On a
fresh OpenCode data directory the head start is the process's only run, so it starts alone
there, as the adapter wants a first run to.)

The head start of the running delegation is a context variable (:data:`CURRENT`), set by the
one caller that makes one (the CLI), so the routing core's signatures stay as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from nexus_core.opencode import lifeline
from nexus_core.opencode.argv import ATTEMPT_VAR, CLI_MODEL_RE, build_argv, child_env
from nexus_core.opencode.locate import find_opencode
from nexus_core.store.db import state_dir

__all__ = ["CURRENT", "STDOUT_LINE_LIMIT", "HeadStart", "remember_name", "remembered_name", "spawn_run", "take"]

#: The longest line read from OpenCode's stdout (a longer one is dropped with a notice).
STDOUT_LINE_LIMIT = 8 * 1024 * 1024

#: Where the OpenCode name each registry id or alias last resolved to is kept, per project.
NAMES_FILE = "head-start-names.json"
#: The most names kept (the newest): a head start is a speed-up, never a record.
MAX_NAMES = 64

#: The head start the current delegation's first attempt may take over (None: there is none).
CURRENT: ContextVar[HeadStart | None] = ContextVar("nexus_head_start", default=None)


async def spawn_run(argv: tuple[str, ...] | list[str], env: Mapping[str, str]) -> lifeline.Lifeline:
    """Start one ``opencode run`` as every attempt does: under a lifeline (its whole group ends
    when this process ends, however it ends), its three pipes ours."""
    pipe = asyncio.subprocess.PIPE
    return await lifeline.spawn(argv, env=env, stdin=pipe, stdout=pipe, stderr=pipe, limit=STDOUT_LINE_LIMIT)


def _without_id(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != ATTEMPT_VAR}


@dataclass
class HeadStart:
    """One ``opencode run`` waiting for its prompt, and what it was started with."""

    argv: tuple[str, ...]
    env: dict[str, str]
    running: lifeline.Lifeline | None
    started_at: float = field(default_factory=time.time)

    @classmethod
    async def begin(
        cls,
        cli_model_name: str,
        *,
        variant: str | None = None,
        thinking: bool = False,
        workdir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> HeadStart | None:
        """Start the first attempt's ``opencode run`` now, or None when it cannot be known or must not start yet."""
        full = child_env(env)
        if not CLI_MODEL_RE.match(cli_model_name):
            # A registry id or alias: only the registry knows what OpenCode is to be given; what it
            # gave last time in this project is the guess (the attempt checks it).
            remembered = remembered_name(cli_model_name, workdir or os.getcwd(), full)
            if remembered is None:
                return None
            cli_model_name = remembered
        opencode = find_opencode(full)
        if opencode is None:
            return None
        argv = tuple(build_argv(opencode, cli_model_name, variant=variant, thinking=thinking, workdir=workdir))
        full[ATTEMPT_VAR] = uuid.uuid4().hex
        try:
            running = await spawn_run(argv, full)
        except OSError:
            return None  # the attempt's own start reports it
        return cls(argv, full, running)

    def take(self, argv: tuple[str, ...], env: Mapping[str, str]) -> tuple[lifeline.Lifeline, str, float] | None:
        """The waiting process, its attempt id and its start time, when ``argv`` and ``env`` are its own; once."""
        if self.running is None or self.running.process.returncode is not None:
            return None
        if tuple(argv) != self.argv or _without_id(env) != _without_id(self.env):
            return None
        running, self.running = self.running, None
        return running, self.env[ATTEMPT_VAR], self.started_at

    async def aclose(self) -> None:
        """End the process's tree when no attempt took it. Idempotent."""
        running, self.running = self.running, None
        if running is not None:
            await lifeline.end_tree(running, 1.0)


async def take(argv: tuple[str, ...], env: Mapping[str, str]) -> tuple[lifeline.Lifeline, str, float] | None:
    """What :meth:`HeadStart.take` gives for the current delegation's head start. The first
    attempt decides: a head start it does not take is ended then, not left waiting until the
    delegation is over."""
    head = CURRENT.get()
    if head is None:
        return None
    taken = head.take(argv, env)
    if taken is None:
        await head.aclose()
    return taken


def _key(hint: str, project: str | Path) -> str:
    return f"{Path(project).resolve()}\n{hint.strip()}"


def _names(env: Mapping[str, str] | None) -> dict[str, object]:
    try:
        names = json.loads((state_dir(env) / NAMES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return names if isinstance(names, dict) else {}


def remembered_name(hint: str, project: str | Path, env: Mapping[str, str] | None = None) -> str | None:
    """The ``provider/model`` that ``hint`` (a registry id or alias) resolved to at its last run in ``project``."""
    name = _names(env).get(_key(hint, project))
    return name if isinstance(name, str) and CLI_MODEL_RE.match(name) else None


def remember_name(hint: str, project: str | Path, name: str, env: Mapping[str, str] | None = None) -> None:
    """Keep ``name`` as what ``hint`` resolves to in ``project`` (written only when it changed, atomically);
    a failure to write is ignored: the next run just gets no head start."""
    if CLI_MODEL_RE.match(hint) or not CLI_MODEL_RE.match(name):
        return
    names, key = _names(env), _key(hint, project)
    if names.get(key) == name:
        return
    names.pop(key, None)
    names[key] = name  # last: the newest are kept
    path = state_dir(env) / NAMES_FILE
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{NAMES_FILE}.{os.getpid()}")
        partial.write_text(json.dumps(dict(list(names.items())[-MAX_NAMES:]), indent=0))
        os.replace(partial, path)
