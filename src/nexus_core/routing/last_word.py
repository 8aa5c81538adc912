"""The last word of a failed delegation: the first real cause, then what happened after, in one sentence.

    opencode-custom-opus: gateway_error (500 ×4); opencode-custom-sonnet: no byte came back from the
    gateway in the 4.8 s left of the 30 s timeout. The gateway or the model behind it is failing; …

Why: the final attempt's outcome alone hides the cause. After a model fails (a 5xx, a dropped
connection, a cut stream) and OpenCode's retries use up most of the budget, the next model
times out in what is left, and "no result within the 14.3119 s timeout. Raise --timeout, or
split the task." blames the user's task for a gateway failure. Here every attempt gets one
short clause, the fix is the first real cause's, durations have at most one decimal, a gateway
that never answered is said to have sent nothing back, and OpenCode's raw error dumps
(``AI_JSONParseError: JSON parsing failed: Text: {…``) become plain words.
"""

from __future__ import annotations

import re

from nexus_core.opencode.attempt import AttemptResult
from nexus_core.opencode.events import (
    ErrorEvent,
    FailureClass,
    GatewayRetrying,
    Outcome,
    Reasoning,
    StepStart,
    Text,
    ToolUse,
)
from nexus_core.routing.chain import DelegationResult
from nexus_core.wording import seconds

__all__ = [
    "RETRIED_FIX",
    "SILENT_FIX",
    "attempt_clause",
    "first_cause",
    "last_word",
    "outcome_sentence",
    "plain_message",
]

#: The fix when a gateway accepted the request and never sent anything back.
SILENT_FIX = (
    "The gateway took the request and sent nothing back: check it with nexus-agents doctor --probe, "
    "or raise --timeout if the model is only slow to start"
)
#: The fix when the time ran out while OpenCode retried a failing gateway.
RETRIED_FIX = "The gateway kept failing while OpenCode retried; try again later or another model"
MESSAGE_CHARS = 160
LABEL_CHARS = 80

# Failures that only say the time ran out: the cause, when there is one, lies with an earlier attempt.
_NOT_A_CAUSE = frozenset({FailureClass.TIMEOUT, FailureClass.CANCELLED})

# What OpenCode's AI SDK errors mean, in words (their raw text quotes the gateway's broken bytes).
_PLAIN = (
    (
        re.compile(r"JSONParseError|JSON pars(e|ing)|Invalid JSON", re.I),
        "the gateway sent a chunk that is not valid JSON",
    ),
    (
        re.compile(r"TypeValidationError|Type validation failed", re.I),
        "the gateway's answer does not have the shape of an OpenAI chat completion",
    ),
)
_AI_ERROR_PREFIX = re.compile(r"^(AI_)?\w*Error:\s*")
# Status phrases a gateway's error text carries; OpenAI's own text for a 500 is the first.
_STATUS_PHRASES = (
    ("the server had an error while processing your request", 500),
    ("internal server error", 500),
    ("bad gateway", 502),
    ("service unavailable", 503),
    ("gateway timeout", 504),
    ("too many requests", 429),
)
_KEPT_FAILING = re.compile(r"^the gateway kept failing \((?P<last>.*)\); ")


def plain_message(message: str, limit: int = MESSAGE_CHARS) -> str:
    """OpenCode's error text as words: no AI SDK dump, no quoted bytes, one line, no final period."""
    for pattern, words in _PLAIN:
        if pattern.search(message):
            return words
    text = " ".join(_AI_ERROR_PREFIX.sub("", message.strip()).split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def outcome_sentence(outcome: Outcome) -> str:
    """One attempt's outcome for people: its message in plain words, then its fix."""
    return Outcome(message=plain_message(outcome.message), fix=outcome.fix).sentence()


def _name(attempt: AttemptResult) -> str:
    return attempt.model_id or attempt.cli_model_name


def _heard_back(attempt: AttemptResult) -> bool:
    """Whether anything came back from the gateway: an event of the model's, an error, a failed request."""
    kinds = (StepStart, Text, Reasoning, ToolUse, ErrorEvent, GatewayRetrying)
    return attempt.outcome.failed_requests > 0 or any(isinstance(e, kinds) for e in attempt.events)


def _retry_label(attempt: AttemptResult) -> str:
    outcome = attempt.outcome
    if outcome.status_code:
        return str(outcome.status_code)
    kept = _KEPT_FAILING.match(outcome.message)
    last = (
        kept.group("last")
        if kept
        else next((e.message for e in reversed(attempt.events) if isinstance(e, GatewayRetrying)), outcome.message)
    )
    lowered = last.lower()
    status = next((code for phrase, code in _STATUS_PHRASES if phrase in lowered), None)
    return str(status) if status else plain_message(last, LABEL_CHARS)


def attempt_clause(attempt: AttemptResult, *, first: bool, timeout_s: float | None = None) -> str:
    """One attempt in a few words: ``opus: gateway_error (500 ×4)``, ``sonnet: no answer in the 14 s left``."""
    outcome = attempt.outcome
    name = _name(attempt)
    if outcome.ok:
        return f"{name}: finished"
    failure = outcome.failure
    budget = seconds(outcome.duration_s)
    if first:
        window = f"within the {seconds(timeout_s or outcome.duration_s)} s timeout"
    else:
        window = f"in the {budget} s left" + (f" of the {seconds(timeout_s)} s timeout" if timeout_s else "")
    if failure is FailureClass.TIMEOUT and attempt.argv == () and outcome.duration_s == 0:
        return f"{name}: not tried, no time was left" + (f" of the {seconds(timeout_s)} s timeout" if timeout_s else "")
    retried = outcome.failed_requests
    if retried and failure not in _NOT_A_CAUSE:
        return f"{name}: {failure} ({_retry_label(attempt)} ×{retried})"
    if failure is FailureClass.TIMEOUT:
        if retried:
            return f"{name}: {_retry_label(attempt)} ×{retried} from the gateway, then no answer {window}"
        if not _heard_back(attempt):
            return f"{name}: no byte came back from the gateway {window}"
        return f"{name}: no finished answer {window}"
    if failure is FailureClass.STALLED and not _heard_back(attempt):
        return f"{name}: no byte came back from the gateway for {budget} s (stalled)"
    if failure is FailureClass.CANCELLED:
        return f"{name}: cancelled"
    return f"{name}: {failure} ({plain_message(outcome.message)})"


def first_cause(result: DelegationResult) -> AttemptResult:
    """The attempt whose failure explains the delegation's: the first that did more than run out of time."""
    return next((a for a in result.attempts if a.outcome.failure not in _NOT_A_CAUSE), result.attempts[0])


def last_word(result: DelegationResult, timeout_s: float | None = None) -> str:
    """The delegation's outcome in one sentence: every attempt's clause, then the first real cause's fix.

    ``timeout_s`` is the delegation's whole budget, when known, so that a later attempt's share
    can be said as what was left of it.
    """
    if result.ok:
        final = result.final
        return f"{_name(final)} finished in {seconds(result.duration_s)} s."
    clauses = [attempt_clause(a, first=n == 0, timeout_s=timeout_s) for n, a in enumerate(result.attempts)]
    cause = first_cause(result).outcome
    timed_out = cause.failure in (FailureClass.TIMEOUT, FailureClass.STALLED)
    if timed_out and cause.failed_requests:
        fix = RETRIED_FIX
    elif timed_out and not _heard_back(first_cause(result)):
        fix = SILENT_FIX
    else:
        fix = cause.fix
    text = "; ".join(clauses) + "."
    return f"{text} {fix.rstrip('.')}." if fix else text
