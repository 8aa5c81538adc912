"""Live output, fed as a streaming backend would: text deltas, tool-call states, queued runs, permission questions."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nexus_tui.live import (
    PermissionAsked,
    PermissionQuestion,
    PermissionReply,
    RunQueued,
    RunStarted,
    TextDelta,
    ToolCallUpdate,
)
from nexus_tui.screens import PermissionScreen
from nexus_tui.widgets.runs import RunStatus, RunView
from nexus_tui.widgets.runs_area import RunsArea
from nexus_tui.widgets.tool_calls import ToolCalls
from tui_support import SIZE, open_run, quiet_app, settle, until


def status_of(view: RunView) -> RunStatus:
    """The view's status now (read through a call: the type checker keeps no earlier narrowing)."""
    return view.status


async def test_text_deltas_grow_the_current_line_and_wrap(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await open_run(app, "explain")
        log = view.log_widget
        view.flush()
        lines_before = log.line_count
        for piece in ("The ", "parser ", "keeps"):
            app.post_message(TextDelta(view.run_id, piece))
        await pilot.pause()
        view.flush()
        assert log.lines[-1] == "The parser keeps" and log.line_count == lines_before + 1
        app.post_message(TextDelta(view.run_id, " the newline.\nSecond"))
        app.post_message(TextDelta(view.run_id, " line", reasoning=True))
        await pilot.pause()
        view.flush()
        assert list(log.lines[-2:]) == ["The parser keeps the newline.", "Second line"]
        assert view.reply_text == "The parser keeps the newline.\nSecond", "reasoning is not part of the reply"
        # A whole line after a delta starts below it; a long streamed line wraps at the log's width.
        view.write_lines(["■ step finished: stop"])
        app.post_message(TextDelta(view.run_id, "word " * 200))
        await pilot.pause()
        view.flush()
        width = log.scrollable_content_region.width
        assert "Second line" in log.lines and "■ step finished: stop" in log.lines
        streamed = list(log.lines[log.lines.index("■ step finished: stop") + 1 :])
        assert len(streamed) > 5 and all(len(line) <= width for line in streamed)
        assert "".join(streamed).split() == ["word"] * 200


async def test_a_delta_flood_is_written_in_few_batches(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await open_run(app, "stream")
        writes = 0
        log = view.log_widget
        original = log.write

        def counting_write(*args, **kwargs):
            nonlocal writes
            writes += 1
            return original(*args, **kwargs)

        log.write = counting_write  # type: ignore[method-assign]
        for index in range(2_000):
            view.stream_text(f"t{index} ")
        view.flush()
        assert writes == 1
        assert "t1999" in log.lines[-1]


async def test_tool_calls_move_through_their_states(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await open_run(app, "list files")
        tools = view.query_one(ToolCalls)
        assert not tools.display
        app.post_message(ToolCallUpdate(view.run_id, "call-1", "bash", "pending", title="ls -la"))
        await pilot.pause()
        assert tools.display and tools.rows["call-1"].state == "pending"
        assert "◌ bash pending  ls -la" in str(tools.render())
        app.post_message(ToolCallUpdate(view.run_id, "call-1", "bash", "running"))
        await pilot.pause()
        assert tools.rows["call-1"].state == "running" and tools.rows["call-1"].title == "ls -la"
        app.post_message(ToolCallUpdate(view.run_id, "call-1", "bash", "completed", output="\nREADME.md\nsrc\n"))
        app.post_message(ToolCallUpdate(view.run_id, "call-2", "read", "error", title="x.py", error="no such file"))
        await pilot.pause()
        view.flush()
        drawn = str(tools.render())
        assert "✓ bash completed  ls -la  → README.md" in drawn and "✗ read error  x.py  → no such file" in drawn
        lines = list(view.log_widget.lines)
        assert "⚙ bash [completed] ls -la" in lines and "⚙ read [error] x.py" in lines


async def test_a_run_shows_queued_until_it_starts(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await open_run(app, "wait for the lock")
        view.set_status(RunStatus.RUNNING)
        app.post_message(RunQueued(view.run_id, "waiting for OpenCode's first-run lock"))
        await pilot.pause()
        tab = app.query_one(RunsArea).tabs.get_tab(view.run_id)
        assert status_of(view) is RunStatus.QUEUED and str(tab.label).startswith("◌ 1 ")
        view.flush()
        assert "◌ queued: waiting for OpenCode's first-run lock" in view.log_widget.lines
        app.post_message(RunStarted(view.run_id))
        await pilot.pause()
        assert status_of(view) is RunStatus.RUNNING and str(tab.label).startswith("● 1 ")


async def test_permission_questions_queue_and_are_answered(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    app = quiet_app(tmp_path, hermetic_env)
    answers: list[tuple[str, PermissionReply]] = []

    async def answer_later(question_id: str, reply: PermissionReply) -> None:
        await asyncio.sleep(0)
        answers.append((question_id, reply))

    def question(run_id: str, tool: str, detail: str) -> PermissionQuestion:
        holder: list[PermissionQuestion] = []
        made = PermissionQuestion(
            run_id=run_id, tool=tool, detail=detail, answer=lambda reply: answer_later(holder[0].question_id, reply)
        )
        holder.append(made)
        return made

    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        first = await open_run(app, "clean the build")
        second = await open_run(app, "deploy")
        area = app.query_one(RunsArea)
        q1 = question(first.run_id, "bash", "rm -rf build/")
        q2 = question(second.run_id, "edit", "src/**/*.py")
        q3 = question(first.run_id, "bash", "make")
        for q in (q1, q2, q3):
            app.post_message(PermissionAsked(q))
        await until(pilot, lambda: isinstance(app.screen, PermissionScreen), what="the question")
        screen = app.screen
        assert isinstance(screen, PermissionScreen) and screen.question is q1 and app.questions_waiting == 3
        await until(pilot, lambda: str(area.tabs.get_tab(second.run_id).label).startswith("? 2 "), what="a label")
        assert str(area.tabs.get_tab(first.run_id).label).startswith("? 1 ")
        assert "2 waiting for you" in str(area.border_subtitle)
        assert "rm -rf build/" in str(app.screen.query_one("#permission-detail").render())
        assert "2 more questions wait" in str(app.screen.query_one("#permission-queued").render())
        # The run goes on streaming under the question.
        app.post_message(TextDelta(first.run_id, "still streaming"))
        await pilot.pause()
        first.flush()
        assert first.log_widget.lines[-1] == "still streaming"
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, PermissionScreen) and app.screen.question is q2)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, PermissionScreen) and app.screen.question is q3)
        assert not second.waiting and first.waiting
        await pilot.press("n")
        await until(pilot, lambda: len(answers) == 3, what="the answers to reach the backend")
        assert not isinstance(app.screen, PermissionScreen)
        assert answers == [(q1.question_id, "once"), (q2.question_id, "always"), (q3.question_id, "reject")]
        assert not first.waiting
        await until(pilot, lambda: str(area.tabs.get_tab(first.run_id).label).startswith("◌ 1 "), what="the label")
        first.flush()
        assert "  → bash: allowed once" in first.log_widget.lines


async def test_the_kept_reply_is_bounded(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    from nexus_core.opencode.events import Text
    from nexus_tui.widgets.runs import REPLY_CHAR_CAP

    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await open_run(app, "a flood")
        for index in range(1_000):
            view.feed(Text(attempt=1, text=f"{index:04d}" + "x" * 1_000))
        reply = view.reply_text
        assert len(reply) <= REPLY_CHAR_CAP + 1_100 and reply.endswith("0999" + "x" * 1_000)


async def test_serve_events_draw_deltas_reasoning_tools_and_retries(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    from nexus_core.opencode.events import Text
    from nexus_core.opencode.serve.events import ReasoningDelta, SessionRetry, ToolState
    from nexus_core.opencode.serve.events import TextDelta as SessionTextDelta

    app = quiet_app(tmp_path, hermetic_env)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await open_run(app, "explain")
        view.feed(ReasoningDelta(attempt=1, delta="The user wants "))
        view.feed(ReasoningDelta(attempt=1, delta="an explanation."))
        for piece in ("Here is ", "the answer."):
            view.feed(SessionTextDelta(attempt=1, delta=piece))
        view.feed(Text(attempt=1, text="Here is the answer."))  # the part's end: not drawn twice
        view.feed(ToolState(attempt=1, call_id="c1", tool="read", status="running", title="README.md"))
        view.feed(ToolState(attempt=1, call_id="c1", tool="read", status="completed", title="README.md", output="# x"))
        view.feed(SessionRetry(attempt=1, retry=1, message="503 Service Unavailable"))
        view.feed(SessionTextDelta(attempt=1, delta="More."))
        await pilot.pause()
        view.flush()
        lines = [line for line in view.log_widget.lines if not line.startswith("$ ")]
        assert lines == [
            "… The user wants an explanation.",
            "Here is the answer.",
            "⚙ read [completed] README.md",
            "↻ gateway retry 1: 503 Service Unavailable",
            "More.",
        ]
        assert view.reply_text == "Here is the answer.\nMore."
        assert view.query_one(ToolCalls).rows["c1"].state == "completed"


async def test_a_session_question_is_asked_answered_or_withdrawn(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    from nexus_core.opencode.serve.events import PermissionAsked as SessionPermissionAsked

    app = quiet_app(tmp_path, hermetic_env)
    event = SessionPermissionAsked(attempt=1, permission_id="per_1", permission="bash", patterns=("make clean",))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = await open_run(app, "clean up")
        ask = app.asker([view.run_id])
        answered = asyncio.ensure_future(ask(event))
        await until(pilot, lambda: isinstance(app.screen, PermissionScreen), what="the question")
        assert "make clean" in str(app.screen.query_one("#permission-detail").render())
        await pilot.press("a")
        await until(pilot, answered.done, what="the answer")
        assert answered.result() == "always"

        # The session stops waiting (its run was cancelled): the question leaves the screen.
        withdrawn = asyncio.ensure_future(ask(event))
        await until(pilot, lambda: isinstance(app.screen, PermissionScreen), what="the second question")
        withdrawn.cancel()
        await until(pilot, lambda: not isinstance(app.screen, PermissionScreen), what="the question to go")
        view.flush()
        assert "  → bash: withdrawn (the run stopped waiting)" in view.log_widget.lines
        assert not view.waiting and app.questions_waiting == 0
