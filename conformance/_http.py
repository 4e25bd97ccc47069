"""Bounded, recorded HTTP against the target.

Every request goes through `Recorder.request`, which enforces the timeouts and size limits, retries
429/503 with Retry-After, counts requests and tokens against the budget, and keeps a redacted
transcript (`Exchange`) that reports render later.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from .errors import BudgetExhausted, CheckFailed
from ._model import Failure
from .sse import SSELimitExceeded, SSEParser

REDACTED = "***REDACTED***"
BODY_EXCERPT_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound of a run; all are overridable from the CLI."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 20.0
    request_deadline_s: float = 45.0
    max_response_bytes: int = 4_000_000
    max_sse_events: int = 5_000
    run_deadline_s: float = 900.0
    max_requests: int | None = None
    max_tokens: int | None = None
    retries: int = 2
    max_retry_wait_s: float = 8.0
    # After this many transport failures in a row the target is treated as down.
    max_consecutive_transport_errors: int = 4


@dataclass(frozen=True, slots=True)
class Target:
    base_url: str  # includes /v1, like the openai SDK's base_url
    model: str
    api_key: str | None = None

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


class TransportError(Exception):
    """The request never produced a complete response: a harness/network verdict, not a failure."""


class TargetDown(TransportError):
    pass


@dataclass
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
    limit_exceeded: str | None = None
    elapsed_s: float = 0.0
    ttfb_s: float | None = None
    sse: SSEParser | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    _json: Any = None
    _json_parsed: bool = False

    @property
    def content_type(self) -> str:
        return self.response_headers.get("content-type", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The parsed body, or None when it is not JSON."""
        if not self._json_parsed:
            self._json_parsed = True
            try:
                self._json = json.loads(self.body)
            except ValueError:
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
        }
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


class Session:
    """State shared by every check of one run: the HTTP client, the budget and the counters."""

    def __init__(self, target: Target, limits: Limits, *, transport: httpx.BaseTransport | None = None) -> None:
        self.target = target
        self.limits = limits
        self.started = time.monotonic()
        self.requests = 0
        self.tokens = 0
        self.budget_exhausted: str | None = None
        self.target_down: str | None = None
        self._consecutive_transport_errors = 0
        self._lock = threading.Lock()
        timeout = httpx.Timeout(
            connect=limits.connect_timeout_s, read=limits.read_timeout_s, write=limits.read_timeout_s, pool=60.0
        )
        self.client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            headers={"User-Agent": "openai-conformance-suite"},
        )

    def close(self) -> None:
        self.client.close()

    def redact(self, text: str | None) -> str | None:
        """Remove the API key from any text we are about to write anywhere."""
        if text is None:
            return None
        key = self.target.api_key
        if key and key in text:
            text = text.replace(key, REDACTED)
        return text

    def _reserve(self) -> None:
        with self._lock:
            lim = self.limits
            if self.target_down:
                raise TargetDown(self.target_down)
            if time.monotonic() - self.started > lim.run_deadline_s:
                self.budget_exhausted = f"run deadline of {lim.run_deadline_s:g}s reached"
            elif lim.max_requests is not None and self.requests >= lim.max_requests:
                self.budget_exhausted = f"--max-requests {lim.max_requests} reached"
            elif lim.max_tokens is not None and self.tokens >= lim.max_tokens:
                self.budget_exhausted = f"--max-tokens {lim.max_tokens} reached"
            if self.budget_exhausted:
                raise BudgetExhausted(self.budget_exhausted)
            self.requests += 1

    def _count_tokens(self, exchange: Exchange) -> None:
        usage_total = 0
        payloads: list[Any] = [exchange.json()]
        if exchange.sse is not None:
            payloads = []
            for event in exchange.sse.events:
                try:
                    payloads.append(json.loads(event.data))
                except ValueError:
                    continue
        for payload in payloads:
            if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                total = payload["usage"].get("total_tokens")
                if isinstance(total, int) and total > 0:
                    usage_total = max(usage_total, total)
        with self._lock:
            self.tokens += usage_total

    def _note_transport(self, ok: bool, error: str | None) -> None:
        with self._lock:
            if ok:
                self._consecutive_transport_errors = 0
                return
            self._consecutive_transport_errors += 1
            if self._consecutive_transport_errors >= self.limits.max_consecutive_transport_errors:
                self.target_down = (
                    f"target stopped answering ({self._consecutive_transport_errors} transport errors in a row; "
                    f"last: {error})"
                )


class Recorder:
    """The per-check view of the session: makes requests and keeps their transcripts."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.exchanges: list[Exchange] = []

    @property
    def target(self) -> Target:
        return self.session.target

    def auth_headers(self, api_key: str | None = ...) -> dict[str, str]:  # type: ignore[assignment]
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
        api_key: str | None = ...,  # type: ignore[assignment]
        stream: bool | None = None,
    ) -> Exchange:
        """Send one request and read the whole (bounded) response.

        `stream` forces SSE parsing; by default the body is parsed as SSE when the target says
        text/event-stream.
        """
        session = self.session
        lim = session.limits
        if json_body is not None:
            content = json.dumps(json_body)
        if isinstance(content, str):
            content = content.encode()
        sent_headers = {"Content-Type": "application/json", "Accept": "application/json"} if content else {
            "Accept": "application/json"}
        if stream or (isinstance(json_body, dict) and json_body.get("stream") is True):
            sent_headers["Accept"] = "text/event-stream"
        sent_headers.update(self.auth_headers(api_key))
        sent_headers.update(headers or {})
        url = session.target.url(path)
        exchange = Exchange(
            method=method,
            url=url,
            request_headers=_redact_headers(sent_headers),
            request_body=session.redact(content.decode("utf-8", errors="replace")) if content else None,
        )
        self.exchanges.append(exchange)
        for attempt in range(lim.retries + 1):
            session._reserve()
            self._send_once(exchange, method, url, sent_headers, content, stream)
            session._note_transport(exchange.error is None, exchange.error)
            retry_after = _retry_wait(exchange, lim.max_retry_wait_s)
            if retry_after is None or attempt == lim.retries:
                break
            exchange.attempts.append({"status": exchange.status, "retry_after_s": retry_after})
            time.sleep(retry_after)
        session._count_tokens(exchange)
        return exchange

    def _send_once(
        self, exchange: Exchange, method: str, url: str, headers: dict[str, str], content: bytes | None,
        stream: bool | None,
    ) -> None:
        session = self.session
        lim = session.limits
        exchange.body, exchange.error, exchange.limit_exceeded, exchange.sse = b"", None, None, None
        started = time.monotonic()
        try:
            request = session.client.build_request(method, url, headers=headers, content=content)
            response = session.client.send(request, stream=True)
            try:
                exchange.status = response.status_code
                exchange.response_headers = {k.lower(): v for k, v in response.headers.items()}
                exchange.ttfb_s = time.monotonic() - started
                is_sse = stream or "text/event-stream" in response.headers.get("content-type", "")
                parser = SSEParser(max_bytes=lim.max_response_bytes, max_events=lim.max_sse_events,
                                   clock=lambda: time.monotonic() - started) if is_sse else None
                exchange.sse = parser
                buffer = bytearray()
                for chunk in response.iter_bytes():
                    if len(buffer) + len(chunk) > lim.max_response_bytes:
                        buffer += chunk[: lim.max_response_bytes - len(buffer)]
                        exchange.limit_exceeded = f"response larger than {lim.max_response_bytes} bytes"
                        break
                    buffer += chunk
                    if parser is not None:
                        parser.feed(chunk)
                    if time.monotonic() - started > lim.request_deadline_s:
                        exchange.limit_exceeded = f"response not complete after {lim.request_deadline_s:g}s"
                        break
                else:
                    if parser is not None:
                        parser.close()
                exchange.body = bytes(buffer)
            finally:
                response.close()
        except SSELimitExceeded as exc:
            exchange.limit_exceeded = str(exc)
            exchange.body = bytes(buffer)
        except httpx.TimeoutException as exc:
            exchange.error = f"timed out ({type(exc).__name__}) after {time.monotonic() - started:.1f}s"
        except httpx.HTTPError as exc:
            exchange.error = f"{type(exc).__name__}: {exc}" or type(exc).__name__
        exchange.elapsed_s = time.monotonic() - started


def _redact_headers(headers: dict[str, str]) -> dict[str, str]:
    redacted = {}
    for name, value in headers.items():
        if name.lower() in ("authorization", "api-key", "x-api-key"):
            redacted[name] = "Bearer $OPENAI_API_KEY" if value.lower().startswith("bearer ") else REDACTED
        else:
            redacted[name] = value
    return redacted


def _retry_wait(exchange: Exchange, cap: float) -> float | None:
    """Seconds to wait before retrying a 429/503, or None when the answer is final."""
    if exchange.status not in (429, 503):
        return None
    raw = exchange.response_headers.get("retry-after", "1")
    try:
        wait = float(raw)
    except ValueError:
        wait = 1.0
    return min(max(wait, 0.0), cap)


def limit_failure(exchange: Exchange, index: int) -> Failure:
    """The failure to report when a response broke a size/time bound."""
    return Failure(
        expected="a complete response within the run's bounds",
        received=exchange.limit_exceeded or "",
        where=f"{exchange.method} {exchange.url}",
        exchange=index,
    )


def fail_on_limit(recorder: Recorder, exchange: Exchange) -> None:
    if exchange.limit_exceeded:
        raise CheckFailed(limit_failure(exchange, recorder.exchanges.index(exchange)))
