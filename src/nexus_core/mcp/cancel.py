"""A tool call's run that ends, whole, when the call is cancelled.

The MCP SDK applies a client's ``notifications/cancelled`` (sent when the client gives up on a
call: its own timeout, the user's Esc, the SDK client abandoning the call) by cancelling the
handler's anyio scope. anyio keeps cancelling every await inside a cancelled scope, so cleanup
that awaits (ending OpenCode's process tree: SIGTERM, waiting for the exit, SIGKILL) would be cut
short at its first await and the run would go on without anyone waiting for it. Here the work
runs in a task of its own; when the caller is cancelled, the work is asked to stop (its normal
cancel path, so the run ends with the outcome ``cancelled`` and its tree is ended), and the
caller waits for that in a shielded scope, bounded, before the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from nexus_core.routing.chain import DelegationResult

__all__ = ["CANCEL_GRACE_S", "cancelled_sentence", "run_cancellable"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a cancelled run gets to end its tree on its own before its task is cancelled too.
CANCEL_GRACE_S = 5.0


def cancelled_sentence(result: DelegationResult | None) -> str:
    """The log line for a run whose call was cancelled: which model it was on and how it ended."""
    if result is None:
        return "A tool call was cancelled by the client before any model was tried."
    final = result.final
    return (
        f"A tool call was cancelled by the client: its run on {final.model_id or final.cli_model_name} "
        f"ended as {final.outcome.failure or 'finished'} after {result.duration_s:.1f} s, its process tree with it."
    )


async def run_cancellable(
    work: Awaitable[T], stop: Callable[[], None], *, describe: Callable[[], str], grace: float = CANCEL_GRACE_S
) -> T:
    """Await ``work``; when this call is cancelled, call ``stop()`` and wait (shielded) until ``work`` has ended.

    ``work`` ends on ``stop()`` by its own means; after ``grace`` seconds its task is cancelled
    as well. The cancellation is then re-raised, so the SDK treats the request as cancelled
    (it sends no answer), and ``describe()`` is logged as the record of it.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stop()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(grace):
                await asyncio.wait({task})
            if not task.done():
                task.cancel()
                with anyio.move_on_after(grace):
                    await asyncio.wait({task})
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("the cancelled run ended with %r", task.exception())
        log.warning("%s", describe())
        raise
