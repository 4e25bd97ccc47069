"""usage.* checks: the clean server passes them, and each seeded fault fails the checks that name it."""

from __future__ import annotations

import pytest
from support import PLAIN_VARIANTS, ServerFactory, certify, verdicts

from conformance.refserver import ServerThread
from conformance.refserver.faults import FAULTS

CHECKS = ("usage.total-is-sum", "usage.present", "usage.completion-bounded", "usage.prompt-grows")
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
    assert verdicts(result) == {"usage.present": "failed", "usage.total-is-sum": "not_applicable",
                                "usage.completion-bounded": "not_applicable", "usage.prompt-grows": "not_applicable"}


def test_completion_bound_counts_every_choice(reference_server: ServerThread) -> None:
    # n=2 × max_tokens=4: the clean server reports 8, which a per-choice bound of 4 would wrongly fail.
    result = certify(reference_server.base_url, only=("usage.completion-bounded",))
    assert result.results[0].details["completion_tokens"] == 8


def test_quick_depth_leaves_out_the_info_check(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS, depth="quick")
    assert "usage.prompt-grows" not in verdicts(result)
    assert set(verdicts(result).values()) == {"passed"}
