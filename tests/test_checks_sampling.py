"""sampling.* checks: clean server passes, seeded faults fail them, and fakes pin the edge verdicts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support import PLAIN_VARIANTS, ServerFactory, certify, verdicts

from conformance import Depth, RunConfig, RunResult, Target, run
from conformance.refserver import DEFAULT_MODEL, ServerThread
from conformance.refserver.faults import FAULTS

CHECKS = ("sampling.n-choices", "sampling.stop", "sampling.max-tokens-length", "sampling.finish-reason-enum",
          "sampling.deterministic")
# fault -> the checks of this module that must fail under it
KILLERS = {name: checks for name, f in FAULTS.items() if (checks := tuple(c for c in f.killed_by if c in CHECKS))}


def test_every_check_is_killed_by_a_fault() -> None:
    assert {c for checks in KILLERS.values() for c in checks} == set(CHECKS)


def test_clean_server_passes(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS)
    assert verdicts(result) == dict.fromkeys(CHECKS, "passed"), [r.message for r in result.results]
    stop = next(r for r in result.results if r.spec.id == "sampling.stop")
    assert stop.details["finish_reason_judged"] is True  # the reply ended at the stop word: finish judged too


def test_every_legal_variant_passes(start_server: ServerFactory) -> None:
    with start_server(variants=PLAIN_VARIANTS) as server:
        result = certify(server.base_url, only=CHECKS)
    assert verdicts(result) == dict.fromkeys(CHECKS, "passed"), [r.message for r in result.results]


@pytest.mark.parametrize("fault", sorted(KILLERS))
def test_fault_fails_its_checks(start_server: ServerFactory, fault: str) -> None:
    with start_server(faults=[fault]) as server:
        result = certify(server.base_url, only=KILLERS[fault])
    assert verdicts(result) == dict.fromkeys(KILLERS[fault], "failed")


def test_nondeterminism_is_an_advisory_failure(start_server: ServerFactory) -> None:
    with start_server(faults=["nondeterministic"]) as server:
        result = certify(server.base_url, only=("sampling.deterministic", "sampling.n-choices"))
    assert verdicts(result) == {"sampling.deterministic": "failed", "sampling.n-choices": "passed"}
    deterministic = next(r for r in result.results if r.spec.id == "sampling.deterministic")
    assert "advisory" in deterministic.message
    assert "as the system_fingerprint in the replies claims" in deterministic.message
    assert deterministic.details["reproducibility"]["system_fingerprint"] is True
    assert result.verdict == "partial"  # a SHOULD failure fails nothing (a selection never certifies)


def test_determinism_shares_the_probe_of_the_stream_equivalence_checks(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=("sampling.deterministic", "stream.equivalent-*"),
                     concurrency=1)
    assert set(verdicts(result).values()) == {"passed"}
    assert result.requests == 3  # the non-stream request twice, the stream once


def test_deterministic_is_full_depth_only(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS, depth="quick")
    assert set(verdicts(result)) == set(CHECKS) - {"sampling.deterministic"}


# --- fakes: behaviours of real models the reference server does not have ----------------------------
Reply = Callable[[dict[str, Any]], tuple[str, str, int]]


def fake_run(reply: Reply, only: tuple[str, ...], **extra: Any) -> RunResult:
    """Run `only` against a fake target whose reply(body) gives (content, finish_reason, completion_tokens);
    `extra` fields go into every response."""

    def handler(request: httpx.Request) -> httpx.Response:
        content, finish, tokens = reply(json.loads(request.content))
        return httpx.Response(200, json={
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": DEFAULT_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": None,
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}, **extra})

    config = RunConfig(target=Target("http://fake.test/v1", DEFAULT_MODEL), depth=Depth.FULL, only=only)
    return run(config, transport=httpx.MockTransport(handler))


REFERENCE = "The sea is wide and deep and blue today"  # stop word: the middle word, "deep"


def test_stop_skips_when_the_reply_is_too_short() -> None:
    result = fake_run(lambda body: ("Hi there.", "stop", 3), ("sampling.stop",))
    assert verdicts(result) == {"sampling.stop": "inconclusive"}
    assert "too short" in result.results[0].message


def test_stop_judges_only_absence_when_the_model_diverges() -> None:
    def reply(body: dict[str, Any]) -> tuple[str, str, int]:
        return (REFERENCE, "length", 16) if "stop" not in body else ("Waves roll in", "length", 16)

    result = fake_run(reply, ("sampling.stop",))
    assert verdicts(result) == {"sampling.stop": "passed"}
    assert result.results[0].details == {"stop": ["deep"], "finish_reason_judged": False}


def test_stop_fails_a_diverging_reply_that_contains_the_stop_word() -> None:
    def reply(body: dict[str, Any]) -> tuple[str, str, int]:
        return (REFERENCE, "length", 16) if "stop" not in body else ("Deep down, deep water", "stop", 5)

    assert verdicts(fake_run(reply, ("sampling.stop",))) == {"sampling.stop": "failed"}


def test_max_tokens_skips_a_reply_that_ended_on_its_own() -> None:
    result = fake_run(lambda body: ("Sure.", "stop", 2), ("sampling.max-tokens-length",))
    assert verdicts(result) == {"sampling.max-tokens-length": "inconclusive"}


def test_finish_reason_enum_fails_an_absent_finish_reason() -> None:
    result = fake_run(lambda body: ("Hello there.", None, 3), ("sampling.finish-reason-enum",))  # type: ignore[arg-type,return-value]
    assert verdicts(result) == {"sampling.finish-reason-enum": "failed"}


def clock(body: dict[str, Any]) -> tuple[str, str, int]:
    """An echo that tells the time: legal, never twice the same."""
    return f"It is {time.perf_counter_ns()} ns.", "stop", 4


def test_an_echo_of_the_clock_is_not_held_to_determinism() -> None:
    result = fake_run(clock, ("sampling.deterministic",))
    assert verdicts(result) == {"sampling.deterministic": "not_applicable"}
    outcome = result.results[0]
    assert "no reply carries system_fingerprint" in outcome.message
    probe = outcome.details["reproducibility"]
    assert probe["first"].startswith("'It is ")
    assert probe["first"] != probe["second"]


def test_a_target_that_claims_seeded_determinism_is_held_to_it() -> None:
    result = fake_run(clock, ("sampling.deterministic",), system_fingerprint="fp_1234")
    assert verdicts(result) == {"sampling.deterministic": "failed"}


def test_a_refused_seed_is_a_declared_limit() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "Unrecognized request argument: seed",
                                                   "type": "invalid_request_error", "param": "seed", "code": None}})

    config = RunConfig(target=Target("http://fake.test/v1", DEFAULT_MODEL), depth=Depth.FULL,
                       only=("sampling.deterministic",), chat_route=("POST", "/chat/completions"))
    assert verdicts(run(config, transport=httpx.MockTransport(handler))) == {"sampling.deterministic": "unsupported"}
