"""Turn one gateway answer (status, headers, body) into a :class:`~nexus_core.diagnosis.model.Diagnosis`.

:func:`classify` reads the answer the way a person would: who answered (:func:`recognise`),
what the error's own words mean (the shapes of :mod:`nexus_core.diagnosis.shapes`), and only
then the status code. The verdict names the gateway first ("LiteLLM proxy: …") and carries a
fix that fits the cause and the caller's context (where the key comes from, the baseURL, the
model).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from nexus_core.diagnosis.model import Cause, Diagnosis, DiagnosisContext
from nexus_core.diagnosis.shapes import ERROR_SHAPES, GATEWAY_SIGNS, ErrorShape
from nexus_core.diagnosis.texts import GENERIC_KEY, fix_for, summary_for

__all__ = ["classify", "error_words", "recognise"]

_MESSAGE_CHARS = 240
_SCAN_CHARS = 16 * 1024
_TAGS = re.compile(r"<[^>]+>")

Headers = Mapping[str, str] | Iterable[tuple[str, str]] | None


def _header_map(headers: Headers) -> dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(k).lower(): str(v) for k, v in items}


def _host_port(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or ''}:{parts.port}" if parts.port else parts.hostname or ""
    except ValueError:
        return ""


def recognise(headers: Headers = None, body: str = "", url: str = "") -> str | None:
    """The gateway that shows itself in these headers, this body or this URL's host, or None."""
    found = _header_map(headers)
    host = _host_port(url)
    text = body[:_SCAN_CHARS]
    for sign in GATEWAY_SIGNS:
        if sign.header is not None:
            value = found.get(sign.header)
            if value is not None and (sign.header_value is None or sign.header_value.search(value)):
                return sign.gateway
        elif (sign.body is not None and text and sign.body.search(text)) or (
            sign.host is not None and host and sign.host.search(host)
        ):
            return sign.gateway
    return None


def _strings(value: Any, depth: int = 0) -> list[str]:
    if depth > 3:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [str(value)]
    if isinstance(value, list):
        return [s for item in value[:5] for s in _strings(item, depth + 1)]
    if isinstance(value, dict):
        return [
            s
            for key in ("message", "type", "code", "detail", "error", "status")
            for s in _strings(value.get(key), depth + 1)
        ]
    return []


def error_words(body: str) -> str:
    """The error's own message from a body: OpenAI's ``error.message``, ``{"message": …}``, ``detail``,
    Cloudflare's ``error: [{code, message}]``, or the text of an HTML page. Empty when there is none."""
    stripped = body.strip()
    if not stripped:
        return ""
    try:
        payload = json.loads(stripped)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        for candidate in (error, payload.get("detail"), payload.get("message")):
            if isinstance(candidate, dict) and isinstance(candidate.get("message"), str):
                return candidate["message"]
            if isinstance(candidate, list) and candidate and isinstance(candidate[0], dict):
                first = candidate[0]
                return str(first.get("message") or first)
            if isinstance(candidate, str) and candidate:
                return candidate
        return ""
    if isinstance(payload, str):
        return payload
    text = _TAGS.sub(" ", stripped) if stripped.startswith("<") else stripped
    return " ".join(text.split())


def _scan_text(body: str, message: str) -> str:
    try:
        payload = json.loads(body) if body.strip()[:1] in ("{", "[") else None
    except ValueError:
        payload = None
    fields = " ".join(_strings(payload)) if payload is not None else ""
    return " ".join(x for x in (message, fields, body[:_SCAN_CHARS]) if x)


def _match(gateway: str | None, status: int | None, text: str) -> ErrorShape | None:
    ordered = [s for s in ERROR_SHAPES if s.gateway is not None and s.gateway == gateway]
    ordered += [s for s in ERROR_SHAPES if s.gateway is None]
    for shape in ordered:
        if shape.statuses is not None and status not in shape.statuses:
            continue
        if shape.pattern.search(text):
            return shape
    return None


def _by_status(status: int | None) -> Cause:
    if status is None:
        return Cause.UNKNOWN
    if status == 401:
        return Cause.AUTH_REJECTED
    if status == 402:
        return Cause.QUOTA_EXHAUSTED
    if status == 403:
        return Cause.FORBIDDEN
    if status == 404:
        return Cause.ROUTE_NOT_FOUND
    if status == 429:
        return Cause.RATE_LIMITED
    if status in (408, 502, 503, 504, 529):
        return Cause.UPSTREAM_DOWN
    if status >= 500:
        return Cause.SERVER_ERROR
    if 400 <= status < 500:
        return Cause.BAD_REQUEST
    return Cause.UNKNOWN


_UNEXPLAINED = frozenset({Cause.SERVER_ERROR, Cause.BAD_REQUEST, Cause.UNKNOWN, Cause.FORBIDDEN})


def _shape_fix(shape: ErrorShape | None, gateway: str | None, ctx: DiagnosisContext) -> str:
    if shape is None or shape.fix is None:
        return ""
    return shape.fix.format(
        key=ctx.key_source or GENERIC_KEY, who=gateway or "the gateway", model=ctx.model or "the model"
    )


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:_MESSAGE_CHARS] + ("…" if len(flat) > _MESSAGE_CHARS else "")


def classify(
    status: int | None,
    headers: Headers = None,
    body: str = "",
    *,
    message: str = "",
    context: DiagnosisContext | None = None,
) -> Diagnosis:
    """What this answer means. ``message`` is an error text already extracted (OpenCode's), if any.

    ``status`` is None when only words are known (an error inside a 200 stream: pass 200).
    """
    ctx = context or DiagnosisContext()
    words = message or error_words(body)
    gateway = recognise(headers, body or message, ctx.url or ctx.base_url)
    text = _scan_text(body, words)
    shape = _match(gateway, status, text)
    if gateway is None and shape is not None and shape.gateway is not None:
        gateway = shape.gateway
    cause = shape.cause if shape is not None else _by_status(status)
    summary = ""
    if cause is Cause.AUTH_REJECTED and ctx.auth_sent is False:
        cause = Cause.AUTH_MISSING
    elif shape is None and ctx.auth_sent is False and cause in _UNEXPLAINED:
        # Some gateways (LiteLLM proxy among them) answer a request without a key with a bare 500 or 400:
        # the missing key is the one cause known for certain, so it is named, not the gateway.
        cause = Cause.AUTH_MISSING
        summary = f"no key is sent, and the gateway answers {status} without saying why: it most likely wants one"
    if cause is Cause.ROUTE_NOT_FOUND and ctx.model and ctx.model in words and status == 404:
        cause = Cause.MODEL_NOT_FOUND
    retry_after = _header_map(headers).get("retry-after")
    scope = shape.scope if shape is not None else ("upstream" if cause is Cause.UPSTREAM_DOWN else "client")
    return Diagnosis(
        cause=cause,
        summary=summary or summary_for(cause, gateway, status, ctx, retry_after, _excerpt(words)),
        fix=_shape_fix(shape, gateway, ctx) or fix_for(cause, gateway, ctx),
        status=status,
        gateway=gateway,
        scope=scope,
        message=_excerpt(words),
        retry_after=retry_after,
        rule=shape.id if shape is not None else f"status.{status}",
        source=shape.source if shape is not None else "HTTP status (RFC 9110) when no shape matched",
    )
