"""conformance.sse: the strict, incremental WHATWG event-stream parser.

Unit tests pin every interpretation rule; hypothesis checks that chunking never
changes the result; httpx-sse serves as a differential oracle on the subset of
streams it parses correctly.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.sse import (
    Anomaly,
    RawChunk,
    SSEEvent,
    SSELimitExceeded,
    SSEParser,
    read_sse,
    transcript_excerpt,
)

BOM = b"\xef\xbb\xbf"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def parse(
    stream: bytes,
    pieces: list[bytes] | None = None,
    *,
    max_bytes: int = 8_000_000,
    max_events: int = 10_000,
    max_records: int = 10_000,
) -> SSEParser:
    """Feed ``pieces`` (default: the whole ``stream`` at once), then close."""
    parser = SSEParser(max_bytes=max_bytes, max_events=max_events, max_records=max_records)
    for piece in pieces if pieces is not None else [stream]:
        parser.feed(piece)
    parser.close()
    return parser


def one_byte_pieces(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


Full = tuple[str, str, str | None, int | None, int, int]  # data, event, id, retry, start, end


def summary(parser: SSEParser) -> list[tuple[str, str, str | None, int | None]]:
    return [(e.data, e.event, e.id, e.retry) for e in parser.events]


def kinds(parser: SSEParser) -> list[str]:
    return [a.kind for a in parser.anomalies]


# --------------------------------------------------------------- line endings


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_every_line_ending_gives_the_same_events(eol: bytes) -> None:
    stream = eol.join([b"event: e", b"id: 1", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    for pieces in ([stream], one_byte_pieces(stream)):
        parser = parse(stream, pieces)
        assert summary(parser) == [("a\nb", "e", "1", None), ("c", "", "1", None)]
        assert parser.events[-1].end == len(stream)
        assert parser.anomalies == []


def test_cr_at_chunk_end_followed_by_lf_is_one_line_ending() -> None:
    # Were "\r" | "\n" counted as two endings, the LF would be a blank line dispatching "a" alone.
    parser = parse(b"", [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert summary(parser) == [("a\nb", "", None, None)]
    assert (parser.events[0].start, parser.events[0].end) == (0, 20)


def test_cr_alone_at_chunk_end_then_other_byte_is_a_line_ending() -> None:
    parser = parse(b"", [b"data: a\r", b"data: b\r", b"\r"])
    assert summary(parser) == [("a\nb", "", None, None)]
    assert parser.events[0].end == 17


def test_blank_line_ended_by_held_cr_dispatches_on_next_byte_with_cr_arrival_time() -> None:
    clock = FakeClock()
    parser = SSEParser(clock=clock)
    clock.now = 101.0
    assert parser.feed(b"data: x\r\r") == []  # the final CR might still be the start of CRLF
    clock.now = 105.0
    [event] = parser.feed(b"\n")
    assert (event.data, event.end, event.arrived_at) == ("x", 10, 1.0)


def test_held_cr_blank_line_dispatches_at_close() -> None:
    parser = SSEParser()
    parser.feed(b"data: x\r\r")
    [event] = parser.close()
    assert (event.data, event.end) == ("x", 9)
    assert parser.pending_incomplete is None


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_unicode_line_breaks_do_not_end_lines(sep: str) -> None:
    # httpx-sse issue #34: str.splitlines() split an event at U+2028.
    stream = f"data: a{sep}b\ndata: c{sep}\n\n".encode()
    for pieces in ([stream], one_byte_pieces(stream)):
        assert summary(parse(stream, pieces)) == [(f"a{sep}b\nc{sep}", "", None, None)]


# ------------------------------------------------------------------- fields


def test_bom_is_skipped_and_counted_in_offsets() -> None:
    stream = BOM + b"data: x\n\n"
    for pieces in ([stream], one_byte_pieces(stream)):
        parser = parse(stream, pieces)
        assert summary(parser) == [("x", "", None, None)]
        assert (parser.events[0].start, parser.events[0].end) == (3, 12)
        assert parser.anomalies == []


def test_only_a_leading_bom_is_skipped() -> None:
    parser = parse(b"data: x\n" + BOM + b"data: y\n\n")
    assert summary(parser) == [("x", "", None, None)]
    assert [(a.offset, a.kind) for a in parser.anomalies] == [(8, "unknown-field")]
    assert parser.anomalies[0].detail == "\ufeffdata: y"


def test_lone_bom_prefix_is_an_unterminated_line() -> None:
    parser = parse(b"\xef\xbb")
    assert parser.events == []
    assert kinds(parser) == ["unterminated-line"]


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (b"data:{}", "{}"),
        (b"data: {}", "{}"),
        (b"data:  two", " two"),
        (b"data:", ""),
        (b"data: ", ""),
        (b"data", ""),
        (b"data:\tx", "\tx"),
        (b"data: a: b", "a: b"),
    ],
)
def test_one_leading_space_is_removed_from_the_value(line: bytes, value: str) -> None:
    assert summary(parse(line + b"\n\n")) == [(value, "", None, None)]


def test_multi_line_data_is_joined_with_lf() -> None:
    assert summary(parse(b"data: a\ndata:\ndata: b\n\n")) == [("a\n\nb", "", None, None)]


def test_comments_are_recorded_but_produce_no_event() -> None:
    parser = parse(b": keep-alive\n\n:\ndata: x\n: inside\n\n")
    assert summary(parser) == [("x", "", None, None)]
    assert parser.comments == [(0, " keep-alive"), (14, ""), (24, " inside")]
    assert parser.comment_count == 3
    # The block starts at its first line, the comment included.
    assert (parser.events[0].start, parser.events[0].end) == (14, 34)


def test_event_type_is_reset_after_each_dispatch() -> None:
    parser = parse(b"event: delta\ndata: 1\n\ndata: 2\n\n")
    assert summary(parser) == [("1", "delta", None, None), ("2", "", None, None)]


def test_last_event_id_persists_and_nul_ids_are_ignored() -> None:
    parser = parse(b"id: 7\ndata: a\n\ndata: b\n\nid: x\x00y\ndata: c\n\nid\ndata: d\n\n")
    assert summary(parser) == [("a", "", "7", None), ("b", "", "7", None), ("c", "", "7", None), ("d", "", "", None)]
    assert kinds(parser) == ["id-with-nul"]
    assert parser.last_event_id == ""


@pytest.mark.parametrize("value", [b"abc", b"1.5", b"-1", b"+1", b" 12", b"1_000", "١٢".encode(), "１２".encode(), b""])
def test_retry_must_be_ascii_digits(value: bytes) -> None:
    parser = parse(b"retry: 5\nretry: " + value + b"\ndata: x\n\n")
    assert summary(parser) == [("x", "", None, 5)]
    assert kinds(parser) == ["bad-retry"]


def test_retry_belongs_to_the_event_that_carried_it() -> None:
    parser = parse(b"retry: 3000\ndata: a\n\ndata: b\n\n")
    assert summary(parser) == [("a", "", None, 3000), ("b", "", None, None)]


def test_line_without_colon_is_a_field_with_empty_value() -> None:
    parser = parse(b"event\ndata\n\nfoo\ndata: x\n\n")
    assert summary(parser) == [("", "", None, None), ("x", "", None, None)]
    assert parser.anomalies == [Anomaly(12, "unknown-field", "foo")]


def test_unknown_fields_are_anomalies_with_offset_and_line_text() -> None:
    parser = parse(b'data: 1\n\n{"choices": []}\nDATA: x\n\n')
    assert parser.events[0].data == "1"
    assert len(parser.events) == 1
    assert [(a.offset, a.kind, a.detail) for a in parser.anomalies] == [
        (9, "unknown-field", '{"choices": []}'),
        (25, "unknown-field", "DATA: x"),
    ]


def test_anomaly_details_are_truncated_but_offsets_exact() -> None:
    parser = parse(b"data: a\n\n" + b"x" * 5000 + b"\ndata: b\n\n")
    [anomaly] = parser.anomalies
    assert (anomaly.offset, anomaly.kind) == (9, "unknown-field")
    assert anomaly.detail == "x" * 500 + "... (5000 chars)"
    assert [e.data for e in parser.events] == ["a", "b"]


def test_blank_line_with_empty_data_dispatches_nothing() -> None:
    parser = parse(b"\n\n\nevent: e\n\nretry: 1\n\nid: 4\n\ndata: x\n\n")
    assert summary(parser) == [("x", "", "4", None)]
    assert kinds(parser) == ["event-without-data"]
    assert parser.events[0].start == 30


def test_unterminated_last_event_is_reported_not_dispatched() -> None:
    parser = SSEParser()
    parser.feed(b"data: a\n\ndata: b\ndata: c\n")
    assert parser.close() == []
    assert summary(parser) == [("a", "", None, None)]
    assert parser.pending_incomplete == "data: b\ndata: c\n"
    assert [(a.offset, a.kind) for a in parser.anomalies] == [(9, "incomplete-event")]


def test_unterminated_last_line_is_reported() -> None:
    parser = parse(b"data: a\n\ndata: [DONE]")
    assert summary(parser) == [("a", "", None, None)]
    assert parser.pending_incomplete == "data: [DONE]"
    assert kinds(parser) == ["unterminated-line", "incomplete-event"]


def test_trailing_partial_comment_is_not_an_incomplete_event() -> None:
    parser = parse(b"data: a\n\n: ping")
    assert parser.pending_incomplete is None
    assert kinds(parser) == ["unterminated-line"]


def test_invalid_utf8_is_replaced_and_recorded() -> None:
    stream = b"data: ok\n\ndata: \xff\xfe!\n\ndata: \xe2\x82\n\ndata: \xe2\x82\xac\n\n"
    for pieces in ([stream], one_byte_pieces(stream)):
        parser = parse(stream, pieces)
        assert [e.data for e in parser.events] == ["ok", "\ufffd\ufffd!", "\ufffd", "\u20ac"]
        assert [(a.offset, a.kind) for a in parser.anomalies] == [(10, "invalid-utf8"), (21, "invalid-utf8")]
        assert [(e.start, e.end) for e in parser.events] == [(0, 10), (10, 21), (21, 31), (31, 42)]


def test_offsets_transcript_and_arrival_times() -> None:
    clock = FakeClock()
    parser = SSEParser(clock=clock)
    clock.now = 100.5
    assert parser.feed(b"data: a\n\nda") == [parser.events[0]]
    clock.now = 102.0
    evs = parser.feed("ta: é\r\n\r\n: c\n".encode())
    parser.close()
    assert [(e.start, e.end, e.arrived_at) for e in parser.events] == [(0, 9, 0.5), (9, 21, 2.0)]
    assert evs == [parser.events[1]]
    assert parser.transcript == [RawChunk(0, b"data: a\n\nda", 0.5), RawChunk(11, "ta: é\r\n\r\n: c\n".encode(), 2.0)]
    assert parser.bytes_received == 25
    assert parser.first_byte_at == 0.5
    assert parser.comments == [(21, " c")]


def test_events_are_genuine_frozen_sse_events() -> None:
    [event] = parse(b"event: e\nid: 1\nretry: 2\ndata: x\n\n").events
    assert type(event) is SSEEvent
    assert event == SSEEvent("x", "e", "1", 2, 0, 33, event.arrived_at)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = "y"  # type: ignore[misc]
    assert event.to_json() == {
        "data": "x",
        "event": "e",
        "id": "1",
        "retry": 2,
        "start": 0,
        "end": 33,
        "arrived_at": event.arrived_at,
    }


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([b"data: a\n\n", b"data:b\n\n", b"data:\n\n"], [("a", 0, 9), ("b", 9, 17), ("", 17, 24)]),
        ([b": hi\n", b"data: a\n\n"], [("a", 0, 14)]),  # the comment line starts the block
        ([b": hi\n", b"data: a\n\ndata: b\n\n"], [("a", 0, 14), ("b", 14, 23)]),
        ([b"id: 1\n", b"data: a\n\n", b"data: b\n\n"], [("a", 0, 15), ("b", 15, 24)]),
        ([b"data: a\n", b"data: b\n\n"], [("a\nb", 0, 17)]),  # data already buffered
        ([b"da", b"ta: a\n\n"], [("a", 0, 9)]),  # a partial line is pending
        ([b"event: e\n", b"data: a\n\n"], [("a", 0, 18)]),
        ([b"data: \xc3\xa9\n\n", b"data: \xff\n\n"], [("\u00e9", 0, 10), ("\ufffd", 10, 19)]),
        ([b"data: a\r\n\n"], [("a", 0, 10)]),
        ([b"\n\n", b"data\n\n"], [("", 2, 8)]),
    ],
)
def test_one_event_per_chunk(pieces: list[bytes], expected: list[tuple[str, int, int]]) -> None:
    parser = SSEParser()
    returned = [event for piece in pieces for event in parser.feed(piece)]
    parser.close()
    assert returned == parser.events
    assert [(e.data, e.start, e.end) for e in parser.events] == expected
    assert _full(parse(b"".join(pieces))) == _full(parser)


def test_huge_line_in_tiny_pieces_and_in_one_chunk() -> None:
    body = b"x" * 300_000
    stream = b"data: " + body + b"\n\n"
    pieces = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    for p in (parse(stream, pieces, max_bytes=10**6), parse(stream, max_bytes=10**6)):
        assert [(e.data, e.end) for e in p.events] == [(body.decode(), len(stream))]


def test_comment_and_anomaly_storage_is_capped_but_counted() -> None:
    parser = parse(b":\nx\n" * 50, max_records=10)
    assert (len(parser.comments), parser.comment_count) == (10, 50)
    assert (len(parser.anomalies), parser.anomaly_count) == (10, 50)


# -------------------------------------------------------------------- limits


def test_max_bytes_raises_after_parsing_what_fits() -> None:
    parser = SSEParser(max_bytes=20)
    parser.feed(b"data: a\n\n")
    with pytest.raises(SSELimitExceeded) as info:
        parser.feed(b"data: b\n\ndata: c\n\n")
    exc = info.value
    assert (exc.kind, exc.limit, exc.parser) == ("max_bytes", 20, parser)
    assert "max_bytes" in str(exc)
    assert "20" in str(exc)
    assert "received so far: 20 bytes" in str(exc)
    assert summary(parser) == [("a", "", None, None), ("b", "", None, None)]
    assert parser.bytes_received == 20
    with pytest.raises(SSELimitExceeded):
        parser.feed(b"x")
    assert parser.close() == []


def test_exactly_max_bytes_is_allowed() -> None:
    stream = b"data: a\n\n"
    assert len(parse(stream, max_bytes=len(stream)).events) == 1


@pytest.mark.parametrize("stream", [b"data: x\n\n" * 4, b"data: x\r\n\r\n" * 4, b"event: e\ndata: x\n\n" * 4])
def test_max_events_raises_on_the_first_event_over_the_bound(stream: bytes) -> None:
    assert len(parse(stream, max_events=4).events) == 4
    parser = SSEParser(max_events=3)
    with pytest.raises(SSELimitExceeded) as info:
        parser.feed(stream)
    assert (info.value.kind, info.value.limit) == ("max_events", 3)
    assert "max_events limit of 3" in str(info.value)
    assert len(parser.events) == 3


def test_max_events_with_one_event_per_chunk() -> None:
    parser = SSEParser(max_events=2)
    parser.feed(b"data: a\n\n")
    parser.feed(b"data: b\n\n")
    with pytest.raises(SSELimitExceeded) as info:
        parser.feed(b"data: c\n\n")
    assert info.value.kind == "max_events"
    assert [e.data for e in parser.events] == ["a", "b"]
    with pytest.raises(SSELimitExceeded):
        parser.feed(b"data: d\n\n")


def test_max_bytes_in_the_middle_of_a_line() -> None:
    parser = SSEParser(max_bytes=10)
    parser.feed(b"data: ")
    with pytest.raises(SSELimitExceeded) as info:
        parser.feed(b"x" * 100)
    assert (info.value.kind, parser.bytes_received) == ("max_bytes", 10)
    assert b"".join(c.data for c in parser.transcript) == b"data: xxxx"


def test_feed_after_close_is_an_error() -> None:
    parser = parse(b"data: x\n\n")
    with pytest.raises(RuntimeError):
        parser.feed(b"data: y\n\n")


# ------------------------------------------------------------------ read_sse


def test_read_sse_parses_and_closes() -> None:
    parser = read_sse(iter([b"data: a\n", b"\ndata: b\n"]))
    assert summary(parser) == [("a", "", None, None)]
    assert parser.closed
    assert parser.pending_incomplete == "data: b\n"


def test_read_sse_deadline_with_fake_clock() -> None:
    clock = FakeClock()

    def chunks() -> Iterator[bytes]:
        for i in range(10):
            clock.now += 1.0  # each chunk takes one second to arrive
            yield f"data: {i}\n\n".encode()

    with pytest.raises(SSELimitExceeded) as info:
        read_sse(chunks(), deadline_s=3.5, clock=clock)
    exc = info.value
    assert (exc.kind, exc.limit) == ("deadline", 3.5)
    assert "deadline of 3.5 s exceeded after 4.000 s" in str(exc)
    assert exc.parser is not None
    assert [e.data for e in exc.parser.events] == ["0", "1", "2", "3"]
    assert [e.arrived_at for e in exc.parser.events] == [1.0, 2.0, 3.0, 4.0]


def test_read_sse_attaches_the_parser_to_transport_errors() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"data: a\n\n"
        raise httpx.ReadTimeout("slow")

    with pytest.raises(httpx.ReadTimeout) as info:
        read_sse(chunks())
    assert [e.data for e in info.value.parser.events] == ["a"]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- excerpts


def test_transcript_excerpt_marks_and_escapes() -> None:
    parser = parse(b"data: a\n\ndata: \xff\\\t" + "\u2028".encode() + b"\r\n\r\n: tail\n")
    event = parser.events[1]
    text = transcript_excerpt(parser, event.start, event.end, context=4)
    assert text == "bytes 9..25 of 32: ... a\\n\\n>>>data: \\xff\\\\\\t\\u2028\\r\\n\\r\\n<<<: ta..."
    full = transcript_excerpt(parser, 0, 9)
    assert full.startswith("bytes 0..9 of 32: >>>data: a\\n\\n<<<data")
    assert not full.endswith("...")


# ------------------------------------------------------ property: chunking


@dataclass
class Gen:
    """A generated stream and what a correct parser must extract from it."""

    stream: bytes
    events: list[Full] = field(default_factory=list)


ANY_TEXT = st.text(st.characters(exclude_characters="\r\n", codec="utf-8"), max_size=12)
ID_TEXT = st.text(st.characters(exclude_characters="\r\n\x00", codec="utf-8"), max_size=12)
WEIRD = st.sampled_from(["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "é", "😀", ":", " ", "\x00"])
DATA_TEXT = st.lists(st.one_of(ANY_TEXT, WEIRD), max_size=4).map("".join)


def _field_line(draw: st.DrawFn, name: str, value: str) -> str:
    # "name:value" only when that cannot lose a leading space of the value.
    if value.startswith(" ") or draw(st.booleans()):
        return f"{name}: {value}"
    return f"{name}:{value}"


@st.composite
def streams(
    draw: st.DrawFn,
    eols: tuple[str, ...] = ("\n", "\r", "\r\n"),
    text: st.SearchStrategy[str] = DATA_TEXT,
    comment_blocks: bool = True,
) -> Gen:
    gen = Gen(b"")
    out = bytearray(BOM if draw(st.booleans()) else b"")
    prev_eol = ""
    last_id: str | None = None

    def emit(line: str) -> None:
        nonlocal prev_eol
        eol = draw(st.sampled_from(eols))
        if prev_eol == "\r" and not line and eol == "\n":
            eol = "\r"  # "\r" + "" + "\n" would merge into one CRLF
        out.extend((line + eol).encode())
        prev_eol = eol

    for _ in range(draw(st.integers(0, 6))):
        if comment_blocks and draw(st.integers(0, 4)) == 0:
            emit(":" + draw(ANY_TEXT))
            emit("")
            continue
        start = len(out)
        event_type, retry = "", None
        lines = draw(st.lists(text, min_size=1, max_size=3))
        pending = [("data", value) for value in lines]
        if draw(st.booleans()):
            event_type = draw(ANY_TEXT)
            pending.insert(draw(st.integers(0, len(pending))), ("event", event_type))
        if draw(st.booleans()):
            new_id = draw(ID_TEXT)
            pending.insert(draw(st.integers(0, len(pending))), ("id", new_id))
            last_id = new_id
        if draw(st.booleans()):
            retry = draw(st.integers(0, 10**6))
            pending.insert(draw(st.integers(0, len(pending))), ("retry", str(retry)))
        for name, value in pending:
            if draw(st.integers(0, 5)) == 0:
                emit(":" + draw(ANY_TEXT))
            emit(_field_line(draw, name, value))
        emit("")
        gen.events.append(("\n".join(lines), event_type, last_id, retry, start, len(out)))
    gen.stream = bytes(out)
    return gen


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def _full(parser: SSEParser) -> list[Full]:
    return [(e.data, e.event, e.id, e.retry, e.start, e.end) for e in parser.events]


@settings(deadline=None, derandomize=True, max_examples=200)
@given(streams(), st.lists(st.integers(0, 10**6), max_size=20))
def test_chunking_never_changes_the_result(gen: Gen, cuts: list[int]) -> None:
    whole = parse(gen.stream)
    assert _full(whole) == gen.events
    assert whole.anomalies == []
    assert whole.pending_incomplete is None
    at_event_ends = _cut(gen.stream, [e[5] for e in gen.events])  # one chunk per event, as servers flush
    for pieces in (at_event_ends, _cut(gen.stream, cuts), one_byte_pieces(gen.stream)):
        split = parse(gen.stream, pieces)
        assert _full(split) == gen.events
        assert split.comments == whole.comments
        assert b"".join(c.data for c in split.transcript) == gen.stream


@settings(deadline=None, derandomize=True, max_examples=60)
@given(streams(), st.integers(1, 10**6))
def test_truncated_streams_report_the_incomplete_event(gen: Gen, cut: int) -> None:
    end = cut % (len(gen.stream) + 1)
    parser = parse(gen.stream[:end])
    complete = [e for e in gen.events if e[5] <= end]
    # A trailing CR may be half of a CRLF blank line: close() still dispatches it.
    assert _full(parser)[: len(complete)] == complete
    assert len(parser.events) - len(complete) <= 1
    if parser.pending_incomplete is not None:
        assert gen.stream[:end].decode("utf-8", "replace").endswith(parser.pending_incomplete)


# ------------------------------------- property: arbitrary bytes vs reference

# fmt: off
TOKENS = [
    b"data", b"data:", b"data: ", b"event:", b"id: ", b"id", b"retry:", b"retry: 12", b":", b" ", b"x",
    b"\n", b"\r", b"\r\n", b"\n\n", b"\xff", b"\xe2\x82", b"\xe2\x82\xac", BOM, b"\x00", "\u2028".encode(),
]
# fmt: on


def reference(stream: bytes) -> tuple[list[Full], list[tuple[int, str]], list[tuple[int, str]], str | None]:
    """The WHATWG algorithm written the obvious (slow) way, on the whole stream at once."""
    pos = 3 if stream.startswith(BOM) else 0
    events: list[Full] = []
    comments: list[tuple[int, str]] = []
    anomalies: list[tuple[int, str]] = []
    data: list[str] = []
    event_type, last_id, retry, block_start = "", None, None, pos
    matches = list(re.finditer(rb"([^\r\n]*)(\r\n|\r|\n)", stream[pos:]))
    for m in matches:
        start, end = pos + m.start(), pos + m.end()
        raw = m.group(1)
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            line = raw.decode("utf-8", "replace")
            anomalies.append((start, "invalid-utf8"))
        if not line:
            if data:
                events.append(("\n".join(data), event_type, last_id, retry, block_start, end))
            elif event_type:
                anomalies.append((block_start, "event-without-data"))
            data, event_type, retry, block_start = [], "", None, end
            continue
        if line.startswith(":"):
            comments.append((start, line[1:]))
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id":
            if "\x00" in value:
                anomalies.append((start, "id-with-nul"))
            else:
                last_id = value
        elif name == "retry":
            if value and all(c in "0123456789" for c in value):
                retry = int(value)
            else:
                anomalies.append((start, "bad-retry"))
        else:
            anomalies.append((start, "unknown-field"))
    tail_start = pos + (matches[-1].end() if matches else 0)
    tail = stream[tail_start:]
    pending = None
    if tail:
        anomalies.append((tail_start, "unterminated-line"))
    if data or tail.partition(b":")[0] == b"data":
        pending = stream[block_start:].decode("utf-8", "replace")
        anomalies.append((block_start, "incomplete-event"))
    return events, comments, sorted(anomalies), pending


@settings(deadline=None, derandomize=True, max_examples=200)
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join), st.lists(st.integers(0, 10**6), max_size=10))
def test_arbitrary_bytes_match_the_reference_algorithm(stream: bytes, cuts: list[int]) -> None:
    expected = reference(stream)
    at_blank_lines = _cut(stream, [m.end() for m in re.finditer(rb"\n\n", stream)])
    for pieces in ([stream], at_blank_lines, _cut(stream, cuts), one_byte_pieces(stream)):
        parser = parse(stream, pieces)
        anomalies = sorted((a.offset, a.kind) for a in parser.anomalies)
        assert (_full(parser), parser.comments, anomalies, parser.pending_incomplete) == expected


# ------------------------------------------------- differential: httpx-sse

SAFE_TEXT = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"], exclude_characters="\r\n\x85\u2028\u2029"),
    max_size=15,
)


def _httpx_sse(stream: bytes) -> list[tuple[str, str, str, int | None]]:
    decoder = SSEDecoder()
    text = stream.decode("utf-8-sig")
    events = []
    for line in re.split(r"\r\n|\n", text)[:-1]:
        sse = decoder.decode(line)
        if sse is not None:
            events.append((sse.data, sse.event, sse.id, sse.retry))
    return events


@settings(deadline=None, derandomize=True, max_examples=200)
@given(
    st.sampled_from([("\n",), ("\r\n",), ("\n", "\r\n")]).flatmap(
        lambda eols: streams(eols=eols, text=SAFE_TEXT, comment_blocks=False)
    )
)
def test_matches_httpx_sse_line_by_line(gen: Gen) -> None:
    ours = [(e.data, e.event or "message", e.id or "", e.retry) for e in parse(gen.stream).events]
    assert ours == _httpx_sse(gen.stream)


def test_known_difference_u2028_httpx_sse_0_4_3_agrees_but_httpx_iter_lines_splits() -> None:
    # httpx-sse issue #34 (fixed by its own SSELineDecoder in 0.4.x): lines came from
    # httpx's iter_lines(), which uses str.splitlines() and breaks at U+2028.
    stream = "data: a\u2028b\n\n".encode()
    assert SSELineDecoder().decode(stream.decode()) == ["data: a\u2028b", ""]
    response = httpx.Response(200, content=stream)
    assert list(response.iter_lines()) == ["data: a", "b", ""]
    assert summary(parse(stream)) == [("a\u2028b", "", None, None)]


def test_known_differences_from_httpx_sse() -> None:
    # 1. httpx-sse dispatches data-less blocks once an id was seen; the spec (and we) do not.
    stream = b"id: 1\ndata: a\n\n: keep-alive\n\n"
    assert [sse[0] for sse in _httpx_sse(stream)] == ["a", ""]
    assert [e.data for e in parse(stream).events] == ["a"]
    # 2. httpx-sse takes retry via int(), which accepts signs, spaces and underscores.
    stream = b"retry: +1_0\ndata: a\n\n"
    assert _httpx_sse(stream)[0][3] == 10
    assert parse(stream).events[0].retry is None
