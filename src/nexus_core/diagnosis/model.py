"""What a diagnosis says: the cause by meaning, the gateway that said it, and what to do.

A :class:`Diagnosis` is the one verdict on a gateway's answer, whoever asked: the doctor's
probes, an ``opencode run`` attempt, the MCP server and the dashboard all read the same one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from nexus_core.opencode.events import FailureClass

__all__ = ["Cause", "Diagnosis", "DiagnosisContext", "Scope"]

#: Whose problem it is: the caller's request or key (``client``), or the gateway's own way to
#: its model provider (``upstream``: the gateway's provider key, the provider being down).
Scope = Literal["client", "upstream"]


class Cause(StrEnum):
    """Why a gateway said no, by meaning (never by status code alone). Stable strings."""

    AUTH_MISSING = "auth_missing"
    AUTH_REJECTED = "auth_rejected"
    FORBIDDEN = "forbidden"
    MODEL_NOT_FOUND = "model_not_found"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    CONTEXT_OVERFLOW = "context_overflow"
    UPSTREAM_AUTH = "upstream_auth"
    UPSTREAM_DOWN = "upstream_down"
    ROUTE_NOT_FOUND = "route_not_found"
    BAD_REQUEST = "bad_request"
    SERVER_ERROR = "server_error"
    UNKNOWN = "unknown"


_FAILURE: dict[Cause, FailureClass] = {
    Cause.AUTH_MISSING: FailureClass.AUTH,
    Cause.AUTH_REJECTED: FailureClass.AUTH,
    Cause.FORBIDDEN: FailureClass.AUTH,
    Cause.MODEL_NOT_FOUND: FailureClass.MODEL_NOT_FOUND,
    Cause.RATE_LIMITED: FailureClass.RATE_LIMITED,
    Cause.QUOTA_EXHAUSTED: FailureClass.RATE_LIMITED,
    Cause.CONTEXT_OVERFLOW: FailureClass.BAD_REQUEST,
    # Nothing the caller can change; another model or provider may work.
    Cause.UPSTREAM_AUTH: FailureClass.GATEWAY_ERROR,
    Cause.UPSTREAM_DOWN: FailureClass.GATEWAY_ERROR,
    # A wrong API root fails every model of the provider, exactly like an unreachable host.
    Cause.ROUTE_NOT_FOUND: FailureClass.CONNECTION,
    Cause.BAD_REQUEST: FailureClass.BAD_REQUEST,
    Cause.SERVER_ERROR: FailureClass.GATEWAY_ERROR,
    Cause.UNKNOWN: FailureClass.FAILED,
}


class DiagnosisContext(BaseModel):
    """What the caller knows about the request, so the fix can name the real knob."""

    model_config = ConfigDict(frozen=True)

    base_url: str = ""
    url: str = ""
    model: str | None = None
    auth_sent: bool | None = None
    #: Where the key comes from, for the fix text (e.g. ``the CUSTOM_API_KEY environment variable``).
    key_source: str | None = None


class Diagnosis(BaseModel):
    """One gateway answer, understood. ``summary`` and ``fix`` are one line each, the gateway named first."""

    model_config = ConfigDict(frozen=True)

    cause: Cause
    summary: str
    fix: str
    status: int | None = None
    gateway: str | None = None
    scope: Scope = "client"
    #: The gateway's own words, cut short (never holding a key: callers redact).
    message: str = ""
    retry_after: str | None = None
    #: Which shape of the table matched, and where that shape is documented.
    rule: str = ""
    source: str = ""

    @property
    def failure(self) -> FailureClass:
        """The attempt failure class this cause stands for."""
        return _FAILURE[self.cause]

    def sentence(self) -> str:
        """``summary. fix.`` as one line for people."""
        return f"{self.summary.rstrip('.')}. {self.fix.rstrip('.')}." if self.fix else f"{self.summary.rstrip('.')}."
