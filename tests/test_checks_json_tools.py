"""json-mode.* and tools.* checks: clean server passes, seeded faults fail them, fakes pin edge verdicts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support import PLAIN_VARIANTS, ServerFactory, certify, verdicts

from conformance import Depth, RunConfig, RunResult, Target, run
from conformance.checks.tools import call_problems
from conformance.refserver import DEFAULT_MODEL, ServerThread
from conformance.refserver.faults import FAULTS

CHECKS = ("json-mode.object", "json-mode.schema", "tools.required-call", "tools.named-call", "tools.finish-reason",
          "tools.none-no-calls", "tools.unknown-named-function", "tools.cut-call-finish-length")
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


def _call(arguments: Any, **changes: Any) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments},
            **changes}


@pytest.mark.parametrize(("call", "problem"), [
    (_call('{"city": "Paris"}'), None),
    (_call({"city": "Paris"}), "not a string"),
    (_call('{"city": '), "does not parse"),
    (_call('["Paris"]'), "parses to a list"),
    (_call("{}", id=""), "id = ''"),
    (_call("{}", type="tool"), "type = 'tool'"),
    ({"id": "c", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}, "function.name"),
    ("call", "not an object"),
])
def test_call_problems(call: Any, problem: str | None) -> None:
    problems = call_problems(call, ("get_weather",))
    assert (problems == []) if problem is None else any(problem in p for p in problems), problems


# --- fakes: behaviours of real targets the reference server does not have ----------------------------
Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def fake_run(answer: Answer, only: tuple[str, ...]) -> RunResult:
    def handler(request: httpx.Request) -> httpx.Response:
        status, body = answer(json.loads(request.content))
        return httpx.Response(status, json=body)

    config = RunConfig(target=Target("http://fake.test/v1", DEFAULT_MODEL), depth=Depth.FULL, only=only,
                       chat_route=("POST", "/chat/completions"))
    return run(config, transport=httpx.MockTransport(handler))


def completion(message: dict[str, Any], finish: str, tokens: int | None = None) -> dict[str, Any]:
    """A chat.completion; with `tokens`, a usage whose completion_tokens is that."""
    body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": DEFAULT_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "logprobs": None,
                         "finish_reason": finish}]}
    if tokens is not None:
        body["usage"] = {"prompt_tokens": 30, "completion_tokens": tokens, "total_tokens": 30 + tokens}
    return body


def tool_call(name: str, arguments: str) -> dict[str, Any]:
    return {"content": None, "tool_calls": [_call(arguments, function={"name": name, "arguments": arguments})]}


REJECTED = (400, {"error": {"message": "response_format is not supported", "type": "invalid_request_error",
                            "param": "response_format", "code": None}})


def test_rejected_response_format_declares_json_mode_unsupported() -> None:
    result = fake_run(lambda body: REJECTED, ("json-mode.*",))
    assert verdicts(result) == {"json-mode.object": "unsupported", "json-mode.schema": "unsupported"}
    assert result.features["json_mode"] == "unsupported"


def test_a_rejection_that_names_nothing_is_no_declaration() -> None:
    vague = (400, {"error": {"message": "bad request", "type": "invalid_request_error"}})
    result = fake_run(lambda body: vague, ("json-mode.object",))
    assert verdicts(result) == {"json-mode.object": "failed"}


def test_json_truncated_twice_is_inconclusive_not_failed() -> None:
    result = fake_run(lambda body: (200, completion({"content": '{"greeting": "hel'}, "length")),
                      ("json-mode.object",))
    assert verdicts(result) == {"json-mode.object": "inconclusive"}
    assert "cut by max_tokens twice" in result.results[0].message
    assert result.results[0].requests == 2


def test_json_truncated_once_is_retried_with_more_room() -> None:
    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body["max_tokens"] <= 64:
            return 200, completion({"content": '{"greet'}, "length")
        return 200, completion({"content": '{"greeting": "hello"}'}, "stop")

    result = fake_run(answer, ("json-mode.object",))
    assert verdicts(result) == {"json-mode.object": "passed"}
    assert result.results[0].requests == 2


def test_json_in_code_fences_fails() -> None:
    result = fake_run(lambda body: (200, completion({"content": '```json\n{"greeting": "hi"}\n```'}, "stop")),
                      ("json-mode.object",))
    assert verdicts(result) == {"json-mode.object": "failed"}


def test_tool_finish_reason_is_skipped_when_auto_calls_nothing() -> None:
    result = fake_run(lambda body: (200, completion({"content": "It is sunny."}, "stop")), ("tools.finish-reason",))
    assert verdicts(result) == {"tools.finish-reason": "inconclusive"}


def test_unknown_named_function_answered_401_is_not_a_rejection() -> None:
    unauthorised = (401, {"error": {"message": "no key", "type": "auth", "param": None, "code": None}})
    result = fake_run(lambda body: unauthorised, ("tools.unknown-named-function",))
    assert verdicts(result) == {"tools.unknown-named-function": "failed"}


# --- tool calls cut by max_tokens ---------------------------------------------------------------------
def test_a_call_cut_by_max_tokens_is_retried_with_more_room() -> None:
    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body["max_tokens"] <= 64:  # a verbose model: the arguments do not fit in 64 tokens
            return 200, completion(tool_call("get_time", '{"timezone": "Europe/Par'), "length", body["max_tokens"])
        return 200, completion(tool_call("get_time", '{"timezone": "Europe/Paris"}'), "tool_calls", 80)

    result = fake_run(answer, ("tools.named-call", "tools.required-call"))
    assert verdicts(result) == {"tools.named-call": "passed", "tools.required-call": "passed"}
    assert [r.requests for r in result.results] == [2, 2]


def test_cut_at_max_tokens_without_saying_length_is_still_a_cut() -> None:
    # completion_tokens = max_tokens and arguments that do not parse: cut, whatever finish_reason says.
    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, completion(tool_call("get_time", '{"timez'), "tool_calls", body["max_tokens"])

    result = fake_run(answer, ("tools.named-call",))
    assert verdicts(result) == {"tools.named-call": "inconclusive"}
    assert "cut by max_tokens twice (last at 256: completion_tokens 256 = max_tokens" in result.results[0].message


def test_arguments_that_are_not_json_below_the_cap_fail() -> None:
    result = fake_run(lambda body: (200, completion(tool_call("get_time", "{timezone: UTC}"), "tool_calls", 9)),
                      ("tools.named-call",))
    assert verdicts(result) == {"tools.named-call": "failed"}
    assert result.results[0].requests == 1


@pytest.mark.parametrize(("reply", "verdict"), [
    (completion(tool_call("get_weather", '{"ci'), "length", 2), "passed"),
    (completion(tool_call("get_weather", '{"ci'), "tool_calls", 2), "failed"),
    (completion(tool_call("get_weather", ""), "stop", 2), "failed"),
    (completion({"content": ""}, "length", 2), "passed"),  # a cut before any call: length all the same
    (completion({"content": "<tool_call>"}, "stop", 2), "failed"),
    (completion(tool_call("get_weather", "{}"), "tool_calls", 2), "inconclusive"),  # the call fit
    (completion(tool_call("get_weather", '{"ci'), "tool_calls", 1), "inconclusive"),  # below the cap: no cut
    (completion(tool_call("get_weather", '{"ci'), "tool_calls"), "not_applicable"),  # no usage to tell a cut
])
def test_cut_call_finish_length(reply: dict[str, Any], verdict: str) -> None:
    assert verdicts(fake_run(lambda body: (200, reply), ("tools.cut-call-finish-length",))) == {
        "tools.cut-call-finish-length": verdict}


def test_the_reference_server_cuts_a_call_at_max_tokens(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, only=("tools.cut-call-finish-length",))
    assert verdicts(result) == {"tools.cut-call-finish-length": "passed"}
    assert result.results[0].details == {"completion_tokens": 2, "finish_reason": "length", "broken_calls": [0]}


def test_a_tool_call_past_max_tokens_fails_the_cut_call_check() -> None:
    """Generating past the cap is the server's doing (llmock does it), not an inconclusive model reply."""
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "x"}'}}

    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        reply = completion({"content": None, "tool_calls": [call]}, "tool_calls")
        return 200, {**reply, "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}}

    result = fake_run(answer, ("tools.cut-call-finish-length",))
    assert verdicts(result) == {"tools.cut-call-finish-length": "failed"}
    assert "completion_tokens 5" in result.results[0].failures[0].received
