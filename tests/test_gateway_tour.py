"""The demo's tour script on the reference gateway: a long slow stream, a tool call, a model that is down."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from nexus_core.gateway.tour import FAILING_MODEL, TourGateway, install_tour, long_answer


async def chat(gateway: TourGateway, model: str, text: str) -> tuple[int, list[dict], list[float]]:
    """A streamed chat request: the status, the decoded chunks and when each arrived."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": text}]}
    chunks: list[dict] = []
    times: list[float] = []
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "POST", f"{gateway.base_url}/chat/completions", json=body, headers={"Authorization": "Bearer k"}
        ) as response,
    ):
        if response.status_code != 200:
            return response.status_code, [], []
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                chunks.append(json.loads(line.removeprefix("data: ")))
                times.append(time.monotonic())
    return 200, chunks, times


def content(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_the_tour_streams_long_calls_a_tool_and_fails_one_model(tmp_path: Path) -> None:
    async with TourGateway(api_key="k") as gateway:
        install_tour(gateway, tmp_path)
        assert (tmp_path / "README.md").read_text().startswith("# demo-project")

        status, chunks, times = await chat(gateway, "claude-sonnet-4-5", "explain the parser fix")
        assert status == 200 and content(chunks) == long_answer()
        assert len(long_answer().split()) > 300
        assert times[-1] - times[0] > 3.0, "the long answer streams for several seconds"

        status, chunks, _ = await chat(gateway, "claude-sonnet-4-5", "read the README")
        calls = [
            c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"][0]["delta"].get("tool_calls")
        ]
        assert calls and calls[0]["function"]["name"] == "read"
        assert json.loads(calls[0]["function"]["arguments"]) == {"filePath": str(tmp_path / "README.md")}

        status, _, _ = await chat(gateway, FAILING_MODEL, "anything")
        assert status == 404

        status, chunks, _ = await chat(gateway, "claude-sonnet-4-5", "say hello")
        assert content(chunks) == "Reply to: say hello"
