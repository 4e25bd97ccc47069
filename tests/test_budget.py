"""Cheap against paid targets: --max-requests / --max-tokens stop a run as INCOMPLETE (never a pass),
checks the budget never reached are recorded as not executed, and rate limits are retried with a
bounded backoff without ever counting as non-conformance."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from hostile_servers import ASGIServer, RejectFirst
from support import certify, verdicts

from conformance import Limits
from conformance.cli import build_parser, main
from conformance.http import Exchange, retry_wait
from conformance.refserver import ServerConfig, ServerThread
from conformance.refserver.app import create_app

# Judged on one shared completion, one shared stream and a few plain requests: fast and cheap.
SUBSET = ("schema.chat-completion", "usage.total-is-sum", "stream.done-terminator", "params.malformed-body")


def run_cli(base_url: str, report_dir: Path, *extra: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    code = main(["run", "--base-url", base_url, "--report-dir", str(report_dir), "--quiet", "--no-html", *extra])
    results = json.loads((report_dir / "results.json").read_text(encoding="utf-8"))
    return code, results, time.monotonic() - started


# -- budget -----------------------------------------------------------------------------------------------
def test_max_requests_stops_the_run_incomplete(reference_server: ServerThread, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, results, elapsed = run_cli(reference_server.base_url, tmp_path, "--max-requests", "5")
    out = capsys.readouterr().out
    assert code == 2
    assert results["verdict"] == "incomplete"
    assert results["run_complete"] is False
    assert results["requests"] <= 5
    assert "--max-requests 5 reached" in results["reason"]
    assert "planned checks not executed" in results["reason"]
    assert results["executed"] < results["planned"]
    assert "requests: 5" in out or "5 requests" in out  # the summary states what was spent
    assert elapsed < 30


def test_max_tokens_stops_the_run_incomplete(reference_server: ServerThread, tmp_path: Path) -> None:
    code, results, _ = run_cli(reference_server.base_url, tmp_path, "--max-tokens", "60")
    assert code == 2
    assert results["verdict"] == "incomplete"
    assert "--max-tokens 60 reached" in results["reason"]
    # The cap is checked before each request: it may be passed by the answers already in flight, no more.
    assert 60 <= results["tokens"] < 60 + 4 * 200


def test_checks_the_budget_never_reached_are_not_executed_not_errors(reference_server: ServerThread) -> None:
    started = time.monotonic()
    result = certify(reference_server.base_url, max_requests=3)
    assert time.monotonic() - started < 20  # the rest are recorded at once, not run to hit the cap one by one
    assert result.verdict == "incomplete"
    assert result.requests == 3
    assert result.not_executed
    assert len(result.results) + len(result.not_executed) == result.planned
    ran = {r.spec.id for r in result.results}
    assert not ran & set(result.not_executed)
    # A check that started but was cut short says so; none claims a pass it did not earn.
    cut = [r for r in result.results if r.verdict.value == "error"]
    assert all("not run to the end: --max-requests 3 reached" in r.message for r in cut)


def test_the_run_deadline_stops_a_slow_run_incomplete() -> None:
    with ServerThread(ServerConfig(latency_ms=300)) as slow:
        started = time.monotonic()
        result = certify(slow.base_url, run_deadline_s=1.0)
        elapsed = time.monotonic() - started
    assert elapsed < 4  # requests in flight are cut at the deadline too
    assert result.verdict == "incomplete"
    assert "run deadline of 1s reached" in (result.reason or "")
    assert not [r for r in result.results if r.verdict.value == "failed"]  # the deadline is ours, not the target's


def test_a_run_that_verified_nothing_is_never_a_pass(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=("auth.missing-key",))  # skipped: no API key
    assert verdicts(result) == {"auth.missing-key": "not_applicable"}
    assert result.verdict == "incomplete"
    assert "nothing was verified" in (result.reason or "")


def test_tokens_are_counted_per_check_and_estimated_when_unreported(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=SUBSET)
    by_id = {r.spec.id: r for r in result.results}
    # The basic stream reports no usage (no include_usage): charged as an upper-bound estimate.
    assert result.tokens_estimated > 0
    assert result.tokens > result.tokens_estimated
    assert sum(r.tokens for r in result.results) == result.tokens
    assert sum(r.requests for r in result.results) == result.requests
    assert by_id["usage.total-is-sum"].requests + by_id["schema.chat-completion"].requests == 1  # one shared


# -- rate limits and server errors ----------------------------------------------------------------------
@pytest.fixture
def limited() -> Iterator[tuple[RejectFirst, str]]:
    """The reference server behind a gate answering 429 + Retry-After to the first 2 requests of each kind."""
    app = RejectFirst(create_app(ServerConfig()), first=2, status=429, retry_after="0.1")
    with ASGIServer(app) as server:
        yield app, server.base_url


def test_429_is_retried_recorded_and_never_a_failure(limited: tuple[RejectFirst, str]) -> None:
    limiter, base_url = limited
    clean = certify(base_url, only=SUBSET)
    assert set(verdicts(clean).values()) == {"passed"}
    assert clean.verdict == "partial"  # a selection: never a certification
    assert clean.retries == limiter.rejected > 0
    attempts = [a for r in clean.results for t in r.exchanges for a in t["attempts"]]
    assert {a["status"] for a in attempts} == {429}
    assert all(a["retry_after"] == "0.1" for a in attempts)
    assert clean.status_counts["429"] == limiter.rejected  # every answer is counted, retried ones included


def test_persistent_429_is_an_error_and_the_breaker_stops_the_run() -> None:
    app = RejectFirst(create_app(ServerConfig()), first=None, status=429, retry_after="0.05")
    with ASGIServer(app) as server:
        started = time.monotonic()
        result = certify(server.base_url, only=SUBSET, retries=2)
        elapsed = time.monotonic() - started
    assert elapsed < 15
    assert set(verdicts(result).values()) == {"error"}  # never "failed"
    assert any("still HTTP 429 after 3 attempts" in r.message for r in result.results)
    assert result.verdict == "incomplete"


def test_503_without_retry_after_backs_off_exponentially() -> None:
    app = RejectFirst(create_app(ServerConfig()), first=2, status=503, retry_after=None)
    with ASGIServer(app) as server:
        result = certify(server.base_url, only=("schema.chat-completion",), max_retry_wait_s=0.3)
    assert verdicts(result) == {"schema.chat-completion": "passed"}
    waits = [a["waited_s"] for t in result.results[0].exchanges for a in t["attempts"]]
    assert waits == [0.3, 0.3]  # 1 s then 2 s, each capped by max_retry_wait_s


def test_500_is_not_retried_and_fails_the_no_server_error_check() -> None:
    app = RejectFirst(create_app(ServerConfig()), first=None, status=500, retry_after="1")
    with ASGIServer(app) as server:
        result = certify(server.base_url, only=("methods.no-server-error",))
    assert verdicts(result) == {"methods.no-server-error": "failed"}
    assert result.retries == 0
    assert all(t["attempts"] == [] for r in result.results for t in r.exchanges)


def _answer(status: int, retry_after: str | None) -> Exchange:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Exchange("POST", "http://x/v1/chat/completions", {}, None, status=status, response_headers=headers)


@pytest.mark.parametrize(
    ("status", "retry_after", "attempt", "expected"),
    [
        (429, "3", 0, 3.0),
        (429, "3", 2, 3.0),  # Retry-After wins over the backoff
        (503, None, 0, 1.0),
        (503, None, 2, 4.0),
        (429, None, 6, 10.0),  # capped
        (429, "86400", 0, 10.0),  # a hostile Retry-After cannot stall the run
        (429, "-5", 0, 0.0),
        (429, "nan", 1, 2.0),  # unusable: backoff instead
        (429, "soon", 0, 1.0),
        (500, "1", 0, None),  # never retried
        (200, "1", 0, None),
    ],
)
def test_retry_wait(status: int, retry_after: str | None, attempt: int, expected: float | None) -> None:
    assert retry_wait(_answer(status, retry_after), attempt, cap=10.0) == expected


def test_retry_after_as_an_http_date() -> None:
    from datetime import UTC, datetime, timedelta

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    wait = retry_wait(_answer(429, when), 0, cap=10.0)
    assert wait is not None
    assert 3 <= wait <= 5
    assert math.isfinite(wait)


def test_cli_defaults_are_the_library_defaults() -> None:
    args = build_parser().parse_args(["run"])
    defaults = Limits()
    assert args.timeout == defaults.read_timeout_s
    assert args.connect_timeout == defaults.connect_timeout_s
    assert args.request_deadline == defaults.request_deadline_s
    assert args.run_deadline == defaults.run_deadline_s
    assert args.max_response_bytes == defaults.max_response_bytes
    assert args.max_sse_events == defaults.max_sse_events
    assert args.retries == defaults.retries
