"""Chat sent before the route is known: kept when the probe confirms OpenAI's route, otherwise sent
again on the route found, so a check only ever judges answers from that route (`PendingRoute`)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from support import ServerFactory, certify, verdicts

from conformance import RunVerdict
from conformance._compat import preload_fuzz_imports
from conformance._context import OPENAI_ROUTE, PendingRoute
from conformance.checks import all_checks

KEY = "sk-early-route"


@pytest.fixture(autouse=True)
def _loaded() -> None:
    """The checks' modules loaded, as in a second run in one process: the checks then start within
    milliseconds, well inside the probe's 300 ms (a first run loads them while the target is reached)."""
    all_checks()
    preload_fuzz_imports()


def test_early_chat_on_openais_route_is_kept(start_server: ServerFactory) -> None:
    with start_server(api_key=KEY, latency_ms=300) as server:
        outcome = certify(server.base_url, api_key=KEY, depth="quick", chat_route=None, concurrency=8)
    assert outcome.verdict is RunVerdict.PASSED, outcome.reason
    early = outcome.chat_route["early"]
    assert early["sent"] >= 1  # the checks did not wait the probe's 300 ms
    assert early["resent"] == 0
    assert (outcome.chat_route["method"], outcome.chat_route["path"]) == OPENAI_ROUTE


def test_early_chat_is_sent_again_on_the_documented_route(start_server: ServerFactory) -> None:
    """Only GET /models serves chat: every early request (a 404 on POST /chat/completions) goes again
    there, and the verdicts are those of a run told the route."""
    with start_server(variants=["documented-route-only"], api_key=KEY, latency_ms=300) as server:
        found = certify(server.base_url, api_key=KEY, profile="documented", depth="quick", chat_route=None,
                        concurrency=8)
        told = certify(server.base_url, api_key=KEY, profile="documented", depth="quick",
                       chat_route=("GET", "/models"), concurrency=8)
    assert found.verdict is RunVerdict.PASSED, found.reason
    assert verdicts(found) == verdicts(told)
    early = found.chat_route["early"]
    assert 1 <= early["sent"] <= 8  # never more than --concurrency
    assert early["resent"] == early["sent"]
    # No early answer reached a transcript: every exchange on POST /chat/completions is one a check
    # sent there on purpose, as the run told the route sent them.
    def openai_route_exchanges(result: Any) -> int:
        return sum(1 for r in result.results for e in r.exchanges
                   if e["request"]["method"] == "POST" and e["request"]["url"].endswith("/chat/completions"))
    assert openai_route_exchanges(found) == openai_route_exchanges(told)
    # They stay in the cost: the probes (3) and the early requests on top of what the told run sent.
    assert found.requests == told.requests + len(found.chat_route["probes"]) - 1 + early["sent"]


def test_a_pending_route_hands_out_at_most_its_early_requests() -> None:
    found: Future[Any] = Future()
    pending = PendingRoute(found, early=2)
    assert [pending.take_early() for _ in range(3)] == [True, True, False]
    found.set_result({"method": "GET", "path": "/models"})
    assert not pending.confirmed()
    assert not PendingRoute(found, early=5).take_early()  # known: nothing goes early
