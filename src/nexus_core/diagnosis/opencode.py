"""Diagnose an OpenCode ``error`` event: the gateway's answer it carries, read by meaning."""

from __future__ import annotations

from nexus_core.diagnosis.classify import classify
from nexus_core.diagnosis.model import Cause, Diagnosis, DiagnosisContext
from nexus_core.opencode.events import ErrorEvent

__all__ = ["diagnose_error"]


def diagnose_error(event: ErrorEvent, context: DiagnosisContext | None = None) -> Diagnosis | None:
    """What an OpenCode ``error`` event means, from its status, message and the gateway's body and headers.

    None when nothing in it has a meaning the table knows, or only its status code does and no
    gateway showed itself (the caller's status rules then apply: a bare 404 from OpenCode's chat
    request is the model).
    """
    diagnosis = classify(
        event.status_code,
        event.response_headers,
        event.response_body or "",
        message=event.message,
        context=context,
    )
    if diagnosis.cause is Cause.UNKNOWN or (diagnosis.rule.startswith("status.") and diagnosis.gateway is None):
        return None
    return diagnosis
