"""Trustworthy verdicts: levels from the document, CERTIFIED only on full proof, the documented route.

Each legal behaviour the document allows certifies (exit 0) and fails `--strict`; partial proof never
certifies; an authentication bypass is caught at MUST.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import ServerFactory, certify, verdicts

from conformance import Depth, Profile, RunConfig, Target
from conformance._engine import feature_certification, headline
from conformance._model import (
    Basis,
    CheckResult,
    CheckSpec,
    Feature,
    FeatureVerdict,
    Level,
    RunVerdict,
    Verdict,
    documented,
    openai,
)
from conformance.checks import all_checks
from conformance.checks._registry import check
from conformance.cli import main
from conformance.refserver import DEFAULT_MODEL, VARIANTS
from conformance.spec import document_view, schema_validator

KEY = "sk-verdicts-test-0000"
LENIENT = [name for name, variant in VARIANTS.items() if variant.flags]


# -- the catalogue's levels ---------------------------------------------------------------------------
def test_every_must_check_rests_on_the_document_or_a_client_that_breaks() -> None:
    for registered in all_checks():
        spec = registered.spec
        assert spec.evidence, spec.id
        if spec.level is Level.MUST:
            assert spec.basis in (Basis.DOCUMENT, Basis.CLIENT_BREAK), spec.id
        if spec.basis is Basis.CLIENT_BREAK:
            assert "http" in spec.evidence or "#" in spec.evidence, f"{spec.id}: name the evidence"


def test_registration_refuses_a_must_check_on_openai_basis_alone() -> None:
    with pytest.raises(ValueError, match="MUST needs the document or a client that breaks"):
        check("test.openai-must", level=Level.MUST, feature=Feature.CORE,
              clause=openai("x", "y"), description="d")


def test_openai_numbers_are_should() -> None:
    levels = {c.spec.id: c.spec.level for c in all_checks()}
    for check_id in ("params.stop.max-items", "params.logit-bias.keys", "params.logit-bias.values",
                     "params.n.bounds", "params.max-tokens.bounds", "errors.envelope", "errors.unknown-model",
                     "schema.openai-fields", "params.malformed-body-400", "auth.status-401"):
        assert levels[check_id] is Level.SHOULD, check_id
    for check_id in ("usage.present", "params.max-tokens.zero", "errors.message", "auth.missing-key"):
        assert levels[check_id] is Level.MUST, check_id


def test_checks_json_shows_the_basis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["basis"] for row in rows} == {"document", "client-break", "openai"}
    assert all(row["evidence"] for row in rows)


def test_the_document_view_drops_only_openais_extras() -> None:
    assert document_view({"type": "integer", "maximum": 128, "x-basis": {"source": "openai",
                                                                      "keywords": ["maximum"]}}) == {
        "type": "integer", "x-basis": {"source": "openai", "keywords": ["maximum"]}}
    lenient_error = {"error": {"message": "bad temperature"}}
    assert not list(schema_validator("ErrorResponse").iter_errors(lenient_error))
    assert list(schema_validator("ErrorResponse", "openai").iter_errors(lenient_error))
    no_model = {"id": "x", "object": "chat.completion", "created": 1, "choices": []}
    assert not list(schema_validator("CreateChatCompletionResponse").iter_errors(no_model))


# -- certification semantics, decided in the engine ------------------------------------------------------
def result(check_id: str, feature: Feature, verdict: Verdict, *, level: Level = Level.MUST,
           declared: Feature | None = None) -> CheckResult:
    spec = CheckSpec(check_id, level, feature, documented("1.2", "q"), "d")
    return CheckResult(spec, verdict, "", 0.0, declared_unsupported=declared)


def test_a_declared_optional_feature_is_unsupported_and_the_rest_certified() -> None:
    results = [result("core.a", Feature.CORE, Verdict.PASSED),
               result("tools.a", Feature.TOOLS, Verdict.UNSUPPORTED, declared=Feature.TOOLS),
               result("stream.tools", Feature.STREAMING, Verdict.UNSUPPORTED, declared=Feature.TOOLS),
               result("stream.a", Feature.STREAMING, Verdict.PASSED)]
    features = feature_certification(results)
    assert features["tools"] is FeatureVerdict.UNSUPPORTED
    assert features["streaming"] is FeatureVerdict.CERTIFIED
    line = headline(RunVerdict.PASSED, features, 4, 4, selection=False)
    assert line == "CERTIFIED core, streaming; tools unsupported"


@pytest.mark.parametrize("verdict", [Verdict.INCONCLUSIVE, Verdict.ERROR, Verdict.SKIPPED, Verdict.UNSUPPORTED])
def test_a_must_check_not_judged_leaves_its_feature_partial(verdict: Verdict) -> None:
    # An unsupported verdict without a declared feature is a limit (e.g. n=2 streams refused): unjudged.
    features = feature_certification([result("json.a", Feature.JSON_MODE, verdict)])
    assert features["json_mode"] is FeatureVerdict.PARTIAL


def test_not_applicable_is_judged_and_should_only_counts_under_strict() -> None:
    results = [result("auth.a", Feature.CORE, Verdict.NOT_APPLICABLE),
               result("core.b", Feature.CORE, Verdict.FAILED, level=Level.SHOULD)]
    assert feature_certification(results)["core"] is FeatureVerdict.CERTIFIED
    assert feature_certification(results, strict=True)["core"] is FeatureVerdict.FAILED


# -- end to end against the reference server ---------------------------------------------------------------
@pytest.mark.parametrize("variant", LENIENT)
def test_legal_behaviour_certifies_and_strict_flags_it(start_server: ServerFactory, variant: str) -> None:
    profile = "documented" if "openai" not in VARIANTS[variant].profiles else "openai"
    with start_server(variants=[variant], api_key=KEY) as server:
        lenient = certify(server.base_url, api_key=KEY, depth="full", profile=profile, skip=("fuzz.*",),
                          chat_route=None)
        assert lenient.verdict is RunVerdict.PARTIAL  # --skip: never a certification, but no MUST failed
        config = RunConfig(Target(server.base_url, DEFAULT_MODEL, KEY), depth=Depth.FULL, strict=True,
                           skip=("fuzz.*",), profile=Profile(profile))
        from conformance import run

        strict = run(config)
    flagged = {c for c, v in verdicts(lenient).items() if v == "failed"}
    assert flagged == set(VARIANTS[variant].flags)
    assert strict.verdict is RunVerdict.FAILED


def test_documented_route_only_certifies_under_the_documented_profile(tmp_path: Path,
                                                                      start_server: ServerFactory) -> None:
    with start_server(variants=["documented-route-only"], api_key=KEY) as server:
        documented_run = certify(server.base_url, api_key=KEY, profile="documented", depth="quick", chat_route=None)
        openai_run = certify(server.base_url, api_key=KEY, profile="openai", depth="quick", chat_route=None)
    assert documented_run.verdict is RunVerdict.PASSED, documented_run.reason
    assert documented_run.chat_route["path"] == "/models"
    assert openai_run.verdict is RunVerdict.FAILED
    assert verdicts(openai_run)["methods.post-chat"] == "failed"


def test_a_missing_key_that_gets_through_is_an_authentication_bypass(start_server: ServerFactory) -> None:
    with start_server(faults=["missing-key-accepted"], api_key=KEY) as server:
        outcome = certify(server.base_url, api_key=KEY, only=("auth.*",))
    assert verdicts(outcome)["auth.missing-key"] == "failed"
    assert outcome.verdict is RunVerdict.FAILED


def test_a_keyless_server_has_no_authentication_to_test(start_server: ServerFactory) -> None:
    with start_server(variants=["no-auth"], api_key=KEY) as server:
        outcome = certify(server.base_url, api_key=KEY, only=("auth.*",))
    assert set(verdicts(outcome).values()) == {"not_applicable"}


def test_a_selection_is_a_partial_run_recorded_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--only", "usage.*", "--report-dir", str(tmp_path), "-q"])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["verdict"] == "partial"
    assert results["selection"] == ["--only usage.*"]
    usage_checks = sum(c.spec.id.startswith("usage.") for c in all_checks())
    assert results["headline"].startswith(f"PARTIAL RUN: {usage_checks} of ")
    assert capsys.readouterr().out.startswith("PARTIAL RUN")


def test_chat_path_forces_the_route(tmp_path: Path, start_server: ServerFactory) -> None:
    with start_server(variants=["documented-route-only"]) as server:
        code = main(["run", "--base-url", server.base_url, "--chat-path", "GET", "/models", "--profile",
                     "documented", "--depth", "quick", "--report-dir", str(tmp_path), "-q"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["chat_route"] == {"method": "GET", "path": "/models", "source": "forced", "probes": []}
    assert code == 0, results["reason"]
