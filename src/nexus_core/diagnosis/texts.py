"""The words of a diagnosis: one summary and one fix per cause, fitted to what the caller knows."""

from __future__ import annotations

from nexus_core.diagnosis.model import Cause, DiagnosisContext

__all__ = ["GENERIC_KEY", "fix_for", "summary_for"]

GENERIC_KEY = "the variable your opencode.json names in apiKey (e.g. CUSTOM_API_KEY)"


def _code(status: int | None) -> str:
    if status is None:
        return ""
    return " (in the stream)" if status == 200 else f" ({status})"


def summary_for(
    cause: Cause,
    gateway: str | None,
    status: int | None,
    ctx: DiagnosisContext,
    retry_after: str | None,
    words: str,
) -> str:
    """One line: the gateway first, then what it means, then the gateway's own words."""
    code = _code(status)
    model = ctx.model or "the model"
    what = {
        Cause.AUTH_MISSING: f"the gateway wants a key{code} and none is sent",
        Cause.AUTH_REJECTED: f"the gateway rejects the key{code}",
        Cause.FORBIDDEN: f"the gateway refuses this key{code}: it is valid but not allowed here",
        Cause.MODEL_NOT_FOUND: f"the gateway does not serve {model}{code}",
        Cause.RATE_LIMITED: f"the gateway rate-limits this key{code}"
        + (f" (Retry-After: {retry_after})" if retry_after else ""),
        Cause.QUOTA_EXHAUSTED: f"the key's quota or credit is used up{code}",
        Cause.CONTEXT_OVERFLOW: f"the request is longer than {model}'s context window{code}",
        Cause.UPSTREAM_AUTH: f"the gateway's own key for its model provider is rejected upstream{code}",
        Cause.UPSTREAM_DOWN: f"the gateway is up but its upstream fails{code}",
        Cause.ROUTE_NOT_FOUND: f"{ctx.url or 'the URL'} is not found{code}: wrong base path",
        Cause.BAD_REQUEST: f"the gateway refuses the request as sent{code}",
        Cause.SERVER_ERROR: f"the gateway fails with {status}" if status else "the gateway fails",
        Cause.UNKNOWN: f"unexpected answer{code} from {ctx.url or 'the gateway'}",
    }[cause]
    said = f': "{words}"' if words else ""
    return f"{gateway}: {what}{said}" if gateway else f"{what}{said}"


def _route_fix(ctx: DiagnosisContext) -> str:
    base = ctx.base_url.rstrip("/")
    if base and not base.endswith("/v1"):
        return f"set baseURL to {base}/v1 (OpenAI-compatible gateways serve under /v1)"
    return "baseURL must be the API root that serves /models and /chat/completions"


def fix_for(cause: Cause, gateway: str | None, ctx: DiagnosisContext) -> str:
    """What to do about ``cause``, naming the real knob when the context knows it."""
    key = ctx.key_source or GENERIC_KEY
    who = gateway or "the gateway"
    model = ctx.model or "the model"
    return {
        Cause.AUTH_MISSING: f"set {key}: OpenCode sends no Authorization header without it",
        Cause.AUTH_REJECTED: f"the key in {key} is wrong or expired for {who}: replace it",
        Cause.FORBIDDEN: "ask the gateway's owner to grant the key access to the models "
        "(or use the key meant for this gateway)",
        Cause.MODEL_NOT_FOUND: f"{model} is not a model {who} serves: declare in opencode.json only models "
        "that the gateway's /models lists (nexus-agents doctor shows them), or pick another model",
        Cause.RATE_LIMITED: "wait and retry, or raise the key's quota; OpenCode retries 429 silently, "
        "so runs look hung meanwhile",
        Cause.QUOTA_EXHAUSTED: f"add credit or raise the key's budget on {who}: waiting will not help",
        Cause.CONTEXT_OVERFLOW: f"shorten the task or start a new session, or use a model with a larger context; "
        f"keep limit.context of {model} in opencode.json within what {who} serves",
        Cause.UPSTREAM_AUTH: f"your key is fine: {who}'s own credentials for its model provider are rejected; "
        "tell the gateway's owner, or use another model",
        Cause.UPSTREAM_DOWN: f"{who} or the model provider behind it is failing: check its logs, try another model; "
        "OpenCode retries 5xx forever, so runs would hang",
        Cause.ROUTE_NOT_FOUND: _route_fix(ctx),
        Cause.BAD_REQUEST: f"{who} refused the request as sent: check its logs and the model's settings in opencode.json",
        Cause.SERVER_ERROR: "the gateway or its upstream is broken: check its logs; OpenCode retries 5xx forever, "
        "so runs would hang",
        Cause.UNKNOWN: "check baseURL: it should be the gateway's OpenAI-compatible API root",
    }[cause]
