"""Keep secrets out of every output: describe them, never show them.

A secret value is never printed, logged, written or drawn, not even in part. Where the
user needs to know about a key, they are told whether it is set and where it comes from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

__all__ = ["REDACTED", "Redactor", "is_secret_key", "is_secret_var", "secret_values"]

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(
    r"(api[_-]?key|apikey|token|secret|passw(or)?d|authorization|credential|bearer|private[_-]?key)", re.I
)
# Shapes of keys that may turn up in a body or message without us knowing the value.
_KEY_SHAPES = re.compile(
    r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(sk|pk|rk|ak)-[A-Za-z0-9_-]{8,}"
    r"|\b(x-api-key|api[_-]?key|authorization)(\"?\s*[:=]\s*\"?)[^\s\",}]{6,}"
)

# Credentials a URL carries: the password of ``scheme://user:password@host`` and key-like query parameters.
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(@)")
_URL_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:[a-z0-9_-]*(?:key|token|secret|password|passwd|pwd|signature)|sig|auth|code)=)[^&#\s\"'<>]+"
)


def is_secret_key(name: str) -> bool:
    """Whether a config key (``apiKey``, ``headers.Authorization``…) holds a secret."""
    return bool(_SECRET_NAME.search(name))


def is_secret_var(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret."""
    return bool(_SECRET_NAME.search(name)) or name.upper().endswith(("_KEY", "_PAT"))


class Redactor:
    """Replaces known secret values, and anything shaped like a key, with ``[redacted]``."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        # Longest first so a value containing another is replaced whole.
        self._values = sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> Redactor:
        env = os.environ if env is None else env
        return cls([*(v for k, v in env.items() if is_secret_var(k)), *extra])

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)
        text = _URL_QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)
        return _KEY_SHAPES.sub(_shape_sub, text)


def _shape_sub(match: re.Match[str]) -> str:
    if match.group(1):
        return match.group(1) + REDACTED
    if match.group(3):
        return match.group(3) + match.group(4) + REDACTED
    return REDACTED


def secret_values(data: object) -> list[str]:
    """Every string held under a secret-named key (``apiKey``, ``Authorization``, …) anywhere in ``data``.

    Run over a resolved config it gives the keys OpenCode will send, whatever their source:
    written in the file, ``{env:VAR}`` or ``{file:path}``.
    """
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str) and is_secret_key(str(key)):
                found.append(value)
                scheme, _, token = value.partition(" ")
                if token and scheme.lower() in {"bearer", "basic", "token"}:
                    found.append(token.strip())  # the credential also travels without its scheme
            else:
                found += secret_values(value)
    elif isinstance(data, list):
        for item in data:
            found += secret_values(item)
    return found
