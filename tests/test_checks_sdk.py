"""sdk.* checks: the official openai SDK parses the clean server, and breaks, with its own words,
on the seeded faults that break it in real life.

One certification per server, restricted to `sdk.*`, keeps each case under a second.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import openai
import pytest
from support import ServerFactory, certify, verdicts

from conformance import RunResult
from conformance.checks.sdk import INSTALL_HINT, _dataless_block
from conformance.refserver import ServerThread

SDK = ("sdk.*",)
SDK_CHECKS = ["sdk.create", "sdk.error-classes", "sdk.stream-tool-call", "sdk.stream-usage", "sdk.tool-call"]
KEY = "sk-sdk-test-7f3a9c"


def _check(result: RunResult, check_id: str) -> dict[str, Any]:
    return next(r.to_json() for r in result.results if r.spec.id == check_id)


@pytest.fixture(scope="module")
def keyed_server() -> Any:
    from conformance.refserver import ServerConfig

    with ServerThread(ServerConfig(api_key=KEY)) as server:
        yield server


@pytest.fixture(scope="module")
def clean_keyed(keyed_server: ServerThread) -> RunResult:
    return certify(keyed_server.base_url, only=SDK, api_key=KEY)


# -- the clean server ----------------------------------------------------------------------------
def test_clean_server_passes_every_sdk_check(clean_keyed: RunResult) -> None:
    assert verdicts(clean_keyed) == dict.fromkeys(SDK_CHECKS, "passed"), [r.message for r in clean_keyed.results]


def test_quick_depth_keeps_two_sdk_checks_of_one_request_each(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=SDK, depth="quick")
    assert verdicts(result) == {"sdk.create": "passed", "sdk.stream-usage": "passed"}
    assert result.requests == 2


def test_the_sdk_version_is_in_every_check(clean_keyed: RunResult) -> None:
    for check_id in SDK_CHECKS:
        assert _check(clean_keyed, check_id)["details"]["openai_sdk_version"] == openai.__version__


def test_both_error_classes_are_judged_with_a_key(clean_keyed: RunResult) -> None:
    parts = _check(clean_keyed, "sdk.error-classes")["details"]["parts"]
    assert parts == {"bad-request": "HTTP 400: the SDK raised openai.BadRequestError",
                     "wrong-key": "HTTP 401: the SDK raised openai.AuthenticationError"}


def test_without_a_key_only_the_400_is_judged_and_said(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=("sdk.error-classes",))
    assert verdicts(result) == {"sdk.error-classes": "passed"}
    parts = _check(result, "sdk.error-classes")["details"]["parts"]
    assert parts["bad-request"].startswith("HTTP 400")
    assert parts["wrong-key"].startswith("not judged: no API key")


def test_sdk_traffic_is_recorded_counted_and_redacted(clean_keyed: RunResult) -> None:
    text = json.dumps([r.to_json() for r in clean_keyed.results])
    assert KEY not in text
    for check_id in SDK_CHECKS:
        check = _check(clean_keyed, check_id)
        assert check["requests_made"] == len(check["transcripts"]) >= 1
        assert check["requests_made"] <= check["requests"]
        for exchange in check["transcripts"]:
            headers = {k.lower(): v for k, v in exchange["request"]["headers"].items()}
            assert headers["user-agent"].startswith("OpenAI/Python")
            assert headers["authorization"] == "Bearer $OPENAI_API_KEY"
            assert exchange["response"]["status"] in (200, 400, 401)
    assert clean_keyed.requests == sum(r.requests for r in clean_keyed.results)
    stream = _check(clean_keyed, "sdk.stream-usage")["transcripts"][0]
    assert stream["sse"]["events"] > 2
    assert json.loads(stream["request"]["body"])["stream_options"] == {"include_usage": True}


def test_results_match_the_results_schema(clean_keyed: RunResult) -> None:
    from conformance.report import schema_problems

    assert schema_problems(clean_keyed.to_json()) == []


def test_environment_never_leaks_to_the_target(reference_server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-secret")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-secret")
    result = certify(reference_server.base_url, only=("sdk.create",))
    assert verdicts(result) == {"sdk.create": "passed"}
    sent = json.dumps(_check(result, "sdk.create")["transcripts"][0]["request"])
    assert "authorization" not in sent.lower()
    for secret in ("sk-from-the-environment", "org-secret", "proj-secret"):
        assert secret not in sent


def test_the_budget_counts_sdk_requests(keyed_server: ServerThread) -> None:
    result = certify(keyed_server.base_url, only=("sdk.error-classes",), api_key=KEY, max_requests=1)
    check = _check(result, "sdk.error-classes")
    # The second request (the made-up key) is refused by the budget: not judged, never a failure.
    assert check["outcome"] == "error", check["message"]
    assert "max-requests 1" in check["message"]
    assert result.requests == 1


def test_the_run_bounds_hold_for_sdk_traffic() -> None:
    import hostile_servers

    with hostile_servers.HostileServer(hostile_servers.huge_body()) as server:  # a 5 GiB body, generated lazily
        result = certify(server.base_url, only=("sdk.create", "sdk.stream-usage"), model=hostile_servers.MODEL,
                         max_response_bytes=100_000)
    for check in result.results:
        assert check.verdict.value == "failed", check.message
        assert "too large" in check.message


def test_a_dead_target_is_an_error_not_a_failure() -> None:
    result = certify("http://127.0.0.1:9/v1", only=("sdk.create",), connect_timeout_s=1.0)
    assert verdicts(result) == {"sdk.create": "error"}


def test_without_the_sdk_the_checks_skip_with_the_install_hint(reference_server: ServerThread,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` now raises ImportError
    result = certify(reference_server.base_url, only=SDK)
    assert verdicts(result) == dict.fromkeys(SDK_CHECKS, "skipped")
    assert all("install openai-conformance[sdk]" in r.message for r in result.results)
    assert "openai-conformance[sdk]" in INSTALL_HINT


# -- seeded faults that break the SDK ------------------------------------------------------------
BREAKS = {
    # fault: {check: text of the SDK's own exception, or of the judgement, in the failure}
    "stream-tool-call-no-index": {"sdk.stream-tool-call": "TypeError: list indices must be integers"},
    "error-status-200": {"sdk.error-classes": "no exception: HTTP 200 with an error body"},
    "stream-truncated-json": {"sdk.stream-usage": "JSONDecodeError", "sdk.stream-tool-call": "JSONDecodeError"},
    "non-stream-as-event-stream": {"sdk.create": "'str' object has no attribute 'choices'"},
    "tool-arguments-not-string": {"sdk.tool-call": "function.arguments is a str"},
    "stream-no-data-prefix": {"sdk.stream-usage": "the SDK yielded no chunk at all"},
}


@pytest.mark.parametrize("fault", sorted(BREAKS))
def test_faults_that_break_the_sdk_fail_their_checks(fault: str, start_server: ServerFactory) -> None:
    expected = BREAKS[fault]
    with start_server(faults=[fault], api_key=KEY) as server:
        result = certify(server.base_url, only=SDK, api_key=KEY)
    failed = {k for k, v in verdicts(result).items() if v == "failed"}
    assert failed >= set(expected), verdicts(result)
    for check_id, text in expected.items():
        check = _check(result, check_id)
        assert text in check["message"], check["message"]
        failure = check["failures"][0]
        assert failure["exchange"] is not None  # the report can show the transcript
        if check_id.startswith("sdk.stream-"):  # ... and mark the event the SDK broke on
            start, end = failure["byte_range"]
            assert 0 <= start < end <= check["transcripts"][failure["exchange"]]["response"]["body_bytes"]
    assert {k: v for k, v in verdicts(result).items() if k not in failed} == dict.fromkeys(
        set(SDK_CHECKS) - failed, "passed")


def test_legal_retry_field_skips_naming_the_sdk_bug(start_server: ServerFactory) -> None:
    with start_server(variants=["sse-retry-field"]) as server:
        result = certify(server.base_url, only=SDK)
    assert verdicts(result) == {"sdk.create": "passed", "sdk.error-classes": "passed",
                                "sdk.stream-tool-call": "skipped", "sdk.stream-usage": "skipped",
                                "sdk.tool-call": "passed"}
    message = _check(result, "sdk.stream-usage")["message"]
    assert "openai/openai-python#2722" in message
    assert "retry: 3000" in message


@pytest.mark.parametrize("variant", ["sse-crlf", "sse-no-space", "sse-keepalive", "sse-small-writes",
                                     "extra-fields", "usage-null-every-chunk", "json-charset"])
def test_other_variants_pass(variant: str, start_server: ServerFactory) -> None:
    with start_server(variants=[variant]) as server:
        result = certify(server.base_url, only=SDK)
    assert verdicts(result) == dict.fromkeys(SDK_CHECKS, "passed"), [r.message for r in result.results]


# -- the data-less block the SDK cannot read -----------------------------------------------------
@pytest.mark.parametrize(("body", "block"), [
    (b"retry: 3000\n\ndata: {}\n\n", "retry: 3000"),
    (b"retry: 3000\r\n\r\ndata: {}\r\n\r\n", "retry: 3000"),
    (b"event: ping\n\ndata: {}\n\n", "event: ping"),
    (b"id: 1\ndata: {}\n\n: keep-alive\n\n", ": keep-alive"),
    (b"data: {}\n\n: keep-alive\n\ndata: [DONE]\n\n", None),
    (b"data: {\"a\": \n\nretry: 10\n\n", None),  # the stream's own broken JSON comes first
    (b"data: {}\n\ndata: [DONE]\n\nretry: 10\n\n", None),  # after [DONE] the SDK reads no more
])
def test_dataless_block(body: bytes, block: str | None) -> None:
    assert _dataless_block(body) == block
