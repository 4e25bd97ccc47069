"""SSE output of the reference server: chunk construction and byte framing.

Stream faults and variants live here as real code paths (`server.config.has(NAME)`); see faults.py
for what each one breaks and which check must catch it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from . import responses
from .hooks import Choice

if TYPE_CHECKING:
    from .app import _Server

Make = Callable[[list[dict[str, Any]]], dict[str, Any]]


# -- chunks --------------------------------------------------------------------------------------
def chunks(server: _Server, payload: dict[str, Any]) -> list[dict[str, Any]]:
    has = server.config.has
    choices = responses.choices(payload, server.patches, streamed=True)
    make = _chunk_maker(server, payload)
    out: list[dict[str, Any]] = []
    for choice in choices:
        out += _choice_chunks(server, make, choice)
    _add_usage(server, payload, choices, make, out)
    if has("extra-fields"):
        for body in out:
            body["x_chunk_seq"] = 1
    return out


def _include_usage(payload: dict[str, Any]) -> bool:
    return bool((payload.get("stream_options") or {}).get("include_usage"))


def _chunk_maker(server: _Server, payload: dict[str, Any]) -> Make:
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    null_usage = _include_usage(payload) or server.config.has("usage-null-every-chunk")

    def make(choice_list: list[dict[str, Any]]) -> dict[str, Any]:
        chunk_id = "chatcmpl-" + uuid.uuid4().hex if server.config.has("stream-id-changes") else completion_id
        body = responses.envelope(payload, "chat.completion.chunk", chunk_id, server.patches)
        if server.config.has("stream-chunk-object-completion"):
            body["object"] = "chat.completion"
        body["choices"] = choice_list
        if server.config.has("stream-delta-content-number"):
            for entry in choice_list:
                if isinstance(entry.get("delta", {}).get("content"), str):
                    entry["delta"]["content"] = len(entry["delta"]["content"])
        if null_usage:
            body["usage"] = None
        return body

    return make


def _choice_chunks(server: _Server, make: Make, choice: Choice) -> list[dict[str, Any]]:
    has = server.config.has
    index = 0 if has("stream-n-all-index-0") else choice.index
    pending = "" if has("stream-finish-reason-empty-string") else None  # ollama#4357

    def entry(delta: dict[str, Any], finish: str | None = pending) -> dict[str, Any]:
        if finish is None and has("stream-finish-reason-key-omitted"):  # None-valued keys dropped (LiteLLM)
            return {"index": index, "delta": delta, "logprobs": None}
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    role = {} if has("stream-no-role") else {"role": "assistant"}
    if choice.tool_call is not None:
        first, *rest = _tool_call_items(server, choice.tool_call)
        deltas = [{**role, "content": None, "tool_calls": [first]}] + [{"tool_calls": [item]} for item in rest]
    else:
        deltas = [{**role, "content": ""}] + [{"content": token} for token in choice.tokens]
    final = None if has("stream-no-finish-reason") else choice.finish_reason
    return [make([entry(delta)]) for delta in deltas] + [make([entry({}, final)])]


def _tool_call_items(server: _Server, call: dict[str, Any]) -> list[dict[str, Any]]:
    """The first item names the call; the others carry the arguments in three pieces."""
    args = call["function"]["arguments"]
    step = max(1, len(args) // 3 + 1)
    pieces = [args[start:start + step] for start in range(0, len(args), step)]
    if server.config.has("stream-tool-args-broken"):
        pieces = pieces[:-1]

    def item(**fields: Any) -> dict[str, Any]:
        return fields if server.config.has("stream-tool-call-no-index") else {"index": 0, **fields}

    first = item(id=call["id"], type="function", function={"name": call["function"]["name"], "arguments": ""})
    return [first] + [item(function={"arguments": piece}) for piece in pieces]


def _add_usage(server: _Server, payload: dict[str, Any], choices: list[Choice], make: Make,
               out: list[dict[str, Any]]) -> None:
    has = server.config.has
    if not (_include_usage(payload) or has("stream-usage-unrequested")):
        return
    usage = responses.usage(payload, choices, server.patches)
    if has("stream-usage-wrong"):
        usage["total_tokens"] += 1
    if has("stream-usage-counts-chunks"):  # counts SSE chunks, not tokens; the sum stays right
        usage["completion_tokens"] = len(out)
        usage["total_tokens"] = usage["prompt_tokens"] + len(out)
    if has("stream-usage-per-choice") and len(choices) > 1:  # one usage chunk per choice, each counting its own
        for choice in choices:
            per_choice = make([])
            per_choice["usage"] = responses.usage(payload, [choice], server.patches)
            out.append(per_choice)
        return
    if has("stream-usage-on-finish-chunk"):
        out[-1]["usage"] = usage
        return
    usage_chunk = make([])
    usage_chunk["usage"] = usage
    out.append(usage_chunk)
    if has("stream-usage-twice"):
        out.append(copy.deepcopy(usage_chunk))


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
    datas = [json.dumps(body) for body in chunks(server, payload)]
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
