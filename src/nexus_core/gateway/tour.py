"""The demo's tour: the reference gateway scripted so every dashboard feature can be tried with no key.

- a task that mentions **explain** gets a long answer that streams for several seconds;
- a task that mentions **read** (or **tool**) makes the model call OpenCode's ``read`` tool on the
  demo project's README, then answer from what it read;
- ``claude-opus-4-5`` is "down" (404, model not found), so a run routed to it falls back to the
  next model of the chain;
- anything else gets the gateway's usual ``Reply to: …``, streamed a little slowly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nexus_core.gateway.slow import SlowChunkGateway

__all__ = ["FAILING_MODEL", "TOUR_README", "TourGateway", "install_tour", "long_answer"]

#: The model the tour takes down, so that fallbacks can be watched.
FAILING_MODEL = "claude-opus-4-5"
#: Seconds between streamed chunks (about three words each).
CHUNK_DELAY_S = 0.04

TOUR_README = """\
# demo-project

A throw-away project for the nexus demo. The parser in `src/parser.py` drops the
trailing newline of the last line; `tests/test_parser.py` has the failing test.
"""

_SECTIONS = (
    ("What the parser does", "reads the input line by line, keeps a cursor and a stack of open blocks"),
    ("Where the newline goes", "the last line is taken without its terminator, so the round trip loses it"),
    ("The fix", "keep the terminator in the token and strip it only where the grammar needs bare text"),
    ("Why it is safe", "every caller that wanted bare text already calls strip, and the tests show it"),
    ("What to test next", "empty input, a lone newline, Windows line ends and a file without any newline"),
)


def long_answer() -> str:
    """A long markdown answer (several hundred words), so the stream lasts several seconds."""
    parts = ["Here is a walk through the parser and the fix, step by step.\n"]
    for number, (title, gist) in enumerate(_SECTIONS, start=1):
        parts.append(f"\n## {number}. {title}\n")
        parts.append(
            f"In short, it {gist}. "
            "Looking at the code path closely, each branch hands its result to the next stage, "
            "and the state it carries is small: a position, the current block and the pending text. "
            "That keeps the change local, which is what we want for a fix that must not surprise anyone "
            "reading the history later.\n"
        )
        parts.append(f"- check: the case named in step {number} passes\n- check: nothing else changes\n")
    parts.append("\nThat is all: one small change, five checks, and the round trip keeps every byte.\n")
    return "".join(parts)


class TourGateway(SlowChunkGateway):
    """The reference gateway streaming at a readable pace (``chunk_delay_s`` between chunks)."""

    def __init__(self, *args: Any, chunk_delay_s: float = CHUNK_DELAY_S, **kwargs: Any) -> None:
        super().__init__(*args, chunk_delay_s=chunk_delay_s, **kwargs)


def install_tour(gateway: SlowChunkGateway, project_dir: Path) -> None:
    """Script ``gateway`` for the tour and write the README the ``read`` tool call opens."""
    readme = project_dir / "README.md"
    readme.write_text(TOUR_README, encoding="utf-8")
    gateway.script(
        "explain",
        long_answer(),
        reasoning="The user wants an explanation; walk through it in order and end with checks.",
    )
    gateway.script(
        "read",
        "Let me look at the project first.",
        tool_calls=[("read", {"filePath": str(readme)})],
        then="The README says the parser drops the trailing newline and names the failing test; "
        "the fix is to keep the terminator in the token.",
    )
    gateway.script(
        "tool",
        "Let me look at the project first.",
        tool_calls=[("read", {"filePath": str(readme)})],
        then="I read the README with the read tool: the parser drops the trailing newline.",
    )
    gateway.add_fault(f"404,model={FAILING_MODEL}")
