"""The redactor the store writes through, with a cheap screen in front of it for event streams.

:class:`~nexus_core.secrets.Redactor` costs tens of microseconds per event (its key-shape
patterns scan every position). The store runs it on every string it writes, but for events it
first asks :meth:`StoreRedactor.may_redact`: a substring test for what every one of the
redactor's patterns needs to match (a known value, ``bearer``, ``sk-``, ``api``, ``://``,
``key=``…). A line none of them is in cannot change under the redactor, so it is stored as is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from nexus_core.secrets import Redactor, is_secret_var

__all__ = ["StoreRedactor"]

# Lower-case substrings one of which every match of the redactor's shape patterns contains.
_TRIGGERS = (
    "bearer",
    "sk-",
    "pk-",
    "rk-",
    "ak-",
    "api",
    "authorization",
    "://",
    "key=",
    "token=",
    "secret=",
    "password=",
    "passwd=",
    "pwd=",
    "signature=",
    "sig=",
    "auth=",
    "code=",
)


class StoreRedactor:
    """:class:`Redactor` over ``values`` plus a screen that says when it may change a text."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        kept = sorted({v for v in values if v and len(v) >= 4})
        self._redactor = Redactor(kept)
        # A value may sit in a JSON line escaped (quotes, backslashes, control characters).
        self._values = tuple({form for v in kept for form in (v, json.dumps(v)[1:-1])})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> StoreRedactor:
        """The values of every secret-named variable of ``env`` (as :meth:`Redactor.from_env`), plus ``extra``."""
        env = os.environ if env is None else env
        return cls([*(v for k, v in env.items() if is_secret_var(k)), *extra])

    def __call__(self, text: str) -> str:
        return self._redactor(text)

    def may_redact(self, text: str) -> bool:
        """False only when the redactor cannot change ``text``."""
        if any(v in text for v in self._values):
            return True
        low = text.lower()
        return any(t in low for t in _TRIGGERS)

    def json_line(self, line: str) -> str:
        """A JSON line with its secrets redacted, still valid JSON."""
        if not self.may_redact(line):
            return line
        redacted = self._redactor(line)
        if redacted == line:
            return line
        try:
            json.loads(redacted)
        except ValueError:  # a pattern ran across a quote: redact the strings one by one instead
            return json.dumps(self.value(json.loads(line)), ensure_ascii=False, separators=(",", ":"))
        return redacted

    def value(self, obj: Any) -> Any:
        """``obj`` (JSON data) with every string, key and value, redacted."""
        if isinstance(obj, str):
            return self._redactor(obj)
        if isinstance(obj, dict):
            return {self._redactor(str(k)): self.value(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.value(v) for v in obj]
        return obj
