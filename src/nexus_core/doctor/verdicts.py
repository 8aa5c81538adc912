"""The probes' verdicts: causes, timings, results, and what a gateway's HTTP answer means.

A gateway's refusal is read by :func:`nexus_core.diagnosis.classify` (by meaning, whatever the
status code, naming the gateway); this module turns that diagnosis into a probe verdict.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from nexus_core.diagnosis import Cause, Diagnosis, DiagnosisContext, classify

__all__ = ["ChatProbe", "ModelsProbe", "PhaseTimings", "ProbeCause"]

_EXCERPT_CHARS = 300


class ProbeCause(StrEnum):
    """Why a probe failed (or ``ok``). Stable strings: scripts and the dashboard read them."""

    OK = "ok"
    INVALID_URL = "invalid_url"
    DNS_FAILURE = "dns_failure"
    CONNECTION_REFUSED = "connection_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    TLS_ERROR = "tls_error"
    TIMEOUT = "timeout"
    CONNECTION_DROPPED = "connection_dropped"
    NETWORK_ERROR = "network_error"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    CONTEXT_OVERFLOW = "context_overflow"
    UPSTREAM_AUTH = "upstream_auth"
    BAD_REQUEST = "bad_request"
    SERVER_ERROR = "server_error"
    UNEXPECTED_STATUS = "unexpected_status"
    NOT_JSON = "not_json"
    MALFORMED_MODEL_LIST = "malformed_model_list"
    MODEL_NOT_SERVED = "model_not_served"
    MALFORMED_STREAM = "malformed_stream"
    STREAM_CUT = "stream_cut"


_FROM_DIAGNOSIS: dict[Cause, ProbeCause] = {
    Cause.AUTH_MISSING: ProbeCause.UNAUTHORIZED,
    Cause.AUTH_REJECTED: ProbeCause.UNAUTHORIZED,
    Cause.FORBIDDEN: ProbeCause.FORBIDDEN,
    Cause.MODEL_NOT_FOUND: ProbeCause.MODEL_NOT_SERVED,
    Cause.RATE_LIMITED: ProbeCause.RATE_LIMITED,
    Cause.QUOTA_EXHAUSTED: ProbeCause.QUOTA_EXHAUSTED,
    Cause.CONTEXT_OVERFLOW: ProbeCause.CONTEXT_OVERFLOW,
    Cause.UPSTREAM_AUTH: ProbeCause.UPSTREAM_AUTH,
    Cause.UPSTREAM_DOWN: ProbeCause.SERVER_ERROR,
    Cause.SERVER_ERROR: ProbeCause.SERVER_ERROR,
    Cause.ROUTE_NOT_FOUND: ProbeCause.NOT_FOUND,
    Cause.BAD_REQUEST: ProbeCause.BAD_REQUEST,
    Cause.UNKNOWN: ProbeCause.UNEXPECTED_STATUS,
}


class PhaseTimings(BaseModel):
    """Milliseconds spent in each phase of one HTTP exchange (``None``: not reached or not applicable)."""

    model_config = ConfigDict(frozen=True)

    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    first_byte_ms: float | None = None
    total_ms: float | None = None


class _ProbeBase(BaseModel):
    url: str
    cause: ProbeCause
    summary: str
    fix: str = ""
    detail: str = ""
    status_code: int | None = None
    auth_sent: bool = False
    timings: PhaseTimings = PhaseTimings()
    #: The gateway that showed itself in the answer (``LiteLLM proxy``…), and the diagnosis cause.
    gateway: str | None = None
    diagnosis: str | None = None

    @property
    def ok(self) -> bool:
        return self.cause is ProbeCause.OK


class ModelsProbe(_ProbeBase):
    """The verdict of ``GET {baseURL}/models``: the served model ids when it worked."""

    models: list[str] | None = None
    retry_after: str | None = None


class ChatProbe(_ProbeBase):
    """The verdict of one streamed chat completion straight to the gateway."""

    model: str
    chunks: int = 0
    saw_done: bool = False
    usage: dict[str, Any] | None = None
    reply_excerpt: str = ""
    first_token_ms: float | None = None


class _Verdict(Exception):
    """A classified failure on the way; carries what the probe result needs."""

    def __init__(
        self,
        cause: ProbeCause,
        summary: str,
        fix: str,
        detail: str = "",
        status: int | None = None,
        diagnosis: Diagnosis | None = None,
    ) -> None:
        super().__init__(summary)
        self.cause, self.summary, self.fix, self.detail, self.status = cause, summary, fix, detail, status
        self.diagnosis = diagnosis


def _auth_hint(key_source: str | None) -> str:
    return key_source or "the provider's options.apiKey"


def _excerpt(body: str) -> str:
    flat = " ".join(body.split())
    return flat[:_EXCERPT_CHARS] + ("…" if len(flat) > _EXCERPT_CHARS else "")


def _diagnosed(diagnosis: Diagnosis, detail: str) -> _Verdict:
    return _Verdict(
        _FROM_DIAGNOSIS[diagnosis.cause], diagnosis.summary, diagnosis.fix, detail, diagnosis.status, diagnosis
    )


def _status_verdict(
    response: httpx.Response,
    body: str,
    url: str,
    base_url: str,
    auth_sent: bool,
    key_source: str | None,
    model: str | None = None,
) -> _Verdict:
    """A non-200 answer, read by meaning (a 400 "invalid model name" is the model, a 400 auth error the key)."""
    context = DiagnosisContext(
        base_url=base_url, url=url, model=model, auth_sent=auth_sent, key_source=_auth_hint(key_source)
    )
    diagnosis = classify(response.status_code, response.headers.multi_items(), body, context=context)
    return _diagnosed(diagnosis, _excerpt(body))


def _stream_error_verdict(error: Any, base_url: str, model: str | None) -> _Verdict:
    """An ``error`` object inside a 200 stream (OpenRouter and LiteLLM report mid-stream failures so)."""
    body = json.dumps({"error": error})
    diagnosis = classify(200, (), body, context=DiagnosisContext(base_url=base_url, model=model, auth_sent=True))
    if diagnosis.cause in (Cause.UNKNOWN, Cause.BAD_REQUEST):
        diagnosis = diagnosis.model_copy(
            update={"cause": Cause.SERVER_ERROR, "fix": "check the gateway's logs and its upstream"}
        )
    return _Verdict(
        _FROM_DIAGNOSIS[diagnosis.cause],
        f"the gateway streamed an error: {diagnosis.summary}",
        diagnosis.fix,
        "",
        200,
        diagnosis,
    )


def _not_json(url: str, response: httpx.Response, body: str) -> _Verdict:
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    looks_html = "html" in kind or body.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
    summary = f"{url} answers {kind}, not JSON" + (": an HTML page (a proxy's login page?)" if looks_html else "")
    return _Verdict(
        ProbeCause.NOT_JSON,
        summary,
        "baseURL points at a web page, not the API: use the gateway's API root (…/v1), or sign in to / bypass the proxy "
        "(NO_PROXY) that serves this page",
        _excerpt(body),
        response.status_code,
    )
