"""Adaptive concurrency: a target that serves one request at a time and cuts the stream in progress
when another request arrives (the fault `single-slot-cuts-streams`, a common single-slot default)
keeps every check's true verdict at --concurrency 4; the one finding is load.concurrent-streams, and
results.json records what the run did (the concurrency lowered, why, the checks re-run alone)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support import ServerFactory, certify, verdicts

from conformance.http import Limits, Session, Target
from conformance.http.gate import Gate
from conformance.report import Results, schema_problems
from conformance.report._terminal import summary

KEY = "sk-adaptive-test-0001"
SLOT = "single-slot-cuts-streams"


@pytest.mark.slow
def test_a_single_slot_target_keeps_the_true_verdicts_and_one_finding(start_server: ServerFactory) -> None:
    with start_server(api_key=KEY) as clean_server:
        clean = certify(clean_server.base_url, api_key=KEY, concurrency=4)
    with start_server(faults=[SLOT], api_key=KEY) as slot_server:
        slot = certify(slot_server.base_url, api_key=KEY, concurrency=4)
    expected = {**verdicts(clean), "load.concurrent-streams": "failed"}
    assert verdicts(clean)["load.concurrent-streams"] == "passed"
    assert verdicts(slot) == expected
    assert slot.verdict.value == clean.verdict.value == "passed"  # a SHOULD finding: still certified
    results = slot.to_json()
    assert schema_problems(results) == []
    record = results["concurrency"]
    assert (record["requested"], record["final"], record["lowered"]) == (4, 1, True)
    assert "failed only while others were in flight (cut stream" in record["reason"]
    assert {event["kind"] for event in record["contention"]} == {"cut stream"}
    # The other checks' cut requests lowered the concurrency (the load check runs last and lowers nothing)
    # and each check they left unjudged ran again alone, to its true verdict.
    assert record["steps"]
    assert "load.concurrent-streams" not in {step["check"] for step in record["steps"]}
    assert "load.concurrent-streams" in {event["check"] for event in record["contention"]}
    assert record["rerun"]
    assert all(rerun["after"] == verdicts(clean)[rerun["id"]] for rerun in record["rerun"])
    [cause] = results["root_causes"]
    assert cause["checks"] == ["load.concurrent-streams"]
    load = next(c for c in results["checks"] if c["id"] == "load.concurrent-streams")
    assert any("cut after" in f["received"] for f in load["failures"])
    assert any(t.get("contended", {}).get("kind") == "cut stream" for t in load["transcripts"])
    lines = summary(Results.from_json(results), {}).splitlines()
    assert any(line.split()[:4] == ["Load", "lowered", "4", "→"] for line in lines)
    assert clean.to_json()["concurrency"]["lowered"] is False


@pytest.mark.slow
def test_without_the_load_check_contention_is_found_and_its_checks_re_run_alone(start_server: ServerFactory
                                                                                ) -> None:
    skip = ("load.*",)
    with start_server() as clean_server:
        clean = certify(clean_server.base_url, skip=skip, depth="quick", concurrency=4)
    with start_server(faults=[SLOT]) as slot_server:
        slot = certify(slot_server.base_url, skip=skip, depth="quick", concurrency=4)
    assert verdicts(slot) == verdicts(clean)
    assert slot.verdict.value == "partial"  # --skip: never a certification, and never incomplete
    record = slot.to_json()["concurrency"]
    assert record["lowered"] is True
    assert record["final"] == 1
    assert record["rerun"], "contention left checks unjudged, which the run re-ran"
    expected = verdicts(clean)
    for rerun in record["rerun"]:
        assert rerun["after"] == expected[rerun["id"]]
        assert rerun["before"] != "passed"
    assert "re-run one at a time were judged alone" in record["reason"]
    assert schema_problems(slot.to_json()) == []


def test_the_load_check_needs_two_requests_in_flight(reference_server: Any) -> None:
    result = certify(reference_server.base_url, only=("load.concurrent-streams",), concurrency=1)
    assert verdicts(result) == {"load.concurrent-streams": "not_applicable"}
    assert result.requests == 0 or result.results[0].requests == 0


def test_the_load_check_passes_n_whole_streams(reference_server: Any) -> None:
    result = certify(reference_server.base_url, only=("load.concurrent-streams",), concurrency=3)
    assert verdicts(result) == {"load.concurrent-streams": "passed"}
    [load] = result.results
    assert load.requests == 1 + 3  # one stream alone, then three at once
    assert load.details["concurrent_streams"]["streams"] == 3


# -- the mechanism -----------------------------------------------------------------------------------
def test_the_gate_can_be_lowered_while_requests_wait() -> None:
    gate = Gate(2)
    inside = threading.Semaphore(0)
    release = threading.Event()
    peak = [0]
    now = [0]
    lock = threading.Lock()

    def request() -> None:
        with gate.slot(0):
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            inside.release()
            release.wait(5)
            with lock:
                now[0] -= 1

    first = [threading.Thread(target=request) for _ in range(2)]
    for thread in first:
        thread.start()
    for _ in first:
        assert inside.acquire(timeout=5)
    gate.resize(1)  # both slots are taken: from now on, one at a time
    later = [threading.Thread(target=request) for _ in range(3)]
    for thread in later:
        thread.start()
    peak[0] = 0
    release.set()
    for thread in [*first, *later]:
        thread.join(5)
    assert peak[0] == 1  # the first two leave before any later one enters, and the later ones never overlap
    assert gate.slots == 1


def test_lowering_is_recorded_and_never_goes_up_or_below_one() -> None:
    session = Session(Target("http://127.0.0.1:9/v1", "m"), Limits(), concurrency=4)
    try:
        session.lower_concurrency(2, "a cut stream", "stream.x")
        session.lower_concurrency(3, "would go up")
        session.lower_concurrency(0, "as low as it goes")
        session.lower_concurrency(1, "already there")
        assert session.concurrency == 1
        assert session.requested_concurrency == 4
        assert [(s["from"], s["to"], s["check"]) for s in session.steps] == [(4, 2, "stream.x"), (2, 1, None)]
    finally:
        session.close()
