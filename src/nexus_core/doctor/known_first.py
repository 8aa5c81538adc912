"""Say a known cause first: every failing check of a provider with one leads with it."""

from __future__ import annotations

from collections.abc import Mapping

from nexus_core.diagnosis.known import KnownCause
from nexus_core.doctor.report import Check

__all__ = ["say_known_first"]


def _provider_of(check: Check) -> str | None:
    parts = check.id.split(".")
    if parts[0] in ("gateway", "models") and len(parts) > 1:
        return parts[1]
    if parts[:2] == ["probe", "chat"] and len(parts) > 2:
        return parts[2]
    model = check.data.get("model") if check.id == "probe.opencode_run" else None
    return model.split("/", 1)[0] if isinstance(model, str) and "/" in model else None


def say_known_first(checks: list[Check], known: Mapping[str, KnownCause]) -> list[Check]:
    """``checks`` with each failing check of a provider that has a known cause saying that cause first.

    The check that is the cause itself (``provider.<pid>.api_key`` / ``base_url``) already says it.
    """
    out = []
    for check in checks:
        cause = known.get(_provider_of(check) or "")
        if cause is None or check.status != "fail":
            out.append(check)
            continue
        out.append(
            check.model_copy(
                update={
                    "summary": f"{cause.summary}; the gateway's answer: {check.summary}",
                    "fix": cause.fix,
                    "data": {**check.data, "known_cause": cause.kind},
                }
            )
        )
    return out
