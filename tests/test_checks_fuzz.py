"""schemathesis fuzzing: clean reference server passes, seeded faults fail, the key never leaks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import certify, verdicts

from conformance.checks import fuzz
from conformance.checks._judge import schema_errors
from conformance.refserver import DEFAULT_MODEL, FAULTS

KEY = "sk-conformance-fuzz-77aa01"
POSITIVE, NEGATIVE = "fuzz.schemathesis.positive", "fuzz.schemathesis.negative"


@pytest.fixture
def small_budget(monkeypatch):
    """Fewer draws for fault tests: one bug fails most cases, so a few prove the check bites."""
    monkeypatch.setattr(fuzz, "DRAWS", {"positive": 10, "negative": 16})


def test_clean_server_passes_within_budget_and_never_sees_the_key(start_server):
    with start_server(api_key=KEY) as server:
        result = certify(server.base_url, only=("fuzz.*",), api_key=KEY)
    assert verdicts(result) == {NEGATIVE: "passed", POSITIVE: "passed"}
    assert result.requests <= fuzz.BUDGET["positive"] + fuzz.BUDGET["negative"]
    document = json.dumps(result.to_json())
    assert KEY not in document
    for check in result.results:
        assert check.details["fuzz"]["sent"] == len(check.exchanges) > 10
        for transcript in check.exchanges:
            assert transcript["request"]["headers"]["Authorization"] == "Bearer $OPENAI_API_KEY"
    positive = next(r for r in result.results if r.spec.id == POSITIVE)
    bodies = [json.loads(t["request"]["body"]) for t in positive.exchanges]
    assert all("stream" not in body and body["model"] == DEFAULT_MODEL for body in bodies)
    assert all(t["response"]["status"] == 200 for t in positive.exchanges)


def test_quick_depth_does_not_fuzz(reference_server):
    assert verdicts(certify(reference_server.base_url, only=("fuzz.*",), depth="quick")) == {}


def test_documented_profile_also_fuzzes_the_get_quirk(reference_server, small_budget):
    result = certify(reference_server.base_url, only=("fuzz.*",), profile="documented")
    assert verdicts(result) == {NEGATIVE: "passed", POSITIVE: "passed"}
    for check in result.results:
        assert check.details["fuzz"]["operations"] == ["POST /v1/chat/completions", "GET /v1/models"]
        assert {t["request"]["method"] for t in check.exchanges} == {"POST", "GET"}


@pytest.mark.parametrize(("fault", "check_id"), [
    ("500-on-null-sampling-param", POSITIVE),
    ("error-status-200", NEGATIVE),
    ("500-on-malformed-body", NEGATIVE),
])
def test_fault_fails_its_fuzz_check(start_server, small_budget, fault, check_id):
    assert check_id in FAULTS[fault].killed_by
    with start_server(faults=[fault]) as server:
        result = certify(server.base_url, only=(check_id,))
    assert verdicts(result) == {check_id: "failed"}
    failure = result.results[0].failures[0]
    assert failure.expected.startswith("schemathesis ")
    assert "case body" in failure.where


def test_detail_error_shape_fails_every_negative_case_and_failures_are_capped(start_server, small_budget):
    assert NEGATIVE in FAULTS["detail-error-shape"].killed_by
    with start_server(faults=["detail-error-shape"]) as server:
        result = certify(server.base_url, only=(NEGATIVE,))
    assert verdicts(result) == {NEGATIVE: "failed"}
    check = result.results[0]
    failing = check.details["fuzz"]["failing_cases"]
    assert failing == check.details["fuzz"]["sent"]
    assert f"{failing - fuzz.REPORTED_CASES} more failing cases" in check.failures[-1].received
    assert any("conformance_error_envelope" in f.received for f in check.failures)


def test_positive_generation_spec_is_narrowed_and_negative_keeps_the_real_constraints():
    positive = fuzz.generation_spec("m", "http://127.0.0.1:9/v1", "positive")
    negative = fuzz.generation_spec("m", "http://127.0.0.1:9/v1", "negative")
    assert positive["servers"] == [{"url": "http://127.0.0.1:9"}]
    request = positive["components"]["schemas"][fuzz.REQUEST]
    assert "stream" not in request["properties"]
    assert request["additionalProperties"] is False
    assert request["properties"]["max_tokens"]["maximum"] == 16
    real = negative["components"]["schemas"][fuzz.REQUEST]
    assert "stream" in real["properties"]
    assert "additionalProperties" not in real
    assert "maximum" not in real["properties"]["max_tokens"]


def test_tame_positive_keeps_cross_field_rules():
    body = {"model": "m", "messages": [{"role": "user", "content": "a"}] * 3, "n": 2.0,
            "tool_choice": {"type": "function", "function": {"name": "ghost"}},
            "tools": [{"type": "function", "function": {"name": "real"}}],
            "response_format": {"type": "json_object"}}
    tamed = fuzz.tame_positive(body)
    assert tamed["tool_choice"]["function"]["name"] == "real"
    assert len(tamed["messages"]) == fuzz.MAX_MESSAGES
    assert tamed["messages"][-1]["content"] == "Reply in JSON."
    assert tamed["n"] == 2
    assert isinstance(tamed["n"], int)
    assert fuzz.tame_positive({"model": "m", "messages": [], "tool_choice": "required"}).get("tool_choice") is None


def test_tame_negative_never_makes_a_case_legal():
    wrong_model = {"model": 5, "messages": [{"role": "user", "content": "a"}], "max_tokens": 900}
    tamed = fuzz.tame_negative(wrong_model, "real-model")
    assert tamed["model"] == 5  # the mutation itself is kept
    assert tamed["max_tokens"] == 1  # cost bounded in case the server accepts it
    assert schema_errors(fuzz.REQUEST, tamed)
    bad_temperature = {"model": "x", "messages": [{"role": "user", "content": "a"}], "temperature": 9}
    assert fuzz.tame_negative(bad_temperature, "real-model")["model"] == "real-model"


def test_random_bytes_are_negative_unless_they_parse_to_a_legal_request():
    assert fuzz.not_legal_json(b"\x00\xff")
    assert fuzz.not_legal_json(b"[]")
    assert not fuzz.not_legal_json(b'{"model": "m", "messages": [{"role": "user"}]}')


def test_repro_curl_keeps_max_tokens_and_filters_the_key():
    schema = fuzz.load_schema(fuzz.generation_spec("m", "http://127.0.0.1:9/v1", "positive"))
    operation = next(r.ok() for r in schema.get_all_operations())
    case = operation.Case(body={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
                          headers={"Authorization": f"Bearer {KEY}"})
    curl = case.as_curl_command()
    assert '"max_tokens": 5' in curl
    assert KEY not in curl


# Runs in a fresh interpreter: in this session the modules are long imported, and nothing would show.
IMPORTS_IN_CHECK_THREADS = """
import sys, threading
from conformance import _engine
from conformance.http import Target
from conformance.refserver import DEFAULT_MODEL
from conformance.refserver._run import ServerThread

seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if threading.current_thread().name.startswith(("check", "send")):
            seen.append(name)
sys.meta_path.insert(0, Spy())
with ServerThread() as server:
    _engine.run(_engine.RunConfig(Target(server.base_url, DEFAULT_MODEL), only=("fuzz.*", "params.n.bounds")))
print(sorted({name for name in seen if name.partition(".")[0] not in sys.stdlib_module_names}))
"""


def test_check_threads_import_nothing_the_engine_did_not_preload():
    """CPython 3.11's AST recursion counter is per interpreter: a module compiled in a check thread (pytest
    rewrites schemathesis and hypothesis) while hypothesis parses source in another is a SystemError."""
    done = subprocess.run([sys.executable, "-c", IMPORTS_IN_CHECK_THREADS], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]", f"add these to conformance._compat.FUZZ_LAZY_IMPORTS: {done.stdout}"
