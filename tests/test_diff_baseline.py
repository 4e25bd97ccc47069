"""The baseline gate and `conformance diff`, on result files of real certifications.

Servers: A has two seeded faults; B fixed one of them; C has A's faults plus a new one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import certify

from conformance._diff import (
    BASELINE_SCHEMA_VERSION,
    PLACEHOLDER,
    combine,
    diff_results,
    gate,
    is_placeholder,
    make_baseline,
    side_of_baseline,
    side_of_results,
)
from conformance.cli import main
from conformance.errors import BaselineError
from conformance.refserver import DEFAULT_MODEL, ServerConfig, ServerThread
from conformance.report import Results

ONLY = ("schema.chat-completion", "usage.total-is-sum", "stream.done-terminator", "usage.present")
SERVERS = {
    "A": ("stream-no-done", "usage-total-off-by-one"),
    "B": ("usage-total-off-by-one",),  # stream.done-terminator fixed
    "C": ("stream-no-done", "usage-total-off-by-one", "created-as-string"),  # schema.chat-completion regresses
}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerThread]]:
    threads = {name: ServerThread(ServerConfig(faults=frozenset(faults))) for name, faults in SERVERS.items()}
    for thread in threads.values():
        thread.start()
    yield threads
    for thread in threads.values():
        thread.stop()


@pytest.fixture(scope="module")
def results(servers: dict[str, ServerThread], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """results.json of a real run against each server, and two runs of one target whose stream changed
    between them ("first" has A's faults, "again" B's, on the same base URL): repeated runs that differ."""
    out = tmp_path_factory.mktemp("results")
    paths = {}
    for name, server in servers.items():
        path = out / f"{name}.json"
        path.write_text(json.dumps(certify(server.base_url, only=ONLY).to_json()))
        paths[name] = path
    port = 0
    for name, faults in (("first", SERVERS["A"]), ("again", SERVERS["B"])):
        with ServerThread(ServerConfig(faults=frozenset(faults)), port=port) as server:
            port = server.port
            paths[name] = out / f"{name}.json"
            paths[name].write_text(json.dumps(certify(server.base_url, only=ONLY).to_json()))
    return paths


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def records(document: dict[str, Any]) -> Results:
    return Results.from_json(document)


def categories(diff: Any) -> dict[str, str]:
    return {c.id: c.category for c in diff.changes}


def with_reasons(baseline: dict[str, Any], reason: str = "vendor ticket 42") -> dict[str, Any]:
    """A baseline whose known failures say why they are accepted (what a person does after --update-baseline)."""
    for entry in baseline["known_failures"].values():
        entry["reason"] = reason
    return baseline


def accepted(results: dict[str, Any]) -> dict[str, Any]:
    return with_reasons(make_baseline(records(results)))


def run_cli(server: ServerThread, tmp_path: Path, *extra: str) -> int:
    argv = ["run", "--base-url", server.base_url, "--report-dir", str(tmp_path / "reports"), "--no-html", "-q"]
    for check_id in ONLY:
        argv += ["--only", check_id]
    return main([*argv, *extra])


# -- the gate on real servers ---------------------------------------------------------------------------
def test_gate_unchanged_known_failures_exit_0(servers: dict[str, ServerThread], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    # Writing the baseline is what was asked: exit 0 though MUST checks failed, so `... && git add` works.
    assert run_cli(servers["A"], tmp_path, "--update-baseline", str(baseline)) == 0
    written = json.loads(baseline.read_text())
    assert set(written["known_failures"]) == {"stream.done-terminator", "usage.total-is-sum"}
    assert all(is_placeholder(entry["reason"]) for entry in written["known_failures"].values())
    assert "2 with the placeholder reason" in capsys.readouterr().out
    baseline.write_text(json.dumps(with_reasons(written)))
    assert run_cli(servers["A"], tmp_path, "--baseline", str(baseline)) == 0
    out = capsys.readouterr().out
    assert "0 regression(s)" in out
    assert "2 known failure(s) still failing" in out
    assert "Still failing (expected) (2)" in (tmp_path / "reports" / "diff.md").read_text()


def test_gate_regression_exits_1(servers: dict[str, ServerThread], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(accepted(load_results(servers, tmp_path, "A"))))
    assert run_cli(servers["C"], tmp_path, "--baseline", str(baseline)) == 1
    out = capsys.readouterr().out
    assert "1 regression(s)" in out
    assert "new-failure: schema.chat-completion" in out
    gate_json = json.loads((tmp_path / "reports" / "diff.json").read_text())
    assert gate_json["regressions"] == ["schema.chat-completion"]
    assert gate_json["exit_code"] == 1


def test_gate_reports_a_fixed_known_failure(servers: dict[str, ServerThread], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(accepted(load_results(servers, tmp_path, "A"))))
    assert run_cli(servers["B"], tmp_path, "--baseline", str(baseline)) == 0
    out = capsys.readouterr().out
    assert "1 known failure(s) now pass, remove them from the baseline: stream.done-terminator" in out
    markdown = (tmp_path / "reports" / "diff.md").read_text()
    assert "Fixed (1) — remove these from the baseline" in markdown
    # --update-baseline shrinks it: the fixed entry goes, the kept one keeps its hand-written reason.
    edited = json.loads(baseline.read_text())
    edited["known_failures"]["usage.total-is-sum"]["reason"] = "vendor ticket 43"
    baseline.write_text(json.dumps(edited))
    assert run_cli(servers["B"], tmp_path, "--baseline", str(baseline), "--update-baseline", str(baseline)) == 0
    shrunk = json.loads(baseline.read_text())["known_failures"]
    assert shrunk == {"usage.total-is-sum": {"verdict": "failed", "level": "MUST", "reason": "vendor ticket 43"}}


def load_results(servers: dict[str, ServerThread], tmp_path: Path, name: str) -> dict[str, Any]:
    return certify(servers[name].base_url, only=ONLY).to_json()


BAD_BASELINES: dict[str, tuple[str, str]] = {
    "bad JSON": ("{known_failures: ", "is not valid JSON"),
    "missing reason": (json.dumps({"schema_version": BASELINE_SCHEMA_VERSION,
                                   "known_failures": {"usage.total-is-sum": {"verdict": "failed"}}}),
                       "needs a non-empty \"reason\""),
    "blank reason": (json.dumps({"schema_version": BASELINE_SCHEMA_VERSION,
                                 "known_failures": {"usage.total-is-sum": {"reason": "  "}}}), "non-empty"),
    "unknown schema_version": (json.dumps({"schema_version": 99, "known_failures": {}}), "unknown schema_version"),
    "other model": (json.dumps({"schema_version": BASELINE_SCHEMA_VERSION, "target": {"model": "gpt-other"},
                                "known_failures": {}}), "recorded for model 'gpt-other'"),
    "other profile": (json.dumps({"schema_version": BASELINE_SCHEMA_VERSION, "profile": "documented",
                                  "known_failures": {}}), "--profile documented"),
    "other depth": (json.dumps({"schema_version": BASELINE_SCHEMA_VERSION, "depth": "quick",
                                "known_failures": {}}), "recorded with --depth quick, this run uses --depth full"),
    "placeholder reason": (json.dumps({"schema_version": BASELINE_SCHEMA_VERSION, "known_failures": {
        "usage.total-is-sum": {"reason": f"{PLACEHOLDER} (expected a sum)"},
        "stream.done-terminator": {"reason": "TGI #1896"},
        "usage.present": {"reason": "accepted by --update-baseline on 2025-01-01; replace with why: x"}}}),
        "2 known failures still have the placeholder reason written by --update-baseline: usage.present, "
        "usage.total-is-sum; replace each with why"),
    "not an object": ("[]", "not a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_BASELINES))
def test_bad_baseline_is_one_line_exit_2_before_any_request(case: str, servers: dict[str, ServerThread],
                                                            tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    text, message = BAD_BASELINES[case]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(text)
    assert run_cli(servers["A"], tmp_path, "--baseline", str(baseline)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("conformance: error: baseline "), err
    assert message in err, err
    results = json.loads((tmp_path / "reports" / "results.json").read_text())
    assert (results["verdict"], results["requests"], results["start_error"]["stage"]) == ("invalid", 0, "baseline")


def test_missing_baseline_file(servers: dict[str, ServerThread], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(servers["A"], tmp_path, "--baseline", str(tmp_path / "nope.json")) == 2
    assert "does not exist (write one with `conformance run --update-baseline" in capsys.readouterr().err


def test_a_results_json_is_a_baseline_its_failures_are_the_known_ones(servers: dict[str, ServerThread],
                                                                        results: dict[str, Path], tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`diff` accepts a results.json as OLD; so does the gate: its failures are the known failures."""
    assert run_cli(servers["A"], tmp_path, "--baseline", str(results["A"])) == 0
    assert "2 known failure(s) still failing" in capsys.readouterr().out
    assert run_cli(servers["C"], tmp_path, "--baseline", str(results["A"])) == 1
    assert "new-failure: schema.chat-completion" in capsys.readouterr().out
    assert json.loads((tmp_path / "reports" / "diff.json").read_text())["regressions"] == ["schema.chat-completion"]
    # A results.json that judged nothing complete is no baseline: exit 2 before any request.
    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps(certify(servers["A"].base_url, only=ONLY, max_requests=1).to_json()))
    (tmp_path / "reports").joinpath("results.json").unlink()
    assert run_cli(servers["A"], tmp_path, "--baseline", str(truncated)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "is the results.json of an incomplete run" in err or "is the results.json of an invalid run" in err
    record = json.loads((tmp_path / "reports" / "results.json").read_text())  # a failed start leaves its record
    assert (record["verdict"], record["run_complete"], record["start_error"]["stage"]) == ("invalid", False, "baseline")


def test_a_baseline_naming_an_unknown_check_warns_and_still_gates(servers: dict[str, ServerThread],
                                                                  tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    baseline_data = accepted(load_results(servers, tmp_path, "A"))
    baseline_data["known_failures"]["stream.renamed-check"] = {"verdict": "failed", "reason": "old name"}
    baseline_data["verdicts"]["stream.renamed-check"] = "failed"
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(baseline_data))
    assert run_cli(servers["A"], tmp_path, "--baseline", str(baseline)) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"conformance: warning: baseline {baseline} names 1 check that this suite does not "
                          "have: stream.renamed-check"), err


def test_update_baseline_from_an_incomplete_run_is_exit_2_and_writes_nothing(
        servers: dict[str, ServerThread], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    assert run_cli(servers["A"], tmp_path, "--max-requests", "1", "--update-baseline", str(baseline)) == 2
    out, err = capsys.readouterr()
    assert out.startswith(("INCOMPLETE", "INVALID"))  # the run's summary is still shown
    assert err.count("\n") == 1, err
    assert "not writing a baseline from a" in err
    assert not baseline.exists()


def test_update_baseline_keeps_written_reasons_and_renews_placeholders(results: dict[str, Path]) -> None:
    first = make_baseline(records(load(results["A"])))
    assert all(is_placeholder(e["reason"]) for e in first["known_failures"].values())
    first["known_failures"]["usage.total-is-sum"]["reason"] = "vendor ticket 7"
    again = make_baseline(records(load(results["A"])), previous=first)
    assert again["known_failures"]["usage.total-is-sum"]["reason"] == "vendor ticket 7"
    assert is_placeholder(again["known_failures"]["stream.done-terminator"]["reason"])
    assert not is_placeholder("TGI #1896, fixed upstream in #2221")


def test_no_baseline_from_an_incomplete_run(servers: dict[str, ServerThread]) -> None:
    truncated = records(certify(servers["A"].base_url, only=ONLY, max_requests=1).to_json())
    with pytest.raises(BaselineError, match=r"not writing a baseline from a (incomplete|invalid) run"):
        make_baseline(truncated)
    diff = gate(make_baseline(records(certify(servers["A"].base_url, only=ONLY).to_json())), truncated)
    assert diff.exit_code == 2  # no regression seen, but an incomplete run proves nothing


# -- diff categories ------------------------------------------------------------------------------------
def test_diff_categories_on_real_runs(results: dict[str, Path]) -> None:
    a, b, c = (records(load(results[n])) for n in "ABC")
    assert categories(diff_results(a, b)) == {
        "stream.done-terminator": "fixed", "usage.total-is-sum": "still-failing",
        "schema.chat-completion": "unchanged", "usage.present": "unchanged"}
    assert categories(diff_results(b, c)) == {
        "stream.done-terminator": "new-failure", "schema.chat-completion": "new-failure",
        "usage.total-is-sum": "still-failing", "usage.present": "unchanged"}
    assert diff_results(b, c).exit_code == 1
    assert diff_results(a, b).exit_code == 0


def test_diff_new_removed_unsupported_flaky(results: dict[str, Path]) -> None:
    a, b = load(results["A"]), load(results["B"])
    fewer = records({**a, "checks": [ch for ch in a["checks"] if ch["id"] != "usage.present"]})
    assert categories(diff_results(fewer, records(a)))["usage.present"] == "new-check"
    assert categories(diff_results(records(a), fewer))["usage.present"] == "removed-check"
    # A new check that fails is a new failure (the gate must catch it), not a mere new check.
    assert categories(diff_results(records({**a, "checks": []}), records(a)))["usage.total-is-sum"] == "new-failure"
    declined = {**b, "checks": [{**ch, "outcome": "unsupported"} if ch["id"] == "usage.present" else ch
                                for ch in b["checks"]]}
    diff = diff_results(records(b), records(declined))
    assert categories(diff)["usage.present"] == "newly-unsupported"
    assert [ch.id for ch in diff.regressions] == ["usage.present"]
    # Two runs of one target folded into one: stream.done-terminator failed, then passed.
    repeated = combine([records(load(results["first"])), records(load(results["again"]))])
    stream = next(ch for ch in repeated.checks if ch.id == "stream.done-terminator")
    assert (stream.outcome, stream.repeats) == ("failed", ("passed",))
    flaky = diff_results(records(a), repeated)
    assert categories(flaky)["stream.done-terminator"] == "flaky"
    assert next(ch for ch in flaky.changes if ch.category == "flaky").new_verdicts == ("failed", "passed")
    # The same holds when one ID appears twice in `checks`.
    doubled = {**b, "checks": b["checks"] + [ch for ch in a["checks"] if ch["id"] == "stream.done-terminator"]}
    assert categories(diff_results(records(a), records(doubled)))["stream.done-terminator"] == "flaky"


def test_hand_written_baseline_without_verdicts(results: dict[str, Path]) -> None:
    baseline = {"schema_version": BASELINE_SCHEMA_VERSION,
                "known_failures": {"usage.total-is-sum": {"reason": "upstream bug"}}}
    diff = gate(baseline, records(load(results["A"])))
    assert categories(diff) == {"usage.total-is-sum": "still-failing", "stream.done-terminator": "new-failure",
                                "schema.chat-completion": "unchanged", "usage.present": "unchanged"}
    assert side_of_baseline(baseline, "b").reasons == {"usage.total-is-sum": "upstream bug"}


# -- the diff command -----------------------------------------------------------------------------------
def test_diff_cli_markdown(results: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(results["B"]), str(results["C"])]) == 1
    markdown = capsys.readouterr().out
    assert markdown.startswith(f"### Conformance: NOT CERTIFIED — `{DEFAULT_MODEL}` @ http://127.0.0.1:")
    assert "**2 regressions**" in markdown
    section = markdown[markdown.index("#### ❌ New failures (2)"):]
    rows = [line for line in section.splitlines()[2:] if line.startswith("| `")][:2]
    assert [row.split("`")[1] for row in rows] == ["schema.chat-completion", "stream.done-terminator"]
    assert "| MUST | passed | failed |" in rows[0]
    assert "<details><summary>Still failing (expected) (1)</summary>" in markdown
    assert main(["diff", str(results["A"]), str(results["B"])]) == 0
    assert "#### ✅ Fixed (1)" in capsys.readouterr().out


def test_diff_cli_json_and_baseline_as_old(results: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(results["A"]), str(results["C"]), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["regressions"] == ["schema.chat-completion"]
    assert document["counts"]["still-failing"] == 2
    assert {c["id"]: c["category"] for c in document["checks"]}["usage.present"] == "unchanged"
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(accepted(load(results["A"]))))
    out = tmp_path / "diff.md"
    assert main(["diff", str(baseline), str(results["B"]), "-o", str(out)]) == 0
    assert "Fixed (1) — remove these from the baseline" in out.read_text()
    # Several NEW files are repeated runs of one target: a verdict that differs between them is flaky.
    assert main(["diff", str(results["A"]), str(results["first"]), str(results["again"]), "--json"]) == 0
    flaky = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in flaky["checks"] if c["category"] == "flaky"] == ["stream.done-terminator"]


def test_diff_refuses_runs_of_different_targets_as_repeated_runs(results: dict[str, Path],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """B is another server (another base URL): its verdicts say nothing about A's flakiness."""
    assert main(["diff", str(results["A"]), str(results["A"]), str(results["B"])]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert "are not repeated runs of one target" in err
    assert f"base URL {load(results['A'])['target']['base_url']} vs {load(results['B'])['target']['base_url']}" in err
    with pytest.raises(ValueError, match="not repeated runs of one target"):
        combine([records(load(results["A"])), records(load(results["B"]))])
    quick = records({**load(results["A"]), "depth": "quick"})
    with pytest.raises(ValueError, match="depth full vs quick"):
        combine([records(load(results["A"])), quick])
    # The built-in reference server listens on a new free port each run: still one target.
    builtin = [records({**load(results[n]), "target": {**load(results[n])["target"], "builtin": True}}) for n in "AB"]
    assert combine(builtin).checks


def test_diff_cli_errors(results: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2")
    other = tmp_path / "other-model-baseline.json"
    other.write_text(json.dumps({"schema_version": BASELINE_SCHEMA_VERSION, "target": {"model": "gpt-other"},
                                 "known_failures": {}}))
    assert main(["diff", str(garbage), str(results["A"])]) == 2
    assert main(["diff", str(results["A"]), str(tmp_path / "missing.json")]) == 2
    assert main(["diff", str(other), str(results["A"])]) == 2
    err = capsys.readouterr().err
    assert err.count("conformance: error:") == 3
    assert err.count("\n") == 3
    assert "recorded for model 'gpt-other'" in err


def test_side_of_results_keeps_levels_and_reasons(results: dict[str, Path]) -> None:
    side = side_of_results(records(load(results["C"])), "C")
    assert side.levels["schema.chat-completion"] == "MUST"
    assert side.messages["schema.chat-completion"].startswith("expected a body valid against")
