"""What the reference gateway answers: scripted turns and the OpenAI wire shapes that carry them.

By default a chat request gets ``Reply to: <first 60 characters of its last user message>`` so
that concurrent runs can be told apart. A :class:`Script` replaces that for requests whose last
user message contains ``match``: a text reply, or tool calls followed (on the request that
carries the tool results) by a text reply, so that a real OpenCode run completes.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Script",
    "ToolCall",
    "Turn",
    "assistant_turns_since_last_user",
    "completion_body",
    "completion_chunks",
    "default_reply",
    "is_title_request",
    "last_user_text",
    "message_text",
    "prompt_tokens_of",
    "tool_results_since_last_user",
]

_TITLE_PROMPT = "Generate a title for this conversation"
_PREVIEW_CHARS = 60


class ToolCall(BaseModel):
    """A tool call the model makes: the tool's name and its JSON arguments."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class Turn(BaseModel):
    """One assistant turn: text, or tool calls (OpenCode runs them and asks again).

    ``reasoning`` is streamed first as ``reasoning_content`` (OpenCode shows it with ``--thinking``).
    ``finish`` is the finish reason of a text turn: ``length`` plays a reply cut at the token limit.
    """

    model_config = ConfigDict(frozen=True)

    text: str = ""
    reasoning: str = ""
    finish: Literal["stop", "length"] = "stop"
    tool_calls: tuple[ToolCall, ...] = ()


class Script(BaseModel):
    """Turns for requests whose last user message contains ``match``.

    Turn *i* answers the request that has *i* assistant messages after the last user message,
    so ``[tool call turn, text turn]`` answers the first request with the tool call and the
    follow-up (carrying the tool result) with the text. Past the last turn the last text turn
    repeats; a follow-up to tool calls without a text turn gets
    ``Tool <name> returned: <first 60 characters of the result>``. ``times`` limits how many
    first turns the script answers (its follow-ups are always answered).
    """

    model_config = ConfigDict(frozen=True)

    match: str
    turns: tuple[Turn, ...] = Field(min_length=1)
    times: int | None = Field(default=None, ge=1)

    def turn_for(self, messages: list[dict[str, Any]]) -> Turn:
        """The turn that answers a request carrying ``messages``."""
        index = assistant_turns_since_last_user(messages)
        if index < len(self.turns):
            return self.turns[index]
        texts = [t for t in self.turns if not t.tool_calls]
        if texts:
            return texts[-1]
        results = tool_results_since_last_user(messages)
        last = results[-1] if results else ("", "")
        return Turn(text=f"Tool {last[0] or 'call'} returned: {_preview(last[1])}")


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last ``user`` message (empty if there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def is_title_request(messages: list[dict[str, Any]]) -> bool:
    """Whether this is OpenCode's background request for a session title (session/prompt.ts ensureTitle)."""
    return any(m.get("role") == "user" and message_text(m).startswith(_TITLE_PROMPT) for m in messages)


def tool_results_since_last_user(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(tool name, result text)`` for every ``tool`` message after the last user message."""
    names: dict[str, str] = {}
    results: list[tuple[str, str]] = []
    for message in messages[_last_user_index(messages) + 1 :]:
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                names[str(call.get("id"))] = str((call.get("function") or {}).get("name", ""))
        if message.get("role") == "tool":
            results.append((names.get(str(message.get("tool_call_id")), ""), message_text(message)))
    return results


def default_reply(messages: list[dict[str, Any]]) -> str:
    """``Reply to: <first 60 characters of the last user message, whitespace collapsed>``."""
    return f"Reply to: {_preview(last_user_text(messages))}"


def completion_chunks(
    *, model: str, turn: Turn, call_ids: list[str], prompt_tokens: int, include_usage: bool
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed answer, in order (without ``[DONE]``)."""
    ident, created = f"chatcmpl-{time.time_ns():x}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"reasoning_content": piece}) for piece in _pieces(turn.reasoning)]
    chunks += [chunk({"content": piece}) for piece in _pieces(turn.text)]
    for index, (call, call_id) in enumerate(zip(turn.tool_calls, call_ids, strict=True)):
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                        }
                    ]
                }
            )
        )
    chunks.append(chunk({}, _finish_reason(turn)))
    if include_usage:
        chunks.append(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(prompt_tokens, turn),
            }
        )
    return chunks


def completion_body(*, model: str, turn: Turn, call_ids: list[str], prompt_tokens: int) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.reasoning:
        message["reasoning_content"] = turn.reasoning
    if turn.tool_calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c, call_id in zip(turn.tool_calls, call_ids, strict=True)
        ]
    return {
        "id": f"chatcmpl-{time.time_ns():x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(turn)}],
        "usage": _usage(prompt_tokens, turn),
    }


def prompt_tokens_of(messages: list[dict[str, Any]]) -> int:
    """A deterministic token estimate for a prompt (four characters a token)."""
    return max(1, sum(len(message_text(m)) for m in messages) // 4)


def _finish_reason(turn: Turn) -> str:
    return "tool_calls" if turn.tool_calls else turn.finish


def _usage(prompt_tokens: int, turn: Turn) -> dict[str, int]:
    completion = max(
        1, (len(turn.text) + len(turn.reasoning) + sum(len(json.dumps(c.arguments)) for c in turn.tool_calls)) // 4
    )
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def _pieces(text: str) -> list[str]:
    """Split text into small pieces (about three words) so a stream really streams."""
    words = re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
    return ["".join(words[i : i + 3]) for i in range(0, len(words), 3)]


def _preview(text: str) -> str:
    return " ".join(text.split())[:_PREVIEW_CHARS]


def _last_user_index(messages: list[dict[str, Any]]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return -1


def assistant_turns_since_last_user(messages: list[dict[str, Any]]) -> int:
    """How many assistant messages follow the last user message (0 on a run's first request)."""
    return sum(1 for m in messages[_last_user_index(messages) + 1 :] if m.get("role") == "assistant")
