"""The state every check of one run shares (`Session`): the HTTP client, the budget, the circuit
breaker and the concurrency.

Budget: requests, tokens and the run deadline are counted before each attempt; once one runs out no
request is sent (BudgetExhausted). Breaker: after `Limits.max_consecutive_transport_errors` requests in a
row without a usable answer the target is down (TargetDown), and every connection is cut, so a dead
target costs seconds, not a timeout per check.

Contention: a request that fails only while others are in flight (a stream cut or a connection reset
while another request was sent, a 503 without Retry-After) halves the requests allowed in flight
(`Session.contention`, `Session.steps`); such a failure does not count towards the breaker, since the
target answered the others. The engine re-runs the checks it hit one at a time.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import BudgetExhausted
from .budget import Limits, tokens_of
from .exchange import Exchange, TargetDown
from .gate import Gate
from .redact import redact_key, url_password
from .transport import deadline_client


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
        self._gate = Gate(concurrency)
        self._concurrency = max(1, concurrency)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # Requests in flight now, and how many were ever started (to tell an overlap after the fact).
        self._in_flight = 0
        self._started_total = 0
        # Failures that happened only while other requests were in flight ({check, request, kind,
        # in_flight_with, error}), and each lowering of the concurrency ({from, to, reason, check}).
        self.contention: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        timeout = httpx.Timeout(connect=limits.connect_timeout_s, read=limits.read_timeout_s,
                                write=limits.read_timeout_s, pool=limits.request_deadline_s)
        self.client, self._backend = deadline_client(
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max(concurrency, 1) + 4, max_keepalive_connections=max(concurrency, 1)),
            headers={"User-Agent": "openai-conformance-suite"},
        )

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
        may be in flight again, whatever the run lowered it to. (What fails is that check's evidence, never
        a reason to lower the run's concurrency or to trip the breaker: its recorder's `probe`.)"""
        saved = self._gate.slots
        self._gate.resize(self._concurrency)
        try:
            yield
        finally:
            self._gate.resize(saved)

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

    def _contended(self, exchange: Exchange, kind: str, label: str, *, probe: bool = False) -> None:
        """A failure only while others were in flight: recorded, and the concurrency is halved (not for a
        load check's request, `probe`: that failure is its evidence)."""
        exchange.contended = kind
        # The path only: a base URL may carry a password in its userinfo.
        event = {"check": label or None, "request": f"{exchange.method} {httpx.URL(exchange.url).path}", "kind": kind,
                 "in_flight_with": exchange.in_flight_with, "error": exchange.error or f"HTTP {exchange.status}"}
        with self._lock:
            self.contention.append(event)
            if probe:
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
        """Remove the API key (and a password in the base URL) from any text we are about to write anywhere."""
        return redact_key(text, self.target.api_key, url_password=url_password(self.target.base_url))

    def deadline(self) -> float:
        """When the attempt starting now must end: the request deadline, capped by the run deadline."""
        now = time.monotonic()
        return min(now + self.limits.request_deadline_s, self.started + self.limits.run_deadline_s)

    def interrupt(self, why: str) -> None:
        """Stop the run now (Ctrl-C): nothing new is sent and requests in flight are cut."""
        with self._lock:
            self.budget_exhausted = self.budget_exhausted or why
        self._cut_connections()

    def _cut_connections(self) -> None:
        if self._backend is not None:  # an injected transport (a test's) has no connections of ours
            self._backend.cut_all()

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
        tokens, estimated = tokens_of(exchange, request_body)
        exchange.tokens, exchange.tokens_estimated = tokens, estimated
        with self._lock:
            self.tokens += tokens
            if estimated:
                self.tokens_estimated += tokens

    def _note(self, exchange: Exchange, *, usable: bool, probe: bool = False) -> None:
        """Count the answer; trip the breaker after too many requests in a row without a usable one."""
        tripped = False
        with self._lock:
            self.status_counts[str(exchange.status) if exchange.status is not None else "no-response"] += 1
            if usable:
                self._consecutive_bad = 0
                return
            if exchange.contended or probe:
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
            self._cut_connections()
