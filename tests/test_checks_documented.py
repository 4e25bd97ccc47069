"""documented.* checks: the clean server passes them, and each seeded fault fails the checks that name it."""

from __future__ import annotations

from typing import Any

import pytest
from support import PLAIN_VARIANTS, ServerFactory, certify, verdicts

from conformance.checks.documented import documented_shape_problems, example_request
from conformance.refserver import ServerThread
from conformance.refserver.faults import FAULTS

CHECKS = ("documented.request-example", "documented.request-example-documented-route")
# fault -> the checks of this module that must fail under it
KILLERS = {name: checks for name, f in FAULTS.items() if (checks := tuple(c for c in f.killed_by if c in CHECKS))}
# The documented route is required only by the documented profile.
PROFILE = "documented"


def test_every_check_is_killed_by_a_fault() -> None:
    assert {c for checks in KILLERS.values() for c in checks} == set(CHECKS)


def test_clean_server_passes(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS, profile=PROFILE)
    assert verdicts(result) == dict.fromkeys(CHECKS, "passed"), [r.message for r in result.results]


def test_every_legal_variant_passes(start_server: ServerFactory) -> None:
    with start_server(variants=PLAIN_VARIANTS) as server:
        result = certify(server.base_url, only=CHECKS, profile=PROFILE)
    assert verdicts(result) == dict.fromkeys(CHECKS, "passed"), [r.message for r in result.results]


@pytest.mark.parametrize("fault", sorted(KILLERS))
def test_fault_fails_its_checks(start_server: ServerFactory, fault: str) -> None:
    with start_server(faults=[fault]) as server:
        result = certify(server.base_url, only=KILLERS[fault], profile=PROFILE)
    assert verdicts(result) == dict.fromkeys(KILLERS[fault], "failed")
    for outcome in result.results:
        assert all(part in outcome.message for part in ("Expected:", "Received:", "Where:")), outcome.message


def test_the_openai_profile_leaves_out_the_documented_route(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS)
    assert verdicts(result) == {"documented.request-example": "passed"}


def test_the_request_is_the_documents_example_with_the_runs_model(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS, profile=PROFILE)
    sent = {r.spec.id: r.to_json()["transcripts"][0]["request"] for r in result.results}
    assert sent["documented.request-example"]["method"] == "POST"
    assert sent["documented.request-example"]["url"].endswith("/v1/chat/completions")
    assert sent["documented.request-example-documented-route"]["method"] == "GET"
    assert sent["documented.request-example-documented-route"]["url"].endswith("/v1/models")
    for request in sent.values():
        assert request["body"] is not None
        assert '"user": "user-1234"' in request["body"]
        assert '"model": "conformance-ref-1"' in request["body"]
        assert request["headers"]["Accept"] == "application/json"
    assert example_request("m") == {"model": "m", "messages": [{"role": "user", "content": "Hello there, how may I "
                                    "assist you today?"}], "temperature": 1, "top_p": 1, "n": 1, "stream": False,
                                    "user": "user-1234"}


# The document's own response example (section 3), minus its \r\n content prefix.
DOCUMENTED_EXAMPLE: dict[str, Any] = {
    "id": "chatcmpl-123", "object": "chat.completion", "created": 1677652288,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "\r\n\r\nHello there, how may I assist you "
                                         "today?"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
}


def test_the_documents_own_response_example_passes() -> None:
    # No `model`: the document's table and example have none.
    assert documented_shape_problems(DOCUMENTED_EXAMPLE) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"created": 1677652288000}, "$.created"),
        ({"created": "1677652288"}, "$.created"),
        ({"usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 22}}, "$.usage"),
        ({"choices": []}, "$.choices"),
        ({"choices": [{"index": 0, "message": {"role": "assistant"}, "finish_reason": "stop"}]},
         "$.choices[0].message"),
        ({"id": None}, "$.id"),
    ],
)
def test_departures_from_the_documented_shape_are_named(change: dict[str, Any], where: str) -> None:
    problems = documented_shape_problems({**DOCUMENTED_EXAMPLE, **change})
    assert problems
    assert problems[0].startswith(where), problems
