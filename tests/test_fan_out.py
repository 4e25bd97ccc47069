"""Checks send their independent requests at once (checks/_parallel.py), and nothing else changes:
the same requests, the same transcripts in the same order, the same verdicts, the same budget.

Parallelism is proven without timing: a server holds every request until as many as the check
sends are in flight at the same time, so a check that still sends one by one shows a peak of 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from hostile_servers import ASGIServer
from hypothesis import strategies as st
from support import certify, verdicts

from conformance._context import SharedExchanges
from conformance.checks import _bounds
from conformance.checks._parallel import Batch
from conformance.checks.errors import UNKNOWN_MODEL
from conformance.checks.params import NAMED_REJECTIONS
from conformance.errors import BudgetExhausted
from conformance.http import Exchange
from conformance.refserver import DEFAULT_MODEL, ServerConfig
from conformance.refserver.app import create_app

HOLD_S = 5.0  # how long a request waits for the others before it goes on alone (only a sequential check waits)


class Together:
    """Holds each request until `expected` are in flight (or HOLD_S passed); records the peak."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.expected = 1
        self.now = self.peak = 0
        self._all_in: asyncio.Event | None = None

    def expect(self, requests: int) -> None:
        self.expected, self.peak, self._all_in = requests, 0, None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._all_in is None:
            self._all_in = asyncio.Event()
        self.now += 1  # one event loop: no lock needed
        self.peak = max(self.peak, self.now)
        try:
            if self.now >= self.expected:
                self._all_in.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_in.wait(), HOLD_S)
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


@pytest.fixture(scope="module")
def together() -> Iterator[tuple[Together, str]]:
    gate = Together(create_app(ServerConfig()))
    with ASGIServer(gate) as server:
        yield gate, server.base_url


# Checks whose requests are all independent: every one is in flight at once.
FANNED_OUT = ("params.temperature.bounds", "params.n.bounds", "params.max-tokens.bounds", "params.logit-bias.values",
              "params.logit-bias.keys", "params.stop.max-items", "params.wrong-type", "params.required",
              "params.malformed-body", "errors.envelope", "errors.content-type", "methods.no-server-error",
              "methods.answer-shapes", "methods.allow-header")


@pytest.mark.parametrize("check_id", FANNED_OUT)
def test_a_check_sends_its_independent_requests_at_once(reference_server: Any, together: tuple[Together, str],
                                                        check_id: str) -> None:
    alone = certify(reference_server.base_url, only=(check_id,), concurrency=16)
    sent = alone.requests
    assert sent >= 2
    gate, base_url = together
    gate.expect(sent)
    result = certify(base_url, only=(check_id,), concurrency=16)
    assert verdicts(result) == verdicts(alone) == {check_id: "passed"}
    assert result.requests == sent
    assert gate.peak == sent, f"{check_id}: at most {gate.peak} of its {sent} requests were in flight at once"


def test_concurrency_still_bounds_a_fan_out(together: tuple[Together, str]) -> None:
    gate, base_url = together
    gate.expect(2)
    result = certify(base_url, only=("params.wrong-type",), concurrency=2)
    assert verdicts(result) == {"params.wrong-type": "passed"}
    assert gate.peak == 2


def bodies(result: Any, check_id: str) -> list[dict[str, Any] | None]:
    check = next(r for r in result.results if r.spec.id == check_id)
    return [json.loads(e["request"]["body"]) if e["request"]["body"] else None for e in check.exchanges]


def test_transcripts_keep_the_declared_order_with_shared_exchanges(reference_server: Any) -> None:
    """Each bounds transcript lists its values in the property's order (explicit, then drawn; inside,
    then outside), whichever check sent a shared exchange first; error-names-param in its table's order."""
    result = certify(reference_server.base_url, only=("params.*", "errors.*"), concurrency=16)
    assert set(verdicts(result).values()) <= {"passed", "not_applicable"}
    assert [b and b["temperature"] for b in bodies(result, "params.temperature.bounds")] == sequential_values(
        "temperature", 0, 2)
    assert [b and b["top_p"] for b in bodies(result, "params.top_p.bounds")] == sequential_values("top_p", 0, 1)
    named = [body and body[field]
             for body, (field, _, _) in zip(bodies(result, "params.error-names-param"), NAMED_REJECTIONS, strict=True)]
    assert named == [value for _, value, _ in NAMED_REJECTIONS]
    bad_temperature, unknown_route = bodies(result, "errors.envelope")
    assert bad_temperature is not None
    assert bad_temperature["temperature"] == 2 + 1e-7
    assert unknown_route is None  # GET /nonexistent-route
    # The run's basic completion (fetched by whichever check came first), then the three error probes.
    completion, unknown_model, *probes = bodies(result, "errors.content-type")
    assert completion is not None
    assert completion["model"] == DEFAULT_MODEL
    assert unknown_model is not None
    assert unknown_model["model"] == UNKNOWN_MODEL
    assert probes == [bad_temperature, None]


def sequential_values(param: str, minimum: float, maximum: float) -> list[Any]:
    """The values a one-by-one property sends, in its order, each once (2.0 and 2 are one request)."""

    class Full:
        full = True

    ctx: Any = Full()
    inside = _bounds.drawn(ctx, st.floats(minimum, maximum, allow_nan=False), (minimum, maximum), 1)
    outside = _bounds.drawn(ctx, st.one_of(st.floats(maximum + 1e-7, maximum + 10),
                                                   st.floats(minimum - 10, minimum - 1e-9)),
                            _bounds.just_outside(minimum, maximum, False), 1)
    seen: dict[str, Any] = {}
    for value in [*inside, *outside]:
        seen.setdefault(json.dumps(_bounds._same_numbers(value)), value)
    return [float(v) if isinstance(v, float) else v for v in seen.values()]


def test_a_failure_points_at_its_own_exchange(start_server: Any) -> None:
    """Failures index the transcript as laid out in the declared order."""
    with start_server(faults=["accept-temperature-2.5"]) as server:
        result = certify(server.base_url, only=("params.temperature.bounds",), concurrency=16)
    check = result.results[0]
    assert check.verdict.value == "failed"
    judged = [f for f in check.failures if f.expected.startswith("temperature=")]  # "temperature=2.0000001 (…"
    assert judged
    for failure in judged:
        assert failure.exchange is not None
        value = float(failure.expected.split(" ")[0].split("=")[1])
        assert json.loads(check.exchanges[failure.exchange]["request"]["body"])["temperature"] == value


def test_a_budget_that_runs_out_mid_fan_out_ends_the_run_incomplete(reference_server: Any) -> None:
    result = certify(reference_server.base_url, only=("params.*", "methods.*", "errors.*"), concurrency=16,
                     max_requests=5)
    assert result.verdict.value == "incomplete"
    assert result.requests <= 5
    assert "--max-requests 5 reached" in (result.reason or "")
    for check in result.results:
        assert not check.message.startswith("harness error"), check.message
        if check.verdict.value == "error":
            assert check.message.startswith("not run to the end"), check.message


# -- SharedExchanges: one request per key, whether it was submitted or fetched ------------------------------
def exchange() -> Exchange:
    return Exchange("POST", "http://x/v1/chat/completions", {}, None, status=200)


def test_a_submitted_key_is_reused_by_get_and_by_submit() -> None:
    shared = SharedExchanges()
    sent: Future[Exchange] = Future()
    assert shared.submit("k", lambda: sent) is sent
    assert shared.submit("k", fail_if_called) is sent
    result: list[Exchange] = []
    waiter = threading.Thread(target=lambda: result.append(shared.get("k", fail_if_called)))
    waiter.start()
    answer = exchange()
    sent.set_result(answer)
    waiter.join(5)
    assert result == [answer]


def test_a_fetched_key_is_reused_by_submit() -> None:
    shared = SharedExchanges()
    answer = exchange()
    assert shared.get("k", lambda: answer) is answer
    assert shared.submit("k", fail_if_called).result() is answer


def test_a_failed_request_is_not_kept() -> None:
    shared = SharedExchanges()
    failed: Future[Exchange] = Future()
    failed.set_exception(RuntimeError("rate limited"))
    assert shared.submit("k", lambda: failed) is failed
    answer = exchange()
    assert shared.get("k", lambda: answer) is answer  # the next caller tries for itself
    with pytest.raises(RuntimeError):
        shared.get("other", raising)
    assert shared.submit("other", lambda: done(answer)).result() is answer


def fail_if_called() -> Any:
    raise AssertionError("sent twice")


def raising() -> Exchange:
    raise RuntimeError("no answer")


def done(value: Exchange) -> Future[Exchange]:
    future: Future[Exchange] = Future()
    future.set_result(value)
    return future


def test_quick_depth_sends_only_the_explicit_examples() -> None:
    class Quick:
        full = False

    ctx: Any = Quick()
    assert _bounds.drawn(ctx, st.floats(0, 2), (0, 2), 1) == [0, 2]


# -- Batch: the transcript a one-by-one check would have left -----------------------------------------------
class FakeContext:
    """What Batch uses of a CheckContext: a transcript that own requests join when they are sent."""

    def __init__(self, transcript: list[Exchange]) -> None:
        self.http = self
        self.exchanges = transcript

    def own(self, sent: Exchange) -> Future[Exchange]:
        self.exchanges.append(sent)  # as Recorder.submit does, at submission
        return done(sent)

    def fetched(self, got: Exchange) -> Exchange:
        self.exchanges.append(got)  # as ctx.shared does, once it has the exchange
        return got


def test_a_batch_lays_out_the_transcript_in_the_order_requests_were_added() -> None:
    earlier, first, own_a, elsewhere, own_c = (exchange() for _ in range(5))
    ctx = FakeContext([earlier])
    batch = Batch(ctx)  # type: ignore[arg-type]
    batch.fetch(lambda: ctx.fetched(first))  # fetched in `results`, while the others are on their way
    batch.add(ctx.own(own_a))
    batch.add(done(elsewhere))  # shared: another check sent it, so it is not in this transcript yet
    batch.add(ctx.own(own_c))
    batch.add(done(earlier))  # already in the transcript before the batch: stays where it was
    batch.add(done(own_a))  # the same exchange twice (2.0 and 2): listed once
    assert batch.results() == [first, own_a, elsewhere, own_c, earlier, own_a]
    assert ctx.exchanges == [earlier, first, own_a, elsewhere, own_c]


def test_a_batch_raises_the_first_failure_in_its_order_once_all_have_finished() -> None:
    ctx = FakeContext([])
    pending: Future[Exchange] = Future()
    batch = Batch(ctx)  # type: ignore[arg-type]
    batch.add(ctx.own(exchange()))
    failed: Future[Exchange] = Future()
    failed.set_exception(BudgetExhausted("--max-requests 1 reached"))
    batch.add(failed)
    batch.add(pending)
    finisher = threading.Timer(0.05, lambda: pending.set_exception(RuntimeError("later")))
    finisher.start()
    with pytest.raises(BudgetExhausted):
        batch.results()
    assert pending.done()  # results waited for it before raising
