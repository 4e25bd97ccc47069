"""schema.* checks: the clean server passes them, and each seeded fault fails the checks that name it."""

from __future__ import annotations

import pytest
from support import PLAIN_VARIANTS, ServerFactory, certify, verdicts

from conformance.checks._judge import media_type
from conformance.http import Exchange
from conformance.refserver import ServerThread
from conformance.refserver.faults import FAULTS

CHECKS = ("schema.chat-completion", "schema.message-role", "schema.content-type")
# fault -> the checks of this module that must fail under it
KILLERS = {name: checks for name, f in FAULTS.items() if (checks := tuple(c for c in f.killed_by if c in CHECKS))}


def test_every_check_is_killed_by_a_fault() -> None:
    assert {c for checks in KILLERS.values() for c in checks} == set(CHECKS)


def test_clean_server_passes(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=CHECKS, depth="quick")
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


def test_message_role_judges_every_choice_of_the_three_choice_response(start_server: ServerFactory) -> None:
    with start_server(faults=["role-missing"]) as server:
        result = certify(server.base_url, only=("schema.message-role",))
    # one failure per choice: 1 in the basic completion, 3 in the n=3 completion
    assert len(result.results[0].failures) == 4
    assert "'<absent>'" in result.results[0].message


def test_content_type_names_the_header_it_received(start_server: ServerFactory) -> None:
    with start_server(faults=["json-as-text-plain"]) as server:
        result = certify(server.base_url, only=("schema.content-type",))
    assert "Received: 'text/plain'" in result.results[0].message


@pytest.mark.parametrize(("header", "media"), [
    ("application/json", "application/json"),
    ("Application/JSON; charset=utf-8", "application/json"),
    ("text/event-stream", "text/event-stream"),
    ("", ""),
])
def test_media_type_drops_parameters(header: str, media: str) -> None:
    exchange = Exchange("POST", "http://x/v1/chat/completions", {}, None, 200, {"content-type": header})
    assert media_type(exchange) == media
