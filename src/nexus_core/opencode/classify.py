"""What an OpenCode failure means: the class of an ``error`` event or a retried request, its fix.

OpenCode's own error names come first, then what :mod:`nexus_core.diagnosis` recognises of
real gateways, then the HTTP status, then words in the message.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from nexus_core.diagnosis.opencode import diagnose_error
from nexus_core.opencode.events import ErrorEvent, FailureClass

__all__ = [
    "FIXES",
    "PROCESSOR_ERROR",
    "STREAM_ERROR_1_18",
    "class_of_message",
    "classify_error",
    "one_line",
    "retry_class",
    "status_of_message",
]

# The message may hold newlines, so only the first line is relied on: level, service, then `error=`.
PROCESSOR_ERROR = re.compile(r"^ERROR .*?service=session\.processor error=(?P<error>.*?)(?: stack=.*| process\s*)?$")
# OpenCode 1.18 logs in logfmt: one `stream error` line per failed model request (small=true is the title's).
STREAM_ERROR_1_18 = re.compile(
    r'^timestamp=\S+ level=ERROR .*?message="stream error" .*?small=false .*?error\.error="(?:AI_\w+: )?(?P<error>(?:[^"\\]|\\.)*)"'
)

_BUN_VERBOSE_HINT = re.compile(r"\s*For more information, pass `verbose: true` in the second argument to fetch\(\)")

_STATUS_CLASS = (
    ((401, 403), FailureClass.AUTH),
    ((404,), FailureClass.MODEL_NOT_FOUND),
    ((429,), FailureClass.RATE_LIMITED),
    ((400, 405, 409, 413, 415, 422), FailureClass.BAD_REQUEST),
)

FIXES: dict[FailureClass, str] = {
    FailureClass.OPENCODE_NOT_FOUND: "Install it (python3 bootstrap.py test installs the pinned one) and put it on PATH, or set NEXUS_OPENCODE",
    FailureClass.CONFIG_INVALID: "Fix the OpenCode config it names (nexus-agents config shows where each value comes from)",
    FailureClass.AUTH: "Check the gateway key: export the variable your opencode.json names in apiKey, e.g. CUSTOM_API_KEY",
    FailureClass.MODEL_NOT_FOUND: "Check that the model key in opencode.json matches an id the gateway lists at GET /v1/models",
    FailureClass.BAD_REQUEST: "The gateway refused the request as sent; check the model's limits and the gateway's logs",
    FailureClass.CONNECTION: "Check baseURL in opencode.json and that the gateway is reachable from here (nexus-agents doctor)",
    FailureClass.RATE_LIMITED: "Wait and try again, or use a model with quota left (--model)",
    FailureClass.GATEWAY_ERROR: "The gateway or the model behind it is failing; try again later or another model",
    FailureClass.STALLED: "Raise --stall-timeout if the task has long silent steps, or check the gateway",
    FailureClass.TIMEOUT: "Raise --timeout, or split the task",
    FailureClass.CANCELLED: "",
    FailureClass.CUT_STREAM: "The gateway ended the answer early; try again, or check the gateway's logs",
    FailureClass.FAILED: "OpenCode's last stderr lines are in the attempt's stderr_tail (shown by nexus-agents orchestrate)",
}


_MESSAGE_CLASSES: tuple[tuple[re.Pattern[str], FailureClass], ...] = tuple(
    (re.compile(pattern, re.I), failure)
    for pattern, failure in (
        (r"model not found|model_not_found|no such model", FailureClass.MODEL_NOT_FOUND),
        (r"too many requests|rate[ _]limit|quota", FailureClass.RATE_LIMITED),
        (r"unauthorized|forbidden|invalid api key|authentication", FailureClass.AUTH),
        # Bun's fetch says "Was there a typo in the url or port?" when the host does not resolve.
        (
            (
                r"unable to connect|typo in the url|connection (refused|reset)|econnrefused|econnreset|socket|enotfound|getaddrinfo"
                r"|\bdns\b|certificate|\btls\b|\bssl\b|cannot connect|network|timed out|closed unexpectedly"
            ),
            FailureClass.CONNECTION,
        ),
        (
            (
                r"overloaded|internal server error|bad gateway|service unavailable|gateway timeout"
                r"|jsonparseerror|json parsing failed|invalid json|type validation failed"
            ),
            FailureClass.GATEWAY_ERROR,
        ),
    )
)


def class_of_message(message: str) -> FailureClass | None:
    """The failure class a gateway or OpenCode message names, or None."""
    return next((failure for pattern, failure in _MESSAGE_CLASSES if pattern.search(message)), None)


def status_of_message(message: str) -> int | None:
    """The HTTP status whose reason phrase the message contains (4xx and 5xx only), or None."""
    for status in HTTPStatus:
        if status.value >= 400 and status.phrase.lower() in message.lower():
            return status.value
    return None


def classify_error(event: ErrorEvent) -> tuple[FailureClass, int | None]:
    """The failure class an OpenCode ``error`` event stands for, and the HTTP status when known."""
    status = event.status_code
    if event.name == "ProviderAuthError":
        return FailureClass.AUTH, status
    if event.name in {"ProviderInitError", "ConfigInvalidError", "ConfigJsonError"}:
        return FailureClass.CONFIG_INVALID, status
    if event.name == "MessageAbortedError":
        return FailureClass.CANCELLED, status
    if event.name == "ContextOverflowError":
        return FailureClass.BAD_REQUEST, status
    diagnosis = diagnose_error(event)
    if diagnosis is not None:
        return diagnosis.failure, status
    if status is not None:
        for codes, failure in _STATUS_CLASS:
            if status in codes:
                return failure, status
        if status >= 500:
            return FailureClass.GATEWAY_ERROR, status
    by_message = class_of_message(event.message)
    return by_message or FailureClass.FAILED, status


def retry_class(message: str) -> FailureClass:
    """The class of a request OpenCode keeps retrying: rate limited, connection, else gateway error."""
    failure = class_of_message(message)
    return failure if failure in {FailureClass.RATE_LIMITED, FailureClass.CONNECTION} else FailureClass.GATEWAY_ERROR


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, without Bun's verbose hint, cut to ``limit`` characters."""
    line = " ".join(_BUN_VERBOSE_HINT.sub("", text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
