"""A tool call's run: the delegation behind ``orchestrate``, ``delegate_to_model`` and ``consensus_vote``.

Progress goes to the client while it runs; a cancelled call ends the run and its process tree
before it is dropped (:mod:`nexus_core.mcp.cancel`); a failed run is a tool error whose text is
the delegation's last word (:mod:`nexus_core.routing.last_word`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from nexus_core.errors import NexusError
from nexus_core.mcp.cancel import cancelled_sentence, run_cancellable
from nexus_core.opencode.describe import describe
from nexus_core.opencode.events import RunEvent
from nexus_core.opencode.serve.events import TextDelta
from nexus_core.routing.chain import Delegation, DelegationResult, DelegationSpec, chain_of
from nexus_core.routing.last_word import last_word
from nexus_core.routing.registry import ModelProfile
from nexus_core.store.recorder import DelegationRecorder, recorded

__all__ = ["Project", "failed_error", "permission_sentence", "progress_message", "run_chain"]


class Project(Protocol):
    """What a run needs of the project the server serves."""

    @property
    def env(self) -> Mapping[str, str]: ...

    @property
    def directory(self) -> Path: ...

    @property
    def jobs(self) -> Any: ...  # mcp.jobs.JobManager: its ``store`` (None: history off) records the run


def progress_message(event: RunEvent) -> str | None:
    """The progress line an event is worth to an MCP client (its milestones only, worded by
    :func:`~nexus_core.opencode.describe.describe`), or None."""
    said = describe(event)
    return said.text if said is not None and said.milestone else None


async def run_chain(
    project: Project,
    ctx: Context | None,
    prompt: str,
    chain: Sequence[ModelProfile],
    *,
    variant: str | None = None,
    thinking: bool = False,
    workdir: Path,
    timeout_s: float,
    approve: Sequence[str] = (),
    decision: Any = None,
    task: str | None = None,
) -> DelegationResult:
    """Run ``prompt`` along ``chain`` on the serve transport, reporting progress (text deltas included)
    to the caller when it asked for it (``report_progress`` sends nothing without a progressToken)."""
    spec = DelegationSpec(
        prompt=prompt,
        chain=chain_of(chain),
        variant=variant,
        thinking=thinking,
        workdir=workdir,
        timeout_s=timeout_s,
        stats_interval_s=None,
        env=dict(project.env),
        transport="serve",
        approve=frozenset(approve),
    )
    steps = 0
    delegation = Delegation(spec)
    store = project.jobs.store
    recorder = (
        DelegationRecorder.begin(store, spec, decision=decision, source="mcp", project=project.directory, task=task)
        if store is not None
        else None
    )

    async def drive() -> None:
        nonlocal steps
        async with delegation:
            async for event in recorded(delegation.events(), recorder, delegation):
                message = event.delta if isinstance(event, TextDelta) else progress_message(event)
                if message and ctx is not None and not delegation.cancelled:
                    steps += 1
                    await ctx.report_progress(steps, None, message)

    try:
        # A cancelled call (notifications/cancelled) ends the run, its tree included, before it is dropped.
        await run_cancellable(drive(), delegation.cancel, describe=lambda: cancelled_sentence(delegation.result))
    except NexusError as exc:
        raise ToolError(exc.sentence()) from None
    if delegation.result is None:
        raise ToolError("The run ended before any model was tried. Try again.")
    if store is not None:
        await asyncio.to_thread(store.flush)  # the next call's routing reads this run's outcome
    return delegation.result


def permission_sentence(message: str) -> str | None:
    """For a refused permission question: what was asked, and the ``approve`` argument that allows it."""
    asked = re.match(r"OpenCode asked for permission '(?P<name>[\w-]+)'", message)
    if asked is None:
        return None
    name = asked.group("name")
    return f'{message.rstrip(".")}, so it was rejected. Allow it with approve: ["{name}"] in the call (or ["all"]).'


def failed_error(result: DelegationResult, timeout_s: float) -> ToolError:
    """The tool error for a run no model finished: its last word (a refused permission names its ``approve``)."""
    asked = permission_sentence(result.outcome.message)
    return ToolError(asked or f"The task failed: {last_word(result, timeout_s)}")
