"""Strict, incremental, bounded parser for ``text/event-stream`` bodies.

Follows the WHATWG HTML "event stream interpretation" algorithm exactly, but
unlike a client library it also keeps everything a conformance report needs:
the raw transcript with byte offsets and arrival times, comments, anomalies
(lines a lenient client would silently drop) and an unterminated last event.

Lines end only at CR, LF or CRLF; the parser works on bytes so that Unicode
line separators (U+2028, U+0085, ...) can never split an event.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate, islice, repeat
from operator import add, itemgetter

__all__ = [
    "Anomaly",
    "RawChunk",
    "SSEEvent",
    "SSELimitExceeded",
    "SSEParser",
    "read_sse",
    "transcript_excerpt",
]

_BOM = b"\xef\xbb\xbf"
# Capturing group keeps the terminators so CRLF (2 bytes) vs CR/LF (1 byte)
# offsets stay exact.
_SPLIT_EOL = re.compile(rb"(\r\n|\r|\n)")
_SPLIT_EOL_STR = re.compile(r"(\r\n|\r|\n)")
_DETAIL_MAX = 500  # anomaly details are for humans; offsets point at the bytes


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event.

    ``retry`` is the ``retry:`` value given inside this event's block (reset at
    every blank line, like httpx-sse), not the persistent reconnection time.
    ``start``..``end`` covers the whole block, including comments and ignored
    lines that preceded the dispatching blank line.
    """

    data: str
    event: str
    id: str | None
    retry: int | None
    start: int
    end: int
    arrived_at: float

    def to_json(self) -> dict[str, object]:
        return {
            "data": self.data,
            "event": self.event,
            "id": self.id,
            "retry": self.retry,
            "start": self.start,
            "end": self.end,
            "arrived_at": self.arrived_at,
        }


@dataclass(frozen=True, slots=True)
class RawChunk:
    offset: int
    data: bytes
    arrived_at: float


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something a lenient client would swallow silently.

    kinds: ``unknown-field``, ``invalid-utf8``, ``bad-retry``, ``id-with-nul``,
    ``event-without-data``, ``unterminated-line``, ``incomplete-event``.
    """

    offset: int
    kind: str
    detail: str


class SSELimitExceeded(Exception):
    """A safety bound was hit; ``parser`` holds everything received so far."""

    kind: str
    limit: float
    parser: SSEParser | None

    def __init__(self, kind: str, limit: float, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.limit = limit
        self.parser = None


def _short(text: str) -> str:
    if len(text) <= _DETAIL_MAX:
        return text
    return text[:_DETAIL_MAX] + f"... ({len(text)} chars)"


class _EventTwin:
    """Mutable twin of SSEEvent with the identical slot layout.

    A frozen dataclass pays one ``object.__setattr__`` per field (~1.2 us per
    event, the single biggest cost on a chat stream); building this twin and
    relabelling it with ``__class__ = SSEEvent`` yields a genuine, immutable
    SSEEvent for a third of that. CPython refuses the relabel loudly if the
    layouts ever diverge.
    """

    __slots__ = ("arrived_at", "data", "end", "event", "id", "retry", "start")  # CPython sorts slots anyway

    def __init__(  # noqa: PLR0917 -- positional args are the cheap call on the hot path
        self,
        data: str,
        event: str,
        id: str | None,
        retry: int | None,
        start: int,
        end: int,
        arrived_at: float,
    ) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry
        self.start = start
        self.end = end
        self.arrived_at = arrived_at


class SSEParser:
    """Incremental event-stream parser: ``feed()`` raw body bytes, then ``close()``.

    ``max_records`` caps how many comments and anomalies are *stored* (all are
    counted) so that 8 MB of ``:\\n`` cannot exhaust memory.
    After SSELimitExceeded the parser is dead: ``feed()`` re-raises it.
    """

    def __init__(
        self,
        *,
        max_bytes: int = 8_000_000,
        max_events: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        max_records: int = 10_000,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_events = max_events
        self.max_records = max_records
        self._clock = clock
        self._t0 = clock()

        self.events: list[SSEEvent] = []
        self.comments: list[tuple[int, str]] = []
        self.comment_count = 0
        self.anomalies: list[Anomaly] = []
        self.anomaly_count = 0
        self.bytes_received = 0
        self.pending_incomplete: str | None = None
        self.first_byte_at: float | None = None
        self.closed = False
        # Transcript kept as plain tuples on the hot path; RawChunk objects are
        # built on first access of ``transcript``.
        self._chunks: list[tuple[int, bytes, float]] = []
        self._transcript: list[RawChunk] = []

        # Event being built (the WHATWG data / event type / last event ID buffers).
        self._data: list[str] = []
        self._event_type = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._dirty = False  # event:/retry: seen in this block, reset at blank line
        self._block_start = 0  # offset of the first line after the last blank line

        # Line assembly.
        self._pos = 0  # stream offset of the first byte of ``_partial``
        self._partial = bytearray()  # current unterminated line
        self._bom_checked = False
        # A CR as the last byte may be the first half of CRLF: the line it ends
        # stays in ``_partial`` (CR included) until the next byte decides, so
        # offsets are identical however the stream is chunked.
        self._cr_held = False
        self._cr_time = 0.0
        self._special = True  # BOM undecided or CR held: take the slow path
        self._stopped = False  # closed or failed
        self._error: SSELimitExceeded | None = None

    # ------------------------------------------------------------------ API

    @property
    def transcript(self) -> list[RawChunk]:
        """Every fed chunk with its stream offset and arrival time."""
        cache = self._transcript
        if len(cache) < len(self._chunks):
            cache.extend(RawChunk(*c) for c in self._chunks[len(cache) :])
        return cache

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse one chunk; return the events it completed.

        Raises SSELimitExceeded once more than ``max_bytes`` bytes or
        ``max_events`` events arrive; bytes up to the bound are still parsed.
        """
        if self._stopped:
            if self._error is not None:
                raise self._error
            raise RuntimeError("SSEParser.feed() after close()")
        size = len(chunk)
        if not size:
            return []
        received = self.bytes_received
        if received + size > self.max_bytes:
            return self._feed_over_limit(chunk)
        now = self._clock() - self._t0
        if type(chunk) is not bytes:
            chunk = bytes(chunk)  # bytearray / memoryview: keep an immutable copy
        if not received:
            self.first_byte_at = now
        self._chunks.append((received, chunk, now))
        self.bytes_received = received + size
        if self._special or b"\n" in chunk or b"\r" in chunk:
            return self._consume(chunk, now)
        # Mid-line piece: amortised O(1) append, earlier bytes are not rescanned.
        self._partial += chunk
        return []

    def close(self) -> list[SSEEvent]:
        """End of stream. Never dispatches an unterminated event (per spec);
        records its raw text in ``pending_incomplete`` instead."""
        if self._stopped:
            self.closed = True
            return []
        self._stopped = self.closed = True
        self._bom_checked = True  # a lone BOM prefix is just an unterminated line
        out: list[SSEEvent] = []
        if self._cr_held:
            self._resolve_held_cr(b"", out)
        tail = bytes(self._partial)
        self._partial.clear()
        if tail:
            self._anomaly(self._pos, "unterminated-line", _short(tail.decode("utf-8", "replace")))
        if self._data or tail.partition(b":")[0] == b"data":
            end = self._pos + len(tail)
            self.pending_incomplete = self._raw(self._block_start, end).decode("utf-8", "replace")
            self._anomaly(
                self._block_start,
                "incomplete-event",
                _short(f"stream ended before the blank line ending {self.pending_incomplete!r}"),
            )
        self._pos += len(tail)
        return out

    # -------------------------------------------------------- line assembly

    def _feed_over_limit(self, chunk: bytes) -> list[SSEEvent]:
        remaining = self.max_bytes - self.bytes_received
        if remaining:
            self.feed(chunk[:remaining])  # events inside the bound still count
        raise self._fail(
            "max_bytes",
            self.max_bytes,
            f"max_bytes limit of {self.max_bytes} bytes exceeded by a chunk of "
            f"{len(chunk)} bytes ({len(chunk) - remaining} bytes over)",
        )

    def _consume(self, chunk: bytes, now: float) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        if not self._bom_checked:
            head = bytes(self._partial) + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._partial[:] = head
                return out
            self._bom_checked = True
            self._special = False
            self._partial.clear()
            if head.startswith(_BOM):
                head = head[3:]
                self._pos = self._block_start = 3
            chunk = head
        if self._cr_held:
            chunk = self._resolve_held_cr(chunk, out)
        if b"\n" not in chunk and b"\r" not in chunk:
            self._partial += chunk
            return out
        partial = self._partial
        if partial:
            data = b"".join((partial, chunk))
            partial.clear()
        else:
            data = chunk
        n = len(data)
        if data[-1] == 13:  # trailing CR: hold its line until the next byte
            stop = max(data.rfind(b"\n", 0, n - 1), data.rfind(b"\r", 0, n - 1)) + 1
            partial += data[stop:]
            self._cr_held = self._special = True
            self._cr_time = now
        else:
            stop = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
            if stop < n:
                partial += data[stop:]
        if stop:
            self._process(data if stop == n else data[:stop], now, out)
        return out

    def _resolve_held_cr(self, chunk: bytes, out: list[SSEEvent]) -> bytes:
        """Finish the line ended by a held CR; swallow the LF if it was CRLF."""
        self._cr_held = self._special = False
        line = bytes(self._partial)  # ends with the CR
        self._partial.clear()
        if chunk[:1] == b"\n":
            self._process(line + b"\n", self._cr_time, out)
            return chunk[1:]
        self._process(line, self._cr_time, out)
        return chunk

    def _process(self, region: bytes, now: float, out: list[SSEEvent]) -> None:
        """Interpret ``region``: complete lines, ending with a terminator."""
        pos = self._pos
        cr = b"\r" in region
        eols: Iterable[int]
        try:
            # One C-level decode for the whole region; safe because CR/LF can
            # never occur inside a multi-byte UTF-8 sequence.
            text = region.decode()
        except UnicodeDecodeError:
            lines, offs = self._split_invalid(region, pos, cr)
        else:
            if cr:
                parts = _SPLIT_EOL_STR.split(text)
                lines = parts[0::2]
                eols = map(len, parts[1::2])
            else:
                lines = text.split("\n")
                eols = repeat(1)
            lines.pop()  # empty remainder after the final terminator
            if len(text) == len(region):  # pure ASCII: str length == byte length
                sizes: Iterable[int] = map(len, lines)
            else:
                blines = _SPLIT_EOL.split(region)[0::2] if cr else region.split(b"\n")
                blines.pop()
                sizes = map(len, blines)
            # Line start offsets, summed in C rather than per line in Python.
            offs = list(accumulate(map(add, sizes, eols), initial=pos))
        self._run(lines, offs, now, out)

    def _split_invalid(self, region: bytes, pos: int, cr: bool) -> tuple[list[str], list[int]]:
        """Slow path for a region with invalid UTF-8: decode line by line."""
        if cr:
            parts = _SPLIT_EOL.split(region)
            blines = parts[0::2]
            eols = list(map(len, parts[1::2]))
        else:
            blines = region.split(b"\n")
            eols = [1] * (len(blines) - 1)
        blines.pop()
        offs = list(accumulate(map(add, map(len, blines), eols), initial=pos))
        lines: list[str] = []
        for line, start in zip(blines, offs, strict=False):
            try:
                lines.append(line.decode())
            except UnicodeDecodeError:
                self._anomaly(start, "invalid-utf8", _short(repr(line)))
                lines.append(line.decode("utf-8", "replace"))
        return lines, offs

    # ---------------------------------------------------------- line parsing

    def _run(self, lines: list[str], offs: list[int], now: float, out: list[SSEEvent]) -> None:
        """Hot loop over complete lines; ``offs[i]`` is the offset of line i."""
        data = self._data
        events = self.events
        block_start = self._block_start
        try:
            for line, start, end in zip(lines, offs, islice(offs, 1, None), strict=False):
                if not line:  # blank line: dispatch (WHATWG "dispatch the event")
                    if data:
                        if len(events) >= self.max_events:
                            raise self._fail(
                                "max_events",
                                self.max_events,
                                f"max_events limit of {self.max_events} events exceeded "
                                f"by the event at bytes {block_start}..{end}",
                            )
                        ev: SSEEvent = _EventTwin(  # type: ignore[assignment]
                            "\n".join(data),
                            self._event_type,
                            self._last_id,
                            self._retry,
                            block_start,
                            end,
                            now,
                        )
                        ev.__class__ = SSEEvent
                        events.append(ev)
                        out.append(ev)
                        data.clear()
                    elif self._event_type:
                        self._anomaly(
                            block_start,
                            "event-without-data",
                            f"event: {self._event_type!r} without data: was dropped",
                        )
                    if self._dirty:
                        self._event_type = ""
                        self._retry = None
                        self._dirty = False
                    block_start = end
                elif line[:6] == "data: ":
                    data.append(line[6:])
                elif line[:5] == "data:":
                    data.append(line[5:])
                elif line[0] == ":":
                    self.comment_count += 1
                    if len(self.comments) < self.max_records:
                        self.comments.append((start, line[1:]))
                else:
                    self._field(line, start)
        finally:
            self._block_start = block_start
        self._pos = offs[len(lines)]

    def _field(self, line: str, pos: int) -> None:
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":  # only a bare "data" line (no colon) gets here
            self._data.append(value)
        elif name == "event":
            self._event_type = value
            self._dirty = True
        elif name == "id":
            if "\0" in value:
                self._anomaly(pos, "id-with-nul", _short(repr(value)))
            else:
                self._last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():  # str.isdigit alone accepts "²"
                self._retry = int(value)
                self._dirty = True
            else:
                self._anomaly(pos, "bad-retry", _short(repr(value)))
        else:
            self._anomaly(pos, "unknown-field", _short(line))

    def _anomaly(self, offset: int, kind: str, detail: str) -> None:
        self.anomaly_count += 1
        if len(self.anomalies) < self.max_records:
            self.anomalies.append(Anomaly(offset, kind, detail))

    # --------------------------------------------------------------- helpers

    def _fail(self, kind: str, limit: float, what: str) -> SSELimitExceeded:
        exc = SSELimitExceeded(
            kind,
            limit,
            f"{what}; received so far: {self.bytes_received} bytes in "
            f"{len(self._chunks)} chunks, {len(self.events)} events",
        )
        exc.parser = self
        self._error = exc
        self._stopped = True
        return exc

    def _raw(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the stream, rebuilt from the transcript."""
        start = max(0, start)
        end = min(end, self.bytes_received)
        if start >= end:
            return b""
        chunks = self._chunks
        i = max(0, bisect.bisect_right(chunks, start, key=itemgetter(0)) - 1)
        pieces: list[bytes] = []
        for offset, data, _ in chunks[i:]:
            if offset >= end:
                break
            pieces.append(data[max(start - offset, 0) : end - offset])
        return b"".join(pieces)


def read_sse(
    chunks: Iterable[bytes],
    *,
    max_bytes: int = 8_000_000,
    max_events: int = 10_000,
    deadline_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SSEParser:
    """Feed an iterator of byte chunks (e.g. httpx ``response.iter_raw()``)
    into a parser until it ends, then close it.

    Raises ``SSELimitExceeded(kind="deadline")`` as soon as the total time
    since the call exceeds ``deadline_s`` (checked after each chunk; the HTTP
    client's read timeout bounds the wait for a single chunk). Any exception
    (limits, but also e.g. a read timeout from the iterator) carries the
    partially-filled parser as ``exc.parser``.
    """
    parser = SSEParser(max_bytes=max_bytes, max_events=max_events, clock=clock)
    started = clock()
    try:
        for chunk in chunks:
            parser.feed(chunk)
            if deadline_s is not None:
                elapsed = clock() - started
                if elapsed > deadline_s:
                    raise parser._fail(
                        "deadline",
                        deadline_s,
                        f"deadline of {deadline_s} s exceeded after {elapsed:.3f} s",
                    )
        parser.close()
    except Exception as exc:
        with contextlib.suppress(AttributeError):  # exception types without __dict__
            exc.parser = parser  # type: ignore[attr-defined]
        raise
    return parser


def _escape(raw: bytes) -> str:
    # surrogateescape maps each invalid byte to one lone surrogate, so it can
    # be shown as \xNN without confusing it with a literal backslash.
    text = raw.decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])  # \r, \n, \t, \x00, \u2028 ...
    return "".join(out)


def transcript_excerpt(parser: SSEParser, start: int, end: int, *, context: int = 200) -> str:
    """Printable excerpt of the raw bytes around [start, end).

    The marked range is wrapped in ``>>>``/``<<<``; ``...`` shows truncation.
    Escapes are repr-style (``\\r``, ``\\n``, ``\\xNN`` for invalid UTF-8).
    """
    total = parser.bytes_received
    start = max(0, min(start, total))
    end = max(start, min(end, total))
    lo = max(0, start - context)
    hi = min(total, end + context)
    return (
        f"bytes {start}..{end} of {total}: "
        + ("..." if lo > 0 else "")
        + _escape(parser._raw(lo, start))
        + ">>>"
        + _escape(parser._raw(start, end))
        + "<<<"
        + _escape(parser._raw(end, hi))
        + ("..." if hi < total else "")
    )
