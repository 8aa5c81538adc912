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
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from nexus_core import __version__
from nexus_core.config.loader import ConfigError, load_config
from nexus_core.doctor.checks import DoctorReport, run_doctor
from nexus_core.errors import NexusError
from nexus_core.mcp.jobs import JobList, JobManager, JobResult, JobStarted, JobStatus
from nexus_core.mcp.runs import failed_error as _failed
from nexus_core.mcp.runs import permission_sentence
from nexus_core.mcp.runs import run_chain as _run
from nexus_core.mcp.stdio import run_stdio
from nexus_core.opencode.attempt import DEPTH_VAR, AttemptResult
from nexus_core.opencode.events import (
    StepFinish,
)
from nexus_core.opencode.transport import check_permissions
from nexus_core.routing.chain import DelegationResult, DelegationSpec, chain_of
from nexus_core.routing.experts import EXPERTS, Capability, Expert, find_expert, with_expert
from nexus_core.routing.last_word import last_word, outcome_sentence
from nexus_core.routing.registry import ModelProfile, Registry, build_registry, overlay_paths
from nexus_core.routing.score import (
    RoutingDecision,
    RoutingSnapshot,
    ScoredModel,
    build_snapshot,
    profile_task,
    resolve_hint,
    route,
)

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEPTH_VAR",
    "MAX_DEPTH_VAR",
    "Recommendation",
    "RunReport",
    "VoteReport",
    "build_server",
    "delegation_depth",
    "serve",
]

SERVER_NAME = "nexus-agents"
MAX_DEPTH_VAR = "NEXUS_MAX_DELEGATION_DEPTH"
DEFAULT_MAX_DEPTH = 2
DEFAULT_RUN_TIMEOUT_S = 600.0
MAX_TIMEOUT_S = 3600.0
MAX_TASK_CHARS = 400_000
MAX_VOTERS = 5
MAX_ALTERNATIVES = 3
MAX_VERDICT_WORDS = 8

INSTRUCTIONS = (
    "nexus routes coding tasks to the best-fitting model behind OpenCode (including a custom "
    "OpenAI-compatible gateway) and runs them with fallbacks. Use route_task to see which model "
    "fits a task and why, orchestrate to run a task, list_experts for expert roles, consensus_vote "
    "to ask several models the same question, and doctor when a model cannot be reached. For a task that "
    "may take longer than one tool call (OpenCode allows 60 s by default), use start_task, then task_status "
    "and task_result (cancel_task ends it; list_runs lists this project's runs)."
)


def delegation_depth(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The current delegation depth and its maximum, from the environment (bad values count as 0 / default)."""
    env = os.environ if env is None else env

    def read(name: str, default: int) -> int:
        try:
            return max(0, int(env.get(name, "") or default))
        except ValueError:
            return default

    return read(DEPTH_VAR, 0), read(MAX_DEPTH_VAR, DEFAULT_MAX_DEPTH)


def _permissions(names: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(sorted(check_permissions(names)))
    except NexusError as exc:
        raise ValueError(exc.sentence()) from None


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("it is empty (only whitespace); give the task in words")
    return text


TaskText = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=MAX_TASK_CHARS, description="the task, in plain words"),
    AfterValidator(_not_blank),
]
ModelHint = Annotated[
    str | None,
    Field(
        strict=True,
        description="a registry id, alias or CLI model name (e.g. opencode-custom-opus, sonnet, custom/claude-sonnet-4-5); forces that model",
    ),
]
PreferredCapability = Annotated[
    Capability | None, Field(description="the quality that matters most: reasoning, code, speed or cost")
]
ExpertId = Annotated[
    str | None, Field(strict=True, description="an expert id from list_experts; its system prompt goes before the task")
]
Variant = Annotated[
    str | None,
    Field(
        strict=True,
        description="reasoning effort: high, max or minimal (anything else is dropped, as OpenCode's allowlist demands)",
    ),
]
Thinking = Annotated[bool, Field(strict=True, description="ask OpenCode for the model's thinking blocks")]
WorkDir = Annotated[
    str | None, Field(strict=True, description="the directory the task runs in (default: the project directory)")
]
TimeoutSeconds = Annotated[
    float, Field(strict=True, gt=0, le=MAX_TIMEOUT_S, description="seconds for the whole run, fallbacks included")
]
Approve = Annotated[
    tuple[str, ...],
    Field(
        max_length=32,
        description='OpenCode permissions to allow `once` when the run asks (e.g. ["bash", "edit"], or ["all"]); any other question is rejected',
    ),
    AfterValidator(_permissions),
]


class ExpertList(BaseModel):
    """The answer of ``list_experts``."""

    experts: list[Expert]
    usage: str = "pass an expert's id as `expert` to orchestrate or delegate_to_model"


class ModelList(BaseModel):
    """The answer of ``list_models``."""

    models: list[ModelProfile]
    problems: list[str]


class Tokens(BaseModel):
    """Tokens a run used, summed over every step of every attempt."""

    input: int = 0
    output: int = 0
    reasoning: int = 0
    total: int = 0


class AttemptReport(BaseModel):
    """One model tried: its outcome in one line."""

    attempt: int
    model_id: str | None
    cli_model_name: str
    ok: bool
    failure: str | None
    message: str


class RunReport(BaseModel):
    """What ``orchestrate`` (and ``delegate_to_model`` with ``execute``) returns."""

    ok: bool
    text: str
    model_used: str | None
    cli_model_name: str
    expert: str | None
    routing_reason: str
    attempts: list[AttemptReport]
    tokens: Tokens
    duration_s: float


class Alternative(BaseModel):
    """A model that ranked below the recommendation."""

    id: str
    cli_model_name: str | None
    total: int


class ScoreTermReport(BaseModel):
    """One named part of a score."""

    name: str
    value: int
    detail: str


class Recommendation(BaseModel):
    """What ``delegate_to_model`` returns: the model to use, why, and what else would do."""

    recommended: str
    cli_model_name: str | None
    total: int
    breakdown: list[ScoreTermReport]
    reason: str
    fallback_chain: list[str]
    alternatives: list[Alternative]
    skipped: list[dict[str, Any]]
    expert: str | None
    result: RunReport | None = None


class VoteAnswer(BaseModel):
    """One model's answer to a consensus question."""

    model_id: str
    cli_model_name: str | None
    ok: bool
    verdict: str
    answer: str
    error: str | None = None


class VoteGroup(BaseModel):
    """Models whose verdicts agree."""

    verdict: str
    models: list[str]


class VoteReport(BaseModel):
    """What ``consensus_vote`` returns: every answer and how far they agree."""

    question: str
    answers: list[VoteAnswer]
    agreement: Literal["unanimous", "majority", "split", "no answers"]
    majority_verdict: str | None
    groups: list[VoteGroup]
    summary: str


class _Project:
    """The project the server serves: its directory and environment, read afresh for every call.

    What the config cannot say comes from the run store, where every delegation is recorded
    (``jobs.store``): routing's ``observed`` term, and the rest a rate-limited model takes.
    """

    def __init__(self, directory: Path, env: Mapping[str, str]) -> None:
        self.directory = directory
        self.env = dict(env)
        self.jobs = JobManager(directory, self.env)

    def registry(self) -> Registry:
        try:
            config = load_config(self.directory, self.env)
        except ConfigError as exc:
            raise ToolError(exc.sentence()) from None
        return build_registry(config, overlay_paths(self.directory, self.env))

    def snapshot(self) -> RoutingSnapshot:
        try:
            return build_snapshot(self.directory, self.env)
        except ConfigError as exc:
            raise ToolError(exc.sentence()) from None

    def workdir(self, work_dir: str | None) -> Path:
        if not work_dir:
            return self.directory
        path = Path(work_dir).expanduser()
        path = path if path.is_absolute() else self.directory / path
        if not path.is_dir():
            raise ToolError(
                f"workDir {work_dir!r} is not a directory ({path}). Pass an existing directory, or leave it out to use {self.directory}."
            )
        return path.resolve()

    def check_depth(self, tool: str) -> None:
        depth, limit = delegation_depth(self.env)
        if depth >= limit:
            raise ToolError(
                f"{tool} refused: this nexus server already runs {depth} delegation(s) deep "
                f"({DEPTH_VAR}={depth}, the maximum is {limit}), and starting another model from here could recurse "
                f"without end. Do the task in this session instead, or raise {MAX_DEPTH_VAR} where nexus was started."
            )


def _expert(expert_id: str | None) -> Expert | None:
    if not expert_id:
        return None
    found = find_expert(expert_id)
    if found is None:
        ids = ", ".join(e.id for e in EXPERTS)
        raise ToolError(f"No expert has the id {expert_id!r}. Use one of: {ids} (list_experts describes them).")
    return found


def _decide(
    project: _Project, task: str, hint: str | None, capability: Capability | None, expert: Expert | None
) -> tuple[RoutingSnapshot, RoutingDecision]:
    wanted = capability or (expert.preferred_capability if expert else None)
    snapshot = project.snapshot()
    try:
        profile = profile_task(
            task,
            reasoning=10.0 if wanted == "reasoning" else None,
            code=10.0 if wanted == "code" else None,
            speed=10.0 if wanted == "speed" else None,
            cost=10.0 if wanted == "cost" else None,
        )
        return snapshot, route(snapshot, profile, hint or None)
    except NexusError as exc:
        raise ToolError(exc.sentence()) from None


def _chosen(decision: RoutingDecision) -> ScoredModel:
    try:
        return decision.chosen_or_raise()
    except NexusError as exc:
        raise ToolError(exc.sentence()) from None


def _recommendation(decision: RoutingDecision, expert: Expert | None) -> Recommendation:
    chosen = _chosen(decision)
    data = decision.as_dict()
    return Recommendation(
        recommended=chosen.id,
        cli_model_name=chosen.model.cli_model_name,
        total=chosen.total,
        breakdown=[ScoreTermReport(name=t.name, value=t.value, detail=t.detail) for t in chosen.terms],
        reason=decision.reason,
        fallback_chain=[m.id for m in decision.chain],
        alternatives=[
            Alternative(id=s.id, cli_model_name=s.model.cli_model_name, total=s.total)
            for s in decision.ranked
            if s.id != chosen.id
        ][:MAX_ALTERNATIVES],
        skipped=data["skipped"],
        expert=expert.id if expert else None,
    )


def _tokens(attempts: Sequence[AttemptResult]) -> Tokens:
    steps = [e.tokens for a in attempts for e in a.events if isinstance(e, StepFinish)]
    usage = Tokens(
        input=sum(t.input for t in steps),
        output=sum(t.output for t in steps),
        reasoning=sum(t.reasoning for t in steps),
    )
    return usage.model_copy(update={"total": usage.input + usage.output + usage.reasoning})


def _run_report(result: DelegationResult, decision: RoutingDecision, expert: Expert | None) -> RunReport:
    return RunReport(
        ok=result.ok,
        text=result.text,
        model_used=result.final.model_id,
        cli_model_name=result.final.cli_model_name,
        expert=expert.id if expert else None,
        routing_reason=decision.reason,
        attempts=[
            AttemptReport(
                attempt=a.attempt,
                model_id=a.model_id,
                cli_model_name=a.cli_model_name,
                ok=a.outcome.ok,
                failure=str(a.outcome.failure) if a.outcome.failure else None,
                message=permission_sentence(a.outcome.message) or outcome_sentence(a.outcome),
            )
            for a in result.attempts
        ],
        tokens=_tokens(result.attempts),
        duration_s=result.duration_s,
    )


_VERDICT_INSTRUCTION = (
    "Answer the question below. Put your verdict alone on the first line (a few words, e.g. yes / no / "
    "option A), then explain it briefly.\n\nQuestion: "
)


def _verdict(answer: str) -> str:
    first = next((line for line in answer.splitlines() if line.strip()), "")
    words = re.findall(r"[\w'-]+", first.lower())
    return " ".join(words[:MAX_VERDICT_WORDS])


def _agreement(question: str, answers: list[VoteAnswer]) -> VoteReport:
    groups: dict[str, list[str]] = {}
    for answer in answers:
        if answer.ok and answer.verdict:
            groups.setdefault(answer.verdict, []).append(answer.model_id)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    answered = sum(len(models) for _, models in ordered)
    agreement: Literal["unanimous", "majority", "split", "no answers"]
    if not answered:
        agreement, majority = "no answers", None
        summary = "No model answered; see each answer's error."
    elif len(ordered) == 1:
        agreement, majority = "unanimous", ordered[0][0]
        summary = f"All {answered} answering model(s) agree: {majority!r}."
    elif len(ordered[0][1]) * 2 > answered:
        agreement, majority = "majority", ordered[0][0]
        summary = f"{len(ordered[0][1])} of {answered} answering models agree: {majority!r}."
    else:
        agreement, majority = "split", None
        summary = (
            f"No majority among {answered} answering models: "
            + "; ".join(f"{v!r} ({len(m)})" for v, m in ordered)
            + "."
        )
    failed = len(answers) - answered
    if failed:
        summary += f" {failed} model(s) gave no usable answer."
    return VoteReport(
        question=question,
        answers=answers,
        agreement=agreement,
        majority_verdict=majority,
        groups=[VoteGroup(verdict=v, models=m) for v, m in ordered],
        summary=summary,
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
    project = _Project(Path(directory or os.getcwd()).resolve(), os.environ if env is None else env)
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
        _, decision = _decide(project, task, model_hint, preferred_capability, _expert(expert))
        return decision.as_dict()

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
        chosen_expert = _expert(expert)
        _, decision = _decide(project, task, model_hint, preferred_capability, chosen_expert)
        recommendation = _recommendation(decision, chosen_expert)
        if not execute:
            return recommendation
        project.check_depth("delegate_to_model")
        result = await _run(
            project,
            ctx,
            with_expert(chosen_expert, task),
            decision.chain,
            variant=variant,
            thinking=thinking,
            workdir=project.workdir(workDir),
            timeout_s=timeout_s,
            approve=approve,
            decision=decision,
            task=task,
        )
        report = _run_report(result, decision, chosen_expert)
        if not report.ok:
            raise _failed(result, timeout_s)
        return recommendation.model_copy(update={"result": report})

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
        chosen_expert = _expert(expert)
        workdir = project.workdir(workDir)
        project.check_depth("orchestrate")
        _, decision = _decide(project, task, model_hint, None, chosen_expert)
        _chosen(decision)
        result = await _run(
            project,
            ctx,
            with_expert(chosen_expert, task),
            decision.chain,
            variant=variant,
            thinking=thinking,
            workdir=workdir,
            timeout_s=timeout_s,
            approve=approve,
            decision=decision,
            task=task,
        )
        report = _run_report(result, decision, chosen_expert)
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
        snapshot, decision = _decide(project, question, None, "reasoning", None)
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
        prompt = _VERDICT_INSTRUCTION + question
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
                verdict=_verdict(result.text),
                answer=result.text,
            )

        # A task group: if the call is cancelled, every model's run is ended with it.
        async with asyncio.TaskGroup() as group:
            asked = [group.create_task(ask(m)) for m in voters]
        answers = [task.result() for task in asked]
        report = _agreement(question, answers)
        if report.agreement == "no answers":  # a vote nobody cast is a failed call, not a result
            raise ToolError(f"No model answered the vote. {' '.join(a.error or a.model_id for a in answers)}")
        return report

    _register_job_tools(server, project)
    return server


RunId = Annotated[str, Field(min_length=1, max_length=100, description="the run_id start_task (or list_runs) gave")]


def _register_job_tools(server: MCPServer, project: _Project) -> None:
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
        chosen_expert = _expert(expert)
        workdir = project.workdir(workDir)
        project.check_depth("start_task")
        _, decision = _decide(project, task, model_hint, None, chosen_expert)
        _chosen(decision)
        spec = DelegationSpec(
            prompt=with_expert(chosen_expert, task),
            chain=chain_of(decision.chain),
            variant=variant,
            thinking=thinking,
            workdir=workdir,
            timeout_s=timeout_s,
            stats_interval_s=None,
            env=project.env,
        )
        return jobs.start(spec, decision=decision, task=task)

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
