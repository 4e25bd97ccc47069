"""SSE output of the reference server: chunk construction and byte framing.

Stream faults and variants live here as real code paths (`server.config.has(NAME)`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import _Server


def chunks(server: _Server, payload: dict[str, Any]) -> list[dict[str, Any]]:
    choices = server._choices(payload)
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
    null_usage = include_usage or server.config.has("usage-null-every-chunk")

    def chunk(choice_list: list[dict[str, Any]]) -> dict[str, Any]:
        body = server._envelope(payload, "chat.completion.chunk", completion_id)
        body["choices"] = choice_list
        if null_usage:
            body["usage"] = None
        return body

    chunks = []
    for choice in choices:
        i = choice["index"]
        if "tool_calls" in choice:
            call = choice["tool_calls"][0]
            args = call["function"]["arguments"]
            first = {"index": 0, "id": call["id"], "type": "function",
                     "function": {"name": call["function"]["name"], "arguments": ""}}
            chunks.append(chunk([{"index": i, "delta": {"role": "assistant", "content": None,
                                                        "tool_calls": [first]},
                                  "logprobs": None, "finish_reason": None}]))
            step = max(1, len(args) // 3 + 1)
            for start in range(0, len(args), step):
                piece = {"index": 0, "function": {"arguments": args[start:start + step]}}
                chunks.append(chunk([{"index": i, "delta": {"tool_calls": [piece]}, "logprobs": None,
                                      "finish_reason": None}]))
        else:
            chunks.append(chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                                  "logprobs": None, "finish_reason": None}]))
            for token in choice["tokens"]:
                chunks.append(chunk([{"index": i, "delta": {"content": token}, "logprobs": None,
                                      "finish_reason": None}]))
        chunks.append(chunk([{"index": i, "delta": {}, "logprobs": None,
                              "finish_reason": choice["finish_reason"]}]))
    if include_usage:
        usage_chunk = chunk([])
        usage_chunk["usage"] = server._usage(payload, choices)
        chunks.append(usage_chunk)
    if server.config.has("extra-fields"):
        for body in chunks:
            body["x_chunk_seq"] = 1
    return chunks

def encode_event(server: _Server, data: str) -> bytes:
    newline = "\r\n" if server.config.has("sse-crlf") else "\n"
    prefix = "data:" if server.config.has("sse-no-space") else "data: "
    return (prefix + data + newline + newline).encode()

async def stream_bytes(server: _Server, payload: dict[str, Any]) -> AsyncIterator[bytes]:
    pieces: list[bytes] = []
    newline = "\r\n" if server.config.has("sse-crlf") else "\n"
    if server.config.has("sse-retry-field"):
        pieces.append(f"retry: 3000{newline}{newline}".encode())
    for body in chunks(server, payload):
        if server.config.has("sse-keepalive"):
            pieces.append(f": keep-alive{newline}{newline}".encode())
        pieces.append(encode_event(server, json.dumps(body)))
    if not server.config.has("stream-no-done"):
        pieces.append(encode_event(server, "[DONE]"))
    for piece in pieces:
        if server.config.has("sse-small-writes"):
            for start in range(0, len(piece), 7):
                yield piece[start:start + 7]
                await asyncio.sleep(0)
        else:
            yield piece


