"""Load: the target serves the run's concurrency, every stream whole.

The document says nothing of concurrency. OpenAI's spec documents one way to refuse load, 429 with
Retry-After (which the run retries); cutting a stream that was already accepted is none of the
answers it documents, and a client only sees a connection cut mid-answer. A common single-slot
default does exactly that when a second request arrives. The check is SHOULD (basis openai): it is
OpenAI behaviour beyond the document, and clients that send one request at a time never meet it.

It is a load check (`load=True`): it starts before the run's last checks (one per slot beside its
streams), and its N streams go out together, once N of the run's slots are free, while those last
checks' requests fill the others. A pass there says more than the clause asks (N streams whole with
others in flight too). When it does not pass there, it runs again after every other check, at the
full --concurrency even when the run lowered it, with its own streams the only requests in flight,
and that run decides. Its failures never lower the run's concurrency or trip the breaker. The other
checks never depend on it: when their requests fail only under contention, the run lowers its
concurrency and judges them again one at a time (see the engine); this check is the one finding that
says why.
"""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

from .._context import CheckContext, excerpt
from .._model import LOAD_STREAMS, Feature, Level, openai
from ..http import Exchange, TooFewSlots
from ._registry import check
from ._stream_judge import basic_stream

# At most this many streams at once (the request bound); fewer when --concurrency is lower.
MAX_STREAMS = LOAD_STREAMS


@check(
    "load.concurrent-streams",
    level=Level.SHOULD,
    feature=Feature.STREAMING,
    clause=openai("Paths and errors", "POST /chat/completions documents only 200 and 429 (ErrorResponse plus a "
                  "Retry-After integer header ≥1)"),
    description="N streams at once (N = --concurrency, at most 8) each arrive whole, as a single one does: "
                "never cut mid-way (a 429/503 with Retry-After is retried, not a failure)",
    # The single stream is the run's basic stream, shared; one more when that one was cut. Twice: beside
    # the other checks, then alone when it did not pass there.
    requests=2 * (2 + MAX_STREAMS),
    load=True,
)
def concurrent_streams(ctx: CheckContext) -> None:
    streams = min(ctx.session.requested_concurrency, MAX_STREAMS)
    if streams < 2:
        raise ctx.not_applicable("--concurrency 1: the run sends one request at a time, so there is no "
                                 "concurrency to judge")
    body = ctx.chat_request(stream=True)
    method, path = ctx.chat_route
    # The premise, that one such stream arrives whole: the run's basic stream (the same request, received
    # earlier) shows it; when that one was cut, perhaps next to other requests, one more is sent.
    single = basic_stream(ctx)
    if _not_whole(single) is not None:
        single = ctx.chat(body, stream=True)
    single.require_response()
    declared = ctx.declined(single, Feature.STREAMING, "stream")
    if declared is not None:
        raise declared
    problem = _not_whole(single)
    if problem:
        raise ctx.inconclusive(f"a stream sent alone did not arrive whole either ({problem}): the stream checks "
                               f"judge that; concurrency cannot be judged")
    try:
        with ctx.http.together(streams):
            futures = [ctx.http.submit(method, path, json_body=body, stream=True) for _ in range(streams)]
            concurrent.futures.wait(futures)  # every held slot free again before the block gives them back
    except TooFewSlots as exc:  # the run lowered its concurrency: judged alone after the other checks
        raise ctx.inconclusive(f"{exc}: {streams} streams cannot be in flight at once beside the other "
                               f"checks") from None
    exchanges = [future.result() for future in futures]
    ctx.details["concurrent_streams"] = {
        "streams": streams,
        "single": _summary(single),
        "concurrent": [_summary(e) for e in exchanges],
    }
    for number, exchange in enumerate(exchanges, start=1):
        problem = _not_whole(exchange)
        if problem:
            ctx.fail(f"each of {streams} streams sent at once arrives whole (HTTP 200, JSON chunks, a finish_reason, "
                     f"`data: [DONE]`), as the stream sent alone did",
                     f"stream {number} of {streams}: {problem}",
                     ctx.where(exchange, f"{streams} streams in flight at once"), exchange=exchange)


def _not_whole(exchange: Exchange) -> str | None:  # noqa: PLR0911 - one return per reason
    """Why a stream is not whole, or None."""
    if exchange.error is not None:
        received = len(exchange.body)
        return f"cut after {received} bytes ({exchange.error})" if exchange.status else f"no answer ({exchange.error})"
    if exchange.limit_exceeded:
        return exchange.limit_exceeded
    if exchange.status != 200:
        return f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}"
    if "text/event-stream" not in exchange.content_type or exchange.sse is None:
        return f"Content-Type {exchange.content_type!r}, not a stream"
    events = [e.data for e in exchange.sse.events]
    if not events or events[-1] != "[DONE]":
        return f"{len(events)} events, the last not `data: [DONE]`"
    chunks = []
    for data in events[:-1]:
        try:
            chunks.append(json.loads(data))
        except ValueError:
            return f"an event is not JSON: {excerpt(data, 120)}"
    if not any(isinstance(choice, dict) and choice.get("finish_reason") for chunk in chunks if isinstance(chunk, dict)
               for choice in chunk.get("choices") or []):
        return "no chunk carries a finish_reason"
    return None


def _summary(exchange: Exchange) -> dict[str, Any]:
    return {"status": exchange.status, "bytes": len(exchange.body), "whole": _not_whole(exchange) is None,
            "in_flight_with": exchange.in_flight_with}
