"""What the MCP tools return: pydantic models a client sees as structured output, and their builders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from nexus_core.mcp.runs import permission_sentence
from nexus_core.opencode.attempt import AttemptResult
from nexus_core.opencode.events import StepFinish
from nexus_core.routing.chain import DelegationResult
from nexus_core.routing.experts import Expert
from nexus_core.routing.last_word import outcome_sentence
from nexus_core.routing.planner import DelegationPlan, task_profile
from nexus_core.routing.registry import ModelProfile

__all__ = [
    "MAX_ALTERNATIVES",
    "Alternative",
    "AttemptReport",
    "ExpertList",
    "ModelList",
    "Recommendation",
    "RunReport",
    "ScoreTermReport",
    "Tokens",
    "VoteAnswer",
    "VoteGroup",
    "VoteReport",
    "plan_view",
    "recommendation",
    "run_report",
    "tokens_of",
]

MAX_ALTERNATIVES = 3


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


def plan_view(plan: DelegationPlan, task: str) -> dict[str, Any]:
    """What ``route_task`` returns: routing's decision with the plan's choice and chain (what would run)."""
    first = plan.first
    if plan.decision is not None:
        data = plan.decision.as_dict()
    else:
        data = {"reason": plan.why, "hint": first.cli_model_name, "profile": task_profile(task).model_dump(mode="json")}
        data |= {"models": [], "skipped": []}
    return data | {
        "chosen": first.id,
        "chosen_cli_model_name": first.cli_model_name,
        "chain": [m.id for m in plan.chain],
        "chain_cli_model_names": [m.cli_model_name for m in plan.chain],
    }


def recommendation(plan: DelegationPlan, expert: Expert | None) -> Recommendation:
    """What ``delegate_to_model`` tells about a plan: the first model's score and the alternatives."""
    decision, first = plan.decision, plan.first
    if decision is None:  # a provider/model the registry does not know: nothing to score it by
        return Recommendation(
            recommended=first.id,
            cli_model_name=first.cli_model_name,
            total=0,
            breakdown=[],
            reason=plan.why,
            fallback_chain=[m.id for m in plan.chain],
            alternatives=[],
            skipped=[],
            expert=expert.id if expert else None,
        )
    # A hinted model routing skipped (cooling down, not served) is still tried first, unscored.
    scored = next((s for s in decision.ranked if s.id == first.id), None)
    data = decision.as_dict()
    return Recommendation(
        recommended=first.id,
        cli_model_name=first.cli_model_name,
        total=scored.total if scored else 0,
        breakdown=[ScoreTermReport(name=t.name, value=t.value, detail=t.detail) for t in scored.terms]
        if scored
        else [],
        reason=decision.reason,
        fallback_chain=[m.id for m in plan.chain],
        alternatives=[
            Alternative(id=s.id, cli_model_name=s.model.cli_model_name, total=s.total)
            for s in decision.ranked
            if s.id != first.id
        ][:MAX_ALTERNATIVES],
        skipped=data["skipped"],
        expert=expert.id if expert else None,
    )


def tokens_of(attempts: Sequence[AttemptResult]) -> Tokens:
    """The tokens of every step of every attempt, summed."""
    steps = [e.tokens for a in attempts for e in a.events if isinstance(e, StepFinish)]
    usage = Tokens(
        input=sum(t.input for t in steps),
        output=sum(t.output for t in steps),
        reasoning=sum(t.reasoning for t in steps),
    )
    return usage.model_copy(update={"total": usage.input + usage.output + usage.reasoning})


def run_report(result: DelegationResult, plan: DelegationPlan, expert: Expert | None) -> RunReport:
    """What ``orchestrate`` returns for a finished delegation."""
    return RunReport(
        ok=result.ok,
        text=result.text,
        model_used=result.final.model_id,
        cli_model_name=result.final.cli_model_name,
        expert=expert.id if expert else None,
        routing_reason=plan.decision.reason if plan.decision is not None else plan.why,
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
        tokens=tokens_of(result.attempts),
        duration_s=result.duration_s,
    )
