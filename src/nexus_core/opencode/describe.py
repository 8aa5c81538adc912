"""One wording for a delegation's events, shared by the CLI, the MCP server and the dashboard.

:func:`describe` turns an event into a :class:`Said`: a one-character ``mark``, the sentence
(``text``), whether it is a ``milestone`` (worth a progress line to a client that wants only
those: attempts, fallbacks, gateway retries, tool calls, permission questions) and an optional
``detail`` (a tool's error, a failed attempt's fix). Each surface decides which events it
shows and how it indents them; the words are the same everywhere.

The answer itself (:class:`Text`, and the streamed :class:`TextDelta` / :class:`ReasoningDelta`)
is not described: each surface writes it its own way. Neither are process stats (the dashboard
draws them) nor the session going idle (the attempt's end says it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    ErrorEvent,
    FallbackTaken,
    GatewayRetrying,
    OutputLine,
    Raw,
    Reasoning,
    StepFinish,
    StepStart,
    TokenUsage,
    ToolUse,
)
from nexus_core.opencode.serve.events import PermissionAsked, PermissionReplied, SessionRetry, ToolState
from nexus_core.routing.last_word import plain_message

__all__ = ["Said", "describe"]

# A tool call without a title is named by its input, cut to a line.
_INPUT_CHARS = 120


@dataclass(frozen=True)
class Said:
    """What an event says: ``mark`` (one character), ``text`` (no mark, no indentation), and more."""

    mark: str
    text: str
    milestone: bool = False
    detail: str | None = None

    def lines(self, indent: str = "") -> list[str]:
        """``mark text`` at ``indent``; the text's further lines and the detail under the text."""
        first, *rest = self.text.splitlines() or [""]
        under = indent + "  "
        more = [*rest, *(self.detail.splitlines() if self.detail else ())]
        return [f"{indent}{self.mark} {first}".rstrip(), *(f"{under}{line}".rstrip() for line in more)]


def _tokens(tokens: TokenUsage) -> str:
    parts = [f"in {tokens.input:,}", f"out {tokens.output:,}"]
    if tokens.reasoning:
        parts.append(f"reasoning {tokens.reasoning:,}")
    return " · tokens " + " / ".join(parts)


def _tool(tool: str, status: str, title: str) -> str:
    return f"{tool} [{status}] {title}".rstrip()


def describe(event: Any) -> Said | None:
    """The words for one event, or None for one the surfaces write themselves or not at all."""
    if isinstance(event, AttemptStarted):
        name = event.cli_model_name
        if event.model_id and event.model_id != name:
            name = f"{event.model_id} ({name})"
        return Said("→", f"attempt {event.attempt}: {name}", milestone=True)
    if isinstance(event, AttemptFinished):
        outcome = event.outcome
        if outcome.ok:
            return Said("✓", f"attempt {event.attempt} done by {event.cli_model_name}", milestone=True)
        text = f"attempt {event.attempt} failed ({outcome.failure}): {plain_message(outcome.message)}"
        return Said("✗", text, milestone=True, detail=outcome.fix or None)
    if isinstance(event, FallbackTaken):
        return Said("⤷", f"falling back from {event.from_model} to {event.to_model} ({event.reason})", milestone=True)
    if isinstance(event, GatewayRetrying | SessionRetry):
        text = f"gateway retry {event.retry}: {event.message}" if event.message else f"gateway retry {event.retry}"
        return Said("↻", text, milestone=True)
    if isinstance(event, ToolUse):
        title = event.title or (json.dumps(event.input)[:_INPUT_CHARS] if event.input else "")
        return Said("⚙", _tool(event.tool, event.status, title), milestone=True, detail=event.error)
    if isinstance(event, ToolState):
        return Said("⚙", _tool(event.tool, event.status, event.title), milestone=True, detail=event.error)
    if isinstance(event, PermissionAsked):
        patterns = ", ".join(event.patterns) or "*"
        return Said("?", f"OpenCode asks permission for {event.permission} ({patterns})", milestone=True)
    if isinstance(event, PermissionReplied):
        return Said("✗" if event.reply == "reject" else "✓", f"permission answered: {event.reply}")
    if isinstance(event, StepStart):
        return Said("▸", "step started")
    if isinstance(event, StepFinish):
        reason = f" ({event.reason})" if event.reason else ""
        cost = f" · ${event.cost:.4f}" if event.cost else ""
        return Said("■", f"step finished{reason}{_tokens(event.tokens)}{cost}")
    if isinstance(event, ErrorEvent):
        status = f", HTTP {event.status_code}" if event.status_code else ""
        return Said("✗", f"error from OpenCode ({event.name}{status}): {plain_message(event.message)}")
    if isinstance(event, Reasoning):
        return Said("…", event.text.strip()) if event.text.strip() else None
    if isinstance(event, OutputLine):
        return Said("›", event.line)
    if isinstance(event, Raw):
        return Said("·", f"OpenCode event {event.type}")
    return None
