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
from itertools import accumulate, chain, islice, repeat
from operator import add

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

    A frozen dataclass pays one ``object.__setattr__`` call per field (~2 us per
    event here, the single biggest cost on a chat stream). The hot loops instead
    fill this twin with plain slot stores and relabel it ``__class__ = SSEEvent``:
    the result is a genuine, immutable SSEEvent for a fifth of the cost. CPython
    refuses the relabel loudly if the two layouts ever diverge.

    Kept because it is what holds the parser above httpx-sse: measured side by side
    (benchmarks/bench_sse.py, one run, 2 cores), plain ``SSEEvent(...)`` construction
    drops 64 KiB pieces from 1.24x to 0.63x httpx-sse's throughput and one-event
    pieces from 1.31x to 0.78x. The differential tests against httpx-sse guard it.
    """

    __slots__ = ("arrived_at", "data", "end", "event", "id", "retry", "start")  # CPython sorts slots anyway
    data: str
    event: str
    id: str | None
    retry: int | None
    start: int
    end: int
    arrived_at: float


_new_object = object.__new__


class SSEParser:
    """Incremental event-stream parser: ``feed()`` raw body bytes, then ``close()``.

    Chunks must be ``bytes`` (they are kept as-is in the transcript).
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
        # The transcript as two flat lists on the hot path: bytes and floats are
        # not GC-tracked, so 100k tiny chunks trigger no garbage collections
        # (a tuple per chunk did, costing ~15% at 7 B/chunk). RawChunk objects
        # are built on access of ``transcript``; offsets are summed lazily.
        self._chunk_data: list[bytes] = []
        self._chunk_clock: list[float] = []  # raw clock() values
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
        self._partial = bytearray()  # current unterminated line (its start) ...
        self._line_chunks_from = 0  # ... continued by _chunk_data[this index:]
        self._bom_checked = False
        # A CR as the last byte may be the first half of CRLF: the line it ends
        # stays in ``_partial`` (CR included) until the next byte decides, so
        # offsets are identical however the stream is chunked.
        self._cr_held = False
        self._cr_time = 0.0
        # feed()'s single check for "take the fast path": max_bytes normally,
        # -1 when stopped, BOM undecided or CR held.
        self._fast_limit = -1
        self._error: SSELimitExceeded | None = None

    # ------------------------------------------------------------------ API

    @property
    def transcript(self) -> list[RawChunk]:
        """Every fed chunk with its stream offset and arrival time."""
        cache = self._transcript
        done = len(cache)
        if done < len(self._chunk_data):
            offset = cache[-1].offset + len(cache[-1].data) if cache else 0
            t0 = self._t0
            for data, clock_time in zip(self._chunk_data[done:], self._chunk_clock[done:], strict=True):
                cache.append(RawChunk(offset, data, clock_time - t0))
                offset += len(data)
        return cache

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse one chunk; return the events it completed.

        Raises SSELimitExceeded once more than ``max_bytes`` bytes or
        ``max_events`` events arrive; bytes up to the bound are still parsed.
        """
        # Hot path: at one chunk per event or per few bytes, every statement
        # here shows in the benchmark. Unusual states (stopped, BOM undecided,
        # CR held) set _fast_limit to -1 and so take _feed_slow.
        size = len(chunk)
        received = self.bytes_received
        if received + size > self._fast_limit or not size:
            return self._feed_slow(chunk)
        chunk_data = self._chunk_data
        # Membership tests use the ints 10/13: `b"\n" in chunk` costs ~8x more
        # (buffer protocol), which at 7 B/chunk was most of the time spent here.
        if 10 not in chunk and 13 not in chunk:
            # Mid-line piece: it waits in the transcript (no copy, no rescan)
            # until the chunk that ends its line joins it in one go.
            chunk_data.append(chunk)
            self._chunk_clock.append(self._clock())
            self.bytes_received = received + size
            return []
        clock_time = self._clock()
        now = clock_time - self._t0
        waiting = self._line_chunks_from
        chunk_data.append(chunk)
        self._chunk_clock.append(clock_time)
        self.bytes_received = received + size
        self._line_chunks_from = len(chunk_data)
        partial = self._partial
        if partial or waiting < len(chunk_data) - 1:
            pieces: list[bytes | bytearray] = [partial]
            pieces += chunk_data[waiting:]  # the waiting mid-line pieces, then this chunk
            chunk = b"".join(pieces)  # each byte is joined once, when its line ends
            partial.clear()
            size = len(chunk)
        # The common case, one whole one-line `data:` event (servers flush per
        # event), maybe followed by the start of the next line: skip the
        # general line machinery for it, with the same result.
        i = chunk.find(10)
        if (
            i + 1 < size
            and chunk[i + 1] == 10
            and chunk.find(10, i + 2) < 0
            and 13 not in chunk
            and not self._data
            and not self._dirty
        ):
            try:
                text = chunk[:i].decode()
            except UnicodeDecodeError:
                text = ""  # the general path records the anomaly
            if text[:5] == "data:":
                events = self.events
                end = self._pos + i + 2
                if len(events) >= self.max_events:
                    raise self._fail_max_events(self._block_start, end)
                ev = _new_object(_EventTwin)
                ev.data = text[6:] if text[5:6] == " " else text[5:]
                ev.event = ""
                ev.id = self._last_id
                ev.retry = None
                ev.start = self._block_start  # earlier comment lines belong to the block
                ev.end = end
                ev.arrived_at = now
                ev.__class__ = SSEEvent  # type: ignore[assignment]
                events.append(ev)  # type: ignore[arg-type]
                self._pos = self._block_start = end
                if i + 2 < size:
                    partial += chunk[i + 2 :]  # the next line's start, no terminator yet
                return [ev]  # type: ignore[list-item]
        events = self.events
        n_before = len(events)
        self._lines_from(chunk, now)
        return events[n_before:] if len(events) > n_before else []

    def close(self) -> list[SSEEvent]:
        """End of stream. Never dispatches an unterminated event (per spec);
        records its raw text in ``pending_incomplete`` instead."""
        if self.closed or self._error is not None:
            self.closed = True
            return []
        self.closed = True
        self._fast_limit = -1
        self._flush_waiting()
        self._bom_checked = True  # a lone BOM prefix is just an unterminated line
        n_before = len(self.events)
        if self._cr_held:
            self._resolve_held_cr(b"")
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
        return self.events[n_before:]

    # -------------------------------------------------------- line assembly

    def _feed_slow(self, chunk: bytes) -> list[SSEEvent]:
        if self._error is not None:
            raise self._error
        if self.closed:
            raise RuntimeError("SSEParser.feed() after close()")
        if not chunk:
            return []
        received = self.bytes_received
        remaining = self.max_bytes - received
        if len(chunk) > remaining:
            if remaining:
                self.feed(chunk[:remaining])  # events inside the bound still count
            raise self._fail(
                "max_bytes",
                self.max_bytes,
                f"max_bytes limit of {self.max_bytes} bytes exceeded by a chunk of "
                f"{len(chunk)} bytes ({len(chunk) - remaining} bytes over)",
            )
        # BOM undecided or CR held: same bookkeeping as feed(), then the general path.
        self._flush_waiting()
        clock_time = self._clock()
        now = clock_time - self._t0
        if not received:
            self.first_byte_at = now
        self._chunk_data.append(chunk)
        self._chunk_clock.append(clock_time)
        self._line_chunks_from = len(self._chunk_data)  # _consume takes this chunk itself
        self.bytes_received = received + len(chunk)
        return self._consume(chunk, now)

    def _flush_waiting(self) -> None:
        """Move the mid-line pieces feed() left in the transcript into _partial."""
        waiting = self._line_chunks_from
        if waiting < len(self._chunk_data):
            self._partial += b"".join(self._chunk_data[waiting:])
            self._line_chunks_from = len(self._chunk_data)

    def _refresh_fast_limit(self) -> None:
        fast = self._bom_checked and not self._cr_held and not self.closed and self._error is None
        self._fast_limit = self.max_bytes if fast else -1

    def _consume(self, chunk: bytes, now: float) -> list[SSEEvent]:
        """feed() in a special state: BOM still undecided, or a CR held."""
        events = self.events
        n_before = len(events)
        if not self._bom_checked:
            head = bytes(self._partial) + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._partial[:] = head
                return []
            self._bom_checked = True
            self._refresh_fast_limit()
            self._partial.clear()
            if head.startswith(_BOM):
                head = head[3:]
                self._pos = self._block_start = 3
            chunk = head
        if self._cr_held:
            chunk = self._resolve_held_cr(chunk)
        partial = self._partial
        if 10 not in chunk and 13 not in chunk:
            partial += chunk
        else:
            if partial:
                chunk = b"".join((partial, chunk))
                partial.clear()
            self._lines_from(chunk, now)
        return events[n_before:] if len(events) > n_before else []

    def _lines_from(self, data: bytes, now: float) -> None:
        """Interpret ``data`` (starting at a line start, holding at least one
        line terminator); keep the unterminated rest for later."""
        partial = self._partial  # empty: its bytes are already at the front of data
        n = len(data)
        if data[-1] == 13:  # trailing CR: hold its line until the next byte
            stop = max(data.rfind(10, 0, n - 1), data.rfind(13, 0, n - 1)) + 1
            partial += data[stop:]
            self._cr_held = True
            self._fast_limit = -1
            self._cr_time = now
        else:
            stop = max(data.rfind(10), data.rfind(13)) + 1
            if stop < n:
                partial += data[stop:]
        if stop:
            self._process(data if stop == n else data[:stop], now)

    def _resolve_held_cr(self, chunk: bytes) -> bytes:
        """Finish the line ended by a held CR; swallow the LF if it was CRLF."""
        self._cr_held = False
        self._refresh_fast_limit()
        line = bytes(self._partial)  # ends with the CR
        self._partial.clear()
        if chunk[:1] == b"\n":
            self._process(line + b"\n", self._cr_time)
            return chunk[1:]
        self._process(line, self._cr_time)
        return chunk

    def _process(self, region: bytes, now: float) -> None:
        """Interpret ``region``: complete lines, ending with a terminator."""
        pos = self._pos
        cr = 13 in region
        eols: Iterable[int]
        try:
            # One C-level decode for the whole region; safe because CR/LF can
            # never occur inside a multi-byte UTF-8 sequence.
            text = region.decode()
        except UnicodeDecodeError:
            lines, offs = self._split_invalid(region, pos, cr)
            self._run(lines, offs, now)
            return
        ascii_only = len(text) == len(region)  # then str length == byte length
        if not cr:
            self._run_blocks(text, None if ascii_only else region, now)
            return
        parts = _SPLIT_EOL_STR.split(text)
        lines = parts[0::2]
        lines.pop()  # empty remainder after the final terminator
        eols = map(len, parts[1::2])
        if ascii_only:
            sizes: Iterable[int] = map(len, lines)
        else:
            sizes = map(len, _SPLIT_EOL.split(region)[0::2])
        # Line start offsets, summed in C rather than per line in Python.
        self._run(lines, list(accumulate(map(add, sizes, eols), initial=pos)), now)

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

    def _run_blocks(self, text: str, region: bytes | None, now: float) -> None:
        """LF-only fast path: cut ``text`` at blank lines ("\\n\\n") so that the
        usual one-line ``data:`` event costs one loop iteration, not two.

        ``region`` is the raw bytes when ``text`` is not pure ASCII (block
        byte sizes must then come from the bytes), else None.
        """
        blocks = text.split("\n\n")
        tail = blocks.pop()  # after the last blank line: "" or lines ending in "\n"
        bblocks = region.split(b"\n\n") if region is not None else None
        offs = list(accumulate(map(add, map(len, bblocks or blocks), repeat(2)), initial=self._pos))
        events = self.events
        max_events = self.max_events
        last_id = self._last_id
        new_object, twin, event_cls = _new_object, _EventTwin, SSEEvent
        # Clean = no data/event:/retry: buffered from an earlier region. The
        # first block may still have begun earlier (comment or id: lines), so
        # its start is the carried-over block start, not its offset here.
        clean = not self._data and not self._dirty
        block_start = self._block_start
        # bblocks (when kept) runs alongside; repeat(b"") only fills the slot.
        byte_blocks: Iterable[bytes] = bblocks if bblocks is not None else repeat(b"")
        for block, start, end, bblock in zip(blocks, offs, islice(offs, 1, None), byte_blocks, strict=False):
            if clean and block[:5] == "data:" and "\n" not in block:
                if len(events) >= max_events:
                    raise self._fail_max_events(block_start, end)
                ev = new_object(twin)
                ev.data = block[6:] if block[5:6] == " " else block[5:]
                ev.event = ""
                ev.id = last_id
                ev.retry = None
                ev.start = block_start
                ev.end = end
                ev.arrived_at = now
                ev.__class__ = event_cls  # type: ignore[assignment]
                events.append(ev)  # type: ignore[arg-type]
            else:
                # General block: its lines, then the blank line that ends it.
                lines = block.split("\n")
                lines.append("")
                sizes: Iterable[int] = map(len, lines)
                if bblocks is not None:
                    sizes = chain(map(len, bblock.split(b"\n")), (0,))
                self._block_start = block_start
                self._pos = start
                self._run(lines, list(accumulate(map(add, sizes, repeat(1)), initial=start)), now)
                last_id = self._last_id
                clean = True  # a blank line always leaves the buffers empty
            block_start = end
        tail_start = offs[len(blocks)]  # offs has one extra entry when bblocks keeps the tail
        if blocks:
            self._pos = self._block_start = tail_start
        if tail:
            lines = tail.split("\n")
            lines.pop()
            # zip() in _run stops at the last line, so the bytes split's extra "" is harmless.
            sizes = map(len, bblocks[-1].split(b"\n") if bblocks is not None else lines)
            self._run(lines, list(accumulate(map(add, sizes, repeat(1)), initial=tail_start)), now)

    def _run(self, lines: list[str], offs: list[int], now: float) -> None:
        """Line loop; ``offs[i]`` is the stream offset of ``lines[i]``."""
        data = self._data
        events = self.events
        block_start = self._block_start
        try:
            for line, start, end in zip(lines, offs, islice(offs, 1, None), strict=False):
                if not line:  # blank line: dispatch (WHATWG "dispatch the event")
                    if data:
                        if len(events) >= self.max_events:
                            raise self._fail_max_events(block_start, end)
                        ev = _new_object(_EventTwin)
                        ev.data = "\n".join(data)
                        ev.event = self._event_type
                        ev.id = self._last_id
                        ev.retry = self._retry
                        ev.start = block_start
                        ev.end = end
                        ev.arrived_at = now
                        ev.__class__ = SSEEvent  # type: ignore[assignment]
                        events.append(ev)  # type: ignore[arg-type]
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

    def _fail_max_events(self, start: int, end: int) -> SSELimitExceeded:
        return self._fail(
            "max_events",
            self.max_events,
            f"max_events limit of {self.max_events} events exceeded by the event at bytes {start}..{end}",
        )

    def _fail(self, kind: str, limit: float, what: str) -> SSELimitExceeded:
        exc = SSELimitExceeded(
            kind,
            limit,
            f"{what}; received so far: {self.bytes_received} bytes in "
            f"{len(self._chunk_data)} chunks, {len(self.events)} events",
        )
        exc.parser = self
        self._error = exc
        self._fast_limit = -1
        return exc

    def _raw(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the stream, rebuilt from the transcript."""
        start = max(0, start)
        end = min(end, self.bytes_received)
        if start >= end:
            return b""
        offsets = list(accumulate(map(len, self._chunk_data), initial=0))
        i = bisect.bisect_right(offsets, start) - 1
        pieces: list[bytes] = []
        for offset, data in zip(offsets[i:], self._chunk_data[i:], strict=False):
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
