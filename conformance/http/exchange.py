"""One request/response pair as recorded (`Exchange`), and how a request can end without a usable answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .._model import Failure
from ..sse import SSEParser

BODY_EXCERPT_BYTES = 16_384


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


def limit_failure(exchange: Exchange, index: int | None) -> Failure:
    """The failure to report when a response broke a size/time bound."""
    return Failure(
        expected="a complete response within the run's bounds",
        received=exchange.limit_exceeded or "",
        where=f"{exchange.method} {exchange.url}",
        exchange=index,
    )


def is_usable(exchange: Exchange) -> bool:
    return exchange.error is None and not exchange.limit_exceeded
