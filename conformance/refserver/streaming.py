"""SSE output of the reference server: chunk construction and byte framing.

Stream faults and variants live here as real code paths (`server.config.has(NAME)`); see faults.py
for what each one breaks and which check must catch it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from . import responses

if TYPE_CHECKING:
    from .app import _Server


# -- load ----------------------------------------------------------------------------------------
class Slot:
    """The fault single-slot-cuts-streams: one generation at a time. Each chat request takes the slot
    (`take`); the stream that held it stops mid-way, which the client reads as a cut connection."""

    PACE_S = 0.01  # between pieces, so that a stream is still in progress when the next request comes

    def __init__(self) -> None:
        self._holder: asyncio.Event | None = None

    def take(self) -> asyncio.Event:
        if self._holder is not None:
            self._holder.set()
        self._holder = asyncio.Event()
        return self._holder


# -- bytes ---------------------------------------------------------------------------------------
def _newline(server: _Server) -> str:
    return "\r\n" if server.config.has("sse-crlf") else "\n"


def encode_event(server: _Server, data: str) -> bytes:
    has = server.config.has
    prefix = "" if has("stream-no-data-prefix") else "data:" if has("sse-no-space") else "data: "
    end = _newline(server) * (1 if has("stream-single-newline") else 2)
    return (prefix + data + end).encode()


def _event_data(server: _Server, payload: dict[str, Any]) -> list[str]:
    datas = [json.dumps(body) for body in responses.stream_chunks(payload, server.patches)]
    if server.config.has("stream-truncated-json") and len(datas) > 2:
        middle = len(datas) // 2
        datas[middle] = datas[middle][: len(datas[middle]) // 2]
    return datas


def _pieces(server: _Server, payload: dict[str, Any]) -> list[bytes]:
    has = server.config.has
    newline = _newline(server)
    pieces: list[bytes] = []
    if has("sse-retry-field"):
        pieces.append(f"retry: 3000{newline}{newline}".encode())
    datas = _event_data(server, payload)
    for data in datas:
        if has("sse-keepalive"):
            pieces.append(f": keep-alive{newline}{newline}".encode())
        pieces.append(encode_event(server, data))
    if not has("stream-no-done"):
        pieces.append(encode_event(server, "[DONE]"))
    if has("stream-data-after-done") and datas:
        pieces.append(encode_event(server, json.dumps({**json.loads(datas[0]), "choices": []})))
    return pieces


async def stream_bytes(server: _Server, payload: dict[str, Any], cut: asyncio.Event | None = None
                       ) -> AsyncIterator[bytes]:
    for piece in _pieces(server, payload):
        if cut is not None:  # single-slot-cuts-streams
            await asyncio.sleep(Slot.PACE_S)
            if cut.is_set():
                raise ConnectionAbortedError("single-slot-cuts-streams: another request took the slot")
        if server.config.has("sse-small-writes"):
            for start in range(0, len(piece), 7):
                yield piece[start:start + 7]
                await asyncio.sleep(0)
        else:
            yield piece
