"""Small helpers for the words people read: durations as they would say them."""

from __future__ import annotations

__all__ = ["seconds"]


def seconds(value: float) -> str:
    """A duration in seconds with at most one decimal, and none when it is whole: ``12``, ``4.8``, ``0.3``."""
    text = f"{value:.1f}"
    return text.removesuffix(".0")
