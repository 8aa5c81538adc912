"""Parsing `opencode run --format json` lines into typed events (shapes from run.ts and message-v2.ts of 1.2.15)."""

from __future__ import annotations

import json

from nexus_core.opencode.events import (
    TOOL_OUTPUT_LIMIT,
    ErrorEvent,
    FailureClass,
    Outcome,
    OutputLine,
    Raw,
    Reasoning,
    StepFinish,
    StepStart,
    Text,
    ToolUse,
    event_adapter,
    parse_line,
)


def _line(type_: str, **data) -> str:
    return json.dumps({"type": type_, "timestamp": 1, "sessionID": "ses_1", **data})


def test_step_start_text_and_finish_with_tokens_and_cost() -> None:
    assert parse_line(_line("step_start", part={"type": "step-start"})) == StepStart(session_id="ses_1")
    text = parse_line(
        _line("text", part={"type": "text", "text": "hello", "time": {"start": 1, "end": 2}}), attempt=2, at=1.5
    )
    assert text == Text(text="hello", attempt=2, at=1.5)
    finish = parse_line(
        _line(
            "step_finish",
            part={
                "type": "step-finish",
                "reason": "stop",
                "cost": 0.0125,
                "tokens": {"input": 10, "output": 5, "reasoning": 2, "cache": {"read": 3, "write": 1}},
            },
        )
    )
    assert isinstance(finish, StepFinish)
    assert (finish.reason, finish.cost) == ("stop", 0.0125)
    assert (finish.tokens.input, finish.tokens.output, finish.tokens.cache_read, finish.tokens.total) == (10, 5, 3, 17)


def test_reasoning_and_tool_use_with_bounded_output() -> None:
    assert parse_line(_line("reasoning", part={"type": "reasoning", "text": "hmm"})) == Reasoning(text="hmm")
    tool = parse_line(
        _line(
            "tool_use",
            part={
                "type": "tool",
                "tool": "bash",
                "state": {
                    "status": "completed",
                    "title": "ls",
                    "input": {"command": "ls"},
                    "output": "x" * (TOOL_OUTPUT_LIMIT * 3),
                },
            },
        )
    )
    assert isinstance(tool, ToolUse)
    assert (tool.tool, tool.status, tool.title, tool.input) == ("bash", "completed", "ls", {"command": "ls"})
    assert tool.output is not None and len(tool.output) == TOOL_OUTPUT_LIMIT
    failed = parse_line(
        _line("tool_use", part={"type": "tool", "tool": "read", "state": {"status": "error", "error": "no file"}})
    )
    assert isinstance(failed, ToolUse) and failed.error == "no file" and failed.output is None


def test_error_event_keeps_name_message_and_status() -> None:
    event = parse_line(
        _line(
            "error",
            error={
                "name": "APIError",
                "data": {"message": "Unauthorized", "statusCode": 401, "isRetryable": False},
            },
        )
    )
    assert event == ErrorEvent(name="APIError", message="Unauthorized", status_code=401, retryable=False)
    bare = parse_line(_line("error", error={"name": "UnknownError", "data": {"message": "Model not found: custom/x."}}))
    assert isinstance(bare, ErrorEvent) and bare.status_code is None and bare.message.startswith("Model not found")
    shapeless = parse_line(_line("error", error="boom"))
    assert isinstance(shapeless, ErrorEvent) and shapeless.name == "UnknownError"


def test_unknown_types_and_non_json_lines_are_kept_not_fatal() -> None:
    raw = parse_line(_line("patch", part={"files": ["a.py"]}))
    assert isinstance(raw, Raw) and raw.type == "patch" and raw.data["part"] == {"files": ["a.py"]}
    assert parse_line("Performing one time database migration") == OutputLine(
        line="Performing one time database migration"
    )
    assert parse_line("[1, 2]") == OutputLine(line="[1, 2]")
    assert parse_line('{"no": "type"}') == OutputLine(line='{"no": "type"}')
    assert parse_line("   \n") is None
    wrong_types = parse_line(_line("step_finish", part={"reason": 7, "tokens": "many", "cost": "free"}))
    assert isinstance(wrong_types, StepFinish) and wrong_types.reason is None and wrong_types.tokens.total == 0


def test_events_round_trip_through_json_by_kind() -> None:
    for event in (
        Text(text="a"),
        ErrorEvent(name="APIError", message="m", status_code=500),
        Raw(type="x", data={"k": 1}),
    ):
        assert event_adapter.validate_json(event.model_dump_json()) == event


def test_outcome_sentence() -> None:
    failed = Outcome(failure=FailureClass.AUTH, message="Unauthorized.", fix="Export CUSTOM_API_KEY")
    assert not failed.ok and failed.sentence() == "Unauthorized. Export CUSTOM_API_KEY."
    assert Outcome(message="finished").ok
