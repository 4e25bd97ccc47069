"""The reference server honours every documented parameter and answers every error with the envelope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conformance.refserver import DEFAULT_MODEL, ServerConfig, ServerThread
from conformance.refserver.generate import tokenize
from conformance.spec import schema_validator
from conformance.sse import SSEParser

MESSAGES = [{"role": "user", "content": "Tell me something about streams."}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"]}}}


@pytest.fixture(scope="module")
def client(reference_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=reference_server.base_url, timeout=10) as http:
        yield http


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": DEFAULT_MODEL, "messages": MESSAGES, **body})


def completion(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = chat(client, **body)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    assert schema_validator("CreateChatCompletionResponse").is_valid(payload)
    return payload


def stream_chunks(client: httpx.Client, **body: Any) -> list[Any]:
    response = chat(client, stream=True, **body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    parser = SSEParser()
    parser.feed(response.content)
    parser.close()
    assert parser.events[-1].data == "[DONE]"
    return [json.loads(e.data) for e in parser.events[:-1]]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert schema_validator("ErrorResponse").is_valid(body), body
    error: dict[str, Any] = body["error"]
    return error


def test_basic_completion_shape_and_usage(client: httpx.Client) -> None:
    body = completion(client)
    usage = body["usage"]
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == len(tokenize(body["choices"][0]["message"]["content"]))


def test_same_request_same_text(client: httpx.Client) -> None:
    first = completion(client, temperature=0, seed=7)["choices"][0]["message"]["content"]
    second = completion(client, temperature=0, seed=7)["choices"][0]["message"]["content"]
    assert first == second


@pytest.mark.parametrize("n", [1, 3, 8])
def test_n_choices_are_indexed(client: httpx.Client, n: int) -> None:
    body = completion(client, n=n, max_tokens=4)
    assert [c["index"] for c in body["choices"]] == list(range(n))
    assert body["usage"]["completion_tokens"] <= n * 4


def test_max_tokens_truncates_with_length(client: httpx.Client) -> None:
    body = completion(client, max_tokens=3)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_stop_sequence_never_appears(client: httpx.Client) -> None:
    full = completion(client, temperature=0)["choices"][0]["message"]["content"]
    word = full.split()[len(full.split()) // 2]
    stopped = completion(client, temperature=0, stop=[word])["choices"][0]
    assert word not in stopped["message"]["content"]
    assert stopped["finish_reason"] == "stop"
    assert full.startswith(stopped["message"]["content"])


def test_json_mode_gives_a_json_object(client: httpx.Client) -> None:
    body = completion(client, response_format={"type": "json_object"}, messages=[
        {"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "hi"}])
    assert isinstance(json.loads(body["choices"][0]["message"]["content"]), dict)


def test_json_schema_mode_follows_the_schema(client: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}}
    body = completion(client, response_format={"type": "json_schema", "json_schema": {"name": "x",
                                                                                       "schema": schema}})
    content = json.loads(body["choices"][0]["message"]["content"])
    assert isinstance(content["city"], str)
    assert isinstance(content["n"], int)


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_tool_calls(client: httpx.Client, tool_choice: Any) -> None:
    choice = completion(client, tools=[WEATHER_TOOL], tool_choice=tool_choice)["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert call["type"] == "function"
    assert call["id"]
    assert call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_tool_choice_none_gives_text(client: httpx.Client) -> None:
    choice = completion(client, tools=[WEATHER_TOOL], tool_choice="none")["choices"][0]
    assert "tool_calls" not in choice["message"]
    assert choice["message"]["content"]


def test_stream_matches_non_stream(client: httpx.Client) -> None:
    plain = completion(client, temperature=0, max_tokens=10)
    chunks = stream_chunks(client, temperature=0, max_tokens=10, stream_options={"include_usage": True})
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == plain["choices"][0]["message"]["content"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks}) == 1
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[:-1] == [None] * (len(finishes) - 1)
    assert finishes[-1] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == plain["usage"]
    assert all(c["usage"] is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage(client: httpx.Client) -> None:
    assert all("usage" not in c for c in stream_chunks(client, max_tokens=4))


def test_stream_tool_call_deltas(client: httpx.Client) -> None:
    chunks = stream_chunks(client, tools=[WEATHER_TOOL], tool_choice="required")
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0]["id"]
    assert deltas[0]["function"]["name"] == "get_weather"
    assert all(isinstance(d["index"], int) for d in deltas)
    assert isinstance(json.loads("".join(d["function"]["arguments"] for d in deltas)), dict)


def test_documented_get_quirk_answers_a_chat_completion(client: httpx.Client) -> None:
    response = client.request("GET", "/models", json={"model": DEFAULT_MODEL, "messages": MESSAGES})
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"


def test_plain_get_models_is_a_model_list(client: httpx.Client) -> None:
    body = client.get("/models").json()
    assert schema_validator("ModelList").is_valid(body)
    assert body["data"][0]["id"] == DEFAULT_MODEL


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 2.0000001}, "temperature"),
        ({"temperature": -1e-9}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logit_bias": {"42": 150}}, "logit_bias"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"temperature": "hot"}, "temperature"),
        ({"stream": "yes"}, "stream"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"model": None}, "model"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_bad_parameters_get_400_naming_the_param(client: httpx.Client, body: dict[str, Any], param: str) -> None:
    assert error_of(chat(client, **body), 400)["param"] == param


@pytest.mark.parametrize("edge", [{"temperature": 0}, {"temperature": 2}, {"top_p": 0}, {"top_p": 1},
                                  {"presence_penalty": -2}, {"frequency_penalty": 2}, {"n": 128, "max_tokens": 1},
                                  {"logit_bias": {"1": -100, "2": 100}}, {"stop": ["a", "b", "c", "d"]},
                                  {"user": "user-1234"}])
def test_edges_are_accepted(client: httpx.Client, edge: dict[str, Any]) -> None:
    completion(client, **edge)


def test_missing_messages(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json={"model": DEFAULT_MODEL})
    assert error_of(response, 400)["param"] == "messages"


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'"text"', b"", b"\xff\xfe"])
def test_malformed_bodies_get_400(client: httpx.Client, raw: bytes) -> None:
    error_of(client.post("/chat/completions", content=raw, headers={"content-type": "application/json"}), 400)


def test_unknown_model_is_404(client: httpx.Client) -> None:
    assert error_of(chat(client, model="no-such-model"), 404)["code"] == "model_not_found"


def test_unknown_route_is_404(client: httpx.Client) -> None:
    error_of(client.get("/nonexistent"), 404)


@pytest.mark.parametrize(("method", "path", "allow"), [("GET", "/chat/completions", "POST"),
                                                       ("PUT", "/chat/completions", "POST"),
                                                       ("DELETE", "/chat/completions", "POST"),
                                                       ("POST", "/models", "GET, HEAD")])
def test_wrong_method_is_405_with_allow(client: httpx.Client, method: str, path: str, allow: str) -> None:
    response = client.request(method, path)
    error_of(response, 405)
    assert response.headers["allow"] == allow


def test_body_too_large_is_413(client: httpx.Client) -> None:
    huge = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    error_of(client.post("/chat/completions", json=huge), 413)


def test_api_key_is_enforced() -> None:
    with ServerThread(ServerConfig(api_key="sk-test-123")) as server, httpx.Client(base_url=server.base_url) as http:
        body = {"model": DEFAULT_MODEL, "messages": MESSAGES}
        assert error_of(http.post("/chat/completions", json=body), 401)["code"] == "missing_api_key"
        wrong = http.post("/chat/completions", json=body, headers={"Authorization": "Bearer sk-wrong"})
        assert error_of(wrong, 401)["code"] == "invalid_api_key"
        ok = http.post("/chat/completions", json=body, headers={"Authorization": "Bearer sk-test-123"})
        assert ok.status_code == 200


def test_unknown_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        ServerConfig(faults=frozenset({"no-such-fault"}))
