"""Bounded, recorded HTTP against the target.

Every request goes through `Recorder.request`, which

- bounds it: connect and read timeouts, a total deadline that also covers the status line and the
  headers (enforced in the socket reads, so a server dripping one byte at a time cannot outlive it),
  a maximum body size and a maximum number of SSE events;
- retries 429 and 503 with Retry-After (exponential backoff when the header is absent), pauses the
  whole session meanwhile, and never retries any other status;
- limits parallelism to the run's concurrency, serving the longest checks first;
- counts requests and tokens against the session's budget and breaker;
- keeps a redacted transcript (`Exchange`) that reports render later.

Outcome of one request, from the target's behaviour:

    complete response ................................ judged by the check
    bound hit after the target sent something ........ `limit_exceeded`: a failure of the check
      (too big, too many events, too slow, stalled)
    no usable answer ................................. `error`: the check's verdict is error
      (refused, reset, not HTTP, silent until a timeout)
    429/503 still after every retry .................. `RateLimited`: the check's verdict is error
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

import httpx

from ..errors import BudgetExhausted, CheckFailed
from ..sse import SSELimitExceeded, SSEParser
from .budget import Limits
from .exchange import Exchange, RateLimited, TargetDown, limit_failure
from .gate import Held, current_priority
from .redact import redact_headers
from .session import Session, Target
from .transport import Deadline, request_deadline

RETRIED_STATUSES = (429, 503)


@dataclass(frozen=True, slots=True)
class _Prepared:
    exchange: Exchange
    headers: dict[str, str]
    content: bytes | None
    stream: bool | None
    json_body: Any


class Recorder:
    """The per-check view of the session: makes requests and keeps their transcripts."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.exchanges: list[Exchange] = []
        # Scheduling priority of this check's requests (lower first), set by the engine.
        self.priority = 0
        # Who sends (the check ID), for the run's record of contention.
        self.label = ""
        # A load check's requests: what fails is its evidence, never a reason to lower the run's
        # concurrency or to trip the breaker (set by the engine).
        self.probe = False
        self._held: Held | None = None  # slots taken together (`together`)
        # What this check itself sent (shared exchanges fetched by another check are not counted).
        self.sent = 0
        self.tokens = 0
        self._lock = threading.Lock()  # `submit` sends from other threads

    @property
    def target(self) -> Target:
        return self.session.target

    def auth_headers(self, api_key: str | EllipsisType | None = ...) -> dict[str, str]:
        """The Authorization header: the run's key by default, `api_key` (None: no header) otherwise."""
        key = self.session.target.api_key if api_key is ... else api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        api_key: str | EllipsisType | None = ...,
        stream: bool | None = None,
    ) -> Exchange:
        """Send one request and read the whole (bounded) response.

        `stream` forces SSE parsing; by default the body is parsed as SSE when the target says
        text/event-stream. Raises BudgetExhausted, TargetDown, or RateLimited (429/503 outlived
        the retries); every other outcome is in the returned Exchange.
        """
        prepared = self._prepare(method, path, json_body=json_body, content=content, headers=headers,
                                 api_key=api_key, stream=stream)
        return self._perform(prepared, current_priority(self.priority))

    def submit(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        api_key: str | EllipsisType | None = ...,
        stream: bool | None = None,
    ) -> concurrent.futures.Future[Exchange]:
        """Like `request`, without waiting: `future.result()` gives the Exchange or raises what `request` would.

        For probes whose requests do not depend on each other's answers (bounds, fuzz cases): sent in
        parallel, within the run's concurrency and at this check's priority, so one long check no
        longer holds the run's critical path. The transcript keeps the submission order.
        """
        prepared = self._prepare(method, path, json_body=json_body, content=content, headers=headers,
                                 api_key=api_key, stream=stream)
        priority = current_priority(self.priority)
        held = self._held
        senders = held.senders if held is not None else self.session._fan_out()
        return senders.submit(self._perform, prepared, priority)

    @contextmanager
    def together(self, count: int) -> Iterator[None]:
        """The `count` requests this check sends inside the block are in flight at once: that many of the
        run's slots are taken first, when free and no request of a lower priority value waits (Gate.together;
        raises TooFewSlots when the run allows fewer). Other checks' requests may be in flight too."""
        with self.session._gate.together(count, current_priority(self.priority)) as held:
            self._held = held
            try:
                yield
            finally:
                self._held = None

    def forget(self, exchange: Exchange) -> None:
        """Take out of the transcript a request whose answer the check must not judge (sent early on a
        chat route that turned out not to be the target's); it stays in the counts and the cost."""
        with self._lock:
            self.exchanges[:] = [e for e in self.exchanges if e is not exchange]

    def _prepare(self, method: str, path: str, *, json_body: Any, content: bytes | str | None,
                 headers: dict[str, str] | None, api_key: str | EllipsisType | None,
                 stream: bool | None) -> _Prepared:
        session = self.session
        if json_body is not None:
            content = json.dumps(json_body)
        if isinstance(content, str):
            content = content.encode()
        sent_headers = {"Accept": "application/json"}
        if content:
            sent_headers["Content-Type"] = "application/json"
        if stream or (isinstance(json_body, dict) and json_body.get("stream") is True):
            sent_headers["Accept"] = "text/event-stream"
        sent_headers.update(self.auth_headers(api_key))
        sent_headers.update(headers or {})
        exchange = Exchange(
            method=method,
            url=session.target.url(path),
            request_headers=redact_headers(sent_headers, session.target.api_key),
            request_body=session.redact(content.decode("utf-8", errors="replace")) if content else None,
        )
        with self._lock:
            self.exchanges.append(exchange)
        return _Prepared(exchange, sent_headers, content, stream, json_body)

    def _perform(self, prepared: _Prepared, priority: int) -> Exchange:
        exchange = prepared.exchange
        self._send_with_retries(exchange, prepared.headers, prepared.content, prepared.stream, priority)
        self.session._charge(exchange, prepared.json_body)
        with self._lock:
            self.tokens += exchange.tokens
        return exchange

    def _send_with_retries(self, exchange: Exchange, headers: dict[str, str], content: bytes | None,
                           stream: bool | None, priority: int) -> None:
        session, lim = self.session, self.session.limits
        attempt, stale_retry = 0, True
        while True:
            session._wait_cooldown()
            held = self._held
            with held.slot() if held is not None else session._gate.slot(priority):
                received = self._send_in_slot(exchange, headers, content, stream)
                if stale_retry and _dropped_unanswered(exchange, received) and not session.target_down:
                    # A keep-alive connection the server had closed (or closes as we reuse it, as uvicorn does
                    # after an unhandled error): no byte came back, so send once more on a fresh connection,
                    # in the same slot (another request taking the slot would take that connection first).
                    stale_retry = False
                    exchange.attempts.append({"status": None, "error": exchange.error, "waited_s": 0.0})
                    received = self._send_in_slot(exchange, headers, content, stream)
            if _timed_out(exchange) and session.run_deadline_passed():
                # Cut by the run's deadline, not by the target's slowness: not a verdict on the target, so
                # not a bound hit either (that would be a failure of every check that judged it).
                why = session.stop_for_deadline()
                if exchange.limit_exceeded:
                    exchange.error = f"cut when the {why} ({exchange.limit_exceeded})"
                    exchange.error_kind, exchange.limit_exceeded = "timeout", None
                raise BudgetExhausted(why)
            kind = _contention(exchange) if exchange.in_flight_with and not session.stopped else None
            if kind:
                session._contended(exchange, kind, self.label, probe=self.probe)
            wait = retry_wait(exchange, attempt, lim.max_retry_wait_s)
            final = wait is None or attempt == lim.retries
            answered = exchange.error is None and not _timed_out(exchange)
            # A 429 that will be retried is an answer; one that outlived every retry is not.
            session._note(exchange, usable=answered and (wait is None or not final), probe=self.probe)
            if wait is None:
                return
            exchange.attempts.append({"status": exchange.status,
                                      "retry_after": exchange.response_headers.get("retry-after"),
                                      "waited_s": 0.0 if final else round(wait, 3)})
            if final:
                exchange.error_kind = "rate-limited"
                raise RateLimited(f"{exchange.method} {exchange.url}: still HTTP {exchange.status} after "
                                  f"{attempt + 1} attempts; lower --concurrency or retry later")
            session._cool_down(wait)
            attempt += 1


    def _send_in_slot(self, exchange: Exchange, headers: dict[str, str], content: bytes | None,
                      stream: bool | None) -> int:
        """One attempt, in a slot of the gate: charged to the budget, counted, timed against the others in
        flight. The bytes received."""
        session = self.session
        try:
            session._reserve()
        except (BudgetExhausted, TargetDown) as exc:
            if not exchange.attempts and exchange.status is None:  # the transcript says why it never left
                exchange.error, exchange.error_kind = f"not sent: {exc}", "not-sent"
            raise
        with self._lock:
            self.sent += 1
        begun = session._flight_begin()
        try:
            return _send_once(session, exchange, headers, content, stream)
        finally:
            exchange.in_flight_with = session._flight_end(begun)


def _contention(exchange: Exchange) -> str | None:
    """What a failure looks like when the target cannot serve this request next to others."""
    if exchange.error_kind in ("network", "protocol"):
        return "cut stream" if exchange.status is not None else "reset"
    if exchange.status == 503 and exchange.error is None and "retry-after" not in exchange.response_headers:
        return "503 without Retry-After"
    return None


def _dropped_unanswered(exchange: Exchange, received: int) -> bool:
    """The connection failed before the target sent a single byte (not refused, not a timeout)."""
    return exchange.error_kind in ("network", "protocol") and received == 0 and exchange.status is None


def _timed_out(exchange: Exchange) -> bool:
    return exchange.error_kind == "timeout" or (exchange.limit_exceeded or "").startswith("too slow")


def _send_once(session: Session, exchange: Exchange, headers: dict[str, str], content: bytes | None,
               stream: bool | None) -> int:
    """One attempt; fills `exchange`, never raises for anything the target does. Returns the bytes the
    target sent (as read from the socket, so also when no HTTP response could be parsed)."""
    lim = session.limits
    exchange.status, exchange.response_headers, exchange.ttfb_s = None, {}, None
    exchange.body, exchange.sse, exchange.limit_exceeded = b"", None, None
    exchange.error, exchange.error_kind = None, None
    exchange._json_parsed = False
    started = time.monotonic()
    buffer = bytearray()
    with request_deadline(session.deadline()) as deadline:
        try:
            _read_response(session, exchange, headers, content, stream=stream, started=started, buffer=buffer)
        except SSELimitExceeded as exc:
            exchange.limit_exceeded = f"too many events: {exc}" if exc.kind == "max_events" else f"too large: {exc}"
        except httpx.TimeoutException as exc:
            _classify_timeout(exchange, exc, deadline, time.monotonic() - started, lim)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            # ValueError: h11/httpx reject some garbage (bad Content-Length, header bytes) that way.
            exchange.error = f"{type(exc).__name__}: {_reason(exc)}"
            exchange.error_kind = _error_kind(exc)
            if session.target_down:  # cut by the breaker while waiting
                exchange.error = f"aborted, {session.target_down}"
    exchange.body = bytes(buffer)
    exchange.elapsed_s = time.monotonic() - started
    return deadline.received


def _read_response(session: Session, exchange: Exchange, headers: dict[str, str], content: bytes | None, *,
                   stream: bool | None, started: float, buffer: bytearray) -> None:
    lim = session.limits
    client = session.client
    request = client.build_request(exchange.method, exchange.url, headers=headers, content=content)
    response = client.send(request, stream=True)
    try:
        exchange.status = response.status_code
        exchange.response_headers = {k.lower(): v for k, v in response.headers.items()}
        exchange.ttfb_s = time.monotonic() - started
        is_sse = stream or "text/event-stream" in exchange.content_type
        parser = SSEParser(max_bytes=lim.max_response_bytes, max_events=lim.max_sse_events,
                           clock=time.monotonic) if is_sse else None
        exchange.sse = parser
        for chunk in response.iter_bytes():
            room = lim.max_response_bytes - len(buffer)
            if len(chunk) > room:
                buffer += chunk[:room]
                exchange.limit_exceeded = f"too large: response larger than {lim.max_response_bytes} bytes"
                return
            buffer += chunk
            if parser is not None:
                parser.feed(chunk)
        if parser is not None:
            parser.close()
    finally:
        response.close()  # mid-body: httpcore drops the connection instead of draining it


def _classify_timeout(exchange: Exchange, exc: Exception, deadline: Deadline, elapsed: float, lim: Limits) -> None:
    """Silent from the start: error (no answer at all). Slow after sending something: a failure."""
    connect = isinstance(exc, httpx.ConnectTimeout)
    if deadline.received and not connect:
        why = (f"response not complete after {elapsed:.1f}s (request deadline)" if deadline.hit
               else f"the target stopped sending for {lim.read_timeout_s:g}s")
        exchange.limit_exceeded = f"too slow: {why}; {deadline.received} bytes received"
        return
    exchange.error_kind = "connect" if connect else "timeout"
    what = "no connection" if connect else "no answer"
    bound = "the request deadline" if deadline.hit else (
        f"{lim.connect_timeout_s:g}s (connect timeout)" if connect else f"{lim.read_timeout_s:g}s (read timeout)")
    exchange.error = f"timed out: {what} within {bound}, after {elapsed:.1f}s"


def _error_kind(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.DecodingError | ValueError):
        return "protocol"
    return "network"


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("] ")[-1][:300]


def retry_wait(exchange: Exchange, attempt: int, cap: float) -> float | None:
    """Seconds to wait before retrying a 429/503, or None when the answer is final.

    Retry-After in seconds or as an HTTP date; without it, exponential backoff 1, 2, 4 … s.
    Every wait is capped, so a hostile Retry-After cannot stall the run.
    """
    if exchange.status not in RETRIED_STATUSES or exchange.error is not None:
        return None
    wait = _parse_retry_after(exchange.response_headers.get("retry-after"))
    if wait is None:
        wait = float(2**attempt)
    return min(max(wait, 0.0), cap)


def _parse_retry_after(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    return seconds if math.isfinite(seconds) else None


def fail_on_limit(recorder: Recorder, exchange: Exchange) -> None:
    if exchange.limit_exceeded:
        index = next((i for i, e in enumerate(recorder.exchanges) if e is exchange), None)
        raise CheckFailed(limit_failure(exchange, index))
