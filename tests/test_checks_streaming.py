"""Stream checks end to end: clean and every legal variant pass; every stream fault fails its checks.

One certification per server, restricted to `stream.*`, keeps each case well under a second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support import PLAIN_VARIANTS, ServerFactory, certify, verdicts

from conformance import Depth, RunConfig, RunResult, Target, run
from conformance.checks import all_checks
from conformance.refserver import DEFAULT_MODEL, FAULTS, ServerConfig, ServerThread

STREAM = ("stream.*",)
STREAM_CHECKS = sorted(c.spec.id for c in all_checks() if c.spec.id.startswith("stream."))
STREAM_FAULTS = sorted(name for name, f in FAULTS.items() if any(c.startswith("stream.") for c in f.killed_by))
# Checks that judge a header or a status, not bytes of a body.
NOT_BODY = {"stream.content-type", "stream.options-without-stream"}
SSE_VARIANTS = ("sse-crlf", "sse-no-space", "sse-keepalive", "sse-retry-field", "sse-small-writes")


@pytest.fixture(scope="module")
def clean_full(reference_server: ServerThread) -> RunResult:
    return certify(reference_server.base_url, only=STREAM, depth="full")


@pytest.fixture(scope="module")
def clean_quick(reference_server: ServerThread) -> RunResult:
    return certify(reference_server.base_url, only=STREAM, depth="quick")


def _not_passed(result: RunResult) -> dict[str, str]:
    return {r.spec.id: f"{r.verdict.value}: {r.message[:300]}" for r in result.results if r.verdict.value != "passed"}


def _check(result: RunResult, check_id: str) -> dict[str, Any]:
    return next(r.to_json() for r in result.results if r.spec.id == check_id)


# -- the clean server ----------------------------------------------------------------------------
def test_clean_server_passes_every_stream_check(clean_full: RunResult) -> None:
    assert sorted(verdicts(clean_full)) == STREAM_CHECKS
    assert _not_passed(clean_full) == {}


def test_quick_depth_passes_with_at_most_six_requests(clean_quick: RunResult, clean_full: RunResult) -> None:
    assert _not_passed(clean_quick) == {}
    assert clean_quick.requests <= 6, clean_quick.requests
    assert clean_full.requests <= 20, clean_full.requests


def test_declared_request_bounds_are_honest(clean_full: RunResult) -> None:
    for result in clean_full.results:
        assert result.requests <= result.spec.requests, (result.spec.id, result.requests, result.spec.requests)


def test_timings_are_recorded_for_the_report(clean_full: RunResult) -> None:
    details = _check(clean_full, "stream.data-is-json")["details"]
    assert details["events"] > 2
    assert details["chunks"] == details["events"] - 1  # all but [DONE]
    for key in ("time_to_headers_s", "time_to_first_byte_s", "time_to_first_content_delta_s"):
        assert isinstance(details[key], float), key
        assert details[key] >= 0, key
    assert details["time_to_first_content_delta_s"] >= details["time_to_first_byte_s"]


def test_each_stream_check_has_a_clause_and_a_fault_that_kills_it() -> None:
    killed = {c for f in FAULTS.values() for c in f.killed_by}
    assert [c for c in STREAM_CHECKS if c not in killed] == []
    for registered in all_checks():
        if registered.spec.id.startswith("stream."):
            assert registered.spec.clause.quote, registered.spec.id
            assert registered.spec.description, registered.spec.id


# -- legal variants ------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(PLAIN_VARIANTS))
def test_every_legal_variant_passes(start_server: ServerFactory, variant: str) -> None:
    with start_server(variants=[variant]) as server:
        result = certify(server.base_url, only=STREAM, depth="full")
    assert _not_passed(result) == {}


def test_all_sse_variants_at_once_pass(start_server: ServerFactory) -> None:
    with start_server(variants=[*SSE_VARIANTS, "extra-fields", "usage-null-every-chunk"]) as server:
        result = certify(server.base_url, only=STREAM, depth="full")
    assert _not_passed(result) == {}


# -- seeded faults -------------------------------------------------------------------------------
class FaultRuns:
    """Each stream fault's certification (only its declared checks), run once per module."""

    def __init__(self) -> None:
        self._cache: dict[str, RunResult] = {}

    def __call__(self, name: str) -> RunResult:
        if name not in self._cache:
            with ServerThread(ServerConfig(faults=frozenset([name]))) as server:
                self._cache[name] = certify(server.base_url, only=FAULTS[name].killed_by, depth="full")
        return self._cache[name]


@pytest.fixture(scope="module")
def fault_results() -> FaultRuns:
    return FaultRuns()


@pytest.mark.parametrize("fault", STREAM_FAULTS)
def test_each_fault_fails_its_declared_checks(fault_results: FaultRuns, fault: str) -> None:
    result = fault_results(fault)
    got = verdicts(result)
    assert {c: got.get(c) for c in FAULTS[fault].killed_by} == dict.fromkeys(FAULTS[fault].killed_by, "failed")


@pytest.mark.parametrize("fault", [f for f in STREAM_FAULTS if set(FAULTS[f].killed_by) - NOT_BODY])
def test_stream_failures_point_at_the_offending_bytes(fault_results: FaultRuns, fault: str) -> None:
    """Every failed check that judges a body marks at least one byte range inside a transcript it recorded."""
    result = fault_results(fault)
    for check_id in set(FAULTS[fault].killed_by) - NOT_BODY:
        record = _check(result, check_id)
        ranges = [f for f in record["failures"] if f["byte_range"] and f["exchange"] is not None]
        assert ranges, (fault, check_id, record["failures"])
        for failure in ranges:
            start, end = failure["byte_range"]
            body = record["transcripts"][failure["exchange"]]["response"]["body"].encode()
            assert 0 <= start < end <= len(body), (fault, check_id, failure)


def test_marked_bytes_are_the_offending_event(fault_results: FaultRuns) -> None:
    record = _check(fault_results("stream-truncated-json"), "stream.data-is-json")
    failure = record["failures"][0]
    start, end = failure["byte_range"]
    marked = record["transcripts"][failure["exchange"]]["response"]["body"].encode()[start:end]
    assert marked.startswith(b"data: {")
    assert marked.endswith(b"\n\n")
    assert b'"choices"' not in marked  # the cut chunk, not a whole neighbour


def test_ollama_empty_finish_reason_is_named(fault_results: FaultRuns) -> None:
    record = _check(fault_results("stream-finish-reason-empty-string"), "stream.finish-reason-once")
    assert any('"" is not null' in f["expected"] for f in record["failures"])


def test_equivalence_fails_a_reproducible_target_whose_stream_differs(fault_results: FaultRuns) -> None:
    for fault, check_id in (("stream-equivalence-broken", "stream.equivalent-content"),
                            ("stream-usage-counts-chunks", "stream.equivalent-usage")):
        record = _check(fault_results(fault), check_id)
        assert record["failures"]
        assert all("repeats its non-stream reply exactly" in f["expected"] for f in record["failures"])
        probe = record["details"]["reproducibility"]
        assert probe["first"] == probe["second"]


def test_finish_reason_key_omitted_is_named(fault_results: FaultRuns) -> None:
    record = _check(fault_results("stream-finish-reason-key-omitted"), "stream.finish-reason-key")
    first = record["failures"][0]
    assert first["expected"] == "the finish_reason key in every chunk choice (null until the choice ends)"
    assert first["received"].startswith("choice 0 without the key: ")
    assert '"finish_reason"' not in first["received"]


def test_usage_per_choice_is_one_chunk_too_many(fault_results: FaultRuns) -> None:
    record = _check(fault_results("stream-usage-per-choice"), "stream.usage-n-choices")
    expected = [f["expected"] for f in record["failures"]]
    assert expected[0].startswith("exactly one usage chunk for the whole request")
    # Each per-choice chunk counts one choice cut at 4 tokens: below the 8 of the whole request.
    assert sum(e.startswith("completion_tokens from 8 to 8") for e in expected) == 2


def test_n_choice_usage_counts_the_whole_request(clean_full: RunResult) -> None:
    record = _check(clean_full, "stream.usage-n-choices")
    assert record["outcome"] == "passed"
    stream = next(t for t in record["transcripts"] if '"stream": true' in t["request"]["body"])
    assert stream["response"]["body"].count('"usage": {') == 1


# -- fakes: targets the reference server is not ----------------------------------------------------
def _sse(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


def clock_echo(request: httpx.Request) -> httpx.Response:
    """An echo whose replies carry the time: legal, and never twice the same."""
    body = json.loads(request.content)
    text = f"You said {body['messages'][-1]['content']!r} at {time.perf_counter_ns()} ns."
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    head = {"id": "chatcmpl-echo", "created": 1, "model": DEFAULT_MODEL}
    if not body.get("stream"):
        return httpx.Response(200, json={**head, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
    chunk = {**head, "object": "chat.completion.chunk"}
    chunks = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                                     "finish_reason": None}]},
              {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {**chunk, "choices": [], "usage": {**usage, "completion_tokens": 9, "total_tokens": 14}}]
    return httpx.Response(200, content=_sse(chunks), headers={"content-type": "text/event-stream"})


def fake_run(handler: Callable[[httpx.Request], httpx.Response], only: tuple[str, ...]) -> RunResult:
    config = RunConfig(target=Target("http://fake.test/v1", DEFAULT_MODEL), depth=Depth.FULL, only=only,
                       chat_route=("POST", "/chat/completions"))
    return run(config, transport=httpx.MockTransport(handler))


def test_an_echo_of_the_clock_is_not_judged_for_equivalence() -> None:
    result = fake_run(clock_echo, ("stream.equivalent-*",))
    assert verdicts(result) == {"stream.equivalent-content": "not_applicable",
                                "stream.equivalent-usage": "not_applicable"}
    for outcome in result.results:
        assert outcome.message.startswith("the target is not reproducible: two identical requests")
        probe = outcome.details["reproducibility"]
        assert "You said" in probe["first"]
        assert probe["first"] != probe["second"]
    assert result.requests == 2  # the probe, paid once; no stream is needed to know


def test_n_choice_usage_declined_is_unsupported_not_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "n > 1 is not supported with stream_options",
                                                   "type": "invalid_request_error", "param": "n", "code": None}})

    result = fake_run(handler, ("stream.usage-n-choices",))
    assert verdicts(result) == {"stream.usage-n-choices": "unsupported"}


def test_html_report_marks_the_offending_event(fault_results: FaultRuns) -> None:
    from conformance.report import CheckRecord
    from conformance.report._html import check_detail

    record = _check(fault_results("stream-no-role"), "stream.first-delta-role")
    html = check_detail(CheckRecord.from_json(record))
    assert '<mark class="offending"' in html
    marked = html.split('<mark class="offending"', 1)[1].split("</mark>", 1)[0]
    assert "&quot;delta&quot;: {&quot;content&quot;: &quot;&quot;}" in marked  # the first delta, without role
    assert "&quot;role&quot;" not in marked
