"""Throughput of conformance.sse.SSEParser vs httpx-sse on a realistic chat stream.

Run: ``python benchmarks/bench_sse.py``. A plain script (not collected by pytest).

httpx-sse is measured the way ``EventSource.iter_sse`` runs it: httpx's
incremental UTF-8 text decoding (what ``response.iter_text()`` does), then
``SSELineDecoder`` (the body of ``_iter_sse_lines``), then ``line.rstrip("\\n")``
and ``SSEDecoder.decode`` per line. The HTTP transport is left out of both
sides so only the parsing is compared.
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from httpx._decoders import TextDecoder  # noqa: E402
from httpx_sse._decoders import SSEDecoder, SSELineDecoder  # noqa: E402

from conformance.sse import SSEParser  # noqa: E402

N_EVENTS = 5_000
REPEAT = 5


def build_stream(n_events: int = N_EVENTS) -> bytes:
    """An OpenAI-style chat.completion.chunk stream, one token per event."""
    words = ["Hello", " world", ",", " this", " is", " a", " stré", "aming", " test", "."]
    out = []
    for i in range(n_events):
        chunk = {
            "id": "chatcmpl-9x2Rk7cWmQb3JvT1",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": words[i % len(words)]}, "finish_reason": None}],
        }
        payload = json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)
        out.append(f"data: {payload}\n\n".encode())
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def pieces(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def run_ours(chunks: list[bytes]) -> int:
    parser = SSEParser(max_bytes=len(b"".join(chunks)) + 1, max_events=N_EVENTS + 10)
    for chunk in chunks:
        parser.feed(chunk)
    parser.close()
    return len(parser.events)


def run_httpx_sse(chunks: list[bytes]) -> int:
    text_decoder = TextDecoder(encoding="utf-8")
    line_decoder = SSELineDecoder()
    decoder = SSEDecoder()
    n = 0

    def lines() -> list[str]:
        out: list[str] = []
        for chunk in chunks:
            text = text_decoder.decode(chunk)
            if text:
                out.extend(line_decoder.decode(text))
        text = text_decoder.flush()
        if text:
            out.extend(line_decoder.decode(text))
        out.extend(line_decoder.flush())
        return out

    for line in lines():
        line = line.rstrip("\n")
        if decoder.decode(line) is not None:
            n += 1
    return n


def best_of(fn: Callable[[list[bytes]], int], chunks: list[bytes]) -> float:
    timer = timeit.Timer(lambda: fn(chunks))
    number = 3
    return min(timer.repeat(repeat=REPEAT, number=number)) / number


def main() -> None:
    stream = build_stream()
    mb = len(stream) / 1e6
    print(f"stream: {N_EVENTS + 1} events, {len(stream):,} bytes (~{len(stream) // (N_EVENTS + 1)} B/event)")
    for size in (65_536, 7):
        chunks = pieces(stream, size)
        assert run_ours(chunks) == run_httpx_sse(chunks) == N_EVENTS + 1
        ours = best_of(run_ours, chunks)
        theirs = best_of(run_httpx_sse, chunks)
        label = f"{size} B pieces" if size < 1024 else f"{size // 1024} KiB pieces"
        print(
            f"{label:>16}: ours {mb / ours:8.1f} MB/s   httpx-sse {mb / theirs:8.1f} MB/s   "
            f"ratio ours/httpx-sse {theirs / ours:5.2f}x"
        )


if __name__ == "__main__":
    main()
