"""Root causes: failures that share one cause are grouped by the engine, from the evidence itself.

Each rule of conformance/_causes.py is proven on a hand-made failure and its transcript; the grouping
as a whole on the reference server's faults: a fault that fails several checks is one root cause,
two unrelated faults are two. Then the reports: results.json (against its schema), the terminal and
report.html list the causes first, each with a curl that reproduces it, and `diff` names them.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from support import ServerFactory, certify

from conformance._causes import RULES, classify, root_causes
from conformance._diff import diff_results
from conformance._model import CheckResult, CheckSpec, Failure, Feature, Level, Verdict, documented
from conformance.refserver import DEFAULT_MODEL
from conformance.report import RESULTS_SCHEMA_PATH, Results, Transcript, render_reports, schema_problems, write_results
from conformance.report._results import curl_for
from conformance.report._terminal import summary

MODEL = DEFAULT_MODEL
CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
COMPLETION: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": MODEL,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there.", "refusal": None},
                           "logprobs": None, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
ENVELOPE: dict[str, Any] = {"error": {"message": "bad value", "type": "invalid_request_error", "param": "temperature",
                                      "code": None}}


# -- hand-made evidence ---------------------------------------------------------------------------------
def transcript(request: Any = CHAT, answer: Any = COMPLETION, *, status: int | None = 200, method: str = "POST",
               path: str = "/chat/completions", content_type: str = "application/json", limit: str | None = None,
               error: str | None = None) -> dict[str, Any]:
    """A transcript as the engine writes it (bodies as text)."""
    body = request if isinstance(request, str) or request is None else json.dumps(request)
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return {"request": {"method": method, "url": f"http://127.0.0.1:9/v1{path}",
                        "headers": {"Accept": "application/json", "Authorization": "Bearer $OPENAI_API_KEY"},
                        "body": body},
            "response": {"status": status, "headers": {"content-type": content_type}, "body": text,
                         "body_bytes": len(text), "truncated": False},
            "error": error, "limit_exceeded": limit, "elapsed_s": 0.01, "ttfb_s": 0.01, "attempts": []}


def sse(*chunks: Any, done: bool = True) -> str:
    events = [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks]
    return "".join(events) + ("data: [DONE]\n\n" if done else "")


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": MODEL,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def failure(expected: str = "something", received: str = "something else", exchange: int | None = 0) -> Failure:
    return Failure(expected, received, "POST /v1/chat/completions", exchange)


def failed(check_id: str, *pairs: tuple[Failure, dict[str, Any]], level: Level = Level.MUST) -> CheckResult:
    """A failed check whose i-th failure points at the i-th transcript."""
    spec = CheckSpec(check_id, level, Feature.CORE, documented("test", "test"), "a test check")
    failures = tuple(Failure(f.expected, f.received, f.where, i if f.exchange is not None else None)
                     for i, (f, _) in enumerate(pairs))
    return CheckResult(spec, Verdict.FAILED, "failed", 0.0, failures=failures,
                       exchanges=tuple(t for _, t in pairs))


def key(f: Failure, t: dict[str, Any]) -> tuple[str, ...] | None:
    found = classify(f, t, MODEL)
    return found[0] if found else None


# -- each rule ------------------------------------------------------------------------------------------
def test_bound_groups_answers_cut_by_the_same_bound() -> None:
    t = transcript(limit="too many events: more than 200 SSE events")
    assert key(failure(), t) == ("bound", "too many events")


def test_status_for_input_5xx_by_input_class() -> None:
    crash = transcript({**CHAT, "temperature": "hot"}, "Internal Server Error", status=500, content_type="text/plain")
    assert key(failure(), crash) == ("status-for-input", "5xx", "invalid input")
    broken_json = transcript('{"model": "x", "messages": [', "oops", status=502)
    assert key(failure(), broken_json) == ("status-for-input", "5xx", "invalid input")
    valid = transcript(None, ENVELOPE, status=500, method="GET", path="/models")
    assert key(failure(), valid) == ("status-for-input", "5xx", "GET /v1/models")


def test_status_for_input_invalid_accepted_and_valid_refused() -> None:
    accepted = transcript({**CHAT, "temperature": 2.5})
    assert key(failure(), accepted) == ("status-for-input", "2xx", "invalid input")
    refused = transcript({**CHAT, "temperature": 2.0}, ENVELOPE, status=400)
    assert key(failure(), refused) == ("status-for-input", "400", "POST /v1/chat/completions")
    route = transcript({**CHAT, "temperature": 9}, ENVELOPE, status=405)  # the route refuses, whatever the input
    assert key(failure(), route) == ("status-for-input", "405", "POST /v1/chat/completions")
    # Refusals the target may give: another model, a tool_choice naming no tool, a missing key.
    assert key(failure(), transcript({**CHAT, "model": "no-such-model"}, ENVELOPE, status=404)) is None
    named = {"type": "function", "function": {"name": "nope"}}
    assert key(failure(), transcript({**CHAT, "tool_choice": named}, ENVELOPE, status=400)) is None
    assert key(failure(), transcript(CHAT, ENVELOPE, status=401)) is None


def test_error_shape_by_status_class_media_type_and_keys() -> None:
    detail = transcript({**CHAT, "temperature": 9}, {"detail": "bad"}, status=422)
    assert key(failure(), detail) == ("error-shape", "4xx", "application/json", "detail", "")
    no_param = transcript({**CHAT, "temperature": 9}, {"error": {"message": "bad", "type": "x"}}, status=400)
    assert key(failure(), no_param) == ("error-shape", "4xx", "application/json", "error", "message,type")
    with_200 = transcript({"model": MODEL}, ENVELOPE, status=200)  # an invalid request "rejected" with 200
    assert key(failure(), with_200) == ("error-shape", "2xx", "application/json", "error",
                                        "code,message,param,type")
    plain = transcript({**CHAT, "temperature": 9}, json.dumps(ENVELOPE), status=400, content_type="text/plain")
    assert key(failure(), plain)[:3] == ("error-shape", "4xx", "text/plain")  # type: ignore[index]
    assert key(failure(), transcript({**CHAT, "temperature": 9}, ENVELOPE, status=400)) is None  # conformant


def test_framing_when_the_answer_is_not_what_the_stream_flag_asks() -> None:
    streamed = {**CHAT, "stream": True}
    assert key(failure(), transcript(streamed)) == ("framing", "stream as json")
    as_sse = transcript(CHAT, sse(COMPLETION), content_type="text/event-stream")
    assert key(failure(), as_sse) == ("framing", "json as sse")
    bare = transcript(streamed, json.dumps(chunk({"content": "hi"})) + "\n\n", content_type="text/event-stream")
    assert key(failure(), bare) == ("framing", "sse without json")
    truncated = transcript(streamed, sse(chunk({"role": "assistant", "content": ""}), '{"id": "chatc'),
                           content_type="text/event-stream")
    assert key(failure(), truncated) == ("framing", "sse event not json")
    after = transcript(streamed, sse(chunk({"content": "hi"}, "stop")) + sse(chunk({}), done=False),
                       content_type="text/event-stream")
    assert key(failure(), after) == ("framing", "events after done")
    labelled = transcript(CHAT, COMPLETION, content_type="text/plain")
    assert key(failure(), labelled) == ("framing", "json labelled", "text/plain")
    whole = transcript(streamed, sse(chunk({"role": "assistant", "content": "hi"}, "stop")),
                       content_type="text/event-stream")
    assert key(failure(), whole) is None


def test_ignored_parameter_for_each_parameter_with_a_visible_effect() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    forced = transcript({**CHAT, "tools": tools, "tool_choice": "required"})
    assert key(failure(), forced) == ("ignored-parameter", "tool_choice")
    two = transcript({**CHAT, "n": 2})
    assert key(failure(), two) == ("ignored-parameter", "n")
    capped = transcript({**CHAT, "max_tokens": 2})
    assert key(failure(), capped) == ("ignored-parameter", "max_tokens")
    stopped = transcript({**CHAT, "stop": ["there"]})
    assert key(failure(), stopped) == ("ignored-parameter", "stop")
    json_mode = transcript({**CHAT, "response_format": {"type": "json_object"}})
    assert key(failure(), json_mode) == ("ignored-parameter", "response_format")
    streamed_n = transcript({**CHAT, "n": 2, "stream": True}, sse(chunk({"content": "a"}, "stop", index=0)),
                            content_type="text/event-stream")
    assert key(failure(), streamed_n) == ("ignored-parameter", "n")
    honoured = {**COMPLETION, "choices": [{**COMPLETION["choices"][0], "index": i} for i in range(2)]}
    assert key(failure(), transcript({**CHAT, "n": 2}, honoured)) is None


def test_usage_sum_when_the_failure_names_a_count() -> None:
    off = {**COMPLETION, "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 9}}
    assert key(failure("total_tokens = prompt_tokens + completion_tokens"), transcript(CHAT, off)) == ("usage-sum",)
    assert key(failure("a stop sequence honoured"), transcript(CHAT, off)) is None  # another failure of that answer


def test_schema_key_when_the_failure_names_the_key() -> None:
    no_role = json.loads(json.dumps(COMPLETION))
    del no_role["choices"][0]["message"]["role"]
    t = transcript(CHAT, no_role)
    assert key(failure(received="$.choices[0].message: 'role' is a required property"), t) == (
        "schema-key", "choices[].message.role")
    assert key(failure('message.role "assistant"', "'<absent>'"), t) == ("schema-key", "choices[].message.role")
    assert key(failure("usage adds up"), t) is None  # the answer lacks role, but this failure is not about it
    as_string = transcript(CHAT, {**COMPLETION, "created": "1700000000"})
    assert key(failure(received="$.created: '1700000000' is not of type 'integer'"), as_string) == (
        "schema-key", "created")


def test_a_check_whose_failures_match_no_rule_is_its_own_root_cause() -> None:
    causes = root_causes([failed("usage.total-is-sum", (failure("usage adds up"), transcript()))], MODEL)
    assert [(c.id, c.rule, c.checks) for c in causes] == [
        ("check.usage.total-is-sum", "check", ("usage.total-is-sum",))]
    assert causes[0].title == "usage.total-is-sum: expected usage adds up"
    assert causes[0].example == ("usage.total-is-sum", 0)


def test_failures_of_one_cause_are_one_root_cause_and_unmatched_ones_follow_their_check() -> None:
    detail = transcript({**CHAT, "temperature": 9}, {"detail": "bad"}, status=400)
    results = [
        failed("errors.message", (failure(), detail)),
        failed("params.wrong-type", (failure(), detail), (failure("every case passes", exchange=None), detail)),
        failed("errors.envelope", (failure(), detail), level=Level.SHOULD),
        failed("usage.total-is-sum", (failure("usage adds up"), transcript())),
    ]
    causes = root_causes(results, MODEL)
    assert [c.rule for c in causes] == ["error-shape", "check"]
    first = causes[0]
    assert first.checks == ("errors.message", "params.wrong-type", "errors.envelope")  # MUST first
    assert first.failures == 4  # the unmatched failure of params.wrong-type went with its check's cause
    assert first.example == ("errors.message", 0)
    assert first.id == "error-shape.4xx.application-json.detail"


def test_the_schema_names_every_rule() -> None:
    schema = json.loads(RESULTS_SCHEMA_PATH.read_text(encoding="utf-8"))
    rules = schema["properties"]["root_causes"]["items"]["properties"]["rule"]["enum"]
    assert rules == list(RULES)


# -- on the reference server's faults ---------------------------------------------------------------------
MULTI_CHECK_FAULTS = [
    ("detail-error-shape",), ("error-status-200",), ("stream-ignored",), ("role-missing",),
    ("usage-total-off-by-one",), ("500-on-malformed-body", "500-on-missing-messages", "500-on-wrong-type"),
]


@pytest.mark.slow
@pytest.mark.parametrize("faults", MULTI_CHECK_FAULTS, ids="+".join)
def test_a_fault_that_fails_several_checks_is_one_root_cause(faults: tuple[str, ...],
                                                             start_server: ServerFactory) -> None:
    with start_server(faults=faults) as server:
        results = certify(server.base_url).to_json()
    assert schema_problems(results) == []
    failed_ids = {c["id"] for c in results["checks"] if c["outcome"] == "failed"}
    assert len(failed_ids) >= 2
    [cause] = results["root_causes"]
    assert set(cause["checks"]) == failed_ids
    example = cause["example"]
    check = next(c for c in results["checks"] if c["id"] == example["check"])
    assert check["transcripts"][example["transcript"]]["request"]["url"].startswith(server.base_url)


@pytest.mark.slow
def test_two_unrelated_faults_are_two_root_causes(start_server: ServerFactory) -> None:
    with start_server(faults=["detail-error-shape", "stream-ignored"]) as server:
        results = certify(server.base_url).to_json()
    causes = results["root_causes"]
    assert sorted(c["rule"] for c in causes) == ["error-shape", "framing"]
    shape, framing = sorted(causes, key=lambda c: c["rule"])
    assert not set(shape["checks"]) & set(framing["checks"])
    assert all(c.startswith(("stream.", "sdk.stream")) for c in framing["checks"])
    assert {c["id"] for c in results["checks"] if c["outcome"] == "failed"} == {
        *shape["checks"], *framing["checks"]}


# -- the reports ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_causes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from conformance.refserver import ServerConfig, ServerThread

    with ServerThread(ServerConfig(faults=frozenset({"usage-total-off-by-one", "stream-no-done"}))) as server:
        results = certify(server.base_url, only=("usage.*", "stream.done-terminator", "stream.usage-include"),
                          depth="quick").to_json()
    out = tmp_path_factory.mktemp("causes")
    return {"results": results, "paths": render_reports(write_results(results, out), out)}


def test_the_terminal_lists_root_causes_first_with_their_curl(two_causes: dict[str, Any]) -> None:
    results = two_causes["results"]
    lines = summary(Results.from_json(results), two_causes["paths"]).splitlines()
    assert lines[1].split(None, 1) == ["Causes", "2 root causes, failing 3 checks"]
    why = next(i for i, line in enumerate(lines) if line.startswith("  Why"))
    first = [c["title"] for c in results["root_causes"]]
    assert [line.split(". ", 1)[1] for line in lines[2:why] if re.match(r"    \d+\. ", line)] == first
    curls = [i for i, line in enumerate(lines[:why]) if line.strip().startswith("curl ")]
    assert len(curls) == 2
    assert all(lines[i].endswith(" \\") for i in curls)  # continued over lines: pasted as one command


def test_report_html_lists_root_causes_under_the_banner_with_repro_curls(two_causes: dict[str, Any]) -> None:
    page = two_causes["paths"]["html"].read_text(encoding="utf-8")
    assert page.index('id="cert-verdict"') < page.index('id="root-causes"') < page.index('id="run-facts"')
    section = page[page.index('id="root-causes"'):page.index('id="run-facts"')]
    assert "2 root causes, failing 3 checks" in section
    assert section.count('<pre class="repro">') == 2
    results = two_causes["results"]
    cause = results["root_causes"][0]
    check = next(c for c in results["checks"] if c["id"] == cause["example"]["check"])
    transcript = Transcript.from_json(check["transcripts"][cause["example"]["transcript"]])
    assert html.escape(curl_for(transcript), quote=True) in section


def test_diff_names_the_root_causes_of_the_new_run(two_causes: dict[str, Any], tmp_path: Path) -> None:
    results = two_causes["results"]
    clean = json.loads(json.dumps(results))
    clean["root_causes"] = []
    diff = diff_results(Results.from_json(clean), Results.from_json(results))
    assert list(diff.to_json()["root_causes"]["new"]) == [c["id"] for c in results["root_causes"]]
    markdown = diff.to_markdown()
    assert "Root causes of the new run (2, failing 3 checks)" in markdown
    assert markdown.count("**new**") == 2
