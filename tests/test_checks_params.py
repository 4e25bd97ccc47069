"""Parameter checks: the clean reference server passes them, each seeded fault fails its check."""

from __future__ import annotations

import pytest
from support import certify, verdicts

from conformance.checks._bounds import just_outside
from conformance.checks.params import names_field
from conformance.refserver import FAULTS

PARAMS = (
    "params.temperature.bounds", "params.top_p.bounds", "params.presence-penalty.bounds",
    "params.frequency-penalty.bounds", "params.n.bounds", "params.max-tokens.bounds", "params.logit-bias.values",
    "params.logit-bias.keys", "params.stop.max-items", "params.error-names-param", "params.wrong-type",
    "params.required", "params.malformed-body", "params.unknown-role",
)
QUICK = ("params.temperature.bounds", "params.error-names-param", "params.wrong-type", "params.required",
         "params.malformed-body")

KILLS = [
    ("accept-temperature-2.5", "params.temperature.bounds"),
    ("reject-temperature-2", "params.temperature.bounds"),
    ("error-status-200", "params.temperature.bounds"),
    ("accept-top-p-1.5", "params.top_p.bounds"),
    ("reject-top-p-0", "params.top_p.bounds"),
    ("accept-presence-penalty-3", "params.presence-penalty.bounds"),
    ("accept-frequency-penalty--2.5", "params.frequency-penalty.bounds"),
    ("accept-n-0", "params.n.bounds"),
    ("accept-max-tokens-0", "params.max-tokens.bounds"),
    ("accept-logit-bias-150", "params.logit-bias.values"),
    ("accept-logit-bias-word-keys", "params.logit-bias.keys"),
    ("accept-five-stop-sequences", "params.stop.max-items"),
    ("error-without-param", "params.error-names-param"),
    ("500-on-wrong-type", "params.wrong-type"),
    ("detail-error-shape", "params.wrong-type"),
    ("accept-empty-messages", "params.empty-messages"),
    ("500-on-missing-messages", "params.required"),
    ("500-on-malformed-body", "params.malformed-body"),
    ("accept-unknown-role", "params.unknown-role"),
]


@pytest.fixture(scope="module")
def clean_full(reference_server):
    return certify(reference_server.base_url, only=PARAMS, depth="full")


def test_clean_server_passes_every_params_check(clean_full):
    assert verdicts(clean_full) == dict.fromkeys(PARAMS, "passed"), [r.message for r in clean_full.results]


def test_clean_server_passes_at_quick_depth(reference_server):
    result = certify(reference_server.base_url, only=PARAMS, depth="quick")
    assert verdicts(result) == dict.fromkeys(QUICK, "passed")
    assert result.requests <= 12


def test_legal_variants_pass(start_server):
    variants = ["json-charset", "extra-fields", "system-fingerprint", "leading-crlf-content"]
    with start_server(variants=variants) as server:
        result = certify(server.base_url, only=("params.*",), depth="quick")
    assert set(verdicts(result).values()) == {"passed"}


@pytest.mark.parametrize(("fault", "check_id"), KILLS)
def test_fault_fails_its_check(start_server, fault, check_id):
    assert check_id in FAULTS[fault].killed_by
    with start_server(faults=[fault]) as server:
        result = certify(server.base_url, only=(check_id,), depth="full")
    assert verdicts(result) == {check_id: "failed"}
    failure = result.results[0].failures[0]
    assert all((failure.expected, failure.received, failure.where))


def test_quick_depth_probes_only_the_edges(reference_server):
    result = certify(reference_server.base_url, only=("params.temperature.bounds",), depth="quick")
    sent = [t["request"]["body"] for t in result.results[0].exchanges]
    assert len(sent) == 4
    assert any('"temperature": 2.0000001' in body for body in sent)
    assert any('"temperature": -1e-09' in body for body in sent)


def test_declared_request_bounds_hold(clean_full):
    for check in clean_full.results:
        assert len(check.exchanges) <= check.spec.requests, check.spec.id


def test_just_outside_values():
    assert just_outside(0, 2, integer=False) == (-1e-9, 2.0000001)
    assert just_outside(1, 128, integer=True) == (0, 129)
    assert just_outside(1, None, integer=True) == (0,)


@pytest.mark.parametrize(("param", "expected"), [
    ("temperature", True), ("messages[0].role", False), (None, False), ("temperature_x", False),
    ("temperature.value", True), ("temperature[0]", True),
])
def test_names_field(param, expected):
    assert names_field(param, "temperature") is expected
