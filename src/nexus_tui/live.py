"""The live events a backend posts to the dashboard while a run streams.

The dashboard's own runs (``opencode serve`` sessions) hand their typed events to the run's view
directly (:meth:`~nexus_tui.widgets.runs.RunView.feed`); their permission questions come as
:class:`PermissionAsked` (posted by :meth:`~nexus_tui.run_control.RunControl.asker`). Any other
streaming backend, or a test, posts these messages to the app with ``app.post_message(...)``;
the app routes each one to the run it names. Nothing here knows about OpenCode: a permission
question carries the callable that takes the user's answer back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Literal

from textual.message import Message

__all__ = [
    "PERMISSION_REPLIES",
    "PermissionAsked",
    "PermissionQuestion",
    "PermissionReply",
    "RunQueued",
    "RunStarted",
    "TextDelta",
    "ToolCallUpdate",
]

#: OpenCode's three answers to a permission question.
PermissionReply = Literal["once", "always", "reject"]
PERMISSION_REPLIES: tuple[PermissionReply, ...] = ("once", "always", "reject")

_question_numbers = count(1)


@dataclass(frozen=True)
class PermissionQuestion:
    """A run asks before a tool acts: which tool, on what (the command or the pattern), and how to answer.

    ``answer`` is called once with the user's reply; it may return an awaitable (it is awaited).
    """

    run_id: str
    tool: str
    detail: str
    answer: Callable[[PermissionReply], Awaitable[None] | None]
    title: str = ""
    question_id: str = field(default_factory=lambda: f"question-{next(_question_numbers)}")


class RunQueued(Message):
    """The run waits to start (e.g. for OpenCode's first-run lock): its status shows ``queued``."""

    def __init__(self, run_id: str, reason: str = "") -> None:
        super().__init__()
        self.run_id = run_id
        self.reason = reason


class RunStarted(Message):
    """The run stopped waiting and is running."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id


class TextDelta(Message):
    """A piece of the run's answer (or of its reasoning) as it streams."""

    def __init__(self, run_id: str, delta: str, *, reasoning: bool = False) -> None:
        super().__init__()
        self.run_id = run_id
        self.delta = delta
        self.reasoning = reasoning


ToolState = Literal["pending", "running", "completed", "error"]


class ToolCallUpdate(Message):
    """A tool call appeared or changed state; ``output`` (or ``error``) once it has finished."""

    def __init__(
        self,
        run_id: str,
        call_id: str,
        tool: str,
        state: ToolState,
        *,
        title: str = "",
        output: str | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.call_id = call_id
        self.tool = tool
        self.state = state
        self.title = title
        self.output = output
        self.error = error


class PermissionAsked(Message):
    """A run asks the user's permission; questions of several runs queue and are asked one at a time."""

    def __init__(self, question: PermissionQuestion) -> None:
        super().__init__()
        self.question = question
