"""usage.* checks: the clean server passes them, and each seeded fault fails the checks that name it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from support import PLAIN_VARIANTS, ServerFactory, certify, verdicts

from conformance import Depth, RunConfig, RunResult, Target, run
from conformance.refserver import DEFAULT_MODEL, ServerThread
from conformance.refserver.faults import FAULTS

CHECKS = ("usage.total-is-sum", "usage.present", "usage.completion-bounded", "usage.completion-counts-every-choice",
          "usage.prompt-grows")
# fault -> the checks of this module that must fail under it
KILLERS = {name: checks for name, f in FAULTS.items() if (checks := tuple(c for c in f.killed_by if c in CHECKS))}


def test_every_check_is_killed_by_a_fault() -> None:
    assert {c for checks in KILLERS.values() for c in checks} == set(CHECKS)


def test_clean_server_passes(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS)
    assert verdicts(result) == dict.fromkeys(CHECKS, "passed"), [r.message for r in result.results]


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


def test_missing_usage_is_skipped_not_failed_by_the_arithmetic_checks(start_server: ServerFactory) -> None:
    # Only usage.present judges absence; the others have nothing to judge and say so.
    with start_server(faults=["usage-missing"]) as server:
        result = certify(server.base_url, only=CHECKS)
    assert verdicts(result) == {"usage.present": "failed", **dict.fromkeys(set(CHECKS) - {"usage.present"},
                                                                            "not_applicable")}


def test_completion_bound_counts_every_choice(reference_server: ServerThread) -> None:
    # n=2 × max_tokens=4: the clean server reports 8, which a per-choice bound of 4 would wrongly fail.
    result = certify(reference_server.base_url, only=("usage.completion-bounded",))
    assert result.results[0].details["completion_tokens"] == 8


def test_quick_depth_leaves_out_the_info_check(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS, depth="quick")
    assert "usage.prompt-grows" not in verdicts(result)
    assert set(verdicts(result).values()) == {"passed"}


def test_every_choice_cut_at_length_counts_max_tokens(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=("usage.completion-counts-every-choice",
                                                      "usage.completion-bounded"))
    assert set(verdicts(result).values()) == {"passed"}
    counts = next(r for r in result.results if r.spec.id == "usage.completion-counts-every-choice")
    assert counts.details == {"completion_tokens": 8, "finish_reasons": ["length", "length"]}


def test_a_server_counting_one_choice_is_told_what_was_generated(start_server: ServerFactory) -> None:
    with start_server(faults=["usage-counts-one-choice"]) as server:
        result = certify(server.base_url, only=("usage.completion-counts-every-choice", "usage.completion-bounded"))
    assert verdicts(result) == {"usage.completion-counts-every-choice": "failed", "usage.completion-bounded": "passed"}
    failure = next(r for r in result.results if r.verdict.value == "failed").failures[0]
    assert failure.expected.startswith("completion_tokens >= 8: 2 choice(s) ended with finish_reason length")
    assert failure.received == "completion_tokens = 4 (finish_reasons ['length', 'length'])"


# --- fakes: what the reference server does not do ---------------------------------------------------
def fake_run(finishes: list[str], completion: int) -> RunResult:
    """usage.completion-counts-every-choice against a target that answers n choices with `finishes`."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        choices: list[dict[str, Any]] = [
            {"index": i, "message": {"role": "assistant", "content": "The sea"}, "logprobs": None,
             "finish_reason": finish} for i, finish in enumerate(finishes[:body.get("n", 1)])]
        return httpx.Response(200, json={
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": DEFAULT_MODEL,
            "choices": choices, "usage": {"prompt_tokens": 9, "completion_tokens": completion,
                                          "total_tokens": 9 + completion}})

    config = RunConfig(target=Target("http://fake.test/v1", DEFAULT_MODEL), depth=Depth.FULL,
                       only=("usage.completion-counts-every-choice",))
    return run(config, transport=httpx.MockTransport(handler))


def test_one_choice_cut_needs_max_tokens_for_it_alone() -> None:
    # One choice ended on its own after 1 token, one was cut after 4: 5 counts both, 4 may be legal too.
    assert verdicts(fake_run(["stop", "length"], 5)) == {"usage.completion-counts-every-choice": "passed"}
    assert verdicts(fake_run(["stop", "length"], 3)) == {"usage.completion-counts-every-choice": "failed"}


def test_no_choice_cut_leaves_nothing_to_count_from() -> None:
    result = fake_run(["stop", "stop"], 2)
    assert verdicts(result) == {"usage.completion-counts-every-choice": "inconclusive"}
    assert "no choice ended with finish_reason length" in result.results[0].message
