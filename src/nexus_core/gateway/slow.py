"""A reference gateway that streams its answer slowly, so a client can see pieces before the end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11

from nexus_core.gateway.server import ReferenceGateway

__all__ = ["SlowChunkGateway"]


class SlowChunkGateway(ReferenceGateway):
    """:class:`ReferenceGateway` that waits ``chunk_delay_s`` before each streamed SSE chunk.

    ``sent_at`` keeps the ``time.monotonic()`` of every streamed chunk it sent, so a test can
    compare when a client showed text with when the gateway sent it.
    """

    def __init__(self, *args: Any, chunk_delay_s: float = 0.3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunk_delay_s = chunk_delay_s
        self.sent_at: list[float] = []

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Event) -> None:  # type: ignore[override]
        if isinstance(event, h11.Data) and bytes(event.data).startswith(b"data: {"):
            await asyncio.sleep(self.chunk_delay_s)
            await ReferenceGateway._send(conn, writer, event)
            if len(self.sent_at) < 100_000:
                self.sent_at.append(time.monotonic())
            return
        await ReferenceGateway._send(conn, writer, event)
