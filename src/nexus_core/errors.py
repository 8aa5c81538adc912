"""The one exception type users see: a sentence saying what is wrong and what to do next."""

from __future__ import annotations

__all__ = ["NexusError"]


class NexusError(Exception):
    """An error for the user: ``message`` says what is wrong, ``fix`` what to do about it."""

    def __init__(self, message: str, fix: str = "") -> None:
        self.message = message.rstrip(".")
        self.fix = fix.rstrip(".")
        super().__init__(self.sentence())

    def sentence(self) -> str:
        return f"{self.message}. {self.fix}." if self.fix else f"{self.message}."
