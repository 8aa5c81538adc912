"""The classification table: real gateways' error shapes, classified by meaning and named.

Two sources: the wire transcripts recorded from a real LiteLLM proxy (tests/transcripts), and
the shapes other gateways document (each case cites where it comes from in shapes.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus_core.diagnosis import Cause, DiagnosisContext, classify, error_words, recognise
from nexus_core.diagnosis.shapes import ERROR_SHAPES, GATEWAY_SIGNS
from nexus_core.gateway.transcripts import load_transcript
from nexus_core.opencode.events import FailureClass

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.json"))
FAILING = [p for p in TRANSCRIPTS if load_transcript(p).expect.get("cause") != "ok"]


def test_every_shape_and_sign_names_its_source() -> None:
    assert all(shape.source for shape in ERROR_SHAPES)
    assert all(sign.source for sign in GATEWAY_SIGNS)
    assert len({shape.id for shape in ERROR_SHAPES}) == len(ERROR_SHAPES)


def test_transcripts_say_where_they_come_from() -> None:
    assert len(FAILING) >= 6
    for path in TRANSCRIPTS:
        transcript = load_transcript(path)
        assert "litellm[proxy]" in transcript.source["software"] and transcript.source["recorded"], path
        assert "sk-litellm-master" not in path.read_text()


@pytest.mark.parametrize("path", FAILING, ids=[p.stem for p in FAILING])
def test_recorded_litellm_answers_are_classified_by_meaning(path: Path) -> None:
    transcript = load_transcript(path)
    expect = transcript.expect
    chat = next(e for e in transcript.exchanges if e.request.path.endswith("/chat/completions"))
    ctx = DiagnosisContext(auth_sent=chat.request.auth != "none", model=chat.request.model, key_source="CUSTOM_API_KEY")
    d = classify(chat.response.status, chat.response.headers, chat.response.body, context=ctx)
    assert d.cause == expect["cause"], d
    assert d.failure == FailureClass(expect["failure"])
    assert d.fix and d.summary and d.source
    if expect["cause"] != "auth_missing":
        # Every LiteLLM answer but the bare 500 shows which gateway spoke.
        assert d.gateway == "LiteLLM proxy" and d.summary.startswith("LiteLLM proxy: "), d
    if d.cause in (Cause.AUTH_MISSING, Cause.AUTH_REJECTED):
        assert "CUSTOM_API_KEY" in d.fix and "baseURL" not in d.fix
        assert "model" not in d.summary.lower() or "model" in chat.response.body.lower()


def test_a_400_bad_key_is_auth_not_the_model_or_the_url() -> None:
    transcript = load_transcript(Path(__file__).parent / "transcripts" / "litellm-bad-key.json")
    models = next(e for e in transcript.exchanges if e.request.path.endswith("/models"))
    d = classify(models.response.status, models.response.headers, models.response.body)
    assert d.cause is Cause.AUTH_REJECTED and d.status == 400
    assert "master key" in d.fix


def test_upstream_key_rejection_is_not_the_users_key() -> None:
    transcript = load_transcript(Path(__file__).parent / "transcripts" / "litellm-upstream-auth.json")
    chat = transcript.exchanges[-1].response
    d = classify(chat.status, chat.headers, chat.body, context=DiagnosisContext(auth_sent=True))
    assert d.cause is Cause.UPSTREAM_AUTH and d.scope == "upstream"
    assert "your key is fine" in d.fix


# (gateway expected, status, headers, body, cause): shapes from the gateways' docs and source.
DOCUMENTED = [
    (
        "vLLM",
        404,
        {},
        '{"object":"error","message":"The model `gpt-x` does not exist.","type":"NotFoundError","param":null,"code":404}',
        Cause.MODEL_NOT_FOUND,
    ),
    (
        "vLLM",
        400,
        {},
        '{"object":"error","message":"This model\'s maximum context length is 4096 tokens. However, you requested 5000 tokens","type":"BadRequestError","param":null,"code":400}',
        Cause.CONTEXT_OVERFLOW,
    ),
    (
        "llama.cpp server",
        401,
        {"server": "llama.cpp"},
        '{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}',
        Cause.AUTH_REJECTED,
    ),
    (
        "llama.cpp server",
        400,
        {},
        '{"error":{"code":400,"message":"request (4476 tokens) exceeds the available context size (4096 tokens)","type":"exceed_context_size_error","n_prompt_tokens":4476,"n_ctx":4096}}',
        Cause.CONTEXT_OVERFLOW,
    ),
    (
        "llama.cpp server",
        503,
        {"server": "llama.cpp"},
        '{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}',
        Cause.UPSTREAM_DOWN,
    ),
    (
        "Ollama",
        404,
        {},
        '{"error":{"message":"model \\"llama9\\" not found, try pulling it first","type":"api_error","param":null,"code":null}}',
        Cause.MODEL_NOT_FOUND,
    ),
    (
        "OpenRouter",
        402,
        {},
        '{"error":{"code":402,"message":"Insufficient credits. Add more using https://openrouter.ai/credits"}}',
        Cause.QUOTA_EXHAUSTED,
    ),
    (
        "OpenRouter",
        400,
        {},
        '{"error":{"code":400,"message":"foo/bar is not a valid model ID","metadata":{"provider_name":null}}}',
        Cause.MODEL_NOT_FOUND,
    ),
    (
        "OpenRouter",
        401,
        {},
        '{"error":{"code":401,"message":"No auth credentials found","metadata":{"provider_name":null}}}',
        Cause.AUTH_REJECTED,
    ),
    (
        "Azure OpenAI",
        404,
        {"apim-request-id": "x"},
        '{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}',
        Cause.MODEL_NOT_FOUND,
    ),
    (
        "Azure OpenAI",
        401,
        {"apim-request-id": "x"},
        '{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}',
        Cause.AUTH_REJECTED,
    ),
    (
        "Azure OpenAI",
        429,
        {"apim-request-id": "x", "retry-after": "7"},
        '{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-02-01 have exceeded token rate limit of your current OpenAI S0 pricing tier."}}',
        Cause.RATE_LIMITED,
    ),
    (
        "Portkey",
        412,
        {"x-portkey-trace-id": "t"},
        '{"status":"failure","message":"Portkey Error: budget exhausted for this virtual key"}',
        Cause.QUOTA_EXHAUSTED,
    ),
    (
        "Cloudflare AI Gateway",
        401,
        {"cf-aig-log-id": "l", "server": "cloudflare"},
        '{"success":false,"result":[],"messages":[],"error":[{"code":2009,"message":"Unauthorized"}]}',
        Cause.AUTH_REJECTED,
    ),
    ("Kong", 401, {"server": "kong/3.6.1"}, '{"message":"No API key found in request"}', Cause.AUTH_MISSING),
    (
        "Kong",
        401,
        {"x-kong-response-latency": "1"},
        '{"message":"Invalid authentication credentials"}',
        Cause.AUTH_REJECTED,
    ),
    ("Kong", 404, {"server": "kong/3.6.1"}, '{"message":"no Route matched with those values"}', Cause.ROUTE_NOT_FOUND),
    ("Kong", 429, {"x-kong-response-latency": "0"}, '{"message":"API rate limit exceeded"}', Cause.RATE_LIMITED),
    (
        "Envoy",
        503,
        {"server": "envoy"},
        "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        Cause.UPSTREAM_DOWN,
    ),
    ("Envoy", 503, {"server": "istio-envoy"}, "no healthy upstream", Cause.UPSTREAM_DOWN),
    (
        "nginx",
        504,
        {"server": "nginx/1.25.3"},
        "<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway Time-out</h1></center><hr><center>nginx/1.25.3</center></body></html>",
        Cause.UPSTREAM_DOWN,
    ),
    (
        "nginx",
        413,
        {"server": "nginx"},
        "<html><head><title>413 Request Entity Too Large</title></head><body><center>nginx</center></body></html>",
        Cause.BAD_REQUEST,
    ),
]


@pytest.mark.parametrize(
    ("gateway", "status", "headers", "body", "cause"),
    DOCUMENTED,
    ids=[f"{d[0]}-{d[1]}-{d[4].value}" for d in DOCUMENTED],
)
def test_documented_shapes(gateway: str, status: int, headers: dict[str, str], body: str, cause: Cause) -> None:
    d = classify(status, headers, body, context=DiagnosisContext(auth_sent=True, base_url="https://gw.example.com/v1"))
    assert (d.gateway, d.cause) == (gateway, cause), d
    assert d.summary.startswith(f"{gateway}: ")


def test_status_alone_is_the_last_resort() -> None:
    assert classify(401, {}, "").cause is Cause.AUTH_REJECTED
    assert classify(401, {}, "", context=DiagnosisContext(auth_sent=False)).cause is Cause.AUTH_MISSING
    assert classify(404, {}, '{"error": {"message": "Not found."}}').cause is Cause.ROUTE_NOT_FOUND
    assert classify(502, {}, "").cause is Cause.UPSTREAM_DOWN
    # A 404 that names the model is about the model, not the URL.
    ctx = DiagnosisContext(model="claude-x")
    assert classify(404, {}, '{"error": {"message": "claude-x: no"}}', context=ctx).cause is Cause.MODEL_NOT_FOUND


def test_recognise_by_host_and_words() -> None:
    assert recognise(url="https://openrouter.ai/api/v1") == "OpenRouter"
    assert recognise(url="https://my.openai.azure.com/openai") == "Azure OpenAI"
    assert recognise(url="http://localhost:11434/v1") == "Ollama"
    assert recognise({"x-litellm-version": "1.0"}) == "LiteLLM proxy"
    assert recognise({"server": "uvicorn"}, '{"error": {"message": "x"}}') is None
    assert error_words('{"error": [{"code": 2009, "message": "Unauthorized"}]}') == "Unauthorized"
    assert error_words("<html><body><h1>502 Bad Gateway</h1></body></html>") == "502 Bad Gateway"
