"""The table: how the gateways people run say who they are and why they refused.

Two lists, read in order:

* :data:`GATEWAY_SIGNS` — headers, body fields and hosts that show which gateway answered;
* :data:`ERROR_SHAPES` — patterns in an error's words (message, ``type``, ``code``) that say
  what went wrong, whatever the HTTP status: LiteLLM answers a bad key with **400** and an
  unknown model with **400**, OpenRouter a bad model id with 400, Kong a bad key with 401 or
  403, Azure a missing deployment with 404.

Every entry names where the shape comes from (``source``): the gateway's docs or the source
file that writes it, or a recording of the real software in ``tests/transcripts/``. Entries
tied to a gateway are tried first when that gateway is recognised; the generic ones after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nexus_core.diagnosis.model import Cause, Scope

__all__ = ["ERROR_SHAPES", "GATEWAY_SIGNS", "ErrorShape", "GatewaySign"]

LITELLM = "LiteLLM proxy"
VLLM = "vLLM"
LLAMA_CPP = "llama.cpp server"
OLLAMA = "Ollama"
OPENROUTER = "OpenRouter"
AZURE = "Azure OpenAI"
PORTKEY = "Portkey"
CLOUDFLARE = "Cloudflare AI Gateway"
KONG = "Kong"
ENVOY = "Envoy"
NGINX = "nginx"

_LITELLM_SRC = "github BerriAI/litellm litellm/proxy/_types.py ProxyException, proxy/auth/user_api_key_auth.py, proxy/route_llm_request.py; recorded: tests/transcripts/litellm-*.json"
_VLLM_SRC = "github vllm-project/vllm vllm/entrypoints/openai/protocol.py ErrorResponse, serving_engine.py _check_model"
_LLAMA_SRC = "github ggml-org/llama.cpp tools/server/utils.hpp format_error_response (error types), server.cpp"
_OLLAMA_SRC = "github ollama/ollama openai/openai.go NewError; docs/openai.md (OpenAI compatibility)"
_OPENROUTER_SRC = "https://openrouter.ai/docs/api/reference/errors-and-debugging"
_AZURE_SRC = "learn.microsoft.com Azure OpenAI REST reference and Q&A (DeploymentNotFound, 401 invalid subscription key, 429 rate limit)"
_PORTKEY_SRC = "https://portkey.ai/docs/api-reference/inference-api/error-codes, https://portkey.ai/docs/support/common-errors-and-resolutions"
_CLOUDFLARE_SRC = (
    "https://developers.cloudflare.com/ai-gateway/reference/troubleshooting, changelog 2026-10-05 (401 code 2009)"
)
_KONG_SRC = "Kong plugins key-auth/rate-limiting handlers and router (kong/router, kong/plugins/*/handler.lua)"
_ENVOY_SRC = "Envoy router filter local replies (source/common/router/router.cc), access-log response flags UF/UH/UT"
_NGINX_SRC = "nginx ngx_http_special_response.c error pages"
_OPENAI_SRC = (
    "OpenAI API error codes (platform.openai.com/docs/guides/error-codes), the shape OpenAI-compatible servers copy"
)


@dataclass(frozen=True)
class GatewaySign:
    """One way a gateway shows itself: a header (optionally with a value), a body pattern or a host."""

    gateway: str
    source: str
    header: str | None = None
    header_value: re.Pattern[str] | None = None
    body: re.Pattern[str] | None = None
    host: re.Pattern[str] | None = None


@dataclass(frozen=True)
class ErrorShape:
    """One way of saying a cause. ``statuses`` limits it to those codes; ``gateway`` ties it to one gateway."""

    id: str
    cause: Cause
    pattern: re.Pattern[str]
    source: str
    gateway: str | None = None
    statuses: frozenset[int] | None = None
    scope: Scope = "client"
    #: A fix for this exact shape, instead of the cause's usual one ({key}, {who}, {model} are filled in).
    fix: str | None = None


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I | re.S)


GATEWAY_SIGNS: tuple[GatewaySign, ...] = (
    GatewaySign(LITELLM, _LITELLM_SRC, header="x-litellm-version"),
    GatewaySign(LITELLM, _LITELLM_SRC, header="x-litellm-call-id"),
    GatewaySign(
        LITELLM,
        _LITELLM_SRC,
        body=_re(
            r"\blitellm\.[A-Za-z]+Error\b|Invalid proxy server token|/key/generate|Invalid model name passed in model=|no_db_connection"
        ),
    ),
    GatewaySign(PORTKEY, _PORTKEY_SRC, header="x-portkey-trace-id"),
    GatewaySign(PORTKEY, _PORTKEY_SRC, header="x-portkey-provider"),
    GatewaySign(PORTKEY, _PORTKEY_SRC, body=_re(r"Portkey Error|\[portkey\]")),
    GatewaySign(CLOUDFLARE, _CLOUDFLARE_SRC, header="cf-aig-log-id"),
    GatewaySign(CLOUDFLARE, _CLOUDFLARE_SRC, header="cf-aig-cache-status"),
    GatewaySign(CLOUDFLARE, _CLOUDFLARE_SRC, host=_re(r"(^|\.)gateway\.ai\.cloudflare\.com$")),
    GatewaySign(OPENROUTER, _OPENROUTER_SRC, host=_re(r"(^|\.)openrouter\.ai$")),
    GatewaySign(OPENROUTER, _OPENROUTER_SRC, body=_re(r'"provider_name"\s*:|openrouter\.ai/')),
    GatewaySign(AZURE, _AZURE_SRC, host=_re(r"\.openai\.azure\.com$|\.cognitiveservices\.azure\.com$")),
    GatewaySign(AZURE, _AZURE_SRC, header="apim-request-id"),
    GatewaySign(AZURE, _AZURE_SRC, body=_re(r"DeploymentNotFound|invalid subscription key|Azure OpenAI API version")),
    GatewaySign(LLAMA_CPP, _LLAMA_SRC, header="server", header_value=_re(r"^llama\.cpp")),
    GatewaySign(LLAMA_CPP, _LLAMA_SRC, body=_re(r"exceed_context_size_error|\"n_ctx\"\s*:")),
    GatewaySign(OLLAMA, _OLLAMA_SRC, body=_re(r"try pulling it first")),
    GatewaySign(OLLAMA, _OLLAMA_SRC, host=_re(r":11434$")),
    # vLLM's ErrorResponse is a top-level object with "object": "error" (older releases).
    GatewaySign(VLLM, _VLLM_SRC, body=_re(r'^\s*\{\s*"object"\s*:\s*"error"')),
    GatewaySign(KONG, _KONG_SRC, header="x-kong-response-latency"),
    GatewaySign(KONG, _KONG_SRC, header="x-kong-upstream-latency"),
    GatewaySign(KONG, _KONG_SRC, header="server", header_value=_re(r"^kong/")),
    GatewaySign(KONG, _KONG_SRC, header="via", header_value=_re(r"\bkong/")),
    GatewaySign(ENVOY, _ENVOY_SRC, header="server", header_value=_re(r"^(istio-)?envoy")),
    GatewaySign(ENVOY, _ENVOY_SRC, header="x-envoy-upstream-service-time"),
    GatewaySign(NGINX, _NGINX_SRC, header="server", header_value=_re(r"^nginx")),
    GatewaySign(NGINX, _NGINX_SRC, body=_re(r"<center>nginx(/[\d.]+)?</center>")),
)


_S = ErrorShape

ERROR_SHAPES: tuple[ErrorShape, ...] = (
    # ---- LiteLLM proxy: its own refusals come with type auth_error / budget_exceeded; errors of
    # its model provider come back as "litellm.<Kind>Error: <Provider>Exception - …".
    _S(
        "litellm.upstream_auth",
        Cause.UPSTREAM_AUTH,
        _re(r"litellm\.AuthenticationError"),
        _LITELLM_SRC,
        LITELLM,
        scope="upstream",
    ),
    # With a master key and no database, any other key fails the virtual-key lookup: 400 "No connected db."
    _S(
        "litellm.no_db",
        Cause.AUTH_REJECTED,
        _re(r"No connected db|no_db_connection"),
        _LITELLM_SRC,
        LITELLM,
        fix="the key in {key} is not LiteLLM proxy's master key, and the proxy has no database of virtual keys "
        "(its 'No connected db.' means that): use the master key, or a key made by its /key/generate",
    ),
    _S(
        "litellm.no_key",
        Cause.AUTH_MISSING,
        _re(r"No api key passed in|Malformed API Key passed in"),
        _LITELLM_SRC,
        LITELLM,
    ),
    _S(
        "litellm.bad_key",
        Cause.AUTH_REJECTED,
        _re(r"Authentication Error|Invalid proxy server token|\bauth_error\b"),
        _LITELLM_SRC,
        LITELLM,
    ),
    _S(
        "litellm.model_access",
        Cause.FORBIDDEN,
        _re(r"not allowed to access model|can only access models|team not allowed to access"),
        _LITELLM_SRC,
        LITELLM,
    ),
    _S("litellm.budget", Cause.QUOTA_EXHAUSTED, _re(r"ExceededBudget|Budget has been exceeded"), _LITELLM_SRC, LITELLM),
    _S(
        "litellm.invalid_model",
        Cause.MODEL_NOT_FOUND,
        _re(r"Invalid model name passed|model=\S+ not found|no deployment.{0,40}model_name"),
        _LITELLM_SRC,
        LITELLM,
    ),
    # "No deployments available for selected model, Try again in N seconds": every deployment is cooling down.
    _S(
        "litellm.cooldown",
        Cause.RATE_LIMITED,
        _re(r"No (healthy )?deployments? available|litellm\.RateLimitError"),
        _LITELLM_SRC,
        LITELLM,
        scope="upstream",
    ),
    _S(
        "litellm.context",
        Cause.CONTEXT_OVERFLOW,
        _re(r"litellm\.ContextWindowExceededError"),
        _LITELLM_SRC,
        LITELLM,
    ),
    _S(
        "litellm.upstream_down",
        Cause.UPSTREAM_DOWN,
        _re(r"litellm\.(APIConnectionError|ServiceUnavailableError|InternalServerError|Timeout)"),
        _LITELLM_SRC,
        LITELLM,
        scope="upstream",
    ),
    _S(
        "litellm.upstream_missing",
        Cause.MODEL_NOT_FOUND,
        _re(r"litellm\.NotFoundError"),
        _LITELLM_SRC,
        LITELLM,
        scope="upstream",
    ),
    # ---- Azure OpenAI
    _S("azure.deployment", Cause.MODEL_NOT_FOUND, _re(r"DeploymentNotFound"), _AZURE_SRC, AZURE),
    _S(
        "azure.key",
        Cause.AUTH_REJECTED,
        _re(r"invalid subscription key|wrong API endpoint"),
        _AZURE_SRC,
        AZURE,
    ),
    _S("azure.rate", Cause.RATE_LIMITED, _re(r"exceeded (call|token) rate limit"), _AZURE_SRC, AZURE),
    # ---- OpenRouter: 402 is credits; "not a valid model ID"; 503 when no provider can serve the model.
    _S(
        "openrouter.credits",
        Cause.QUOTA_EXHAUSTED,
        _re(r"insufficient credits|more credits"),
        _OPENROUTER_SRC,
        OPENROUTER,
    ),
    _S(
        "openrouter.model",
        Cause.MODEL_NOT_FOUND,
        _re(r"is not a valid model ID|No endpoints found for"),
        _OPENROUTER_SRC,
        OPENROUTER,
    ),
    _S(
        "openrouter.no_provider",
        Cause.UPSTREAM_DOWN,
        _re(r"no available model provider|Provider returned error"),
        _OPENROUTER_SRC,
        OPENROUTER,
        scope="upstream",
    ),
    # ---- Cloudflare AI Gateway: {"success": false, "error": [{"code": 2009, "message": "Unauthorized"}]}
    _S(
        "cloudflare.unauthorized",
        Cause.AUTH_REJECTED,
        _re(r"\b2009\b.{0,40}Unauthorized|Unauthorized.{0,40}\b2009\b"),
        _CLOUDFLARE_SRC,
        CLOUDFLARE,
    ),
    # ---- Portkey: its own errors say "Portkey Error"; 412 is an exhausted budget, 446 a guardrail.
    _S("portkey.budget", Cause.QUOTA_EXHAUSTED, _re(r"budget"), _PORTKEY_SRC, PORTKEY, statuses=frozenset({412})),
    _S("portkey.guardrail", Cause.BAD_REQUEST, _re(r"guardrail"), _PORTKEY_SRC, PORTKEY),
    _S(
        "portkey.headers",
        Cause.AUTH_MISSING,
        _re(r"x-portkey-api-key|missing.{0,40}header"),
        _PORTKEY_SRC,
        PORTKEY,
        statuses=frozenset({400, 401}),
    ),
    # ---- llama.cpp server: typed errors; 503 "Loading model" while the weights load.
    _S(
        "llamacpp.context",
        Cause.CONTEXT_OVERFLOW,
        _re(r"exceed_context_size_error|exceeds the available context size"),
        _LLAMA_SRC,
        LLAMA_CPP,
    ),
    _S("llamacpp.auth", Cause.AUTH_REJECTED, _re(r"authentication_error|Invalid API Key"), _LLAMA_SRC, LLAMA_CPP),
    _S(
        "llamacpp.loading",
        Cause.UPSTREAM_DOWN,
        _re(r"Loading model|unavailable_error"),
        _LLAMA_SRC,
        LLAMA_CPP,
        scope="upstream",
    ),
    # ---- Ollama /v1: 404 'model "x" not found, try pulling it first'
    _S("ollama.model", Cause.MODEL_NOT_FOUND, _re(r"not found, try pulling it first"), _OLLAMA_SRC, OLLAMA),
    # ---- Kong: plugin and router refusals are {"message": "..."}.
    _S(
        "kong.no_key",
        Cause.AUTH_MISSING,
        _re(r"No API key found in request|Unauthorized"),
        _KONG_SRC,
        KONG,
        statuses=frozenset({401}),
    ),
    _S(
        "kong.bad_key", Cause.AUTH_REJECTED, _re(r"Invalid authentication credentials|Invalid API key"), _KONG_SRC, KONG
    ),
    _S("kong.route", Cause.ROUTE_NOT_FOUND, _re(r"no Route matched"), _KONG_SRC, KONG),
    _S("kong.rate", Cause.RATE_LIMITED, _re(r"API rate limit exceeded"), _KONG_SRC, KONG),
    _S(
        "kong.upstream",
        Cause.UPSTREAM_DOWN,
        _re(
            r"invalid response was received from the upstream|upstream server is timing out|failure to get a peer|name resolution failed"
        ),
        _KONG_SRC,
        KONG,
        scope="upstream",
    ),
    # ---- Envoy local replies
    _S(
        "envoy.upstream",
        Cause.UPSTREAM_DOWN,
        _re(r"upstream connect error|no healthy upstream|upstream request timeout|reset before headers"),
        _ENVOY_SRC,
        ENVOY,
        scope="upstream",
    ),
    _S("envoy.rate", Cause.RATE_LIMITED, _re(r"local_rate_limited"), _ENVOY_SRC, ENVOY),
    # ---- generic: what any OpenAI-compatible server says, by meaning. Order matters: the more
    # specific meaning first (a context overflow mentions tokens, a quota mentions limits).
    _S(
        "generic.context",
        Cause.CONTEXT_OVERFLOW,
        _re(
            r"context_length_exceeded|maximum context length|context (window|length|size).{0,40}(exceed|too|limit)"
            r"|(exceed|exceeds|exceeded).{0,60}context|prompt is too long|too many (input )?tokens|reduce the length of the messages"
        ),
        _OPENAI_SRC + "; " + _VLLM_SRC + "; " + _LLAMA_SRC,
    ),
    _S(
        "generic.quota",
        Cause.QUOTA_EXHAUSTED,
        _re(
            r"insufficient_quota|exceeded your current quota|insufficient (credits|balance|funds)|budget (exceeded|has been exceeded)|billing"
        ),
        _OPENAI_SRC + "; " + _OPENROUTER_SRC,
    ),
    _S("generic.quota_status", Cause.QUOTA_EXHAUSTED, _re(r"."), _OPENROUTER_SRC + " (402)", statuses=frozenset({402})),
    _S(
        "generic.model",
        Cause.MODEL_NOT_FOUND,
        _re(
            r"model_not_found|invalid model|unknown model|no such model|not a valid model"
            r"|model\W{0,3}\S{0,120}\W{0,3}(does not exist|not found|is not (available|served|supported))"
            r"|(does not exist|not found)\W{0,20}model"
        ),
        _OPENAI_SRC + "; " + _VLLM_SRC + "; " + _OLLAMA_SRC,
    ),
    _S(
        "generic.rate",
        Cause.RATE_LIMITED,
        _re(
            r"rate[ _-]?limit|too many requests|requests per (min|minute|second)|tokens per min|\bRPM\b|\bTPM\b|throttl"
        ),
        _OPENAI_SRC,
    ),
    _S(
        "generic.no_key",
        Cause.AUTH_MISSING,
        _re(
            r"(no|missing|without)( an?)? (api[ _-]?key|bearer|authorization|credentials)|api key (is )?(missing|required)|not authenticated"
        ),
        _OPENAI_SRC,
    ),
    _S(
        "generic.bad_key",
        Cause.AUTH_REJECTED,
        _re(
            r"invalid_api_key|(invalid|incorrect|wrong|expired|revoked|bad) (api[ _-]?)?(key|token|credentials)"
            r"|api key not valid|authentication|unauthori[sz]ed|invalid authorization"
        ),
        _OPENAI_SRC,
    ),
    _S(
        "generic.forbidden",
        Cause.FORBIDDEN,
        _re(r"permission|not allowed|forbidden|access denied|does not have access"),
        _OPENAI_SRC,
    ),
    _S(
        "generic.upstream",
        Cause.UPSTREAM_DOWN,
        _re(r"bad gateway|service unavailable|gateway time-?out|overloaded|upstream|temporarily unavailable"),
        _NGINX_SRC + "; " + _ENVOY_SRC + "; " + _OPENAI_SRC,
        statuses=frozenset({500, 502, 503, 504, 529}),
        scope="upstream",
    ),
)
