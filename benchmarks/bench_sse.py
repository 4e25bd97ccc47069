"""Throughput of conformance.sse.SSEParser vs httpx-sse on a realistic chat stream.

Run: ``python benchmarks/bench_sse.py``. A plain script (not collected by pytest).

Two comparisons, each over the same bytes cut three ways: 64 KiB pieces,
one piece per event (a server flushing every event) and 7-byte pieces:

* parse only: httpx-sse exactly as ``EventSource.iter_sse`` drives it (httpx's
  incremental ``TextDecoder`` as in ``response.iter_text()``, ``SSELineDecoder``
  as in ``_iter_sse_lines``, then ``rstrip`` + ``SSEDecoder.decode`` per line),
  against ``SSEParser.feed`` on the raw chunks;
* end to end over an in-memory ``httpx.Response``: the real
  ``EventSource(response).iter_sse()`` against ``read_sse(response.iter_bytes())``.

Each figure is the best of 7 timings of CPU time (``time.process_time``: on
a shared machine wall time mostly measures the neighbours), each timing
repeating the parse for at least ~0.1 s; ours and theirs alternate so that
any remaining drift hits both alike.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from httpx._decoders import TextDecoder
from httpx_sse import EventSource
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from conformance.sse import SSEParser, read_sse

N_EVENTS = 5_000
REPEAT = 7


def build_stream(n_events: int = N_EVENTS) -> bytes:
    """An OpenAI-style chat.completion.chunk stream, one token per event (~150 B)."""
    words = ["Hello", " world", ",", " this", " is", " a", " stré", "aming", " test", "."]
    out = []
    for i in range(n_events):
        chunk = {
            "id": "chatcmpl-9x2Rk7",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": words[i % len(words)]}, "finish_reason": None}],
        }
        out.append(f"data: {json.dumps(chunk, separators=(',', ':'), ensure_ascii=False)}\n\n".encode())
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def pieces(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def per_event(stream: bytes) -> list[bytes]:
    """One chunk per event: how a server that flushes every event is usually read."""
    return [event + b"\n\n" for event in stream.split(b"\n\n")[:-1]]


# ------------------------------------------------------------- parse only


def run_ours(chunks: list[bytes]) -> int:
    parser = SSEParser(max_bytes=sum(map(len, chunks)), max_events=N_EVENTS + 1)
    feed = parser.feed
    for chunk in chunks:
        feed(chunk)
    parser.close()
    return len(parser.events)


def _httpx_sse_lines(chunks: list[bytes]) -> Iterator[str]:
    # response.iter_text() (TextDecoder; TextChunker without chunk_size drops
    # only empty strings) feeding httpx_sse._api._iter_sse_lines.
    text_decoder = TextDecoder(encoding="utf-8")
    decoder = SSELineDecoder()
    for chunk in chunks:
        text = text_decoder.decode(chunk)
        if text:
            yield from decoder.decode(text)
    text = text_decoder.flush()
    if text:
        yield from decoder.decode(text)
    yield from decoder.flush()


def run_httpx_sse(chunks: list[bytes]) -> int:
    decoder = SSEDecoder()
    n = 0
    for raw_line in _httpx_sse_lines(chunks):  # EventSource.iter_sse's loop body
        if decoder.decode(raw_line.rstrip("\n")) is not None:
            n += 1
    return n


# ------------------------------------------------------ end to end (httpx)


def _response(chunks: list[bytes]) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(chunks))


def run_ours_response(chunks: list[bytes]) -> int:
    parser = read_sse(_response(chunks).iter_bytes(), max_events=N_EVENTS + 1)
    return len(parser.events)


def run_httpx_sse_response(chunks: list[bytes]) -> int:
    return sum(1 for _ in EventSource(_response(chunks)).iter_sse())


# ---------------------------------------------------------------- harness


def best_of_interleaved(
    ours: Callable[[list[bytes]], int], theirs: Callable[[list[bytes]], int], chunks: list[bytes]
) -> tuple[float, float]:
    """Best seconds per call of each, timing ``number`` calls at a time (>= ~0.1 s)."""

    def timed(fn: Callable[[list[bytes]], int], number: int) -> float:
        t = time.process_time()
        for _ in range(number):
            fn(chunks)
        return (time.process_time() - t) / number

    number = max(1, int(0.1 / max(timed(ours, 1), timed(theirs, 1), 1e-6)))
    best_ours = best_theirs = float("inf")
    for _ in range(REPEAT):
        best_ours = min(best_ours, timed(ours, number))
        best_theirs = min(best_theirs, timed(theirs, number))
    return best_ours, best_theirs


def main() -> None:
    stream = build_stream()
    mb = len(stream) / 1e6
    print(f"stream: {N_EVENTS + 1} events, {len(stream):,} bytes (~{len(stream) // (N_EVENTS + 1)} B/event)")
    pairs = [
        ("parse only", run_ours, run_httpx_sse),
        ("httpx.Response", run_ours_response, run_httpx_sse_response),
    ]
    for title, ours_fn, theirs_fn in pairs:
        for label, chunks in (
            ("64 KiB", pieces(stream, 65_536)),
            ("1 event", per_event(stream)),
            ("7 B", pieces(stream, 7)),
        ):
            assert ours_fn(chunks) == theirs_fn(chunks) == N_EVENTS + 1
            ours, theirs = best_of_interleaved(ours_fn, theirs_fn, chunks)
            print(
                f"{title:>14}, {label:>7} pieces: ours {mb / ours:7.1f} MB/s   "
                f"httpx-sse {mb / theirs:7.1f} MB/s   ours/httpx-sse {theirs / ours:5.2f}x"
            )


if __name__ == "__main__":
    main()
