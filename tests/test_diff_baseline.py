"""The baseline gate and `conformance diff`, on result files of real certifications.

Servers: A has two seeded faults; B fixed one of them; C has A's faults plus a new one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import certify

from conformance._diff import (
    BASELINE_SCHEMA_VERSION,
    combine,
    diff_results,
    gate,
    make_baseline,
    side_of_baseline,
    side_of_results,
)
from conformance.cli import main
from conformance.errors import BaselineError
from conformance.refserver import DEFAULT_MODEL, ServerConfig, ServerThread

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
    """results.json of a real run against each server."""
    out = tmp_path_factory.mktemp("results")
    paths = {}
    for name, server in servers.items():
        path = out / f"{name}.json"
        path.write_text(json.dumps(certify(server.base_url, only=ONLY).to_json()))
        paths[name] = path
    return paths


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def categories(diff: Any) -> dict[str, str]:
    return {c.id: c.category for c in diff.changes}


def run_cli(server: ServerThread, tmp_path: Path, *extra: str) -> int:
    argv = ["run", "--base-url", server.base_url, "--report-dir", str(tmp_path / "reports"), "--no-html", "-q"]
    for check_id in ONLY:
        argv += ["--only", check_id]
    return main([*argv, *extra])


# -- the gate on real servers ---------------------------------------------------------------------------
def test_gate_unchanged_known_failures_exit_0(servers: dict[str, ServerThread], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    assert run_cli(servers["A"], tmp_path, "--update-baseline", str(baseline)) == 1  # no baseline: MUST failed
    written = json.loads(baseline.read_text())
    assert set(written["known_failures"]) == {"stream.done-terminator", "usage.total-is-sum"}
    assert all(entry["reason"].strip() for entry in written["known_failures"].values())
    capsys.readouterr()
    assert run_cli(servers["A"], tmp_path, "--baseline", str(baseline)) == 0
    out = capsys.readouterr().out
    assert "0 regression(s)" in out
    assert "2 known failure(s) still failing" in out
    assert "Still failing (expected) (2)" in (tmp_path / "reports" / "diff.md").read_text()


def test_gate_regression_exits_1(servers: dict[str, ServerThread], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(make_baseline(load_results(servers, tmp_path, "A"))))
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
    baseline.write_text(json.dumps(make_baseline(load_results(servers, tmp_path, "A"))))
    assert run_cli(servers["B"], tmp_path, "--baseline", str(baseline)) == 0
    out = capsys.readouterr().out
    assert "1 known failure(s) now pass, remove them from the baseline: stream.done-terminator" in out
    markdown = (tmp_path / "reports" / "diff.md").read_text()
    assert "Fixed (1) — remove these from the baseline" in markdown
    # --update-baseline shrinks it: the fixed entry goes, the kept one keeps its hand-written reason.
    edited = json.loads(baseline.read_text())
    edited["known_failures"]["usage.total-is-sum"]["reason"] = "vendor ticket 42"
    baseline.write_text(json.dumps(edited))
    run_cli(servers["B"], tmp_path, "--baseline", str(baseline), "--update-baseline", str(baseline))
    shrunk = json.loads(baseline.read_text())["known_failures"]
    assert shrunk == {"usage.total-is-sum": {"verdict": "failed", "level": "MUST", "reason": "vendor ticket 42"}}


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


def test_no_baseline_from_an_incomplete_run(servers: dict[str, ServerThread]) -> None:
    truncated = certify(servers["A"].base_url, only=ONLY, max_requests=1).to_json()
    with pytest.raises(BaselineError, match=r"not writing a baseline from a (incomplete|invalid) run"):
        make_baseline(truncated)
    diff = gate(make_baseline(certify(servers["A"].base_url, only=ONLY).to_json()), truncated)
    assert diff.exit_code == 2  # no regression seen, but an incomplete run proves nothing


# -- diff categories ------------------------------------------------------------------------------------
def test_diff_categories_on_real_runs(results: dict[str, Path]) -> None:
    a, b, c = (load(results[n]) for n in "ABC")
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
    fewer = {**a, "checks": [ch for ch in a["checks"] if ch["id"] != "usage.present"]}
    assert categories(diff_results(fewer, a))["usage.present"] == "new-check"
    assert categories(diff_results(a, fewer))["usage.present"] == "removed-check"
    # A new check that fails is a new failure (the gate must catch it), not a mere new check.
    assert categories(diff_results({**a, "checks": []}, a))["usage.total-is-sum"] == "new-failure"
    declined = {**b, "checks": [{**ch, "outcome": "unsupported"} if ch["id"] == "usage.present" else ch
                                for ch in b["checks"]]}
    diff = diff_results(b, declined)
    assert categories(diff)["usage.present"] == "newly-unsupported"
    assert [ch.id for ch in diff.regressions] == ["usage.present"]
    # Two runs of one target folded into one file: stream.done-terminator failed, then passed.
    repeated = combine([a, b])
    stream = next(ch for ch in repeated["checks"] if ch["id"] == "stream.done-terminator")
    assert (stream["outcome"], stream["repeats"]) == ("failed", ["passed"])
    flaky = diff_results(a, repeated)
    assert categories(flaky)["stream.done-terminator"] == "flaky"
    assert next(ch for ch in flaky.changes if ch.category == "flaky").new_verdicts == ("failed", "passed")
    # The same holds when one ID appears twice in `checks`.
    doubled = {**b, "checks": b["checks"] + [ch for ch in a["checks"] if ch["id"] == "stream.done-terminator"]}
    assert categories(diff_results(a, doubled))["stream.done-terminator"] == "flaky"


def test_hand_written_baseline_without_verdicts(results: dict[str, Path]) -> None:
    baseline = {"schema_version": BASELINE_SCHEMA_VERSION,
                "known_failures": {"usage.total-is-sum": {"reason": "upstream bug"}}}
    diff = gate(baseline, load(results["A"]))
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
    baseline.write_text(json.dumps(make_baseline(load(results["A"]))))
    out = tmp_path / "diff.md"
    assert main(["diff", str(baseline), str(results["B"]), "-o", str(out)]) == 0
    assert "Fixed (1) — remove these from the baseline" in out.read_text()
    # Several NEW files are repeated runs: a verdict that differs between them is flaky.
    assert main(["diff", str(results["A"]), str(results["A"]), str(results["B"]), "--json"]) == 0
    flaky = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in flaky["checks"] if c["category"] == "flaky"] == ["stream.done-terminator"]


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
    side = side_of_results(load(results["C"]), "C")
    assert side.levels["schema.chat-completion"] == "MUST"
    assert side.messages["schema.chat-completion"].startswith("expected a body valid against")
