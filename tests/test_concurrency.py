"""Fast against slow targets: --concurrency bounds the requests in flight, the longest checks go
first, and against a target that delays every answer the wall time stays close to the ideal
requests × latency / N (plus start-up). Ratios, not absolute speeds: the machine may be busy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hostile_servers import ASGIServer, InFlight
from support import certify

from conformance import Depth, Profile, RunConfig, Target, run
from conformance import _engine as engine
from conformance._context import CheckContext
from conformance._engine import schedule
from conformance._model import CheckSpec, Feature, Level, documented
from conformance.checks import RegisteredCheck
from conformance.http.gate import Gate
from conformance.refserver import DEFAULT_MODEL, ServerConfig
from conformance.refserver.app import create_app

LATENCY_MS = 100
# Shared exchanges, sequential probes (the bounds) and plain requests: the shapes a full run has.
SUBSET = ("stream.*", "usage.*", "schema.*", "methods.*", "params.temperature.bounds", "params.top_p.bounds")


@pytest.fixture(scope="module")
def slow_server() -> Iterator[tuple[InFlight, str]]:
    """The reference server delaying every answer by LATENCY_MS, counting requests in flight."""
    counter = InFlight(create_app(ServerConfig(latency_ms=LATENCY_MS)))
    with ASGIServer(counter) as server:
        yield counter, server.base_url


def test_concurrency_bounds_the_requests_in_flight(slow_server: tuple[InFlight, str]) -> None:
    counter, base_url = slow_server
    for concurrency in (1, 3):
        counter.peak = 0
        result = certify(base_url, only=SUBSET, concurrency=concurrency)
        assert result.verdict == "partial"
        assert counter.peak <= concurrency
        assert counter.peak >= min(concurrency, 2)  # parallel requests really happen


def test_latency_bound_wall_time_is_close_to_ideal(slow_server: tuple[InFlight, str],
                                                    reference_server: object) -> None:
    _, base_url = slow_server
    concurrency = 4
    started = time.monotonic()
    instant = certify(reference_server.base_url, only=SUBSET, concurrency=concurrency)  # type: ignore[attr-defined]
    start_up_and_cpu = time.monotonic() - started
    started = time.monotonic()
    slow = certify(base_url, only=SUBSET, concurrency=concurrency)
    wall = time.monotonic() - started
    assert slow.requests == instant.requests
    ideal = slow.requests * LATENCY_MS / 1000 / concurrency + start_up_and_cpu
    ratio = wall / ideal
    print(f"{slow.requests} requests, N={concurrency}: wall {wall:.2f}s, ideal {ideal:.2f}s, ratio {ratio:.2f}")
    assert ratio < 1.6  # the bound is 1.3 (see the benchmark); margin for a busy machine


def _probe(requests: int, sequential: bool) -> Callable[[CheckContext], None]:
    def probe(ctx: CheckContext) -> None:
        if sequential:
            for i in range(requests):
                ctx.chat(ctx.chat_request(max_tokens=i + 1))
        else:
            futures = [ctx.http.submit("POST", "/chat/completions", json_body=ctx.chat_request(max_tokens=i + 1))
                       for i in range(requests)]
            for future in futures:
                future.result()

    return probe


def _registered(check_id: str, requests: int, func: Callable[[CheckContext], None]) -> RegisteredCheck:
    spec = CheckSpec(check_id, Level.INFO, Feature.CORE, documented("test", "test"), "a test probe",
                     requests=requests)
    return RegisteredCheck(spec, func)


def _run(base_url: str, checks: list[RegisteredCheck], concurrency: int) -> float:
    config = RunConfig(target=Target(base_url, DEFAULT_MODEL), depth=Depth.FULL, profile=Profile.OPENAI,
                       concurrency=concurrency)
    started = time.monotonic()
    result = run(config, checks=checks)
    assert {r.verdict.value for r in result.results} == {"passed"}
    return time.monotonic() - started


def test_submit_parallelises_a_probe_and_keeps_the_transcript_order(slow_server: tuple[InFlight, str]) -> None:
    counter, base_url = slow_server
    counter.peak = 0
    seen: list[list[int]] = []

    def probe(ctx: CheckContext) -> None:
        _probe(8, sequential=False)(ctx)
        seen.append([int(e.request_body.split('"max_tokens": ')[1].split("}")[0]) for e in ctx.http.exchanges
                     if e.request_body])

    wall = _run(base_url, [_registered("test.fan-out", 8, probe)], concurrency=4)
    assert seen == [[1, 2, 3, 4, 5, 6, 7, 8]]
    assert counter.peak == 4
    assert wall < 8 * LATENCY_MS / 1000 * 0.75  # sequential would take at least 0.8 s


def test_longest_check_starts_first() -> None:
    checks = [_registered(f"test.c{n}", n, _probe(n, sequential=True)) for n in (1, 5, 2, 8, 2)]
    assert [c.spec.id for c in schedule(checks, 4)] == ["test.c8", "test.c5", "test.c2", "test.c2", "test.c1"]


def test_longest_first_shortens_a_run_dominated_by_one_long_check(slow_server: tuple[InFlight, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _, base_url = slow_server
    # One chain of 8 sequential requests and 16 single requests, N=3: ideal 24 × 0.1 / 3 = 0.8 s.
    checks = [_registered(f"test.short-{i:02d}", 1, _probe(1, sequential=True)) for i in range(16)]
    checks.append(_registered("test.z-long", 8, _probe(8, sequential=True)))
    longest_first = _run(base_url, checks, concurrency=3)
    # Started last, the chain ends after the singles (16 / 3 rounds) and its own 8 rounds: about 1.4 s.
    monkeypatch.setattr(engine, "schedule", lambda chosen, concurrency: sorted(chosen, key=lambda c: c.spec.requests))
    longest_last = _run(base_url, checks, concurrency=3)
    print(f"longest first {longest_first:.2f}s, longest last {longest_last:.2f}s")
    assert longest_first < longest_last - 0.3


def test_gate_serves_the_lowest_priority_value_first() -> None:
    gate = Gate(1)
    order: list[int] = []
    hold = threading.Event()

    def holder() -> None:
        with gate.slot(0):
            hold.wait(5)

    def waiter(priority: int) -> None:
        with gate.slot(priority):
            order.append(priority)

    first = threading.Thread(target=holder)
    first.start()
    time.sleep(0.05)
    waiters = [threading.Thread(target=waiter, args=(p,)) for p in (5, 1, 3, -1)]
    for thread in waiters:
        thread.start()
        time.sleep(0.02)
    hold.set()
    for thread in [first, *waiters]:
        thread.join(5)
    assert order == [-1, 1, 3, 5]
