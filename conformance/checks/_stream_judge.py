"""Shared stream helpers: the run's shared streams, the reproducibility probe, and events decoded into
chunks with byte ranges.

The reproducibility probe (the deterministic completion sent twice) is shared by the stream
equivalence checks and sampling.deterministic: a target that does not repeat itself cannot be held to
a stream that repeats its non-stream reply.

Every failure a stream check reports points at the offending event through `Chunk.byte_range`
(byte offsets into the raw response body, as the SSE parser records them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .._context import CheckContext, excerpt
from .._model import Feature
from ..http import Exchange, fail_on_limit
from ..sse import SSEEvent

DONE = "[DONE]"
# Any fixed seed: with temperature 0 it asks the target for its most repeatable answer.
SEED = 20240601
INCLUDE_USAGE = {"include_usage": True}


@dataclass(frozen=True, slots=True)
class Chunk:
    """One event whose data is a JSON object, with its position in the stream."""

    number: int  # position among all events, for messages ("event #3")
    event: SSEEvent
    body: dict[str, Any]

    @property
    def byte_range(self) -> tuple[int, int]:
        return (self.event.start, self.event.end)

    def choices(self) -> list[dict[str, Any]]:
        value = self.body.get("choices")
        return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []


@dataclass
class Stream:
    """A decoded SSE response: JSON chunks, [DONE] events and events that are neither."""

    exchange: Exchange
    events: list[SSEEvent]
    chunks: list[Chunk] = field(default_factory=list)
    done: list[int] = field(default_factory=list)  # event numbers of [DONE]
    malformed: list[tuple[SSEEvent, str]] = field(default_factory=list)  # event, why

    def choice_entries(self) -> Iterator[tuple[Chunk, int, dict[str, Any]]]:
        """(chunk, choice index, choice) for every choice with an integer index, in stream order."""
        for chunk in self.chunks:
            for choice in chunk.choices():
                index = choice.get("index")
                if isinstance(index, int) and not isinstance(index, bool):
                    yield chunk, index, choice

    def content(self, index: int = 0) -> str:
        return "".join(text for _, text in self.content_pieces(index))

    def content_pieces(self, index: int = 0) -> list[tuple[Chunk, str]]:
        pieces = []
        for chunk, i, choice in self.choice_entries():
            delta = choice.get("delta")
            if i == index and isinstance(delta, dict) and isinstance(delta.get("content"), str):
                pieces.append((chunk, delta["content"]))
        return pieces

    def finishes(self) -> dict[int, list[tuple[Chunk, Any]]]:
        """Per choice index, every finish_reason that is not null (an absent key counts as null)."""
        found: dict[int, list[tuple[Chunk, Any]]] = {}
        for chunk, index, choice in self.choice_entries():
            found.setdefault(index, [])
            if choice.get("finish_reason") is not None:
                found[index].append((chunk, choice["finish_reason"]))
        return found

    def usage_chunks(self) -> list[Chunk]:
        return [c for c in self.chunks if c.body.get("usage") is not None]


def decode(exchange: Exchange) -> Stream:
    events = list(exchange.sse.events) if exchange.sse is not None else []
    stream = Stream(exchange, events)
    for number, event in enumerate(events):
        if event.data == DONE:
            stream.done.append(number)
            continue
        try:
            body = json.loads(event.data)
        except ValueError as exc:
            stream.malformed.append((event, f"not JSON ({exc})"))
            continue
        if isinstance(body, dict):
            stream.chunks.append(Chunk(number, event, body))
        else:
            stream.malformed.append((event, f"JSON {type(body).__name__}, not an object"))
    return stream


def open_stream(ctx: CheckContext, exchange: Exchange, *, need_chunks: bool = True) -> Stream:
    """The decoded stream of a 200 response, or a failure that ends the check."""
    exchange.require_response()
    fail_on_limit(ctx.http, exchange)
    declared = ctx.declined(exchange, Feature.STREAMING, "stream")
    if declared is not None:  # streaming is optional: a 4xx naming `stream` declares it unsupported
        raise declared
    if exchange.status != 200:
        raise ctx.stop("HTTP 200 with a text/event-stream body", f"HTTP {exchange.status}: "
                       f"{excerpt(exchange.text)}", ctx.where(exchange), exchange=exchange)
    stream = decode(exchange)
    if need_chunks and not stream.chunks:
        raise ctx.stop("at least one `data: {json}` chunk event", f"{len(stream.events)} events, none a JSON "
                       f"object; body starts: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)
    return stream


def where_event(ctx: CheckContext, exchange: Exchange, number: int, event: SSEEvent, pointer: str = "") -> str:
    return ctx.where(exchange, f"event #{number} (bytes {event.start}..{event.end})" + (f" {pointer}" if pointer
                                                                                        else ""))


def fail_event(ctx: CheckContext, stream: Stream, event: SSEEvent, expected: str, received: str, *,
               at: str = "") -> None:
    """A failure that marks the event's bytes in the report; `at` points inside the event."""
    number = next(i for i, e in enumerate(stream.events) if e is event)
    ctx.fail(expected, received, where_event(ctx, stream.exchange, number, event, at), exchange=stream.exchange,
             byte_range=(event.start, event.end))


def fail_at(ctx: CheckContext, stream: Stream, chunk: Chunk, expected: str, received: str, *, at: str = "") -> None:
    fail_event(ctx, stream, chunk.event, expected, received, at=at)


def short(value: Any, limit: int = 160) -> str:
    return excerpt(json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value), limit)


# -- the run's shared requests ---------------------------------------------------------------------
def basic_stream(ctx: CheckContext) -> Exchange:
    """The run's basic stream (stream: true, nothing else), judged by several checks."""
    return ctx.shared("basic-stream", lambda c: c.chat(c.chat_request(stream=True), stream=True))


def deterministic_request(ctx: CheckContext, **overrides: Any) -> dict[str, Any]:
    """The most repeatable request a target offers: temperature 0 and a fixed seed."""
    return ctx.chat_request(temperature=0, seed=SEED, **overrides)


def usage_stream(ctx: CheckContext) -> Exchange:
    """The run's deterministic stream with include_usage, judged by the usage and equivalence checks."""
    return ctx.shared("usage-stream", lambda c: c.chat(
        deterministic_request(c, stream=True, stream_options=INCLUDE_USAGE), stream=True))


def deterministic_completion(ctx: CheckContext) -> Exchange:
    """The non-stream twin of `usage_stream` (same body without stream and stream_options)."""
    return ctx.shared("deterministic-completion", lambda c: c.chat(deterministic_request(c)))


def deterministic_completion_again(ctx: CheckContext) -> Exchange:
    """`deterministic_completion`'s body sent a second time: the reproducibility probe's other half."""
    return ctx.shared("deterministic-completion-again", lambda c: c.chat(deterministic_request(c)))


@dataclass(frozen=True, slots=True)
class Reproducibility:
    """Two identical non-stream requests at temperature 0 with a seed, and what they gave."""

    first: Any  # choices[0].message.content of each reply
    second: Any
    # A reply carries system_fingerprint: OpenAI's marker for seeded determinism, "used in conjunction
    # with the seed request parameter to understand when backend changes ... might impact determinism".
    claims_seed: bool

    @property
    def reproducible(self) -> bool:
        return bool(self.first == self.second)

    def evidence(self) -> dict[str, Any]:
        return {"request": f"temperature 0, seed {SEED}, sent twice", "first": short(self.first, 300),
                "second": short(self.second, 300), "system_fingerprint": self.claims_seed}

    def message(self, judged: str) -> str:
        return (f"the target is not reproducible: two identical requests (temperature 0, seed {SEED}) gave "
                f"{short(self.first)} and then {short(self.second)}, so {judged} cannot be told apart from "
                f"sampling noise")


def reproducibility(ctx: CheckContext) -> Reproducibility:
    """The run's reproducibility probe, paid once: the deterministic completion and its repeat.

    A 4xx naming `seed` declares that request unsupported; any other non-2xx ends the check.
    """
    replies = []
    for exchange in (deterministic_completion(ctx), deterministic_completion_again(ctx)):
        exchange.require_response()
        declared = ctx.declined(exchange, None, "seed")
        if declared is not None:
            raise declared
        replies.append(ctx.ok_json(exchange, "a 200 chat.completion"))
    first, second = (_first_content(body) for body in replies)
    return Reproducibility(first, second, any(body.get("system_fingerprint") for body in replies))


def require_reproducible(ctx: CheckContext, judged: str) -> Reproducibility:
    """The probe, recorded in the check's details; not applicable (never failed) when the replies differ."""
    probe = reproducibility(ctx)
    ctx.details["reproducibility"] = probe.evidence()
    if not probe.reproducible:
        raise ctx.not_applicable(probe.message(judged))
    return probe


def _first_content(body: dict[str, Any]) -> Any:
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    return message.get("content") if isinstance(message, dict) else None


def timings(exchange: Exchange, stream: Stream) -> dict[str, Any]:
    """Latency figures for the report, in seconds since the request was sent."""
    parser = exchange.sse
    headers_at = exchange.ttfb_s or 0.0
    first_byte = parser.first_byte_at if parser is not None else None
    first_content = next((c.event.arrived_at for c, text in stream.content_pieces() if text), None)
    return {
        "time_to_headers_s": _round(exchange.ttfb_s),
        "time_to_first_byte_s": _round(headers_at + first_byte if first_byte is not None else None),
        "time_to_first_content_delta_s": _round(headers_at + first_content if first_content is not None else None),
        "total_s": _round(exchange.elapsed_s),
        "events": len(stream.events),
        "chunks": len(stream.chunks),
        "comments": parser.comment_count if parser is not None else 0,
        "bytes": len(exchange.body),
    }


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None
