"""The nexus-agents MCP server: nexus's tools inside an OpenCode session, over stdio.

``nexus-agents --mode=server`` (or ``python -m nexus_core --mode=server``) runs it; OpenCode
starts it from the ``mcp.nexus-agents`` entry that ``nexus-agents setup`` writes, in the
project directory, and names its tools ``nexus-agents_<tool>``.

Every tool validates its arguments with pydantic; any failure comes back as an MCP tool
error with one clear sentence, and the server keeps serving. Only the protocol goes to
stdout (the SDK moves file descriptor 1 to stderr while it serves); logs go to stderr.

Delegation depth: an ``opencode run`` started by nexus carries ``NEXUS_DELEGATION_DEPTH`` set
to one more than its parent's, and OpenCode passes it on to this server. At
``NEXUS_MAX_DELEGATION_DEPTH`` (default 2) or deeper, the tools that would start another
model refuse with a tool error, so nexus → OpenCode → nexus cannot recurse without end.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from pydantic import Field, ValidationError

from nexus_core import __version__
from nexus_core.doctor.checks import DoctorReport, run_doctor
from nexus_core.errors import NexusError
from nexus_core.mcp.consensus import VERDICT_INSTRUCTION, agreement, verdict_of
from nexus_core.mcp.jobs import JobList, JobResult, JobStarted, JobStatus
from nexus_core.mcp.params import (
    MAX_TASK_CHARS,
    MAX_TIMEOUT_S,
    Approve,
    ExpertId,
    ModelHint,
    PreferredCapability,
    RunId,
    TaskText,
    Thinking,
    TimeoutSeconds,
    Variant,
    WorkDir,
)
from nexus_core.mcp.project import (
    DEFAULT_MAX_DEPTH,
    DEPTH_VAR,
    MAX_DEPTH_VAR,
    Project,
    decide,
    delegation_depth,
    expert_named,
)
from nexus_core.mcp.reports import (
    ExpertList,
    ModelList,
    Recommendation,
    RunReport,
    VoteAnswer,
    VoteReport,
    plan_view,
    recommendation,
    run_report,
)
from nexus_core.mcp.runs import failed_error as _failed
from nexus_core.mcp.runs import run_chain as _run
from nexus_core.mcp.stdio import run_stdio
from nexus_core.routing.chain import DelegationSpec, chain_of
from nexus_core.routing.experts import EXPERTS, with_expert
from nexus_core.routing.last_word import last_word
from nexus_core.routing.registry import ModelProfile
from nexus_core.routing.score import resolve_hint

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEPTH_VAR",
    "MAX_DEPTH_VAR",
    "MAX_TASK_CHARS",
    "MAX_TIMEOUT_S",
    "Recommendation",
    "RunReport",
    "VoteReport",
    "build_server",
    "delegation_depth",
    "serve",
]

SERVER_NAME = "nexus-agents"
DEFAULT_RUN_TIMEOUT_S = 600.0
MAX_VOTERS = 5

INSTRUCTIONS = (
    "nexus routes coding tasks to the best-fitting model behind OpenCode (including a custom "
    "OpenAI-compatible gateway) and runs them with fallbacks. Use route_task to see which model "
    "fits a task and why, orchestrate to run a task, list_experts for expert roles, consensus_vote "
    "to ask several models the same question, and doctor when a model cannot be reached. For a task that "
    "may take longer than one tool call (OpenCode allows 60 s by default), use start_task, then task_status "
    "and task_result (cancel_task ends it; list_runs lists this project's runs)."
)


def _validation_sentence(tool: str, error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return f"Invalid arguments for {tool}: {'; '.join(parts)}. Fix them and call {tool} again."


class NexusMCPServer(MCPServer):
    """MCPServer whose argument errors (unknown names, failed validation) are one readable sentence."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:
        tool = next((t for t in await self.list_tools() if t.name == name), None)
        if tool is not None:
            known = set(tool.input_schema.get("properties", {}))
            unknown = sorted(set(arguments) - known)
            if unknown:
                expected = ", ".join(sorted(known)) or "no arguments"
                raise ToolError(
                    f"Unknown argument {', '.join(map(repr, unknown))} for {name} (it takes: {expected}). Fix the call and try again."
                )
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError as exc:
            crash = type(exc.__cause__).__name__ if exc.__cause__ else "an unknown error"
            raise ToolError(
                f"{name} failed unexpectedly ({crash}); the details are in the server's log on stderr. "
                "Try again, or run the doctor tool to check the set-up."
            ) from exc
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(_validation_sentence(name, exc.__cause__)) from exc.__cause__
            raise ToolError(str(exc).removeprefix(f"Error executing tool {name}: ")) from exc


def build_server(directory: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> MCPServer:
    """The MCP server with every nexus tool, for the project in ``directory`` (default: the cwd)."""
    project = Project(Path(directory or os.getcwd()).resolve(), os.environ if env is None else env)
    server = NexusMCPServer(
        name=SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        lifespan=project.jobs.lifespan,
    )

    @server.tool(
        description="The expert roles nexus offers (code, review, security, architecture, docs, test, debug): each a system prompt and the capability routing favours for it. Use an id as `expert` in orchestrate."
    )
    def list_experts() -> ExpertList:
        return ExpertList(experts=list(EXPERTS))

    @server.tool(
        description="The model registry: built-in profiles, every model the OpenCode config declares, and the user overlay; quality scores, limits, fallbacks."
    )
    def list_models() -> ModelList:
        registry = project.registry()
        return ModelList(models=list(registry.models), problems=[p.sentence() for p in registry.problems])

    @server.tool(
        description="Health checks for the path nexus → OpenCode → gateway → model, as JSON: OpenCode on PATH, the config, each gateway's baseURL, key and /models, the models, the MCP entry. probe=true adds a real chat completion and an opencode run smoke test."
    )
    async def doctor(
        probe: Annotated[
            bool, Field(strict=True, description="also send a real chat request and an opencode run smoke test")
        ] = False,
    ) -> DoctorReport:
        return await run_doctor(project.directory, project.env, probe)

    @server.tool(
        description="Explain routing for a task without running it: every available model's score as a breakdown of named terms, the skipped models with reasons, the choice and its fallback chain."
    )
    def route_task(
        task: TaskText,
        model_hint: ModelHint = None,
        preferred_capability: PreferredCapability = None,
        expert: ExpertId = None,
    ) -> dict[str, Any]:
        _, plan = decide(project, task, model_hint, preferred_capability, expert_named(expert))
        return plan_view(plan, task)

    @server.tool(
        description="Recommend the model for a task: the score breakdown, the fallback chain and the alternatives. With execute=true it also runs the task (with fallbacks) and returns the result."
    )
    async def delegate_to_model(
        task: TaskText,
        ctx: Context,
        model_hint: ModelHint = None,
        preferred_capability: PreferredCapability = None,
        expert: ExpertId = None,
        execute: Annotated[bool, Field(strict=True, description="run the task on the recommended model")] = False,
        variant: Variant = None,
        thinking: Thinking = False,
        workDir: WorkDir = None,
        timeout_s: TimeoutSeconds = DEFAULT_RUN_TIMEOUT_S,
        approve: Approve = (),
    ) -> Recommendation:
        chosen_expert = expert_named(expert)
        _, plan = decide(project, task, model_hint, preferred_capability, chosen_expert)
        advice = recommendation(plan, chosen_expert)
        if not execute:
            return advice
        project.check_depth("delegate_to_model")
        result = await _run(
            project,
            ctx,
            with_expert(chosen_expert, task),
            plan.chain,
            variant=variant,
            thinking=thinking,
            workdir=project.workdir(workDir),
            timeout_s=timeout_s,
            approve=approve,
            decision=plan.decision,
            task=task,
        )
        report = run_report(result, plan, chosen_expert)
        if not report.ok:
            raise _failed(result, timeout_s)
        return advice.model_copy(update={"result": report})

    @server.tool(
        description="Run a task through OpenCode on the best-fitting model (or the hinted one), falling back along its chain on failures another model may cure. Returns the answer, the model used, every attempt and the tokens."
    )
    async def orchestrate(
        task: TaskText,
        ctx: Context,
        model_hint: ModelHint = None,
        variant: Variant = None,
        thinking: Thinking = False,
        workDir: WorkDir = None,
        expert: ExpertId = None,
        timeout_s: TimeoutSeconds = DEFAULT_RUN_TIMEOUT_S,
        approve: Approve = (),
    ) -> RunReport:
        chosen_expert = expert_named(expert)
        workdir = project.workdir(workDir)
        project.check_depth("orchestrate")
        _, plan = decide(project, task, model_hint, None, chosen_expert)
        result = await _run(
            project,
            ctx,
            with_expert(chosen_expert, task),
            plan.chain,
            variant=variant,
            thinking=thinking,
            workdir=workdir,
            timeout_s=timeout_s,
            approve=approve,
            decision=plan.decision,
            task=task,
        )
        report = run_report(result, plan, chosen_expert)
        if not report.ok:
            raise _failed(result, timeout_s)
        return report

    @server.tool(
        description="Ask several models the same question at once (the named ones, or the top `count` by routing) and report each answer and how far their verdicts agree."
    )
    async def consensus_vote(
        question: TaskText,
        ctx: Context,
        models: Annotated[
            list[str] | None,
            Field(
                strict=True,
                min_length=2,
                max_length=MAX_VOTERS,
                description="model ids, aliases or CLI model names; default: the top `count` by routing",
            ),
        ] = None,
        count: Annotated[
            int,
            Field(strict=True, ge=2, le=MAX_VOTERS, description="how many models to ask when `models` is not given"),
        ] = 3,
        timeout_s: TimeoutSeconds = DEFAULT_RUN_TIMEOUT_S,
    ) -> VoteReport:
        project.check_depth("consensus_vote")
        snapshot, plan = decide(project, question, None, "reasoning", None)
        decision = plan.decision
        assert decision is not None  # no hint: routing decided
        if models:
            voters: list[ModelProfile] = []
            for hint in models:
                try:
                    model = resolve_hint(snapshot, hint)
                except NexusError as exc:
                    raise ToolError(exc.sentence()) from None
                why = snapshot.unavailable_reason(model.id)
                if why:
                    raise ToolError(f"{model.id} cannot vote: {why}.")
                voters.append(model)
            voters = list(chain_of(voters))
        else:
            voters = [s.model for s in decision.ranked[:count]]
        if len(voters) < 2:
            raise ToolError(
                f"consensus_vote needs at least 2 available models and found {len(voters)} ({decision.reason}). Declare more models in opencode.json or name them in `models`."
            )
        workdir = project.directory
        prompt = VERDICT_INSTRUCTION + question
        done = 0

        async def ask(model: ModelProfile) -> VoteAnswer:
            nonlocal done
            try:
                result = await _run(project, None, prompt, [model], workdir=workdir, timeout_s=timeout_s)
                error = None if result.ok else last_word(result, timeout_s)
            except ToolError as exc:
                result, error = None, str(exc)
            done += 1
            await ctx.report_progress(done, len(voters), f"{model.id} answered")
            if result is None or error is not None:
                return VoteAnswer(
                    model_id=model.id, cli_model_name=model.cli_model_name, ok=False, verdict="", answer="", error=error
                )
            return VoteAnswer(
                model_id=model.id,
                cli_model_name=model.cli_model_name,
                ok=True,
                verdict=verdict_of(result.text),
                answer=result.text,
            )

        # A task group: if the call is cancelled, every model's run is ended with it.
        async with asyncio.TaskGroup() as group:
            asked = [group.create_task(ask(m)) for m in voters]
        answers = [task.result() for task in asked]
        report = agreement(question, answers)
        if report.agreement == "no answers":  # a vote nobody cast is a failed call, not a result
            raise ToolError(f"No model answered the vote. {' '.join(a.error or a.model_id for a in answers)}")
        return report

    _register_job_tools(server, project)
    return server


def _register_job_tools(server: MCPServer, project: Project) -> None:
    """The job tools (:mod:`nexus_core.mcp.jobs`): tasks longer than one tool call."""
    jobs = project.jobs

    @server.tool(
        description="Start a task in the background and return its run_id at once (same arguments as orchestrate). Use it instead of orchestrate when the task may take longer than one tool call (OpenCode's MCP timeout is 60 s by default); follow it with task_status and get the answer with task_result."
    )
    async def start_task(
        task: TaskText,
        model_hint: ModelHint = None,
        variant: Variant = None,
        thinking: Thinking = False,
        workDir: WorkDir = None,
        expert: ExpertId = None,
        timeout_s: TimeoutSeconds = DEFAULT_RUN_TIMEOUT_S,
    ) -> JobStarted:
        chosen_expert = expert_named(expert)
        workdir = project.workdir(workDir)
        project.check_depth("start_task")
        _, plan = decide(project, task, model_hint, None, chosen_expert)
        spec = DelegationSpec(
            prompt=with_expert(chosen_expert, task),
            chain=plan.chain,
            variant=variant,
            thinking=thinking,
            workdir=workdir,
            timeout_s=timeout_s,
            stats_interval_s=None,
            env=project.env,
        )
        return jobs.start(spec, decision=plan.decision, task=task, reason=plan.why)

    @server.tool(
        description="Where a run started by start_task is: state (running, ok, failed, cancelled, interrupted), the model and attempt, seconds elapsed, and the last lines of its answer."
    )
    def task_status(run_id: RunId) -> JobStatus:
        return jobs.status(run_id)

    @server.tool(
        description="The answer of a finished run: its final text, the model used and every attempt, or the failure. A tool error while it is still running."
    )
    def task_result(run_id: RunId) -> JobResult:
        return jobs.result(run_id)

    @server.tool(
        description="Cancel a run started by start_task: its OpenCode process tree is ended. Returns its final status."
    )
    async def cancel_task(run_id: RunId) -> JobStatus:
        return await jobs.cancel(run_id)

    @server.tool(
        description="This project's runs, newest first (every delegation nexus recorded: the CLI's, the dashboard's, this server's), with their state."
    )
    def list_runs(
        limit: Annotated[int, Field(ge=1, le=200, description="how many runs")] = 20,
        failed: Annotated[bool, Field(description="only failed and interrupted runs")] = False,
        all_projects: Annotated[bool, Field(description="runs of every project, not only this one")] = False,
    ) -> JobList:
        return jobs.list(limit=limit, failed=failed, all_projects=all_projects)


def serve(directory: str | os.PathLike[str] | None = None) -> int:
    """Run the MCP server on stdio for the project in ``directory`` (default: the cwd) until the client closes it; the exit code."""
    return run_stdio(build_server(directory))
