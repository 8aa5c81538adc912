"""The task profile: what a task needs (emphasis per quality dimension, size, context), read
deterministically from its text and explicit preferences (step 1 of the formula in :mod:`nexus_core.routing.score`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nexus_core.errors import NexusError
from nexus_core.routing.weights import DIMENSIONS, WEIGHTS, Dimension, RoutingWeights

__all__ = ["TASK_KEYWORDS", "TaskProfile", "TaskSize", "profile_task"]

TaskSize = Literal["small", "medium", "large", "huge"]

# A keyword ending in "*" is a stem: it matches every word starting with it.
TASK_KEYWORDS: Mapping[Dimension, tuple[str, ...]] = MappingProxyType(
    {
        "reasoning": (
            "architect*",
            "design*",
            "prove",
            "proof",
            "reason*",
            "analy*",
            "tradeoff*",
            "trade-off*",
            "plan",
            "planning",
            "investigat*",
            "why",
            "complex*",
            "algorithm*",
            "concurren*",
            "deadlock*",
            "race",
            "security",
            "threat*",
            "vulnerab*",
            "optimi*",
            "diagnos*",
            "root-cause",
            "strategy",
        ),
        "code": (
            "implement*",
            "refactor*",
            "function*",
            "class",
            "classes",
            "method*",
            "bug*",
            "fix*",
            "test*",
            "code",
            "coding",
            "compile*",
            "python",
            "typescript",
            "javascript",
            "rust",
            "go",
            "java",
            "api",
            "endpoint*",
            "script*",
            "regex",
            "sql",
            "module*",
            "library",
            "cli",
            "unit",
            "debug*",
        ),
        "speed": (
            "quick*",
            "fast",
            "faster",
            "simple",
            "trivial",
            "typo*",
            "rename*",
            "small",
            "tiny",
            "format*",
            "lint*",
            "one-line*",
            "one-liner",
            "asap",
            "urgent*",
            "brief*",
        ),
        "cost": (
            "cheap*",
            "budget*",
            "bulk",
            "batch*",
            "cost*",
            "inexpensive",
            "economical",
            "thousands",
            "many",
            "summari*",
        ),
    }
)

_WORD_CHAR = r"a-z0-9+#_-"


def _compile_keywords() -> dict[Dimension, re.Pattern[str]]:
    """One pattern per dimension: whole words for exact keywords, word starts for stems."""
    out: dict[Dimension, re.Pattern[str]] = {}
    for dim, words in TASK_KEYWORDS.items():
        exact = "|".join(re.escape(w) for w in sorted((w for w in words if not w.endswith("*")), key=len, reverse=True))
        stems = "|".join(
            re.escape(w[:-1]) for w in sorted((w for w in words if w.endswith("*")), key=len, reverse=True)
        )
        out[dim] = re.compile(rf"(?<![{_WORD_CHAR}])(?:(?P<exact>{exact})(?![{_WORD_CHAR}])|(?P<stem>{stems}))")
    return out


_KEYWORDS = _compile_keywords()


class TaskProfile(BaseModel):
    """What a task needs, derived deterministically from its text and explicit preferences."""

    model_config = ConfigDict(frozen=True)

    characters: int
    token_estimate: int
    size: TaskSize
    keywords: dict[str, tuple[str, ...]] = Field(description="matched keywords per dimension, sorted")
    emphasis: dict[str, float] = Field(description="0–10 per dimension, after keywords, size and preferences")
    weights: dict[str, float] = Field(description="emphasis normalised to sum to 1")
    explicit: tuple[str, ...] = Field((), description="preferences the caller set explicitly")
    output_tokens: int
    context_tokens: int = Field(description="context window the task needs: prompt + OpenCode overhead + output")


def _size_of(tokens: int, w: RoutingWeights) -> TaskSize:
    if tokens <= w.small_task_max_tokens:
        return "small"
    if tokens <= w.medium_task_max_tokens:
        return "medium"
    if tokens <= w.large_task_max_tokens:
        return "large"
    return "huge"


def _check_preference(name: str, value: float | None, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high or math.isnan(value):
        raise NexusError(
            f"the {name} preference must be a number from 0 to {high:g}, not {value!r}",
            f"Pass {name} between 0 and {high:g}",
        )
    return float(value)


def profile_task(
    text: str,
    *,
    reasoning: float | None = None,
    code: float | None = None,
    speed: float | None = None,
    cost: float | None = None,
    context: int | None = None,
    weights: RoutingWeights = WEIGHTS,
) -> TaskProfile:
    """The :class:`TaskProfile` of ``text``. Preferences (0–10) replace the derived emphasis;
    ``context`` (tokens) replaces the derived context need."""
    prefs = {
        "reasoning": _check_preference("reasoning", reasoning, 10),
        "code": _check_preference("code", code, 10),
        "speed": _check_preference("speed", speed, 10),
        "cost": _check_preference("cost", cost, 10),
    }
    if context is not None and (isinstance(context, bool) or not isinstance(context, int) or context <= 0):
        raise NexusError(
            f"the context preference must be a positive number of tokens, not {context!r}",
            "Pass context as an integer such as 100000",
        )
    lowered = text[: weights.keyword_scan_chars].lower()
    matched: dict[str, tuple[str, ...]] = {}
    for dim, pattern in _KEYWORDS.items():
        hits = {m["exact"] or m["stem"] + "*" for m in pattern.finditer(lowered)}
        matched[dim] = tuple(sorted(hits))
    tokens = math.ceil(len(text) / weights.chars_per_token)
    size = _size_of(tokens, weights)
    emphasis: dict[str, float] = {}
    base = weights.base_emphasis
    for dim in DIMENSIONS:
        value = getattr(base, dim) + weights.keyword_emphasis * min(len(matched[dim]), weights.keyword_hits_counted)
        if dim == "speed" and size == "small" and not matched["reasoning"]:
            value += weights.small_task_speed_emphasis
        if dim == "reasoning" and size in ("large", "huge"):
            value += weights.large_task_reasoning_emphasis
        explicit = prefs[dim]
        emphasis[dim] = min(10.0, float(value)) if explicit is None else explicit
    total = sum(emphasis.values())
    normalised: dict[str, float] = {d: (emphasis[d] / total if total else 1 / len(DIMENSIONS)) for d in DIMENSIONS}
    output = min(weights.max_output_tokens, max(weights.min_output_tokens, tokens))
    return TaskProfile(
        characters=len(text),
        token_estimate=tokens,
        size=size,
        keywords=matched,
        emphasis=emphasis,
        weights=normalised,
        explicit=tuple(d for d in DIMENSIONS if prefs[d] is not None) + (("context",) if context is not None else ()),
        output_tokens=output,
        context_tokens=context if context is not None else tokens + weights.opencode_overhead_tokens + output,
    )
