"""How fast the reference gateway answers, so that tests and the demo never wait on it.

* start + stop in a background thread (goal <= 0.25 s);
* one non-streamed chat request on a keep-alive connection, median (goal <= 10 ms);
* a streamed reply with usage, first byte and whole stream (goal <= 20 ms);
* a 200 KB prompt, posted, parsed and recorded (goal <= 50 ms);
* 8 concurrent clients (goal >= 200 requests a second).

The client runs in the same process (as in the tests), so the figures include its share of the CPU.
``python -m bench.gateway_bench``
"""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.common import Measure, emit, median
from nexus_core.gateway import ReferenceGateway

RUNS = 200


def _chat(content: str, stream: bool = False) -> dict[str, object]:
    body: dict[str, object] = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _start_stop() -> Measure:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        ReferenceGateway().start_in_thread().stop()
        samples.append(time.perf_counter() - started)
    value = median(samples)
    return Measure(
        "gateway start + stop (thread)",
        value * 1000,
        "ms",
        "<= 250 ms",
        value <= 0.25,
        tuple(s * 1000 for s in samples),
    )


async def _requests() -> list[Measure]:
    measures = []
    async with ReferenceGateway() as gw, httpx.AsyncClient(base_url=gw.base_url, timeout=10) as http:
        await http.post("/chat/completions", json=_chat("warm up"))
        samples = []
        for n in range(RUNS):
            started = time.perf_counter()
            response = await http.post("/chat/completions", json=_chat(f"request {n}"))
            response.raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
        measures.append(
            Measure(
                "non-streamed chat request", median(samples), "ms", "<= 10 ms", median(samples) <= 10, tuple(samples)
            )
        )

        gw.script(match="long", reply=" ".join(f"word{n}" for n in range(300)))
        first, whole = [], []
        for _ in range(50):
            started = time.perf_counter()
            async with http.stream("POST", "/chat/completions", json=_chat("long", stream=True)) as response:
                got_first = False
                async for _line in response.aiter_lines():
                    if not got_first:
                        first.append((time.perf_counter() - started) * 1000)
                        got_first = True
            whole.append((time.perf_counter() - started) * 1000)
        measures.append(
            Measure("streamed reply, first byte", median(first), "ms", "<= 20 ms", median(first) <= 20, tuple(first))
        )
        measures.append(
            Measure(
                "streamed reply (2.4 KB, 100 chunks), whole",
                median(whole),
                "ms",
                "<= 20 ms",
                median(whole) <= 20,
                tuple(whole),
            )
        )

        prompt = "z" * 200_000
        big = []
        for _ in range(20):
            started = time.perf_counter()
            (await http.post("/chat/completions", json=_chat(prompt))).raise_for_status()
            big.append((time.perf_counter() - started) * 1000)
        assert gw.requests[-1].last_user_text == prompt
        measures.append(
            Measure("200 KB prompt round trip", median(big), "ms", "<= 50 ms", median(big) <= 50, tuple(big))
        )

    async with ReferenceGateway() as gw:

        async def client(n: int) -> None:
            async with httpx.AsyncClient(base_url=gw.base_url, timeout=10) as http:
                for m in range(50):
                    (await http.post("/chat/completions", json=_chat(f"client {n} request {m}"))).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(8)))
        rate = 400 / (time.perf_counter() - started)
        measures.append(Measure("8 concurrent clients", rate, "req/s", ">= 200 req/s", rate >= 200))
    return measures


def measure() -> list[Measure]:
    return [_start_stop(), *asyncio.run(_requests())]


if __name__ == "__main__":
    emit(measure())
