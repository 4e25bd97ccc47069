"""Error envelope, Content-Type and auth checks against the reference server and its faults."""

from __future__ import annotations

import json

import pytest
from support import certify, verdicts

from conformance.refserver import FAULTS

ERRORS = ("errors.message", "errors.envelope", "errors.unknown-model", "errors.content-type")
AUTH = ("auth.missing-key", "auth.wrong-key", "auth.status-401")
KEY = "sk-conformance-test-5e1f0c2a9b"


def test_clean_server_passes_error_checks(reference_server):
    result = certify(reference_server.base_url, only=ERRORS + AUTH, depth="quick")
    assert verdicts(result) == {**dict.fromkeys(ERRORS, "passed"), **dict.fromkeys(AUTH, "not_applicable")}
    reasons = {r.spec.id: r.message for r in result.results}
    assert "no API key was given" in reasons["auth.missing-key"]


def test_clean_server_with_a_key_passes_auth_and_never_leaks_it(start_server):
    with start_server(api_key=KEY, variants=["json-charset"]) as server:
        result = certify(server.base_url, only=ERRORS + AUTH, api_key=KEY, depth="quick")
    assert set(verdicts(result).values()) == {"passed"}
    document = json.dumps(result.to_json())
    assert KEY not in document
    wrong = next(r for r in result.results if r.spec.id == "auth.wrong-key")
    assert [t["response"]["status"] for t in wrong.exchanges] == [401, 401]


def test_a_target_without_authentication_is_skipped_not_failed(start_server):
    # The no-auth variant is legal: documented-api 1.1 says Authorization is not required.
    with start_server(api_key=KEY, variants=["no-auth"]) as server:
        result = certify(server.base_url, only=AUTH, api_key=KEY)
    assert verdicts(result) == dict.fromkeys(AUTH, "not_applicable")
    assert all("does not enforce authentication" in r.message for r in result.results)


@pytest.mark.parametrize(("fault", "check_id"), [
    ("detail-error-shape", "errors.envelope"),
    ("error-status-200", "errors.envelope"),
    ("error-content-type-text", "errors.content-type"),
])
def test_fault_fails_its_error_check(start_server, fault, check_id):
    assert check_id in FAULTS[fault].killed_by
    with start_server(faults=[fault]) as server:
        result = certify(server.base_url, only=(check_id,), depth="quick")
    assert verdicts(result) == {check_id: "failed"}


@pytest.mark.parametrize(("fault", "check_id"), [
    ("missing-key-403", "auth.status-401"),
    ("missing-key-accepted", "auth.missing-key"),
    ("wrong-key-accepted", "auth.wrong-key"),
])
def test_fault_fails_its_auth_check(start_server, fault, check_id):
    assert check_id in FAULTS[fault].killed_by
    with start_server(faults=[fault], api_key=KEY) as server:
        result = certify(server.base_url, only=AUTH, api_key=KEY)
    assert verdicts(result)[check_id] == "failed"
    assert KEY not in json.dumps(result.to_json())


def test_envelope_failure_names_the_probe(start_server):
    with start_server(faults=["detail-error-shape"]) as server:
        result = certify(server.base_url, only=("errors.envelope",))
    failures = result.results[0].failures
    assert len(failures) == 2  # the bad temperature and the unknown route (the unknown model has its own check)
    assert "temperature 2.0000001" in failures[0].expected
    assert "'error' is a required property" in failures[0].received


def test_a_target_that_serves_invalid_requests_is_not_failed_twice() -> None:
    """A server that answers everything 200 (a mock) fails the params.* checks; the error checks have no
    error body to judge, so they are not applicable rather than a second report of the same cause."""
    import httpx

    from conformance import Depth, RunConfig, Target, run
    from conformance.refserver import DEFAULT_MODEL

    completion = {"id": "c", "object": "chat.completion", "created": 1, "model": DEFAULT_MODEL,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."},
                               "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    config = RunConfig(target=Target("http://fake.test/v1", DEFAULT_MODEL), depth=Depth.FULL,
                       only=("errors.message", "errors.envelope", "params.temperature.bounds"))
    result = run(config, transport=httpx.MockTransport(lambda request: httpx.Response(200, json=completion)))
    assert verdicts(result) == {"errors.message": "not_applicable", "errors.envelope": "not_applicable",
                                "params.temperature.bounds": "failed"}


def test_the_made_up_key_stays_in_the_transcript_so_the_repro_sends_it(start_server):
    """Its repro curl must send the wrong key again, not read the real one from $OPENAI_API_KEY."""
    from conformance.report import Transcript
    from conformance.report._results import curl_for

    with start_server(api_key=KEY) as server:
        result = certify(server.base_url, only=("auth.wrong-key",), api_key=KEY)
    document = result.to_json()
    assert KEY not in json.dumps(document)
    transcripts = document["checks"][0]["transcripts"]
    sent = [t for t in transcripts if t["request"]["headers"].get("Authorization", "").startswith("Bearer sk-wrong-")]
    wrong = Transcript.from_json(sent[0])
    assert "$OPENAI_API_KEY" not in curl_for(wrong)
    assert "Bearer sk-wrong-" in curl_for(wrong)
