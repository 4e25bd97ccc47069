"""Bounded, recorded HTTP against the target.

Every request goes through `Recorder.request`, which

- bounds it: connect and read timeouts, a total deadline that also covers the status line and the
  headers (enforced in the socket reads, so a server dripping one byte at a time cannot outlive it),
  a maximum body size and a maximum number of SSE events;
- retries 429 and 503 with Retry-After (exponential backoff when the header is absent), pauses the
  whole session meanwhile, and never retries any other status;
- limits parallelism to the run's concurrency, serving the longest checks first;
- counts requests and tokens against the budget and trips a circuit breaker when the target stops
  answering, so a dead target costs seconds, not a timeout per check;
- keeps a redacted transcript (`Exchange`) that reports render later.

Outcome of one request, from the target's behaviour:

    complete response ................................ judged by the check
    bound hit after the target sent something ........ `limit_exceeded`: a failure of the check
      (too big, too many events, too slow, stalled)
    no usable answer ................................. `error`: the check's verdict is error
      (refused, reset, not HTTP, silent until a timeout)
    429/503 still after every retry .................. `RateLimited`: the check's verdict is error

Contention: a request that fails only while others are in flight (a stream cut or a connection reset
while another request was sent, a 503 without Retry-After) halves the requests allowed in flight
(`Session.contention`, `Session.steps`); such a failure does not count towards the breaker, since the
target answered the others. The engine re-runs the checks it hit one at a time.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import email.utils
import heapq
import itertools
import json
import math
import socket
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import EllipsisType
from typing import Any

import httpcore
import httpx

from ._model import Failure
from .errors import BudgetExhausted, CheckFailed
from .sse import SSELimitExceeded, SSEParser

REDACTED = "***REDACTED***"
BODY_EXCERPT_BYTES = 16_384
RETRIED_STATUSES = (429, 503)
# Priority of a request that other checks are waiting for (a shared exchange): served first.
URGENT = -1


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound of a run; all are overridable from the CLI.

    The defaults keep a run against a dead or hanging target under about a minute (the breaker trips
    after the first timeouts) while leaving a slow paid API ample time for a 16-token answer.
    """

    connect_timeout_s: float = 5.0
    # Longest silence accepted while waiting for the status line or the next chunk.
    read_timeout_s: float = 20.0
    # Total time per request attempt, status line and whole stream included.
    request_deadline_s: float = 45.0
    max_response_bytes: int = 4_000_000
    max_sse_events: int = 5_000
    run_deadline_s: float = 900.0
    max_requests: int | None = None
    max_tokens: int | None = None
    # Retries of a 429/503 (so at most retries + 1 attempts), each wait capped.
    retries: int = 3
    max_retry_wait_s: float = 10.0
    # After this many requests in a row without a usable answer (transport error, timeout, or a
    # 429/503 that outlived its retries) the target is treated as down and the run stops.
    max_consecutive_transport_errors: int = 4


@dataclass(frozen=True, slots=True)
class Target:
    base_url: str  # includes /v1, like the openai SDK's base_url
    model: str
    api_key: str | None = None
    # Where the target serves chat: OpenAI's route, or the documented URL (GET or POST /models).
    chat_method: str = "POST"
    chat_path: str = "/chat/completions"

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


class TransportError(Exception):
    """The request never produced a usable response: a harness/network verdict, not a failure."""


class TargetDown(TransportError):
    """The circuit breaker is open: the target stopped answering, no more requests are sent."""


class RateLimited(TransportError):
    """429/503 persisted through every retry: the check could not be judged."""


@dataclass(eq=False)  # identity semantics: transcripts are looked up by `is`, not by value
class Exchange:
    """One request/response pair, already redacted."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str | None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str | None = None
    # connect | timeout | protocol | network | rate-limited | not-sent: why there is no usable response.
    error_kind: str | None = None
    limit_exceeded: str | None = None
    elapsed_s: float = 0.0
    ttfb_s: float | None = None
    sse: SSEParser | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # Tokens charged to the budget; `tokens_estimated` when the response reported no usage.
    tokens: int = 0
    tokens_estimated: bool = False
    # Other requests in flight when the last attempt started (or started during it).
    in_flight_with: int = 0
    # Set when the request failed only while others were in flight: "cut stream", "reset", "503 without
    # Retry-After" (see Session.contention).
    contended: str | None = None
    _json: Any = None
    _json_parsed: bool = False

    @property
    def content_type(self) -> str:
        return self.response_headers.get("content-type", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The parsed body, or None when it is not JSON (invalid UTF-8 included)."""
        if not self._json_parsed:
            self._json_parsed = True
            try:
                self._json = json.loads(self.body)
            except (ValueError, RecursionError):
                self._json = None
        return self._json

    def require_response(self) -> None:
        if self.error is not None:
            raise TransportError(f"{self.method} {self.url}: {self.error}")

    def to_json(self, redact: Any) -> dict[str, Any]:
        body = self.body[:BODY_EXCERPT_BYTES]
        record: dict[str, Any] = {
            "request": {
                "method": self.method,
                "url": redact(self.url),
                "headers": {k: redact(v) for k, v in self.request_headers.items()},
                "body": redact(self.request_body) if self.request_body is not None else None,
            },
            "response": {
                "status": self.status,
                "headers": {k: redact(v) for k, v in self.response_headers.items()},
                "body": redact(body.decode("utf-8", errors="replace")),
                "body_bytes": len(self.body),
                "truncated": len(self.body) > BODY_EXCERPT_BYTES,
            },
            "error": redact(self.error) if self.error else None,
            "limit_exceeded": self.limit_exceeded,
            "elapsed_s": round(self.elapsed_s, 4),
            "ttfb_s": round(self.ttfb_s, 4) if self.ttfb_s is not None else None,
            "attempts": self.attempts,
            "tokens": self.tokens,
        }
        if self.contended:
            record["contended"] = {"kind": self.contended, "in_flight_with": self.in_flight_with}
        if self.sse is not None:
            record["sse"] = {
                "events": len(self.sse.events),
                "comments": len(self.sse.comments),
                "chunks": [
                    {"offset": c.offset, "t": round(c.arrived_at, 4), "bytes": len(c.data)}
                    for c in self.sse.transcript[:200]
                ],
                "event_offsets": [[e.start, e.end, round(e.arrived_at, 4)] for e in self.sse.events[:500]],
            }
        return record


# -- the per-request deadline, enforced inside every socket operation ---------------------------------
class _Deadline(threading.local):
    """The deadline of the request this thread is sending (httpx's sync client reads in the caller)."""

    at: float | None = None
    hit: bool = False
    received: int = 0


_DEADLINE = _Deadline()


@contextmanager
def _deadline(at: float) -> Iterator[_Deadline]:
    state = _DEADLINE
    state.at, state.hit, state.received = at, False, 0
    try:
        yield state
    finally:
        state.at = None


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    """`timeout` shortened to what is left of the request deadline."""
    at = _DEADLINE.at
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        _DEADLINE.hit = True
        raise expired("request deadline reached")
    return left if timeout is None or left < timeout else timeout


def _note_timeout() -> None:
    at = _DEADLINE.at
    if at is not None and time.monotonic() >= at - 0.05:
        _DEADLINE.hit = True


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            data = self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))
        except httpcore.TimeoutException:
            _note_timeout()
            raise
        _DEADLINE.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))
        except httpcore.TimeoutException:
            _note_timeout()
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """Wraps every connection in a `_DeadlineStream`, and can cut them all when the target is down."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner
        self._streams: weakref.WeakSet[_DeadlineStream] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._cut = False

    def _track(self, inner: httpcore.NetworkStream) -> httpcore.NetworkStream:
        stream = _DeadlineStream(inner)
        with self._lock:
            self._streams.add(stream)
            cut = self._cut
        if cut:  # connected after the cut (it passed the breaker just before): it must not hang either
            _shut_down(stream)
        return stream

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        return self._track(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        return self._track(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

    def cut_all(self) -> None:
        """Shut down every connection, and any opened from now on: reads blocked in other threads return
        at once (the session is over: the target is down or the run was interrupted)."""
        with self._lock:
            self._cut = True
            streams = list(self._streams)
        for stream in streams:
            _shut_down(stream)


def _shut_down(stream: httpcore.NetworkStream) -> None:
    sock = stream.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.shutdown(socket.SHUT_RDWR)


def _install_deadlines(client: httpx.Client) -> list[_DeadlineBackend]:
    """Route every connection of `client` (proxies included) through the deadline-aware backend.

    httpx has no total timeout; its pools keep their backend in `_network_backend`. A transport
    without one (a test's MockTransport) still gets the deadline checked between body chunks.
    """
    backends = []
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _DeadlineBackend):
            backend = _DeadlineBackend(backend)
            pool._network_backend = backend  # type: ignore[union-attr]
            backends.append(backend)
    return backends


# -- fair, prioritised parallelism ---------------------------------------------------------------------
class _Gate:
    """At most `slots` requests in flight; waiting requests are served lowest priority value first.

    Checks run in more threads than there are slots, so a check blocked on a shared exchange never
    holds a slot, and the longest checks (lowest values) never queue behind short ones.
    """

    def __init__(self, slots: int) -> None:
        self._slots = max(1, slots)
        self._free = self._slots
        self._waiting: list[tuple[int, int]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()

    @property
    def slots(self) -> int:
        return self._slots

    def resize(self, slots: int) -> None:
        """Allow `slots` requests in flight from now on; requests already in flight finish."""
        with self._cond:
            slots = max(1, slots)
            self._free += slots - self._slots
            self._slots = slots
            self._cond.notify_all()

    @contextmanager
    def slot(self, priority: int) -> Iterator[None]:
        with self._cond:
            ticket = (priority, next(self._seq))
            heapq.heappush(self._waiting, ticket)
            while self._free <= 0 or self._waiting[0] != ticket:
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._free -= 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()


class _Urgency(threading.local):
    urgent: bool = False


_URGENCY = _Urgency()


@contextmanager
def urgent() -> Iterator[None]:
    """Requests sent inside this block jump the queue (other checks are waiting for them)."""
    previous, _URGENCY.urgent = _URGENCY.urgent, True
    try:
        yield
    finally:
        _URGENCY.urgent = previous


class Session:
    """State shared by every check of one run: the HTTP client, the budget and the counters."""

    def __init__(self, target: Target, limits: Limits, *, transport: httpx.BaseTransport | None = None,
                 concurrency: int = 4) -> None:
        self.target = target
        self.limits = limits
        self.started = time.monotonic()
        self.requests = 0
        self.tokens = 0
        self.tokens_estimated = 0
        self.retries = 0
        self.status_counts: Counter[str] = Counter()
        self.budget_exhausted: str | None = None
        self.target_down: str | None = None
        self._consecutive_bad = 0
        self._cooldown_until = 0.0
        self._lock = threading.Lock()
        self._gate = _Gate(concurrency)
        self._concurrency = max(1, concurrency)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # Requests in flight now, and how many were ever started (to tell an overlap after the fact).
        self._in_flight = 0
        self._started_total = 0
        # Failures that happened only while other requests were in flight ({check, request, kind,
        # in_flight_with, error}), and each lowering of the concurrency ({from, to, reason, check}).
        self.contention: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self._probing = False
        timeout = httpx.Timeout(connect=limits.connect_timeout_s, read=limits.read_timeout_s,
                                write=limits.read_timeout_s, pool=limits.request_deadline_s)
        self.client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
            limits=httpx.Limits(max_connections=max(concurrency, 1) + 4, max_keepalive_connections=max(concurrency, 1)),
            headers={"User-Agent": "openai-conformance-suite"},
        )
        self._backends = _install_deadlines(self.client)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()

    def _fan_out(self) -> concurrent.futures.ThreadPoolExecutor:
        """Threads for `Recorder.submit`: as many as requests may be in flight, created on first use."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self._concurrency, thread_name_prefix="send")
            return self._pool

    @property
    def requested_concurrency(self) -> int:
        """--concurrency as given: the bound the user set, whatever the run lowered it to since."""
        return self._concurrency

    @property
    def concurrency(self) -> int:
        """Requests allowed in flight now (lowered when requests failed only under contention)."""
        return self._gate.slots

    def lower_concurrency(self, slots: int, reason: str, check: str | None = None) -> None:
        """Allow at most `slots` requests in flight from now on; recorded in `steps` with the reason."""
        slots = max(1, slots)
        with self._lock:
            current = self._gate.slots
            if slots >= current:
                return
            self._gate.resize(slots)
            self.steps.append({"from": current, "to": slots, "reason": reason, "check": check or None})

    @contextmanager
    def probing(self) -> Iterator[None]:
        """For a check that runs alone and judges the target under load (load.*): --concurrency requests
        may be in flight again, whatever the run lowered it to, and what fails is that check's evidence:
        no reason to lower the run's concurrency, and none to trip the breaker."""
        with self._lock:
            saved, self._probing = self._gate.slots, True
        self._gate.resize(self._concurrency)
        try:
            yield
        finally:
            self._gate.resize(saved)
            with self._lock:
                self._probing = False

    def _flight_begin(self) -> tuple[int, int]:
        with self._lock:
            others, seq = self._in_flight, self._started_total
            self._in_flight += 1
            self._started_total += 1
            return others, seq

    def _flight_end(self, begun: tuple[int, int]) -> int:
        """Other requests that shared the attempt's time: in flight at its start or started during it."""
        others, seq = begun
        with self._lock:
            self._in_flight -= 1
            return max(others, self._started_total - seq - 1)

    def _contended(self, exchange: Exchange, kind: str, label: str) -> None:
        """A failure only while others were in flight: recorded, and the concurrency is halved."""
        exchange.contended = kind
        # The path only: a base URL may carry a password in its userinfo.
        event = {"check": label or None, "request": f"{exchange.method} {httpx.URL(exchange.url).path}", "kind": kind,
                 "in_flight_with": exchange.in_flight_with, "error": exchange.error or f"HTTP {exchange.status}"}
        with self._lock:
            self.contention.append(event)
            if self._probing:
                return
        others = exchange.in_flight_with
        self.lower_concurrency(self._gate.slots // 2, f"{kind} on {event['request']} alongside {others} other "
                               f"request{'s' if others != 1 else ''} ({event['error']})", label)

    @property
    def stopped(self) -> str | None:
        """Why no further request will be sent, or None."""
        return self.target_down or self.budget_exhausted

    def raise_if_stopped(self) -> None:
        """Raise what the next request would (TargetDown, BudgetExhausted), without counting one: for
        work that only leads to requests, like drawing test cases, so it ends when the run stops."""
        with self._lock:
            if self.target_down:
                raise TargetDown(self.target_down)
            if self.budget_exhausted:
                raise BudgetExhausted(self.budget_exhausted)

    def redact(self, text: str | None) -> str | None:
        """Remove the API key from any text we are about to write anywhere."""
        if text is None:
            return None
        key = self.target.api_key
        if key and key in text:
            text = text.replace(key, REDACTED)
        return text

    def deadline(self) -> float:
        """When the attempt starting now must end: the request deadline, capped by the run deadline."""
        now = time.monotonic()
        return min(now + self.limits.request_deadline_s, self.started + self.limits.run_deadline_s)

    def interrupt(self, why: str) -> None:
        """Stop the run now (Ctrl-C): nothing new is sent and requests in flight are cut."""
        with self._lock:
            self.budget_exhausted = self.budget_exhausted or why
        for backend in self._backends:
            backend.cut_all()

    def run_deadline_passed(self) -> bool:
        return time.monotonic() - self.started >= self.limits.run_deadline_s - 0.05

    def stop_for_deadline(self) -> str:
        with self._lock:
            self.budget_exhausted = self.budget_exhausted or f"run deadline of {self.limits.run_deadline_s:g}s reached"
            return self.budget_exhausted

    def _reserve(self) -> None:
        with self._lock:
            lim = self.limits
            if self.target_down:
                raise TargetDown(self.target_down)
            if not self.budget_exhausted:
                if time.monotonic() - self.started >= lim.run_deadline_s:
                    self.budget_exhausted = f"run deadline of {lim.run_deadline_s:g}s reached"
                elif lim.max_requests is not None and self.requests >= lim.max_requests:
                    self.budget_exhausted = f"--max-requests {lim.max_requests} reached"
                elif lim.max_tokens is not None and self.tokens >= lim.max_tokens:
                    self.budget_exhausted = f"--max-tokens {lim.max_tokens} reached"
            if self.budget_exhausted:
                raise BudgetExhausted(self.budget_exhausted)
            self.requests += 1

    def _wait_cooldown(self) -> None:
        """While the target asks us to back off (429/503), nobody sends: waiting is cheaper than 429s."""
        while True:
            with self._lock:
                left = self._cooldown_until - time.monotonic()
            if left <= 0 or self.stopped:
                return
            time.sleep(min(left, 0.5))

    def _cool_down(self, seconds: float) -> None:
        with self._lock:
            self._cooldown_until = max(self._cooldown_until, time.monotonic() + seconds)
            self.retries += 1

    def _charge(self, exchange: Exchange, request_body: Any) -> None:
        tokens, estimated = _tokens_of(exchange, request_body)
        exchange.tokens, exchange.tokens_estimated = tokens, estimated
        with self._lock:
            self.tokens += tokens
            if estimated:
                self.tokens_estimated += tokens

    def _note(self, exchange: Exchange, *, usable: bool) -> None:
        """Count the answer; trip the breaker after too many requests in a row without a usable one."""
        tripped = False
        with self._lock:
            self.status_counts[str(exchange.status) if exchange.status is not None else "no-response"] += 1
            if usable:
                self._consecutive_bad = 0
                return
            if exchange.contended or self._probing:
                # The target answered the others, or a load check is stressing it on purpose: its
                # failures are that check's evidence, not a sign that the target is down.
                return
            self._consecutive_bad += 1
            if self._consecutive_bad >= self.limits.max_consecutive_transport_errors and not self.target_down:
                last = exchange.error or exchange.limit_exceeded
                self.target_down = (f"target stopped answering: {self._consecutive_bad} requests in a row "
                                    f"without a usable response (last: {last})")
                tripped = True
        if tripped:  # requests still waiting on a dead target would each wait out their own timeout
            for backend in self._backends:
                backend.cut_all()


def _tokens_of(exchange: Exchange, request_body: Any) -> tuple[int, bool]:
    """Tokens to charge: the reported usage, else (2xx without usage) an upper-bound estimate."""
    payloads: list[Any] = [exchange.json()] if exchange.sse is None else []
    for event in exchange.sse.events if exchange.sse is not None else ():
        if '"usage"' in event.data:
            try:
                payloads.append(json.loads(event.data))
            except (ValueError, RecursionError):  # a nesting bomb is not JSON we count
                continue
    reported = [p["usage"].get("total_tokens") for p in payloads
                if isinstance(p, dict) and isinstance(p.get("usage"), dict)]
    totals = [t for t in reported if isinstance(t, int) and not isinstance(t, bool) and t >= 0]
    if totals:
        return max(totals), False
    if exchange.status is None or not 200 <= exchange.status < 300 or not isinstance(request_body, dict):
        return 0, False
    # ~4 bytes per token for the prompt; the completion cap times n, or the body size when uncapped.
    prompt = len(json.dumps(request_body.get("messages", ""))) // 4 + 1
    cap = request_body.get("max_completion_tokens") or request_body.get("max_tokens")
    n = request_body.get("n")
    choices = n if isinstance(n, int) and n > 0 else 1
    completion = cap * choices if isinstance(cap, int) and cap > 0 else len(exchange.body) // 4
    return prompt + completion, True


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
        return self._perform(prepared, URGENT if _URGENCY.urgent else self.priority)

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
        priority = URGENT if _URGENCY.urgent else self.priority
        return self.session._fan_out().submit(self._perform, prepared, priority)

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
            request_headers=_redact_headers(sent_headers, session.target.api_key),
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
            with session._gate.slot(priority):
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
                    received = _send_once(session, exchange, headers, content, stream)
                finally:
                    exchange.in_flight_with = session._flight_end(begun)
            if stale_retry and _dropped_unanswered(exchange, received) and not session.target_down:
                # A keep-alive connection the server had closed (or closes as we reuse it, as uvicorn does
                # after an unhandled error): no byte came back, so send once more on a fresh connection.
                stale_retry = False
                exchange.attempts.append({"status": None, "error": exchange.error, "waited_s": 0.0})
                continue
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
                session._contended(exchange, kind, self.label)
            wait = retry_wait(exchange, attempt, lim.max_retry_wait_s)
            final = wait is None or attempt == lim.retries
            answered = exchange.error is None and not _timed_out(exchange)
            # A 429 that will be retried is an answer; one that outlived every retry is not.
            session._note(exchange, usable=answered and (wait is None or not final))
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
    with _deadline(session.deadline()) as deadline:
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


def _classify_timeout(exchange: Exchange, exc: Exception, deadline: _Deadline, elapsed: float, lim: Limits) -> None:
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


# The prefix of the random keys the auth checks make up: never derived from the real key, so they stay
# in the transcript and the repro curl re-sends the wrong key, not the user's.
MADE_UP_KEY_PREFIX = "sk-wrong-"


def _redact_headers(headers: dict[str, str], real_key: str | None) -> dict[str, str]:
    redacted = {}
    for name, value in headers.items():
        token = value.split(" ", 1)[-1].strip()
        if name.lower() in ("authorization", "api-key", "x-api-key"):
            if token.startswith(MADE_UP_KEY_PREFIX) and token != real_key and (not real_key or real_key not in token):
                redacted[name] = value
            else:
                redacted[name] = "Bearer $OPENAI_API_KEY" if value.lower().startswith("bearer ") else REDACTED
        else:
            redacted[name] = value
    return redacted


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


def preflight(base_url: str, api_key: str | None, limits: Limits, *, method: str = "GET", path: str = "/models",
              json_body: Any = None) -> Exchange:
    """One request before a run (GET /models by default), bounded like any request of a run but
    outside its budget; `conformance._start` judges the answer.

    Raises RateLimited when the target only answers 429/503.
    """
    session = Session(Target(base_url, "", api_key), replace(limits, max_requests=None, max_tokens=None, retries=1),
                      concurrency=1)
    try:
        return Recorder(session).request(method, path, json_body=json_body)
    finally:
        session.close()


def limit_failure(exchange: Exchange, index: int | None) -> Failure:
    """The failure to report when a response broke a size/time bound."""
    return Failure(
        expected="a complete response within the run's bounds",
        received=exchange.limit_exceeded or "",
        where=f"{exchange.method} {exchange.url}",
        exchange=index,
    )


def fail_on_limit(recorder: Recorder, exchange: Exchange) -> None:
    if exchange.limit_exceeded:
        index = next((i for i, e in enumerate(recorder.exchanges) if e is exchange), None)
        raise CheckFailed(limit_failure(exchange, index))


def is_usable(exchange: Exchange) -> bool:
    return exchange.error is None and not exchange.limit_exceeded

