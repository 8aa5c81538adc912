"""The loopback reference gateway: the OpenAI wire shapes, every fault, and the real OpenCode against it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import opencode_path
from nexus_core.config.loader import load_config
from nexus_core.errors import NexusError
from nexus_core.gateway import Fault, ReferenceGateway, ToolCall, parse_fault_spec, write_opencode_config

KEY = "sk-test-gw-0123456789abcdef"


def chat(
    content: str = "hello gateway",
    *,
    model: str = "claude-sonnet-4-5",
    stream: bool = False,
    usage: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}],
        "stream": stream,
    }
    if stream and usage:
        body["stream_options"] = {"include_usage": True}
    body.update(extra)
    return body


async def read_sse(response: httpx.Response) -> list[str]:
    return [line[len("data: ") :] async for line in response.aiter_lines() if line.startswith("data: ")]


@pytest.fixture
async def gw():
    async with ReferenceGateway() as gateway:
        yield gateway


@pytest.fixture
async def client(gw: ReferenceGateway):
    async with httpx.AsyncClient(base_url=gw.base_url, timeout=5) as http:
        yield http


# -- the happy path: OpenAI shapes ---------------------------------------------------------


async def test_models_list_has_the_openai_shape(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    response = await client.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["claude-opus-4-5", "claude-sonnet-4-5"]
    assert all(m["object"] == "model" for m in body["data"])
    assert gw.base_url.startswith("http://127.0.0.1:") and gw.base_url.endswith("/v1")


async def test_non_streamed_reply_is_derived_from_the_last_user_message(client: httpx.AsyncClient) -> None:
    prompt = "Summarise   the\nchangelog of release 4.2 for the team, in three bullet points please, thanks a lot"
    response = await client.post("/chat/completions", json=chat(prompt))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == "Reply to: " + " ".join(prompt.split())[:60]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


async def test_streamed_reply_has_chunks_usage_and_done(client: httpx.AsyncClient) -> None:
    async with client.stream("POST", "/chat/completions", json=chat("stream this answer", stream=True)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = await read_sse(response)
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Reply to: stream this answer"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 1
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] == [
        "stop"
    ]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


async def test_streamed_reply_without_include_usage_has_no_usage_chunk(client: httpx.AsyncClient) -> None:
    async with client.stream("POST", "/chat/completions", json=chat("no usage", stream=True, usage=False)) as response:
        lines = await read_sse(response)
    assert lines[-1] == "[DONE]"
    assert not any("usage" in json.loads(line) for line in lines[:-1])


async def test_concurrent_requests_get_their_own_replies(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(client.post("/chat/completions", json=chat(f"task number {n}")) for n in range(8))
    )
    assert [r.json()["choices"][0]["message"]["content"] for r in responses] == [
        f"Reply to: task number {n}" for n in range(8)
    ]


async def test_unknown_model_gets_an_openai_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat(model="gpt-nope"))
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and "gpt-nope" in error["message"]


async def test_bad_requests_get_clear_openai_errors(client: httpx.AsyncClient) -> None:
    not_json = await client.post("/chat/completions", content=b"{oops", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
    no_messages = await client.post("/chat/completions", json={"model": "claude-opus-4-5"})
    assert no_messages.status_code == 400
    unknown_path = await client.get("/embeddings")
    assert unknown_path.status_code == 404 and unknown_path.json()["error"]["message"] == "Unknown path /v1/embeddings."
    wrong_method = await client.get("/chat/completions")
    assert wrong_method.status_code == 405


async def test_models_served_are_configurable() -> None:
    async with ReferenceGateway(models=["acme-large"]) as gw, httpx.AsyncClient(base_url=gw.base_url) as http:
        assert [m["id"] for m in (await http.get("/models")).json()["data"]] == ["acme-large"]
        assert (await http.post("/chat/completions", json=chat(model="acme-large"))).status_code == 200
        assert (await http.post("/chat/completions", json=chat(model="claude-opus-4-5"))).status_code == 404


async def test_malformed_http_gets_400_and_expect_100_continue_is_honoured(gw: ReferenceGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    writer.close()
    body = json.dumps(chat("after continue")).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: %d\r\n\r\n"
        % len(body)
    )
    assert await asyncio.wait_for(reader.readline(), 5) == b"HTTP/1.1 100 \r\n"
    assert await asyncio.wait_for(reader.readline(), 5) == b"\r\n"
    writer.write(body)
    assert await asyncio.wait_for(reader.readline(), 5) == b"HTTP/1.1 200 OK\r\n"
    writer.close()
    assert gw.requests[-1].last_user_text == "after continue"


# -- api key -------------------------------------------------------------------------------


async def test_api_key_is_required_and_never_recorded() -> None:
    async with ReferenceGateway(api_key=KEY) as gw, httpx.AsyncClient(base_url=gw.base_url) as http:
        missing = await http.post("/chat/completions", json=chat())
        wrong = await http.post(
            "/chat/completions", json=chat(), headers={"Authorization": "Bearer sk-wrong-key-00000000"}
        )
        right = await http.post(
            "/chat/completions",
            json=chat(),
            headers={"Authorization": f"Bearer {KEY}", "X-Api-Key": KEY, "Cookie": "sso=abc123"},
        )
        models_without_key = await http.get("/models")
    assert (missing.status_code, wrong.status_code, right.status_code, models_without_key.status_code) == (
        401,
        401,
        200,
        401,
    )
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert [r.bearer for r in gw.requests] == ["absent", "other", "expected", "absent"]
    recorded = json.dumps([r.model_dump() for r in gw.requests])
    assert KEY not in recorded and "sk-wrong-key-00000000" not in recorded
    assert gw.requests[2].headers["authorization"] == "Bearer [redacted]"
    assert gw.requests[2].headers["x-api-key"] == gw.requests[2].headers["cookie"] == "[redacted]"


# -- scripts -------------------------------------------------------------------------------


async def test_scripted_text_reply_matches_a_substring(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.script(match="weather", reply="It is sunny.")
    scripted = await client.post("/chat/completions", json=chat("what is the weather like?"))
    other = await client.post("/chat/completions", json=chat("something else"))
    assert scripted.json()["choices"][0]["message"]["content"] == "It is sunny."
    assert other.json()["choices"][0]["message"]["content"] == "Reply to: something else"


async def test_tool_call_script_then_follow_up_gets_text(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.script(
        match="list files",
        tool_calls=[ToolCall(name="bash", arguments={"command": "ls", "description": "list"})],
        then="Two files.",
    )
    async with client.stream("POST", "/chat/completions", json=chat("please list files", stream=True)) as response:
        chunks = [json.loads(line) for line in (await read_sse(response))[:-1]]
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert len(calls) == 1
    assert calls[0]["function"]["name"] == "bash"
    assert json.loads(calls[0]["function"]["arguments"]) == {"command": "ls", "description": "list"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] == [
        "tool_calls"
    ]
    follow_up = chat("please list files")
    follow_up["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": calls[0]["id"], "type": "function", "function": calls[0]["function"]}],
        },
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "a.txt\nb.txt"},
    ]
    answer = (await client.post("/chat/completions", json=follow_up)).json()["choices"][0]
    assert answer["finish_reason"] == "stop" and answer["message"]["content"] == "Two files."


async def test_tool_call_follow_up_without_then_quotes_the_tool_result(
    client: httpx.AsyncClient, gw: ReferenceGateway
) -> None:
    gw.script(match="read it", tool_calls=[("read", {"filePath": "/x"})])
    first = (await client.post("/chat/completions", json=chat("read it"))).json()["choices"][0]
    assert first["finish_reason"] == "tool_calls"
    call = first["message"]["tool_calls"][0]
    follow_up = chat("read it")
    follow_up["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "line one\nline two"},
    ]
    answer = (await client.post("/chat/completions", json=follow_up)).json()["choices"][0]["message"]["content"]
    assert answer == "Tool read returned: line one line two"


async def test_scripted_reasoning_streams_before_the_text(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.script(match="ponder", reply="Yes.", reasoning="Let me weigh both options carefully.")
    async with client.stream("POST", "/chat/completions", json=chat("ponder this", stream=True)) as response:
        deltas = [
            json.loads(line)["choices"][0]["delta"]
            for line in (await read_sse(response))[:-1]
            if json.loads(line)["choices"]
        ]
    kinds = [k for d in deltas for k in d if k in ("reasoning_content", "content") and d[k]]
    assert kinds == sorted(kinds, key=lambda k: k == "content") and "reasoning_content" in kinds
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Let me weigh both options carefully."
    plain = (await client.post("/chat/completions", json=chat("ponder this"))).json()["choices"][0]["message"]
    assert (plain["reasoning_content"], plain["content"]) == ("Let me weigh both options carefully.", "Yes.")


async def test_scripted_length_finish(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.script(match="too long", reply="cut at the lim", finish="length")
    async with client.stream("POST", "/chat/completions", json=chat("too long", stream=True)) as response:
        chunks = [json.loads(line) for line in (await read_sse(response))[:-1]]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] == [
        "length"
    ]


async def test_script_times_limits_it_to_the_next_runs(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.script(match="again", reply="scripted", times=1)
    replies = [
        (await client.post("/chat/completions", json=chat("again"))).json()["choices"][0]["message"]["content"]
        for _ in range(2)
    ]
    assert replies == ["scripted", "Reply to: again"]


async def test_a_used_up_script_still_answers_its_follow_up(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.script(match="once", tool_calls=[("bash", {"command": "true"})], then="finished", times=1)
    call = (await client.post("/chat/completions", json=chat("once"))).json()["choices"][0]["message"]["tool_calls"][0]
    follow_up = chat("once")
    follow_up["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": ""},
    ]
    assert (await client.post("/chat/completions", json=follow_up)).json()["choices"][0]["message"][
        "content"
    ] == "finished"
    assert (await client.post("/chat/completions", json=chat("once"))).json()["choices"][0]["message"][
        "content"
    ] == "Reply to: once"


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "status", "code"),
    [
        ("401", 401, "invalid_api_key"),
        ("403", 403, "permission_denied"),
        ("404", 404, "not_found"),
        ("status=500", 500, "internal_error"),
        ("status=503", 503, "overloaded"),
    ],
)
async def test_status_faults_send_openai_error_bodies(
    client: httpx.AsyncClient, gw: ReferenceGateway, spec: str, status: int, code: str
) -> None:
    gw.add_fault(spec)
    response = await client.post("/chat/completions", json=chat(stream=True))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_429_carries_retry_after(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("status=429,retry_after=7")
    response = await client.post("/chat/completions", json=chat())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


async def test_502_is_a_proxy_html_page(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("502")
    response = await client.post("/chat/completions", json=chat())
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html") and "Bad Gateway" in response.text


async def test_html_login_page_with_200(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("html")
    response = await client.post("/chat/completions", json=chat(stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html") and "Sign in" in response.text
    assert gw.requests[-1].outcome == "html"


async def test_drop_closes_without_a_response(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/chat/completions", json=chat())
    assert gw.requests[-1].outcome == "drop"


async def test_cut_stream_ends_mid_answer(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.script(match="long", reply="one two three four five six seven eight nine ten eleven twelve")
    gw.add_fault("cut")
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream("POST", "/chat/completions", json=chat("long", stream=True)) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                received.append(line)
    data = [line[6:] for line in received if line.startswith("data: ")]
    assert data and "[DONE]" not in data
    text = "".join(
        json.loads(d)["choices"][0]["delta"].get("content", "")
        for d in data
        if d.endswith("}") and json.loads(d)["choices"]
    )
    assert text and text != "one two three four five six seven eight nine ten eleven twelve"


async def test_malformed_sse_is_not_json(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("malformed-sse")
    async with client.stream("POST", "/chat/completions", json=chat(stream=True)) as response:
        lines = await read_sse(response)
    assert lines[-1] == "[DONE]"
    for line in lines[:-1]:
        with pytest.raises(ValueError):
            json.loads(line)


async def test_silent_accepts_and_never_answers(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("silent")
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/chat/completions", json=chat(), timeout=0.5)
    assert gw.requests[-1].outcome == "silent"


async def test_stop_ends_silent_connections_promptly() -> None:
    gw = await ReferenceGateway(faults=["silent"]).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    await writer.drain()
    await gw.wait_for_requests(1, kind=None, timeout=5)
    started = time.monotonic()
    await gw.aclose()
    assert time.monotonic() - started < 2
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()


async def test_latency_delays_the_first_byte(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("latency=0.4")
    started = time.monotonic()
    response = await client.post("/chat/completions", json=chat())
    assert response.status_code == 200 and time.monotonic() - started >= 0.4


async def test_latency_stacks_with_another_fault(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("latency=0.3")
    gw.add_fault("500")
    started = time.monotonic()
    response = await client.post("/chat/completions", json=chat())
    assert response.status_code == 500 and time.monotonic() - started >= 0.3


async def test_bad_models_list(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("bad-models,times=1")
    gw.add_fault("bad-models=shape,times=1")
    not_json = await client.get("/models")
    assert not_json.status_code == 200
    with pytest.raises(ValueError):
        not_json.json()
    wrong_shape = (await client.get("/models")).json()
    assert "data" not in wrong_shape
    assert [r.outcome for r in gw.requests] == ["bad-models", "bad-models"]
    assert (await client.get("/models")).json()["data"]
    assert (await client.post("/chat/completions", json=chat())).status_code == 200


async def test_fault_for_one_model_spares_the_others(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("500,model=claude-opus-4-5")
    assert (await client.post("/chat/completions", json=chat(model="claude-opus-4-5"))).status_code == 500
    assert (await client.post("/chat/completions", json=chat(model="claude-sonnet-4-5"))).status_code == 200
    assert (await client.get("/models")).status_code == 200


async def test_fault_for_one_path(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("403,path=/models")
    assert (await client.get("/models")).status_code == 403
    assert (await client.post("/chat/completions", json=chat())).status_code == 200


async def test_fault_for_the_next_n_requests_then_recovery(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("429,times=2")
    statuses = [(await client.post("/chat/completions", json=chat())).status_code for _ in range(3)]
    assert statuses == [429, 429, 200]
    assert gw.faults == []


async def test_faults_can_be_cleared_while_running(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    gw.add_fault("500")
    assert (await client.post("/chat/completions", json=chat())).status_code == 500
    gw.clear_faults()
    assert (await client.post("/chat/completions", json=chat())).status_code == 200


async def test_title_requests_are_spared_unless_asked(client: httpx.AsyncClient, gw: ReferenceGateway) -> None:
    title = {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "You are a title generator."},
            {"role": "user", "content": "Generate a title for this conversation:\n"},
            {"role": "user", "content": "fix the bug"},
        ],
    }
    gw.add_fault("500,times=1")
    first = await client.post("/chat/completions", json=title)
    assert first.status_code == 200 and first.json()["choices"][0]["message"]["content"] == "Gateway test session"
    assert gw.requests[-1].kind == "title"
    assert (await client.post("/chat/completions", json=chat())).status_code == 500
    gw.add_fault("500,include_title=true")
    assert (await client.post("/chat/completions", json=title)).status_code == 500


# -- the record ----------------------------------------------------------------------------


async def test_record_keeps_a_big_prompt_intact_and_is_bounded() -> None:
    prompt = "--help " + "x" * 200_000 + " ünïcødé"
    async with ReferenceGateway(record_limit=3) as gw, httpx.AsyncClient(base_url=gw.base_url) as http:
        await http.post(
            "/chat/completions",
            json=chat(prompt, stream=True, tools=[{"type": "function", "function": {"name": "read"}}]),
        )
        record = gw.requests[-1]
        assert record.last_user_text == prompt
        assert (record.path, record.model, record.stream, record.include_usage, record.tools) == (
            "/v1/chat/completions",
            "claude-sonnet-4-5",
            True,
            True,
            ["read"],
        )
        for n in range(4):
            await http.post("/chat/completions", json=chat(f"n{n}"))
        assert [r.last_user_text for r in gw.requests] == ["n1", "n2", "n3"]
        gw.clear_requests()
        assert gw.requests == []


async def test_body_over_the_limit_gets_413() -> None:
    async with ReferenceGateway(max_body_bytes=1000) as gw, httpx.AsyncClient(base_url=gw.base_url) as http:
        response = await http.post("/chat/completions", json=chat("y" * 5000))
        assert response.status_code == 413


# -- thread mode, ports --------------------------------------------------------------------


def test_thread_mode_serves_sync_code_and_releases_the_port() -> None:
    with ReferenceGateway() as gw:
        gw.script(match="ping", reply="pong")
        reply = httpx.post(f"{gw.base_url}/chat/completions", json=chat("ping"), timeout=5).json()
        assert reply["choices"][0]["message"]["content"] == "pong"
        assert [r.kind for r in gw.wait_for_requests_blocking(1, timeout=5)] == ["chat"]
        port = gw.port
        with pytest.raises(RuntimeError, match="already running"):
            gw.start_in_thread()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(NexusError, match=r"cannot listen on 127\.0\.0\.1"):
            ReferenceGateway(port=taken.getsockname()[1]).start_in_thread()


# -- fault specs and the OpenCode config ---------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("429", Fault(kind="status", code=429)),
        ("status=429,retry_after=5,times=2", Fault(kind="status", code=429, retry_after=5, times=2)),
        ("latency=1.5,model=claude-opus-4-5", Fault(kind="latency", seconds=1.5, model="claude-opus-4-5")),
        ("drop,path=/chat/completions", Fault(kind="drop", path="/chat/completions")),
        ("bad-models=shape", Fault(kind="bad-models", shape=True)),
        ("silent,include_title=true", Fault(kind="silent", include_title=True)),
    ],
)
def test_fault_specs_parse(spec: str, expected: Fault) -> None:
    assert parse_fault_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "explode", "latency", "status=200", "drop=3", "429,colour=red", "429,times=0"])
def test_bad_fault_specs_are_one_clear_sentence(spec: str) -> None:
    with pytest.raises(NexusError) as caught:
        parse_fault_spec(spec)
    assert "is not valid" in str(caught.value) and "KIND" in str(caught.value)


def test_written_config_is_what_opencode_config_loader_reads(
    tmp_path: Path, hermetic_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in hermetic_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GW_TEST_KEY", KEY)
    project = tmp_path / "project"
    path = write_opencode_config(project, "http://127.0.0.1:9/v1", api_key_env="GW_TEST_KEY")
    assert path == project / "opencode.json"
    assert KEY not in path.read_text()
    provider = load_config(project).data["provider"]["custom"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"]["baseURL"] == "http://127.0.0.1:9/v1"
    assert set(provider["models"]) == {"claude-opus-4-5", "claude-sonnet-4-5"}
    assert provider["models"]["claude-opus-4-5"]["limit"] == {"context": 200000, "output": 65536}
    assert json.loads(path.read_text())["small_model"] == "custom/claude-sonnet-4-5"
    with pytest.raises(NexusError):
        write_opencode_config(project, "http://127.0.0.1:9/v1", api_key_env="not a var")


# -- the CLI -------------------------------------------------------------------------------


def test_cli_serves_until_interrupted(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    exe = shutil.which("nexus-agents")
    assert exe
    env = {**hermetic_env, "GW_CLI_KEY": KEY}
    process = subprocess.Popen(
        [
            exe,
            "gateway",
            "--json",
            "--print-config",
            "--model",
            "acme-large",
            "--fault",
            "429,times=1",
            "--api-key-env",
            "GW_CLI_KEY",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        facts = json.loads(process.stdout.readline())
        assert facts["models"] == ["acme-large"] and facts["api_key_env"] == "GW_CLI_KEY"
        assert facts["opencode_config"]["provider"]["custom"]["options"]["apiKey"] == "{env:GW_CLI_KEY}"
        auth = {"Authorization": f"Bearer {KEY}"}
        assert httpx.get(f"{facts['base_url']}/models", headers=auth, timeout=5).status_code == 429
        assert [m["id"] for m in httpx.get(f"{facts['base_url']}/models", headers=auth, timeout=5).json()["data"]] == [
            "acme-large"
        ]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "Traceback" not in err and KEY not in out + err
    assert "GET /v1/models (models) -> 429" in err


def test_cli_rejects_a_bad_fault_and_a_missing_key(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    exe = shutil.which("nexus-agents")
    assert exe
    bad = subprocess.run(
        [exe, "gateway", "--fault", "explode"],
        env=hermetic_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "not a fault kind" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run(
        [exe, "gateway", "--api-key-env", "GW_UNSET_KEY"],
        env=hermetic_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2 and "GW_UNSET_KEY is not set" in missing.stderr


# -- the real OpenCode 1.2.15 against the gateway -----------------------------------------


async def start_opencode(
    project: Path, env: dict[str, str], prompt: str, *args: str, model: str = "custom/claude-sonnet-4-5"
) -> asyncio.subprocess.Process:
    """``opencode run --format json`` in its own process group, the prompt written to stdin."""
    process = await asyncio.create_subprocess_exec(
        opencode_path(),
        "run",
        "--format",
        "json",
        "--model",
        model,
        *args,
        cwd=project,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    assert process.stdin is not None
    process.stdin.write(prompt.encode())
    await process.stdin.drain()
    process.stdin.close()
    return process


def end_process_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the launcher and the real binary it spawned."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def run_opencode(
    project: Path,
    env: dict[str, str],
    prompt: str,
    *args: str,
    model: str = "custom/claude-sonnet-4-5",
    timeout: float = 60,
) -> tuple[int, list[dict[str, Any]]]:
    """Run OpenCode to the end; its exit code and its JSON events."""
    process = await start_opencode(project, env, prompt, *args, model=model)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        pytest.fail(f"opencode run did not finish within {timeout:g}s")
    finally:
        end_process_group(process)
        await process.wait()
    assert process.returncode is not None
    return process.returncode, [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.mark.opencode
async def test_opencode_completes_a_scripted_run(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url)
    gw.script(match="say the password", reply="The password is swordfish.")
    code, events = await run_opencode(project, hermetic_env, "Please say the password")
    assert code == 0
    assert [e["part"]["text"] for e in events if e["type"] == "text"] == ["The password is swordfish."]
    assert events[-1]["type"] == "step_finish" and events[-1]["part"]["reason"] == "stop"
    chats = [r for r in gw.requests if r.kind == "chat"]
    assert len(chats) == 1 and chats[0].stream and chats[0].include_usage and "read" in chats[0].tools


@pytest.mark.opencode
async def test_opencode_title_request_stays_on_the_gateway(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url)
    # OpenCode does not wait for the title; slowing the agent's turn lets the title request land first.
    gw.add_fault("latency=1,path=/chat/completions")
    code, events = await run_opencode(project, hermetic_env, "name this session")
    assert code == 0 and any(e["type"] == "text" for e in events)
    titles = [r for r in gw.requests if r.kind == "title"]
    assert len(titles) == 1 and titles[0].model == "claude-sonnet-4-5" and titles[0].outcome == "200"
    assert titles[0].tools == [] and titles[0].last_user_text == "\nname this session"


@pytest.mark.opencode
async def test_opencode_delivers_a_200kb_prompt_and_a_flag_like_prompt_intact(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url)
    big = "Review this:\n" + "".join(f"line {n:06d} " + "y" * 40 + "\n" for n in range(4000))
    assert len(big) > 200_000
    for prompt in (big, "--help"):
        code, events = await run_opencode(project, hermetic_env, prompt)
        assert code == 0 and any(e["type"] == "text" for e in events)
        last = [r for r in gw.requests if r.kind == "chat"][-1]
        # OpenCode joins its (empty) message arguments and stdin with a newline.
        assert last.last_user_text == "\n" + prompt


@pytest.mark.opencode
async def test_opencode_runs_a_scripted_tool_call_and_sends_its_result_back(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url)
    notes = project / "notes.txt"
    notes.write_text("the secret word is pelican\n")
    gw.script(match="read the notes", tool_calls=[("read", {"filePath": str(notes)})], then="The word is pelican.")
    code, events = await run_opencode(project, hermetic_env, "Please read the notes")
    assert code == 0
    tools = [e["part"] for e in events if e["type"] == "tool_use"]
    assert len(tools) == 1 and tools[0]["tool"] == "read" and tools[0]["state"]["status"] == "completed"
    assert "pelican" in tools[0]["state"]["output"]
    assert [e["part"]["reason"] for e in events if e["type"] == "step_finish"] == ["tool-calls", "stop"]
    assert [e["part"]["text"] for e in events if e["type"] == "text"] == ["The word is pelican."]
    follow_up = [r for r in gw.requests if r.kind == "chat"][-1]
    tool_messages = [m for m in follow_up.messages if m.get("role") == "tool"]
    assert len(tool_messages) == 1 and "pelican" in json.dumps(tool_messages[0])
    assert tool_messages[0]["tool_call_id"] == tools[0]["callID"]


@pytest.mark.opencode
@pytest.mark.parametrize(
    ("fault", "model", "status"),
    [
        ("401", "custom/claude-sonnet-4-5", 401),
        (None, "custom/claude-nope", 404),
    ],
)
async def test_opencode_reports_auth_and_unknown_model_as_an_error_event(
    project: Path,
    hermetic_env: dict[str, str],
    fault: str | None,
    model: str,
    status: int,
) -> None:
    async with ReferenceGateway(faults=[fault] if fault else []) as gw:
        write_opencode_config(project, gw.base_url, models=["claude-opus-4-5", "claude-sonnet-4-5", "claude-nope"])
        code, events = await run_opencode(project, hermetic_env, "hello", model=model)
    assert code == 0  # OpenCode exits 0: the failure is in the events
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert len(errors) == 1 and errors[0]["name"] == "APIError"
    assert errors[0]["data"]["statusCode"] == status and errors[0]["data"]["isRetryable"] is False


@pytest.mark.opencode
async def test_opencode_retries_a_429_silently_then_succeeds(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url)
    gw.add_fault("status=429,retry_after=0,times=2")
    code, events = await run_opencode(project, hermetic_env, "rate limited")
    assert code == 0
    assert [e["type"] for e in events if e["type"] in ("error", "text")] == ["text"]
    assert [r.outcome for r in gw.requests if r.kind == "chat"] == ["429", "429", "200"]


@pytest.mark.opencode
async def test_opencode_api_key_from_env_reaches_the_gateway(project: Path, hermetic_env: dict[str, str]) -> None:
    async with ReferenceGateway(api_key=KEY) as gw:
        write_opencode_config(project, gw.base_url, api_key_env="GW_TEST_KEY")
        code, events = await run_opencode(project, {**hermetic_env, "GW_TEST_KEY": KEY}, "with a key")
    assert code == 0 and [e["part"]["text"] for e in events if e["type"] == "text"] == ["Reply to: with a key"]
    assert {r.bearer for r in gw.requests} == {"expected"}


@pytest.mark.opencode
async def test_opencode_sends_no_key_when_the_env_var_is_unset(project: Path, hermetic_env: dict[str, str]) -> None:
    async with ReferenceGateway(api_key=KEY) as gw:
        write_opencode_config(project, gw.base_url, api_key_env="GW_UNSET_KEY")
        code, events = await run_opencode(project, hermetic_env, "without a key")
    assert code == 0
    assert [e["error"]["data"]["statusCode"] for e in events if e["type"] == "error"] == [401]
    assert [r.bearer for r in gw.requests if r.kind == "chat"] == ["absent"]


@pytest.mark.opencode
async def test_opencode_shows_scripted_reasoning_with_thinking(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url)
    gw.script(match="think first", reply="Answer: 42.", reasoning="Six times seven is forty-two.")
    code, events = await run_opencode(project, hermetic_env, "think first", "--thinking")
    assert code == 0
    assert [(e["type"], e["part"]["text"]) for e in events if e["type"] in ("reasoning", "text")] == [
        ("reasoning", "Six times seven is forty-two."),
        ("text", "Answer: 42."),
    ]


@pytest.mark.opencode
async def test_opencode_ends_on_a_length_finish(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url)
    gw.script(match="go on forever", reply="This answer stops in the mid", finish="length")
    code, events = await run_opencode(project, hermetic_env, "go on forever")
    assert code == 0
    assert [e["part"]["text"] for e in events if e["type"] == "text"] == ["This answer stops in the mid"]
    assert [e["part"]["reason"] for e in events if e["type"] == "step_finish"] == ["length"]
    assert len([r for r in gw.requests if r.kind == "chat"]) == 1


@pytest.mark.opencode
async def test_opencode_fails_on_malformed_sse_with_an_error_event(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url)
    gw.add_fault("malformed-sse")
    code, events = await run_opencode(project, hermetic_env, "hello")
    assert code == 0
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert len(errors) == 1 and "JSON parsing failed" in errors[0]["data"]["message"]
    assert not any(e["type"] == "text" for e in events)


@pytest.mark.opencode
async def test_opencode_retries_a_dropped_connection_then_succeeds(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url)
    gw.add_fault("drop,times=1")
    code, events = await run_opencode(project, hermetic_env, "after a drop")
    assert code == 0
    assert [e["part"]["text"] for e in events if e["type"] == "text"] == ["Reply to: after a drop"]
    assert not any(e["type"] == "error" for e in events)
    assert [r.outcome for r in gw.requests if r.kind == "chat"] == ["drop", "200"]


@pytest.mark.opencode
async def test_opencode_gives_up_on_a_silent_gateway_only_at_the_provider_timeout(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url, timeout_ms=1500)
    gw.add_fault("silent")
    started = time.monotonic()
    code, events = await run_opencode(project, hermetic_env, "anyone there?")
    assert code == 0 and time.monotonic() - started >= 1.5
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert len(errors) == 1 and "timed out" in errors[0]["data"]["message"]
    assert [r.outcome for r in gw.requests if r.kind == "chat"] == ["silent"]


@pytest.mark.opencode
async def test_opencode_loops_on_empty_steps_on_an_html_login_page(
    gw: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    write_opencode_config(project, gw.base_url)
    gw.add_fault("html")
    process = await start_opencode(project, hermetic_env, "behind a proxy")
    try:
        await gw.wait_for_requests(10, timeout=30)
        assert process.returncode is None
    finally:
        end_process_group(process)
        out, _ = await process.communicate()
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    # Empty steps, one after another: each finishes with reason "unknown" and no tokens.
    assert {e["type"] for e in events} == {"step_start", "step_finish"}
    finishes = [e["part"] for e in events if e["type"] == "step_finish"]
    assert len(finishes) >= 5
    assert all(f["reason"] == "unknown" and f["tokens"]["output"] == 0 for f in finishes)
