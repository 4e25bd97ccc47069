"""--repeat K: the model-dependent checks run K times; the pass rate and pass^k are recorded, and a
check whose verdict changes between runs is flaky: it never certifies silently (a flaky MUST check
leaves its feature partial). Proven against a target whose answer alternates, through the engine,
`conformance run --repeat` and the pytest plugin's `--conformance-repeat`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_servers import ASGIServer, _replay
from support import verdicts

from conformance import Depth, Profile, RunConfig, Target, run
from conformance._engine import feature_certification, merge_runs, run_verdict
from conformance._model import CheckResult, CheckSpec, Feature, FeatureVerdict, Level, RunVerdict, Verdict, documented
from conformance.checks import all_checks
from conformance.cli import main
from conformance.http import Limits, Session
from conformance.refserver import DEFAULT_MODEL, ServerConfig
from conformance.refserver.app import create_app
from conformance.report import Results, schema_problems
from conformance.report._terminal import summary

FORCED = "tools.required-call"


class Alternating:
    """Every second request that forces a tool call is answered as if tool_choice were `auto` (plain
    text): the target of a model that follows tool_choice only some of the time."""

    def __init__(self) -> None:
        self.honours = create_app(ServerConfig())
        self.ignores = create_app(ServerConfig(faults=frozenset({"tool-choice-required-ignored"})))
        self.forced = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.honours(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        app = self.honours
        if b'"tool_choice": "required"' in body or b'"tool_choice":"required"' in body:
            self.forced += 1  # one event loop: no lock needed
            app = self.ignores if self.forced % 2 == 0 else self.honours
        await app(scope, _replay(body), send)


@pytest.fixture
def alternating() -> Iterator[str]:
    with ASGIServer(Alternating()) as server:
        yield server.base_url


def repeated(base_url: str, only: tuple[str, ...], k: int) -> Any:
    config = RunConfig(target=Target(base_url, DEFAULT_MODEL), depth=Depth.FULL, profile=Profile.OPENAI, only=only,
                       chat_route=("POST", "/chat/completions"), repeat=k)
    return run(config)


def test_the_model_dependent_checks_are_marked() -> None:
    marked = {c.spec.id for c in all_checks() if c.spec.model_dependent}
    assert {"sampling.stop", "stream.equivalent-content", FORCED, "json-mode.object", "usage.prompt-grows"} <= marked
    assert not {i for i in marked if i.startswith(("schema.", "params.", "errors.", "auth.", "methods."))}


def test_an_alternating_answer_is_flaky_with_its_pass_rate(alternating: str) -> None:
    result = repeated(alternating, (FORCED,), 4)
    [check] = result.results
    assert sorted(v.value for v in check.verdicts) == ["failed", "failed", "passed", "passed"]
    assert check.flaky
    assert check.verdict is Verdict.FAILED  # the record is the most severe run's: its evidence is shown
    assert check.failures
    assert check.exchanges
    document = result.to_json()
    assert schema_problems(document) == []
    [entry] = document["checks"]
    assert entry["flaky"] is True
    assert entry["pass_rate"] == {"passed": 2, "runs": 4, "rate": 0.5}
    assert sorted(entry["repeats"]) == ["failed", "passed", "passed"]
    assert document["repeat"] == {"k": 4, "checks": [FORCED], "pass_k": 0.0, "flaky": [FORCED]}
    assert document["summary"]["features"]["tools"] == "partial"  # a flaky MUST certifies nothing
    assert document["config"]["repeat"] == 4
    assert result.requests == 4  # one per run: the chat route was given, and the preflight is the CLI's
    text = summary(Results.from_json(document), {})
    assert "flaky: passed 2 of 4 runs" in text
    assert "pass^4 0.00 over 1 model-dependent checks; flaky: tools.required-call" in text


def test_only_the_model_dependent_checks_run_again(reference_server: Any) -> None:
    result = repeated(reference_server.base_url, ("sampling.stop", "usage.total-is-sum"), 3)
    by_id = {r.spec.id: r for r in result.results}
    assert by_id["sampling.stop"].verdicts == (Verdict.PASSED,) * 3
    assert not by_id["sampling.stop"].flaky
    assert by_id["usage.total-is-sum"].repeats == ()
    document = result.to_json()
    assert document["repeat"] == {"k": 3, "checks": ["sampling.stop"], "pass_k": 1.0, "flaky": []}
    assert "repeats" not in next(c for c in document["checks"] if c["id"] == "usage.total-is-sum")


def spec(check_id: str, level: Level = Level.MUST, feature: Feature = Feature.TOOLS) -> CheckSpec:
    return CheckSpec(check_id, level, feature, documented("test", "test"), "a test check", model_dependent=True)


def outcome(check_id: str, verdict: Verdict, level: Level = Level.MUST) -> CheckResult:
    return CheckResult(spec(check_id, level), verdict, verdict.value, 0.0)


def test_merge_keeps_the_most_severe_run_and_the_others_in_order() -> None:
    runs = [outcome("t.a", Verdict.PASSED), outcome("t.a", Verdict.INCONCLUSIVE), outcome("t.a", Verdict.FAILED),
            outcome("t.a", Verdict.PASSED)]
    merged = merge_runs(runs)
    assert merged is not runs[2]
    assert merged.verdict is Verdict.FAILED
    assert merged.repeats == (Verdict.PASSED, Verdict.INCONCLUSIVE, Verdict.PASSED)
    assert merge_runs(runs[:1]) is runs[0]


def test_a_flaky_must_leaves_its_feature_partial_and_the_run_uncertified() -> None:
    flaky = dataclasses.replace(outcome(FORCED, Verdict.FAILED), repeats=(Verdict.PASSED, Verdict.PASSED))
    steady = outcome("tools.named-call", Verdict.PASSED)
    core = outcome("usage.present", Verdict.PASSED)
    core = dataclasses.replace(core, spec=dataclasses.replace(core.spec, feature=Feature.CORE))
    results = [flaky, steady, core]
    assert feature_certification(results)["tools"] is FeatureVerdict.PARTIAL
    config = RunConfig(target=Target("http://127.0.0.1:9/v1", DEFAULT_MODEL), repeat=3)
    session = Session(config.target, Limits())
    try:
        verdict, reason = run_verdict(results, len(results), session, {}, config)
    finally:
        session.close()
    assert verdict is RunVerdict.INCOMPLETE  # neither a failure nor a pass is proven: exit 2
    assert reason == f"1 MUST check(s) could not be judged: {FORCED} (flaky: passed 2 of 3 runs)"
    # A flaky SHOULD check does not decide the certification, except under --strict.
    should = dataclasses.replace(flaky, spec=dataclasses.replace(flaky.spec, level=Level.SHOULD))
    assert feature_certification([should, steady])["tools"] is FeatureVerdict.CERTIFIED
    assert feature_certification([should, steady], strict=True)["tools"] is FeatureVerdict.PARTIAL


def test_cli_repeat_records_and_shows_the_flaky_check(alternating: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--base-url", alternating, "--only", FORCED, "--repeat", "2", "--report-dir", str(tmp_path),
                 "-q"])
    out, _ = capsys.readouterr()
    assert code == 0  # a partial run without a MUST failure: the flaky MUST fails nothing on its own
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    [check] = results["checks"]
    assert check["flaky"] is True
    assert check["pass_rate"] == {"passed": 1, "runs": 2, "rate": 0.5}
    assert "flaky" in out
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'id="flaky-checks"' in page
    assert "flaky: passed 1 of 2 runs (failed, passed)" in page
    junit = (tmp_path / "junit.xml").read_text(encoding="utf-8")
    assert "flaky: passed 1 of 2 runs (failed, passed); the most severe run:" in junit


def test_cli_refuses_a_repeat_below_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", "--repeat", "0", "--report-dir", str(tmp_path)]) == 2
    assert "--repeat: 0 must be >= 1" in capsys.readouterr().err


def test_pytest_plugin_repeat(alternating: str, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PYTEST_ADDOPTS")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "-p", "no:schemathesis", "-p", "no:hypothesispytest", "-p", "no:xdist",
                           "--conformance-base-url", alternating, "--conformance-repeat", "2",
                           "--conformance-report-dir", "reports", "-k", "required-call", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180, env=env, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "flaky: passed 1 of 2 runs" in done.stdout
    results = json.loads((tmp_path / "reports" / "results.json").read_text(encoding="utf-8"))
    assert results["config"]["repeat"] == 2
    assert verdicts_of(results) == {FORCED: "failed"}
    assert results["checks"][0]["repeats"] == ["passed"]
    assert results["repeat"]["flaky"] == [FORCED]


def verdicts_of(results: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["outcome"] for c in results["checks"]}


def test_repeat_one_changes_nothing(reference_server: Any) -> None:
    result = repeated(reference_server.base_url, ("sampling.stop",), 1)
    assert verdicts(result) == {"sampling.stop": "passed"}
    assert "repeat" not in result.to_json()
    assert result.results[0].repeats == ()


def test_dry_run_states_what_repeat_costs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--dry-run", "-q", "--depth", "quick", "--only", "sampling.*", "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    from conformance._cost import cost

    repeated = [s for s in cost(Depth.QUICK, Profile.OPENAI, only=("sampling.*",)).checks if s.model_dependent]
    more = 2 * sum(s.requests for s in repeated)
    assert f"  Repeat    --repeat 3: the {len(repeated)} model-dependent checks run 3 times, at most {more} more " \
           "requests" in out
