"""JSONC reading as OpenCode does it: JSON plus comments and trailing commas.

Comments and trailing commas are blanked out in place (same length, newlines kept), so a
syntax error from :mod:`json` still points at the right line and column of the file.
OpenCode uses Microsoft's jsonc-parser with ``allowTrailingComma``; single quotes,
unquoted keys and the other JSON5 extras stay errors, as they are there.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BOM_FIX", "JsoncError", "bom_error", "loads", "strip"]

BOM_FIX = "remove the byte-order mark (save the file as UTF-8 without BOM)"


class JsoncError(ValueError):
    """A JSONC syntax error with a 1-based line and column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{message} at line {line}, column {column}")
        self.reason = message
        self.line = line
        self.column = column


def strip(text: str) -> str:
    """Return ``text`` with comments and trailing commas replaced by spaces."""
    out = list(text)
    i, n = 0, len(text)
    last_comma = -1  # index of a comma not yet followed by a value
    last_token = ""  # the last significant character outside comments ('"' for a string)
    while i < n:
        c = text[i]
        if c == '"':
            last_comma = -1
            last_token = '"'
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                if i < n and text[i] == "\n":
                    break  # unterminated string: let json report it
                i += 1
            i += 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            end = text.find("*/", i + 2)
            stop = n if end == -1 else end + 2
            for j in range(i, stop):
                if out[j] != "\n":
                    out[j] = " "
            i = stop
            continue
        if c == ",":
            # Only a comma after a value is trailing: "[,]" or '"k": ,}' stay errors, as in jsonc-parser.
            last_comma = i if last_token and last_token not in "[{,:" else -1
        elif c in "}]":
            if last_comma >= 0:
                out[last_comma] = " "
            last_comma = -1
        elif not c.isspace():
            last_comma = -1
        if not c.isspace():
            last_token = c
        i += 1
    return "".join(out)


def bom_error(version: str | None = None) -> JsoncError | None:
    """The error OpenCode ``version`` gives for a leading byte-order mark, or None when it accepts one.

    OpenCode 1.2.15 hands the raw text to jsonc-parser, which stops at the BOM (``InvalidSymbol at
    line 1, column 1``); 1.18.33 strips it first. Unknown or missing versions are judged as 1.2.15,
    the release the project pins, so a file nexus accepts is one both releases accept.
    """
    if version is not None and _version_tuple(version) >= (1, 18):
        return None
    return JsoncError(f"starts with a UTF-8 byte-order mark, which OpenCode rejects (InvalidSymbol); {BOM_FIX}", 1, 1)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.strip().lstrip("v").split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def loads(text: str, *, opencode_version: str | None = None) -> Any:
    """Parse JSONC text as OpenCode ``opencode_version`` does; raise :class:`JsoncError` on bad input."""
    if text.startswith("\ufeff"):
        error = bom_error(opencode_version)
        if error is not None:
            raise error
        text = text[1:]
        if not text:
            return {}  # 1.18 reads a BOM-only file as an empty one
    cleaned = strip(text)
    if not cleaned.strip():
        raise JsoncError("the file is empty, expected a JSON object", 1, 1)
    try:
        return json.loads(cleaned)
    except json.JSONDecodeError as exc:
        raise JsoncError(exc.msg, exc.lineno, exc.colno) from None
