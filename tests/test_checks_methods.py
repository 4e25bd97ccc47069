"""The GET-vs-POST method matrix against the reference server and its faults."""

from __future__ import annotations

import json

import pytest
from support import certify, verdicts

from conformance.checks.methods import shape_of
from conformance.http import Exchange
from conformance.refserver import FAULTS

OPENAI_CHECKS = ("methods.post-chat", "methods.no-server-error", "methods.answer-shapes", "methods.allow-header",
                 "methods.models-list", "methods.get-quirk-info")
# Under the documented profile the documented URL replaces POST /v1/chat/completions as the requirement.
DOCUMENTED_CHECKS = (*OPENAI_CHECKS[1:-1], "methods.get-quirk")


@pytest.mark.parametrize(("profile", "expected"), [("openai", OPENAI_CHECKS), ("documented", DOCUMENTED_CHECKS)])
def test_clean_server_passes_and_the_matrix_costs_six_requests(reference_server, profile, expected):
    result = certify(reference_server.base_url, only=("methods.*",), profile=profile, depth="quick")
    assert verdicts(result) == dict.fromkeys(expected, "passed")
    assert result.requests == 7  # the seven probes of the matrix
    matrix = next(r.details["method_matrix"] for r in result.results if r.spec.id == "methods.answer-shapes")
    assert [(row["request"], row["status"], row["shape"]) for row in matrix] == [
        ("POST /v1/chat/completions", 200, "chat.completion"),
        ("GET /v1/models", 200, "model list"),
        ("GET /v1/models + chat body", 200, "chat.completion"),
        ("POST /v1/models + chat body", 405, "error envelope 405"),
        ("GET /v1/chat/completions", 405, "error envelope 405"),
        ("PUT /v1/chat/completions", 405, "error envelope 405"),
        ("DELETE /v1/chat/completions", 405, "error envelope 405"),
    ]
    assert {row["allow"] for row in matrix[4:]} == {"POST"}


def test_the_report_renders_the_matrix(reference_server):
    from conformance.report import Results
    from conformance.report._html import method_matrix

    result = certify(reference_server.base_url, only=("methods.answer-shapes",))
    html = method_matrix(Results.from_json(result.to_json()))
    assert "GET /v1/models + chat body" in html
    assert "error envelope 405" in html


@pytest.mark.parametrize(("fault", "check_id", "profile"), [
    ("post-answers-405", "methods.post-chat", "openai"),
    ("models-get-500", "methods.no-server-error", "openai"),
    ("models-get-500", "methods.models-list", "openai"),
    ("models-get-500", "methods.get-quirk-info", "openai"),
    ("models-get-500", "methods.get-quirk", "documented"),
    ("no-allow-header", "methods.allow-header", "openai"),
    ("detail-error-shape", "methods.answer-shapes", "openai"),
    ("get-models-ignores-body", "methods.get-quirk", "documented"),
])
def test_fault_fails_its_methods_check(start_server, fault, check_id, profile):
    assert check_id in FAULTS[fault].killed_by
    with start_server(faults=[fault]) as server:
        result = certify(server.base_url, only=(check_id,), profile=profile)
    assert verdicts(result) == {check_id: "failed"}


def test_ignoring_the_body_on_get_models_is_legal_under_the_openai_profile(start_server):
    with start_server(faults=["get-models-ignores-body"]) as server:
        result = certify(server.base_url, only=("methods.*",))
    assert set(verdicts(result).values()) == {"passed"}
    info = next(r for r in result.results if r.spec.id == "methods.get-quirk-info")
    assert info.details["get_quirk"] == {"status": 200, "shape": "model list", "documented_call_works": False}


def test_server_errors_show_in_the_matrix(start_server):
    with start_server(faults=["models-get-500"]) as server:
        result = certify(server.base_url, only=("methods.answer-shapes",))
    assert verdicts(result) == {"methods.answer-shapes": "failed"}
    rows = result.results[0].details["method_matrix"]
    assert [row["judgement"] for row in rows] == ["ok", "invalid", "invalid", "ok", "ok", "ok", "ok"]


@pytest.mark.parametrize(("status", "body", "shape"), [
    (200, {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}, "list"),
    (200, {"object": "list", "data": [{"id": "m", "object": "model"}]}, "model list"),
    (200, {"object": "list", "data": []}, "model list"),
    (405, {"error": {"message": "Only POST", "type": "invalid_request_error", "param": None,
                     "code": "method_not_supported"}}, "error envelope 405"),
    (405, {"detail": "Method Not Allowed"}, "405 without the envelope ($: 'error' is a required property)"),
    (502, {}, "server error 502"),
])
def test_shape_of_recognises_openai_answers(status, body, shape):
    exchange = Exchange("GET", "http://x/v1/chat/completions", {}, None, status=status,
                        body=json.dumps(body).encode())
    assert shape_of(exchange) == shape
