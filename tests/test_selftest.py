"""The selftest (mutation score): the whole suite proven against every fault and variant, and the
selftest's own ability to notice a check that cannot fail, a typo in `killed_by`, a surviving fault and
a wrongly flagged variant."""

from __future__ import annotations

import json
import re
import time

import pytest
from support import ServerFactory, certify, verdicts

from conformance import CheckSpec, Depth, Feature, Level, Profile, Verdict
from conformance._model import documented
from conformance._selftest import (
    ALL_VARIANTS,
    EXPENSIVE_REQUESTS,
    SELFTEST_API_KEY,
    CheckVerdict,
    DepthMode,
    SelftestConfig,
    SelftestReport,
    Subject,
    SubjectKind,
    SubjectOutcome,
    kill_table,
    plan,
    proof_obligations,
    score,
    selftest,
    stages,
)
from conformance.checks import RegisteredCheck, all_checks
from conformance.cli import main
from conformance.refserver import FAULTS, VARIANTS
from conformance.refserver.faults import Fault

SCORE_LINE = re.compile(r"^faults caught: (\d+)/(\d+) \((\d+)%: (\d+) MUST kills, (\d+) SHOULD detections\), "
                        r"variants passed: (\d+)/(\d+) \((\d+)%\), checks proven: (\d+)/(\d+)$")

# Timed bounds and worker processes: run in one xdist worker, one after another (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("timed")


def registered(check_id: str) -> RegisteredCheck:
    return next(c for c in all_checks() if c.spec.id == check_id)


def fake_check(check_id: str, level: Level = Level.MUST, *, depths: tuple[Depth, ...] = (Depth.QUICK, Depth.FULL),
               profiles: tuple[Profile, ...] = (Profile.OPENAI, Profile.DOCUMENTED), requests: int = 1
               ) -> RegisteredCheck:
    """A check that accepts anything: exactly what the selftest exists to catch."""
    spec = CheckSpec(check_id, level, Feature.CORE, documented("test", "a check that cannot fail"),
                     "never fails", requests=requests, depths=depths, profiles=profiles)
    return RegisteredCheck(spec, lambda ctx: None)


# -- the whole suite -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_report() -> SelftestReport:
    started = time.monotonic()
    report = selftest(SelftestConfig())
    print(f"\n{report.score_line()} in {time.monotonic() - started:.1f}s, {report.requests} requests")
    return report


@pytest.mark.slow
def test_every_fault_is_killed(full_report: SelftestReport) -> None:
    assert full_report.faults, "no faults ran"
    survived = {f.name: f.problems or f.declared for f in full_report.survivors}
    assert survived == {}
    assert full_report.unknown_declarations == {}


@pytest.mark.slow
def test_clean_server_and_every_variant_pass(full_report: SelftestReport) -> None:
    assert full_report.clean.problems == ()
    assert full_report.clean.counts.get("passed", 0) > 0
    failing = {v.name: v.problems for v in full_report.variants if not v.passed}
    assert failing == {}
    assert [v.name for v in full_report.variants] == list(VARIANTS)
    assert full_report.combined is not None
    assert full_report.combined.problems == ()


@pytest.mark.slow
def test_every_must_and_should_check_is_proven(full_report: SelftestReport) -> None:
    assert full_report.complete
    assert full_report.unproven == []
    assert set(full_report.kills) == {c.spec.id for c in all_checks()}


@pytest.mark.slow
def test_score_is_perfect(full_report: SelftestReport) -> None:
    match = SCORE_LINE.match(full_report.score_line())
    assert match, full_report.score_line()
    killed, faults, kill_pct, must_kills, should_detections, passed, variants, pass_pct, proven, judged = map(
        int, match.groups())
    assert (killed, kill_pct, passed, pass_pct, proven) == (faults, 100, variants, 100, judged)
    assert must_kills + should_detections == killed
    # A fault only a SHOULD check catches is a detection, not a kill: both kinds exist in the catalogue.
    assert must_kills > 0
    assert should_detections > 0
    assert faults == len(FAULTS)
    assert full_report.ok, "\n".join(full_report.problems())


# -- the selftest can fail -------------------------------------------------------------------------------
def small_selftest(checks: list[RegisteredCheck], faults: dict[str, Fault]) -> SelftestReport:
    return selftest(SelftestConfig(checks=checks, faults=faults, variants={}, jobs=2))


def test_a_check_that_cannot_fail_is_reported_unproven() -> None:
    checks = [registered("usage.total-is-sum"), fake_check("selftest.cannot-fail")]
    report = small_selftest(checks, {"usage-total-off-by-one": FAULTS["usage-total-off-by-one"]})
    assert report.unproven == ["selftest.cannot-fail"]
    assert report.kills["usage.total-is-sum"] == ("usage-total-off-by-one",)
    assert not report.ok
    assert any("selftest.cannot-fail" in p and "kills no fault" in p for p in report.problems())
    assert "UNPROVEN" in kill_table(report)
    assert report.score_line().endswith("checks proven: 1/2")


def test_a_check_that_cannot_fail_does_not_kill_the_fault_declaring_it() -> None:
    checks = [fake_check("selftest.cannot-fail")]
    report = small_selftest(checks, {"created-as-string": Fault("created-as-string", "x", ("selftest.cannot-fail",))})
    assert [f.name for f in report.survivors] == ["created-as-string"]
    assert not report.ok


def test_a_typo_in_killed_by_is_reported() -> None:
    typo = Fault("usage-total-off-by-one", "total + 1", ("usage.total-is-summ",))
    report = small_selftest([registered("usage.total-is-sum")], {typo.name: typo})
    assert report.unknown_declarations == {"usage-total-off-by-one": ("usage.total-is-summ",)}
    assert not report.ok
    assert any("unknown check(s) usage.total-is-summ" in p for p in report.problems())


def test_a_fault_its_declared_check_misses_survives() -> None:
    wrong = Fault("created-as-string", "created is a string", ("usage.total-is-sum",))
    report = small_selftest([registered("usage.total-is-sum")], {wrong.name: wrong})
    assert [f.name for f in report.survivors] == ["created-as-string"]
    assert report.survivors[0].killed_by == ()
    assert any("fault created-as-string survived" in p for p in report.problems())


def test_the_proof_pass_runs_a_full_only_check_a_cheaper_kill_skipped() -> None:
    """The fault dies at quick depth to temperature bounds; top_p bounds (full only) must still be shown
    to fail on it, by the proof pass."""
    fault = Fault("error-status-200", "errors with HTTP 200", ("params.temperature.bounds", "params.top_p.bounds"))
    checks = [registered("params.temperature.bounds"), registered("params.top_p.bounds")]
    assert registered("params.top_p.bounds").spec.depths == (Depth.FULL,)
    report = small_selftest(checks, {fault.name: fault})
    assert report.faults[0].depth is Depth.QUICK
    assert report.kills == {"params.temperature.bounds": ("error-status-200",),
                            "params.top_p.bounds": ("error-status-200",)}
    assert report.ok, report.problems()


def test_a_partial_run_does_not_call_checks_unproven() -> None:
    report = selftest(SelftestConfig(checks=[registered("usage.total-is-sum"), registered("usage.present")],
                                     only_faults=("usage-missing",), jobs=2))
    assert not report.complete
    assert report.ok, report.problems()
    assert report.variants == ()
    assert report.score_line().endswith("(partial run)")


# -- scoring rules, without servers ---------------------------------------------------------------------
def outcome(kind: SubjectKind, name: str, *verdicts_: tuple[str, Level, Verdict], declared: tuple[str, ...] = ()
            ) -> SubjectOutcome:
    subject = Subject(kind, name, declared=declared, variants=(name,) if kind is SubjectKind.VARIANT else ())
    return SubjectOutcome(subject, tuple(CheckVerdict(c, level, v, Depth.QUICK, Profile.OPENAI, "msg")
                                         for c, level, v in verdicts_), 0.1)


def score_of(*outcomes: SubjectOutcome) -> SelftestReport:
    checks = [fake_check("a"), fake_check("b", Level.SHOULD), fake_check("i", Level.INFO)]
    return score(outcomes, checks, complete=True)


def test_info_may_fail_on_the_clean_server_but_not_error() -> None:
    clean = outcome(SubjectKind.CLEAN, "clean", ("a", Level.MUST, Verdict.PASSED), ("i", Level.INFO, Verdict.FAILED))
    assert score_of(clean).clean.passed
    broken = outcome(SubjectKind.CLEAN, "clean", ("i", Level.INFO, Verdict.ERROR))
    assert not score_of(broken).clean.passed


@pytest.mark.parametrize("bad", [Verdict.FAILED, Verdict.ERROR, Verdict.UNSUPPORTED, Verdict.SKIPPED])
def test_a_variant_must_pass_every_must_and_should_check(bad: Verdict) -> None:
    clean = outcome(SubjectKind.CLEAN, "clean", ("b", Level.SHOULD, Verdict.PASSED))
    variant = outcome(SubjectKind.VARIANT, "sse-crlf", ("b", Level.SHOULD, bad))
    report = score_of(clean, variant)
    assert not report.variants[0].passed
    assert not report.ok
    assert report.problems()[0].startswith("variant sse-crlf: b [SHOULD, quick]")


def test_only_the_declared_variant_skips_pass() -> None:
    clean = outcome(SubjectKind.CLEAN, "clean", ("auth.wrong-key", Level.MUST, Verdict.PASSED),
                    ("a", Level.MUST, Verdict.PASSED))
    no_auth = outcome(SubjectKind.VARIANT, "no-auth", ("auth.wrong-key", Level.MUST, Verdict.SKIPPED),
                      ("a", Level.MUST, Verdict.SKIPPED))
    report = score((clean, no_auth), [fake_check("auth.wrong-key"), fake_check("a")], complete=True)
    assert report.variants[0].problems == ("a [MUST, quick] skipped: msg",)
    assert report.variants[0].allowed_skips == ("auth.wrong-key",)


def test_a_fault_is_killed_only_by_a_declared_check() -> None:
    clean = outcome(SubjectKind.CLEAN, "clean")
    collateral = outcome(SubjectKind.FAULT, "f", ("a", Level.MUST, Verdict.PASSED), ("b", Level.SHOULD, Verdict.FAILED),
                         declared=("a",))
    report = score_of(clean, collateral)
    assert report.faults[0].killed_by == ()
    assert report.faults[0].collateral == ("b",)
    assert report.kills["b"] == ("f",)  # still evidence that b can fail
    erred = outcome(SubjectKind.FAULT, "f", ("a", Level.MUST, Verdict.ERROR), declared=("a",))
    assert not score_of(clean, erred).faults[0].killed
    assert "errored" in score_of(clean, erred).faults[0].problems[0]


def test_proof_obligations_pick_a_declaring_fault_where_the_check_has_not_run() -> None:
    checks = [fake_check("a"), fake_check("b", depths=(Depth.FULL,)), fake_check("i", Level.INFO),
              fake_check("orphan")]
    killed_at_quick = outcome(SubjectKind.FAULT, "f1", ("a", Level.MUST, Verdict.FAILED), declared=("a", "b", "i"))
    also_b = outcome(SubjectKind.FAULT, "f2", ("a", Level.MUST, Verdict.FAILED), declared=("a", "b"))
    obligations = proof_obligations([killed_at_quick, also_b], checks, DepthMode.AUTO)
    # b has not run anywhere: prove it on the first fault declaring it. INFO needs no proof, and a
    # check no fault declares cannot be proven by running anything.
    assert {s.name: ids for s, ids in obligations.items()} == {"f1": ["b"]}


# -- planning ---------------------------------------------------------------------------------------------
def test_a_fault_runs_its_declared_checks_quick_first_in_every_profile() -> None:
    checks = [fake_check("a"), fake_check("full-only", depths=(Depth.FULL,)),
              fake_check("doc-only", profiles=(Profile.DOCUMENTED,)), fake_check("other")]
    fault = Subject(SubjectKind.FAULT, "f", declared=("a", "full-only", "doc-only"))
    planned = [(d, p, [c.spec.id for c in cs]) for d, p, cs in stages(fault, checks, DepthMode.AUTO, wide=False)]
    assert planned == [
        (Depth.QUICK, Profile.OPENAI, ["a"]),
        (Depth.QUICK, Profile.DOCUMENTED, ["a", "doc-only"]),
        (Depth.FULL, Profile.OPENAI, ["a", "full-only"]),
        (Depth.FULL, Profile.DOCUMENTED, ["a", "full-only", "doc-only"]),
    ]
    wide = stages(fault, checks, DepthMode.QUICK, wide=True)
    assert "other" in [c.spec.id for _, _, cs in wide for c in cs]


def test_clean_runs_every_check_in_its_strictest_profile_at_both_depths() -> None:
    checks = [fake_check("a"), fake_check("openai-only", profiles=(Profile.OPENAI,))]
    clean = Subject(SubjectKind.CLEAN, "clean")
    planned = [(d, p, [c.spec.id for c in cs]) for d, p, cs in stages(clean, checks, DepthMode.AUTO, wide=False)]
    assert planned == [
        (Depth.QUICK, Profile.OPENAI, ["openai-only"]),
        (Depth.QUICK, Profile.DOCUMENTED, ["a"]),
        (Depth.FULL, Profile.OPENAI, ["openai-only"]),
        (Depth.FULL, Profile.DOCUMENTED, ["a"]),
    ]


def test_a_variant_runs_every_check_once_at_the_deepest_depth() -> None:
    checks = [fake_check("a"), fake_check("quick-only", depths=(Depth.QUICK,))]
    variant = Subject(SubjectKind.VARIANT, "sse-crlf", variants=("sse-crlf",))
    planned = [(d, p, [c.spec.id for c in cs]) for d, p, cs in stages(variant, checks, DepthMode.AUTO, wide=False)]
    assert planned == [(Depth.QUICK, Profile.DOCUMENTED, ["quick-only"]), (Depth.FULL, Profile.DOCUMENTED, ["a"])]


def test_expensive_checks_run_on_the_combined_subject_instead_of_each_variant() -> None:
    checks = [fake_check("a"), fake_check("fuzz", requests=EXPENSIVE_REQUESTS + 1)]
    lean = Subject(SubjectKind.VARIANT, "sse-crlf", variants=("sse-crlf",), skip_expensive=True)
    combined = Subject(SubjectKind.COMBINED, ALL_VARIANTS, variants=("sse-crlf", "no-auth"))
    assert [c.spec.id for _, _, cs in stages(lean, checks, DepthMode.AUTO, wide=False) for c in cs] == ["a"]
    assert [c.spec.id for _, _, cs in stages(combined, checks, DepthMode.AUTO, wide=False) for c in cs] == ["a", "fuzz"]
    assert combined.may_skip("auth.wrong-key")
    full = plan(SelftestConfig(), checks)
    assert [s.name for s in full[:2]] == ["clean", ALL_VARIANTS]
    # A variant legal under one profile only runs its own expensive checks (it is not in the combined subject).
    assert all(s.skip_expensive == (s.profiles == tuple(Profile)) for s in full if s.kind is SubjectKind.VARIANT)
    thorough = plan(SelftestConfig(thorough=True), checks)
    assert ALL_VARIANTS not in [s.name for s in thorough]
    assert not any(s.skip_expensive for s in thorough)
    one = plan(SelftestConfig(only_variants=("sse-crlf",)), checks)
    assert [(s.name, s.skip_expensive) for s in one] == [("clean", False), ("sse-crlf", False)]


# -- the no-auth decision -----------------------------------------------------------------------------------
def test_no_auth_passes_with_a_key_and_differs_from_a_wrong_key_accepted(start_server: ServerFactory) -> None:
    """`no-auth` is certified with a key like every subject: the auth checks see a target that serves
    keyless requests (documented-api 1.1 allows it) and skip; the fault wrong-key-accepted still
    refuses a missing key, so the made-up key it accepts is caught."""
    assert Subject(SubjectKind.VARIANT, "no-auth", variants=("no-auth",)).may_skip("auth.wrong-key")
    assert not Subject(SubjectKind.VARIANT, "sse-crlf", variants=("sse-crlf",)).may_skip("auth.wrong-key")
    with start_server(variants=["no-auth"], api_key=SELFTEST_API_KEY) as server:
        keyless = verdicts(certify(server.base_url, only=("auth.*",), api_key=SELFTEST_API_KEY))
    with start_server(faults=["wrong-key-accepted"], api_key=SELFTEST_API_KEY) as server:
        broken = verdicts(certify(server.base_url, only=("auth.*",), api_key=SELFTEST_API_KEY))
    assert set(keyless.values()) == {"not_applicable"}
    assert broken["auth.wrong-key"] == "failed"


# -- the command line ---------------------------------------------------------------------------------------
def test_cli_selftest_json_for_one_check(capsys: pytest.CaptureFixture[str]) -> None:
    """A contributor's loop: one check against clean, every variant and every fault declaring it."""
    assert main(["selftest", "--only-check", "usage.total-is-sum", "--json", "--jobs", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    declaring = sorted(f.name for f in FAULTS.values() if "usage.total-is-sum" in f.killed_by)
    assert report["ok"] is True
    assert report["complete"] is True
    assert sorted(f["name"] for f in report["faults"]) == declaring
    assert all("usage.total-is-sum" in f["killed_by"] for f in report["faults"])
    assert list(report["checks"]) == ["usage.total-is-sum"]
    assert report["score"].endswith("checks proven: 1/1")
    assert len(report["variants"]) == len(VARIANTS)


def test_cli_selftest_text_ends_with_the_score_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["selftest", "--only-check", "stream.done-terminator", "--only-variant", "sse-crlf",
            "--only-fault", "stream-no-done", "-q", "--jobs", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == ("faults caught: 1/1 (100%: 1 MUST kills, 0 SHOULD detections), variants passed: 1/1 (100%), "
                       "checks proven: 1/1 (partial run)")
    assert any(line.startswith("stream-no-done") and "stream.done-terminator" in line for line in out)


@pytest.mark.parametrize(("argv", "message"), [
    (["--only-fault", "no-such-fault"], "unknown fault or variant: no-such-fault"),
    (["--only-check", "no.such.*"], "no check matches 'no.such.*'"),
])
def test_cli_selftest_unknown_names_are_usage_errors(argv: list[str], message: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selftest", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
