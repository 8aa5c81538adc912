"""``consensus_vote``'s reading of the answers: each one's verdict, and how far the verdicts agree."""

from __future__ import annotations

import re
from typing import Literal

from nexus_core.mcp.reports import VoteAnswer, VoteGroup, VoteReport

__all__ = ["MAX_VERDICT_WORDS", "VERDICT_INSTRUCTION", "agreement", "verdict_of"]

MAX_VERDICT_WORDS = 8

VERDICT_INSTRUCTION = (
    "Answer the question below. Put your verdict alone on the first line (a few words, e.g. yes / no / "
    "option A), then explain it briefly.\n\nQuestion: "
)


def verdict_of(answer: str) -> str:
    """The verdict on an answer's first non-blank line: its first words, lower-cased."""
    first = next((line for line in answer.splitlines() if line.strip()), "")
    words = re.findall(r"[\w'-]+", first.lower())
    return " ".join(words[:MAX_VERDICT_WORDS])


def agreement(question: str, answers: list[VoteAnswer]) -> VoteReport:
    """How far the answers' verdicts agree: unanimous, a majority, split, or no answers at all."""
    groups: dict[str, list[str]] = {}
    for answer in answers:
        if answer.ok and answer.verdict:
            groups.setdefault(answer.verdict, []).append(answer.model_id)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    answered = sum(len(models) for _, models in ordered)
    level: Literal["unanimous", "majority", "split", "no answers"]
    if not answered:
        level, majority = "no answers", None
        summary = "No model answered; see each answer's error."
    elif len(ordered) == 1:
        level, majority = "unanimous", ordered[0][0]
        summary = f"All {answered} answering model(s) agree: {majority!r}."
    elif len(ordered[0][1]) * 2 > answered:
        level, majority = "majority", ordered[0][0]
        summary = f"{len(ordered[0][1])} of {answered} answering models agree: {majority!r}."
    else:
        level, majority = "split", None
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
        agreement=level,
        majority_verdict=majority,
        groups=[VoteGroup(verdict=v, models=m) for v, m in ordered],
        summary=summary,
    )
