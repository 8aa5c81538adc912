"""Every number routing uses, in one place: :class:`RoutingWeights` (:data:`WEIGHTS`), the quality
dimensions and the names of the score terms. The formula they feed is in :mod:`nexus_core.routing.score`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DIMENSIONS", "TERM_NAMES", "WEIGHTS", "Dimension", "Emphasis", "RoutingWeights"]

Dimension = Literal["reasoning", "code", "speed", "cost"]
DIMENSIONS: tuple[Dimension, ...] = ("reasoning", "code", "speed", "cost")
TERM_NAMES = ("reasoning", "code", "speed", "cost", "context", "price", "availability", "observed", "hint")


class Emphasis(BaseModel):
    """How much each quality dimension matters (0–10)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    reasoning: float = Field(ge=0, le=10)
    code: float = Field(ge=0, le=10)
    speed: float = Field(ge=0, le=10)
    cost: float = Field(ge=0, le=10)


class RoutingWeights(BaseModel):
    """Every number routing uses, in one place. The formula is in :mod:`nexus_core.routing.score`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_emphasis: Emphasis = Emphasis(reasoning=4, code=4, speed=1, cost=1)
    keyword_emphasis: float = 2.0
    keyword_hits_counted: int = 3
    keyword_scan_chars: int = 65_536
    small_task_speed_emphasis: float = 2.0
    large_task_reasoning_emphasis: float = 2.0
    chars_per_token: int = 4
    small_task_max_tokens: int = 200
    medium_task_max_tokens: int = 2_000
    large_task_max_tokens: int = 20_000
    opencode_overhead_tokens: int = 12_000
    min_output_tokens: int = 1_000
    max_output_tokens: int = 16_000
    quality_points: int = 100
    context_room_factor: float = 2.0
    context_room_points: int = 20
    context_too_small_points: int = -1_000
    price_points_per_usd: float = 200.0
    price_points_cap: int = 200
    gateway_listed_points: int = 20
    hint_points: int = 10_000
    rate_limit_cooldown_s: float = 60.0


WEIGHTS = RoutingWeights()
