"""What a run may spend (`Limits`, every bound of a run) and what one request costs (`tokens_of`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .exchange import Exchange


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


def tokens_of(exchange: Exchange, request_body: Any) -> tuple[int, bool]:
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
