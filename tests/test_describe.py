"""One wording for run events: :func:`describe` over every kind, and the three surfaces agreeing on it."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from nexus_core.cli.stream import Printer
from nexus_core.mcp.runs import progress_message
from nexus_core.opencode.describe import Said, describe
from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    FailureClass,
    FallbackTaken,
    GatewayRetrying,
    Outcome,
    ProcessStats,
    parse_line,
)
from nexus_core.opencode.serve.events import map_event
from nexus_tui.widgets.runs import event_lines

SESSION = "ses_describe"


def run_line(obj: dict[str, Any] | str) -> Any:
    """An event as ``opencode run --format json`` prints it."""
    event = parse_line(obj if isinstance(obj, str) else json.dumps(obj), attempt=2)
    assert event is not None
    return event


def serve(kind: str, **props: Any) -> Any:
    """An event as ``opencode serve`` streams it for our session."""
    event = map_event({"type": kind, "properties": {"sessionID": SESSION, **props}}, SESSION, part_kinds={})
    assert event is not None
    return event


def tool_part(status: str, **state: Any) -> dict[str, Any]:
    return {"sessionID": SESSION, "type": "tool", "tool": "bash", "callID": "c1", "state": {"status": status, **state}}


FAILED = Outcome(failure=FailureClass.AUTH, message="Error: Unauthorized", fix="export CUSTOM_API_KEY")

CASES: list[tuple[str, Any, Said]] = [
    (
        "attempt started",
        AttemptStarted(attempt=1, model_id="opencode-custom-opus", cli_model_name="custom/claude-opus-4-5"),
        Said("→", "attempt 1: opencode-custom-opus (custom/claude-opus-4-5)", milestone=True),
    ),
    (
        "attempt started, no registry id",
        AttemptStarted(attempt=1, cli_model_name="custom/claude-opus-4-5"),
        Said("→", "attempt 1: custom/claude-opus-4-5", milestone=True),
    ),
    (
        "attempt done",
        AttemptFinished(attempt=2, cli_model_name="custom/claude-sonnet-4-5", outcome=Outcome(message="finished")),
        Said("✓", "attempt 2 done by custom/claude-sonnet-4-5", milestone=True),
    ),
    (
        "attempt failed",
        AttemptFinished(attempt=1, cli_model_name="custom/claude-opus-4-5", outcome=FAILED),
        Said("✗", "attempt 1 failed (auth): Unauthorized", milestone=True, detail="export CUSTOM_API_KEY"),
    ),
    (
        "fallback",
        FallbackTaken(attempt=1, from_model="opus", to_model="sonnet", reason=FailureClass.CONNECTION),
        Said("⤷", "falling back from opus to sonnet (connection)", milestone=True),
    ),
    (
        "gateway retry (run)",
        GatewayRetrying(attempt=1, retry=2, message="503 Service Unavailable"),
        Said("↻", "gateway retry 2: 503 Service Unavailable", milestone=True),
    ),
    (
        "gateway retry (serve)",
        serve("session.status", status={"type": "retry", "attempt": 1, "message": "Rate limited", "next": 5}),
        Said("↻", "gateway retry 1: Rate limited", milestone=True),
    ),
    (
        "tool use",
        run_line(
            {"type": "tool_use", "part": {"tool": "read", "state": {"status": "completed", "title": "README.md"}}}
        ),
        Said("⚙", "read [completed] README.md", milestone=True),
    ),
    (
        "tool use without a title is named by its input",
        run_line({"type": "tool_use", "part": {"tool": "bash", "state": {"status": "completed", "input": {"a": 1}}}}),
        Said("⚙", 'bash [completed] {"a": 1}', milestone=True),
    ),
    (
        "tool use failed",
        run_line(
            {
                "type": "tool_use",
                "part": {"tool": "read", "state": {"status": "error", "title": "x.py", "error": "no such file"}},
            }
        ),
        Said("⚙", "read [error] x.py", milestone=True, detail="no such file"),
    ),
    (
        "tool running (serve)",
        serve("message.part.updated", part=tool_part("running", title="make")),
        Said("⚙", "bash [running] make", milestone=True),
    ),
    (
        "tool failed (serve)",
        serve("message.part.updated", part=tool_part("error", title="make", error="exit 2")),
        Said("⚙", "bash [error] make", milestone=True, detail="exit 2"),
    ),
    (
        "permission asked",
        serve("permission.asked", id="per_1", permission="bash", patterns=["make clean", "rm -rf build"]),
        Said("?", "OpenCode asks permission for bash (make clean, rm -rf build)", milestone=True),
    ),
    (
        "permission asked, no pattern",
        serve("permission.asked", id="per_1", permission="edit"),
        Said("?", "OpenCode asks permission for edit (*)", milestone=True),
    ),
    (
        "permission allowed",
        serve("permission.replied", requestID="per_1", reply="once"),
        Said("✓", "permission answered: once"),
    ),
    (
        "permission rejected",
        serve("permission.replied", requestID="per_1", reply="reject"),
        Said("✗", "permission answered: reject"),
    ),
    ("step start (run)", run_line({"type": "step_start", "sessionID": SESSION}), Said("▸", "step started")),
    (
        "step start (serve)",
        serve("message.part.updated", part={"sessionID": SESSION, "type": "step-start", "id": "p1"}),
        Said("▸", "step started"),
    ),
    (
        "step finish with tokens and cost",
        run_line(
            {
                "type": "step_finish",
                "part": {"reason": "stop", "cost": 0.0123, "tokens": {"input": 2301, "output": 112, "reasoning": 7}},
            }
        ),
        Said("■", "step finished (stop) · tokens in 2,301 / out 112 / reasoning 7 · $0.0123"),
    ),
    (
        "step finish (serve)",
        serve(
            "message.part.updated",
            part={"sessionID": SESSION, "type": "step-finish", "reason": "tool-calls", "tokens": {"input": 5}},
        ),
        Said("■", "step finished (tool-calls) · tokens in 5 / out 0"),
    ),
    (
        "error",
        run_line(
            {
                "type": "error",
                "error": {"name": "APIError", "data": {"message": "AI_APICallError: Forbidden", "statusCode": 403}},
            }
        ),
        Said("✗", "error from OpenCode (APIError, HTTP 403): Forbidden"),
    ),
    (
        "error (serve), no status",
        serve("session.error", error={"name": "UnknownError", "data": {"message": "boom."}}),
        Said("✗", "error from OpenCode (UnknownError): boom"),
    ),
    (
        "reasoning block keeps its lines",
        run_line({"type": "reasoning", "part": {"text": "First this.\nThen that.\n"}}),
        Said("…", "First this.\nThen that."),
    ),
    ("a line that is not JSON", run_line("INFO starting up"), Said("›", "INFO starting up")),
    ("an unknown event", run_line({"type": "snapshot", "part": {}}), Said("·", "OpenCode event snapshot")),
]


@pytest.mark.parametrize(("event", "said"), [(e, s) for _, e, s in CASES], ids=[name for name, _, _ in CASES])
def test_describe_words_each_event(event: Any, said: Said) -> None:
    assert describe(event) == said


@pytest.mark.parametrize(
    "event",
    [
        run_line({"type": "text", "part": {"text": "The answer."}}),
        run_line({"type": "reasoning", "part": {"text": "  "}}),
        serve("message.part.delta", partID="p1", delta="The ans", field="text"),
        map_event(
            {"type": "message.part.delta", "properties": {"sessionID": SESSION, "partID": "r1", "delta": "hmm"}},
            SESSION,
            part_kinds={"r1": "reasoning"},
        ),
        serve("session.idle"),
        ProcessStats(cpu_percent=3.0, rss_bytes=1, pids=(1,)),
        object(),
    ],
    ids=["text", "empty reasoning", "text delta", "reasoning delta", "session idle", "stats", "not an event"],
)
def test_the_answer_and_silent_events_are_not_described(event: Any) -> None:
    assert describe(event) is None


def test_lines_put_the_mark_first_and_further_lines_and_the_detail_under_the_text() -> None:
    said = Said("✗", "attempt 1 failed (auth): Unauthorized\nsecond line", detail="export CUSTOM_API_KEY")
    assert said.lines() == ["✗ attempt 1 failed (auth): Unauthorized", "  second line", "  export CUSTOM_API_KEY"]
    assert said.lines("  ") == [
        "  ✗ attempt 1 failed (auth): Unauthorized",
        "    second line",
        "    export CUSTOM_API_KEY",
    ]


def cli_lines(event: Any) -> list[str]:
    err = io.StringIO()
    Printer(io.StringIO(), err)(event)
    return err.getvalue().splitlines()


@pytest.mark.parametrize(
    "event",
    [
        FallbackTaken(attempt=1, from_model="opencode-custom-opus", to_model="sonnet", reason=FailureClass.AUTH),
        AttemptStarted(attempt=1, model_id="opencode-custom-opus", cli_model_name="custom/claude-opus-4-5"),
        AttemptFinished(attempt=1, cli_model_name="custom/claude-opus-4-5", outcome=FAILED),
        GatewayRetrying(attempt=1, retry=1, message="503 Service Unavailable"),
        serve("message.part.updated", part=tool_part("error", title="make", error="exit 2")),
        serve("permission.asked", id="per_1", permission="bash", patterns=["make clean"]),
    ],
    ids=["fallback", "attempt started", "attempt failed", "gateway retry", "tool failed", "permission asked"],
)
def test_cli_mcp_and_dashboard_say_the_same_sentence(event: Any) -> None:
    said = describe(event)
    assert said is not None and said.milestone
    assert progress_message(event) == said.text
    assert event_lines(event) == said.lines()
    printed = cli_lines(event)
    assert [line.strip() for line in printed] == [line.strip() for line in said.lines()]
    assert printed[0].lstrip().startswith(f"{said.mark} {said.text.splitlines()[0]}")


def test_the_cli_indents_what_happens_inside_an_attempt_and_keeps_milestones_only_for_mcp() -> None:
    fallback = FallbackTaken(attempt=1, from_model="opus", to_model="sonnet", reason=FailureClass.CONNECTION)
    step = run_line({"type": "step_finish", "part": {"reason": "stop", "tokens": {"input": 1, "output": 2}}})
    assert cli_lines(fallback) == ["⤷ falling back from opus to sonnet (connection)"]
    assert cli_lines(step) == ["  ■ step finished (stop) · tokens in 1 / out 2"]
    assert progress_message(step) is None and event_lines(step) == ["■ step finished (stop) · tokens in 1 / out 2"]
    # A step's start and a running tool are the dashboard's to show (its log, its tool table), not the terminal's.
    assert cli_lines(run_line({"type": "step_start"})) == []
    assert cli_lines(serve("message.part.updated", part=tool_part("running", title="make"))) == []
    assert progress_message(serve("message.part.updated", part=tool_part("running", title="make"))) == (
        "bash [running] make"
    )
