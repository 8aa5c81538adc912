"""The doctor's per-provider checks: its baseURL, its key, and the gateway's ``/models`` verdict."""

from __future__ import annotations

import re

from nexus_core.config.gateways import GatewayProvider
from nexus_core.doctor.probe import ModelsProbe, ProbeCause
from nexus_core.doctor.report import Check

__all__ = ["check_base_url", "check_key", "gateway_check"]

_OPENAI_RESPONSES = "@ai-sdk/openai"
_OPENAI_COMPATIBLE = "@ai-sdk/openai-compatible"


def check_base_url(gw: GatewayProvider) -> Check:
    check_id = f"provider.{gw.provider_id}.base_url"
    title = f"{gw.provider_id}: baseURL"
    where = gw.base_url_origin or "the config"
    if not gw.base_url:
        if gw.base_url_var:
            return Check(
                id=check_id,
                title=title,
                status="fail",
                cause="base_url_unset",
                summary=f"baseURL comes from {{env:{gw.base_url_var}}} and {gw.base_url_var} is not set",
                fix=f"export {gw.base_url_var}=https://your-gateway.example.com/v1",
                data={"source": where},
            )
        return Check(
            id=check_id,
            title=title,
            status="fail",
            cause="base_url_missing",
            summary=f"provider {gw.provider_id} has no options.baseURL",
            fix=f"set provider.{gw.provider_id}.options.baseURL in {where} to the gateway's API root (…/v1)",
            data={"source": where},
        )
    if not re.match(r"^https?://[^/\s]+", gw.base_url):
        return Check(
            id=check_id,
            title=title,
            status="fail",
            cause="invalid_url",
            summary=f"baseURL {gw.base_url!r} is not an http(s) URL",
            fix=f"set provider.{gw.provider_id}.options.baseURL in {where} to e.g. https://gateway.example.com/v1",
            data={"source": where, "base_url": gw.base_url},
        )
    via = f" (from {{env:{gw.base_url_var}}})" if gw.base_url_var else ""
    if gw.npm == _OPENAI_RESPONSES and gw.provider_id != "openai":
        # OpenCode builds such a provider with the OpenAI SDK's default model: the Responses API, not chat completions.
        return Check(
            id=check_id,
            title=title,
            status="warn",
            cause="responses_api",
            summary=f"{gw.base_url}{via}, but npm {_OPENAI_RESPONSES} makes OpenCode call {gw.base_url.rstrip('/')}/responses, not /chat/completions",
            detail="most OpenAI-compatible gateways serve only /chat/completions; OpenCode then fails with 'Unknown path …/responses' (404)",
            fix=f"set provider.{gw.provider_id}.npm to {_OPENAI_COMPATIBLE} in {where} (keep {_OPENAI_RESPONSES} only if the gateway serves the Responses API)",
            data={"source": where, "base_url": gw.base_url, "npm": gw.npm},
        )
    return Check(
        id=check_id,
        title=title,
        status="ok",
        summary=f"{gw.base_url}{via}, set in {where}",
        data={"source": where, "base_url": gw.base_url},
    )


def check_key(gw: GatewayProvider, probe: ModelsProbe | None) -> Check:
    check_id = f"provider.{gw.provider_id}.api_key"
    title = f"{gw.provider_id}: API key"
    data = {"state": gw.key_state, "source": gw.key_label}
    rejected = probe is not None and probe.cause in (ProbeCause.UNAUTHORIZED, ProbeCause.FORBIDDEN)
    accepted_without = probe is not None and probe.ok and not probe.auth_sent
    if gw.key_state == "set":
        if rejected:
            return Check(
                id=check_id,
                title=title,
                status="fail",
                cause="key_rejected",
                summary=f"set, from {gw.key_label}, but the gateway rejects it ({probe.status_code if probe else '?'})",
                fix=f"replace the key in {gw.key_fix_target} with a valid one for {gw.base_url}",
                data=data,
            )
        return Check(id=check_id, title=title, status="ok", summary=f"set, from {gw.key_label}", data=data)
    if gw.key_state == "unset":
        sentence = f"NOT SET, from {gw.key_label}: OpenCode sends no Authorization header"
        fix = f"set {gw.key_fix_target}" + (
            f" (export {gw.key_label[5:-1]}=…)" if gw.key_label.startswith("{env:") else ""
        )
        if accepted_without:
            return Check(
                id=check_id,
                title=title,
                status="warn",
                cause="key_unset",
                summary=sentence + "; the gateway answers without one",
                fix=fix,
                data=data,
            )
        return Check(id=check_id, title=title, status="fail", cause="key_unset", summary=sentence, fix=fix, data=data)
    if rejected:
        return Check(
            id=check_id,
            title=title,
            status="fail",
            cause="key_missing",
            summary="no key configured, and the gateway requires one",
            fix=f"set {gw.key_fix_target} and export the variable",
            data=data,
        )
    if accepted_without:
        return Check(
            id=check_id, title=title, status="ok", summary="no key configured; the gateway needs none", data=data
        )
    return Check(
        id=check_id,
        title=title,
        status="warn",
        cause="key_missing",
        summary="no key configured: OpenCode sends no Authorization header",
        fix=f"if the gateway needs a key, set {gw.key_fix_target}",
        data=data,
    )


def gateway_check(gw: GatewayProvider, probe: ModelsProbe) -> Check:
    t = probe.timings
    phases = ", ".join(
        f"{name} {value:.0f} ms"
        for name, value in (
            ("DNS", t.dns_ms),
            ("connect", t.connect_ms),
            ("TLS", t.tls_ms),
            ("first byte", t.first_byte_ms),
            ("total", t.total_ms),
        )
        if value is not None
    )
    data = {
        "url": probe.url,
        "status_code": probe.status_code,
        "auth_sent": probe.auth_sent,
        "timings": t.model_dump(),
        "models": probe.models,
        "retry_after": probe.retry_after,
        "gateway": probe.gateway,
        "diagnosis": probe.diagnosis,
    }
    detail = "\n".join(
        x for x in (f"timings: {phases}" if phases else "", f"answer: {probe.detail}" if probe.detail else "") if x
    )
    if probe.ok:
        return Check(
            id=f"gateway.{gw.provider_id}",
            title=f"{gw.provider_id}: gateway reachable",
            status="ok",
            summary=f"{probe.summary} ({phases})",
            detail=detail,
            duration_ms=t.total_ms or 0.0,
            data=data,
        )
    return Check(
        id=f"gateway.{gw.provider_id}",
        title=f"{gw.provider_id}: gateway reachable",
        status="fail",
        cause=probe.cause.value,
        summary=probe.summary,
        detail=detail,
        fix=probe.fix,
        duration_ms=t.total_ms or 0.0,
        data=data,
    )
