"""error_details checks: a prompt over the context window, and stringified nulls in error bodies."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from support import PLAIN_VARIANTS, ServerFactory, certify, verdicts

from conformance import Depth, RunConfig, RunResult, Target, run
from conformance.checks.error_details import OVERFLOW_WORDS
from conformance.refserver import DEFAULT_MODEL, ServerThread
from conformance.refserver.app import CONTEXT_WINDOW
from conformance.refserver.faults import FAULTS

CHECKS = ("errors.context-overflow", "errors.context-overflow-type", "errors.param-code-not-stringified")
# fault -> the checks of this module that must fail under it
KILLERS = {name: checks for name, f in FAULTS.items() if (checks := tuple(c for c in f.killed_by if c in CHECKS))}


def test_every_check_is_killed_by_a_fault() -> None:
    assert {c for checks in KILLERS.values() for c in checks} == set(CHECKS)


def test_the_probe_overflows_the_reference_window() -> None:
    assert OVERFLOW_WORDS > CONTEXT_WINDOW


def test_clean_server_passes(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS)
    assert verdicts(result) == dict.fromkeys(CHECKS, "passed"), [r.message for r in result.results]
    code = next(r for r in result.results if r.spec.id == "errors.context-overflow-type")
    assert code.details == {"type": "invalid_request_error", "code": "context_length_exceeded"}


def test_every_legal_variant_passes(start_server: ServerFactory) -> None:
    with start_server(variants=PLAIN_VARIANTS) as server:
        result = certify(server.base_url, only=CHECKS)
    assert verdicts(result) == dict.fromkeys(CHECKS, "passed"), [r.message for r in result.results]


@pytest.mark.parametrize("fault", sorted(KILLERS))
def test_fault_fails_its_checks(start_server: ServerFactory, fault: str) -> None:
    with start_server(faults=[fault]) as server:
        result = certify(server.base_url, only=KILLERS[fault])
    assert verdicts(result) == dict.fromkeys(KILLERS[fault], "failed")
    for outcome in result.results:
        assert all(part in outcome.message for part in ("Expected:", "Received:", "Where:")), outcome.message


def test_overflow_checks_are_full_depth_only(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS, depth="quick")
    assert verdicts(result) == {"errors.param-code-not-stringified": "passed"}


def test_stringified_param_and_code_are_both_named(start_server: ServerFactory) -> None:
    with start_server(faults=["error-param-string-none"]) as server:
        result = certify(server.base_url, only=("errors.param-code-not-stringified",))
    received = [f.received for f in result.results[0].failures]
    assert received == ["error.code '400': the HTTP status written as a string",
                        "error.param 'None': a null written as a string",
                        "error.code '404': the HTTP status written as a string"]


# --- fakes: targets with other windows and other answers ----------------------------------------------
def fake_run(answer: Callable[[dict[str, object]], httpx.Response], only: tuple[str, ...] = CHECKS[:2]
             ) -> RunResult:
    def handler(request: httpx.Request) -> httpx.Response:
        return answer(json.loads(request.content))

    config = RunConfig(target=Target("http://fake.test/v1", DEFAULT_MODEL), depth=Depth.FULL, only=only,
                       chat_route=("POST", "/chat/completions"))
    return run(config, transport=httpx.MockTransport(handler))


def test_a_window_that_holds_the_prompt_is_not_applicable() -> None:
    def large_window(body: dict[str, object]) -> httpx.Response:
        return httpx.Response(200, json={
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": DEFAULT_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5012, "completion_tokens": 1, "total_tokens": 5013}})

    result = fake_run(large_window)
    assert verdicts(result) == dict.fromkeys(CHECKS[:2], "not_applicable")
    assert all("its context window holds it" in r.message and "'prompt_tokens': 5012" in r.message
               for r in result.results)
    assert result.requests == 1  # one probe for both checks


@pytest.mark.parametrize(("status", "body", "verdict"), [
    (400, {"error": {"message": "too long", "type": "BadRequestError", "code": 400}}, "passed"),
    (413, {"error": {"message": "request too large"}}, "passed"),
    (400, {"detail": "too long"}, "failed"),
    (500, {"error": {"message": "index out of range"}}, "failed"),
])
def test_overflow_wants_a_client_error_with_a_message(status: int, body: dict[str, object], verdict: str) -> None:
    result = fake_run(lambda request: httpx.Response(status, json=body), CHECKS[:1])
    assert verdicts(result) == {"errors.context-overflow": verdict}
