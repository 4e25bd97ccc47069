"""Streaming: SSE framing of `stream: true` responses."""

from __future__ import annotations

from .._context import CheckContext
from .._http import Exchange, fail_on_limit
from .._model import Feature, Level, documented
from ._registry import check

DONE = "[DONE]"


def basic_stream(ctx: CheckContext) -> Exchange:
    """The run's basic stream, judged by several checks."""
    return ctx.shared("basic-stream", lambda c: c.chat(c.chat_request(stream=True), stream=True))


@check(
    "stream.done-terminator",
    level=Level.MUST,
    feature=Feature.STREAMING,
    clause=documented("4 FAQ streaming", "Each data chunk is a JSON string prefixed with data: , and the stream "
                      "is terminated with a data: [DONE] message."),
    description="A stream ends with exactly one `data: [DONE]` event and nothing after it.",
)
def done_terminator(ctx: CheckContext) -> None:
    exchange = basic_stream(ctx)
    exchange.require_response()
    fail_on_limit(ctx.http, exchange)
    if exchange.sse is None or exchange.status != 200:
        raise ctx.stop("a 200 text/event-stream response", f"HTTP {exchange.status}, Content-Type "
                       f"{exchange.content_type!r}", ctx.where(exchange), exchange=exchange)
    events = exchange.sse.events
    done_positions = [i for i, event in enumerate(events) if event.data == DONE]
    if not done_positions:
        last = events[-1] if events else None
        ctx.fail("a final `data: [DONE]` event", f"{len(events)} events, none is [DONE]; last data: "
                 f"{last.data[:120] if last else 'none'!r}", ctx.where(exchange), exchange=exchange,
                 byte_range=(last.start, last.end) if last else None)
        return
    if len(done_positions) > 1:
        extra = events[done_positions[1]]
        ctx.fail("exactly one [DONE]", f"{len(done_positions)} [DONE] events", ctx.where(exchange),
                 exchange=exchange, byte_range=(extra.start, extra.end))
    if done_positions[-1] != len(events) - 1:
        after = events[done_positions[0] + 1]
        ctx.fail("nothing after [DONE]", f"event after [DONE]: {after.data[:120]!r}", ctx.where(exchange),
                 exchange=exchange, byte_range=(after.start, after.end))
    if exchange.sse.pending_incomplete:
        ctx.fail("nothing after [DONE]", f"unterminated trailing data {exchange.sse.pending_incomplete[:120]!r}",
                 ctx.where(exchange), exchange=exchange)
