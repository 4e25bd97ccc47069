"""The hand-written OpenAPI 3.1 spec: valid, shipped in the package, 3.1 idioms, clauses as data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from documented_api import document_text
from openapi_spec_validator import validate

from conformance.checks.documented import LATEST_CREATED_SECONDS
from conformance.coverage import quote_in
from conformance.spec import SPEC_PATH, load_spec, schema_validator

REPO_SPEC = Path(__file__).resolve().parents[1] / "spec" / "chat-completions.openapi.yaml"


def walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    found = [(path, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            found += walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += walk(value, f"{path}/{index}")
    return found


def test_spec_is_valid_openapi_3_1() -> None:
    spec = load_spec()
    assert spec["openapi"] == "3.1.0"
    validate(spec)


def test_repo_spec_is_the_packaged_spec() -> None:
    assert REPO_SPEC.read_bytes() == SPEC_PATH.read_bytes()


def test_spec_ships_inside_the_package() -> None:
    packaged = resources.files("conformance") / "spec" / "chat-completions.openapi.yaml"
    assert yaml.safe_load(packaged.read_text(encoding="utf-8"))["openapi"] == "3.1.0"


def test_no_openapi_3_0_nullable() -> None:
    offenders = [path for path, node in walk(load_spec()) if isinstance(node, dict) and "nullable" in node]
    assert offenders == []


def test_operations_cover_post_the_documented_get_and_the_model_list() -> None:
    paths = load_spec()["paths"]
    assert "post" in paths["/v1/chat/completions"]
    get_models = paths["/v1/models"]["get"]
    assert get_models["requestBody"]["required"] is False
    shapes = get_models["responses"]["200"]["content"]["application/json"]["schema"]["oneOf"]
    assert {s["$ref"].rsplit("/", 1)[-1] for s in shapes} == {"ModelList", "CreateChatCompletionResponse"}


@pytest.mark.parametrize("status", ["400", "401", "404", "405", "413", "429"])
def test_error_statuses_use_the_envelope(status: str) -> None:
    for path in ("/v1/chat/completions",):
        response = load_spec()["paths"][path]["post"]["responses"][status]
        assert response["$ref"].endswith(("/Error", "/RateLimited"))


def request_properties() -> dict[str, Any]:
    props: dict[str, Any] = load_spec()["components"]["schemas"]["CreateChatCompletionRequest"]["properties"]
    return props


@pytest.mark.parametrize(
    ("name", "minimum", "maximum"),
    [("temperature", 0, 2), ("presence_penalty", -2, 2), ("frequency_penalty", -2, 2)],
)
def test_documented_bounds(name: str, minimum: float, maximum: float) -> None:
    prop = request_properties()[name]
    assert (prop["minimum"], prop["maximum"]) == (minimum, maximum)
    assert prop["x-clause"]["section"] == "1.2"
    assert "x-basis" not in prop  # the document states these bounds
    assert "null" in prop["type"]


@pytest.mark.parametrize(
    ("name", "keywords"),
    [("messages", ["minItems"]), ("top_p", ["minimum", "maximum"]), ("n", ["minimum", "maximum"]),
     ("max_tokens", ["minimum"]), ("stop", ["minItems", "maxItems"])],
)
def test_bounds_the_document_does_not_state_are_openais(name: str, keywords: list[str]) -> None:
    """top_p's description ("0.1 means ... the top 10% probability mass") states no range."""
    basis = request_properties()[name]["x-basis"]
    assert basis["source"] == "openai"
    assert basis["keywords"] == keywords
    assert basis["reference"]


def test_every_request_property_carries_a_clause_or_a_basis() -> None:
    props = request_properties()
    assert [name for name, prop in props.items() if "x-clause" not in prop and "x-basis" not in prop] == []
    assert [name for name in ("stream_options", "seed") if "x-clause" in props[name]] == []  # OpenAI's only


def test_clauses_and_bases_are_structured() -> None:
    for path, node in walk(load_spec()):
        if not isinstance(node, dict):
            continue
        if "x-clause" in node:
            clause = node["x-clause"]
            assert set(clause) == {"section", "quote"}, path
            assert isinstance(clause["section"], str), path
            assert isinstance(clause["quote"], str), path
            assert clause["quote"], path
        if "x-basis" in node:
            basis = node["x-basis"]
            # keywords: JSON-Schema keywords beyond the document; required: names only OpenAI requires.
            assert {"source", "reference"} <= set(basis) <= {"source", "reference", "keywords", "required"}, path
            assert basis["source"] == "openai", path
            assert basis["reference"], path
            assert basis.get("keywords") or basis.get("required"), path
            # Each keyword named as going beyond the document is in that schema (or in one of its branches).
            used = {key for _, sub in walk({k: v for k, v in node.items() if k != "x-basis"})
                    if isinstance(sub, dict) for key in sub}
            assert set(basis.get("keywords", ())) <= used, (path, basis["keywords"])
            assert set(basis.get("required", ())) <= set(node.get("required", ())), path


def test_every_clause_quotes_the_document() -> None:
    """Verbatim up to " | " between table cells and runs of whitespace (see conformance.coverage.quote_in)."""
    document = document_text()
    clauses = [(path, node["x-clause"]["quote"]) for path, node in walk(load_spec())
               if isinstance(node, dict) and "x-clause" in node]
    assert len(clauses) > 20
    assert [(path, quote) for path, quote in clauses if not quote_in(quote, document)] == []


def test_accept_is_required_as_documented() -> None:
    accept = load_spec()["components"]["parameters"]["Accept"]
    assert accept["required"] is True
    assert {"application/json", "text/event-stream"} <= set(accept["schema"]["enum"])


def test_documented_defaults() -> None:
    props = request_properties()
    assert props["stop"]["default"] is None
    assert props["logit_bias"]["default"] is None
    assert props["tool_choice"]["default"] == "auto"
    assert "default" not in props["max_tokens"]  # inf has no JSON form
    assert "inf" in props["max_tokens"]["description"]


@pytest.mark.parametrize(("schema", "object_name"), [("CreateChatCompletionResponse", "chat.completion"),
                                                     ("CreateChatCompletionStreamResponse", "chat.completion.chunk")])
def test_created_is_in_seconds(schema: str, object_name: str) -> None:
    """"The Unix timestamp (in seconds)": a timestamp in milliseconds is refused."""
    validator = schema_validator(schema)
    body = {"id": "c", "object": object_name, "created": 1677652288, "model": "m", "choices": []}
    assert validator.is_valid(body)
    assert not validator.is_valid({**body, "created": 1677652288000})
    created = load_spec()["components"]["schemas"][schema]["properties"]["created"]
    assert created["maximum"] == LATEST_CREATED_SECONDS  # the bound documented.request-example applies


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, True),
        ({"model": "m", "messages": []}, False),
        ({"messages": [{"role": "user", "content": "hi"}]}, False),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 2.0000001}, False),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, False),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"50256": -100}}, True),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"abc": 1}}, False),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"1": 100.5}}, False),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": None}, True),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}, True),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, False),
    ],
)
def test_request_schema_judges_payloads(body: dict[str, Any], valid: bool) -> None:
    assert schema_validator("CreateChatCompletionRequest", "openai").is_valid(body) is valid


def test_event_schema_accepts_done_and_chunks_only() -> None:
    validator = schema_validator("ChatCompletionEvent", "openai")
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
    assert validator.is_valid("[DONE]")
    assert validator.is_valid(chunk)
    assert not validator.is_valid("DONE")
    assert not validator.is_valid({**chunk, "object": "chat.completion"})


def test_error_envelope_requires_param_and_code_string_or_null() -> None:
    validator = schema_validator("ErrorResponse", "openai")
    assert validator.is_valid({"error": {"message": "m", "type": "t", "param": None, "code": None}})
    assert not validator.is_valid({"error": {"message": "m", "type": "t", "param": None, "code": 400}})
    assert not validator.is_valid({"detail": "bad"})


def test_response_tool_calls_may_be_null() -> None:
    """Outside OpenAI's spec, but every SDK parses it; the level rule says it must not fail a certification."""
    response = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "hi", "tool_calls": None}}]}
    assert schema_validator("CreateChatCompletionResponse").is_valid(response)
