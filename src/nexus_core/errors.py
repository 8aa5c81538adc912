"""The one exception type users see: a sentence saying what is wrong and what to do next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["NexusError", "first_validation_problem"]


class NexusError(Exception):
    """An error for the user: ``message`` says what is wrong, ``fix`` what to do about it."""

    def __init__(self, message: str, fix: str = "") -> None:
        self.message = message.rstrip(".")
        self.fix = fix.rstrip(".")
        super().__init__(self.sentence())

    def sentence(self) -> str:
        return f"{self.message}. {self.fix}." if self.fix else f"{self.message}."


def first_validation_problem(error: ValidationError, prefix: Sequence[object] = (), *, top: str = "") -> str:
    """The first problem pydantic found, as ``where: what`` (``where`` is the dotted field path).

    ``prefix`` is put before the field path (e.g. ``("provider", "custom")``); ``top`` names the
    place when the problem is at the top level (an empty path). Only the first problem is told:
    one fix at a time reads better than a list of consequences of the same mistake.
    """
    first = error.errors()[0]
    where = ".".join(str(part) for part in (*prefix, *first["loc"])) or top
    return f"{where}: {first['msg']}" if where else str(first["msg"])
