"""Reports from real certifications: results.json against its schema, report.html, junit.xml, the
matrix page, the repro curl, and the terminal output. Every artifact is rendered from a real run of
a clean and of a broken reference server (no hand-written fixtures)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest
from support import certify

from conformance import RunConfig, Target, Verdict, __version__, run
from conformance.cli import main
from conformance.errors import UsageError
from conformance.refserver import ServerConfig, ServerThread
from conformance.report import (
    RESULTS_SCHEMA_PATH,
    CheckRecord,
    Results,
    load_results,
    render_reports,
    schema_problems,
    write_results,
)
from conformance.report._results import duration, exchange_senders
from conformance.report._terminal import Progress, summary
from conformance.report.outcomes import CheckFailure, HarnessError, enact

KEY = "sk-reports-test-key-0001"
ONLY = ("schema.chat-completion", "usage.total-is-sum", "stream.done-terminator", "params.temperature.bounds",
        "methods.answer-shapes", "auth.missing-key")
FAULTS = ("stream-no-done", "reject-temperature-2", "usage-total-off-by-one")
BROKEN_FAILS = {"stream.done-terminator", "params.temperature.bounds", "usage.total-is-sum"}


def render(result_json: dict[str, Any], out: Path) -> dict[str, Path]:
    return render_reports(write_results(result_json, out), out)


@pytest.fixture(scope="module")
def broken_server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(api_key=KEY, faults=frozenset(FAULTS))) as server:
        yield server


@pytest.fixture(scope="module")
def clean(reference_server: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A certification of the clean server (no key: auth.missing-key is skipped), rendered."""
    results = certify(reference_server.base_url, only=ONLY).to_json()
    paths = render(results, tmp_path_factory.mktemp("clean"))
    return {"results": results, "paths": paths}


@pytest.fixture(scope="module")
def broken(broken_server: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A certification of a server with three seeded faults, with an API key, rendered."""
    results = certify(broken_server.base_url, only=ONLY, api_key=KEY).to_json()
    paths = render(results, tmp_path_factory.mktemp("broken"))
    return {"results": results, "paths": paths}


def by_id(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in results["checks"]}


# -- results.json ---------------------------------------------------------------------------------------
def test_the_schema_is_valid_draft_2020_12() -> None:
    schema = json.loads(RESULTS_SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("run_name", ["clean", "broken"])
def test_real_results_match_the_schema(run_name: str, request: pytest.FixtureRequest) -> None:
    artifacts = request.getfixturevalue(run_name)
    written = json.loads(artifacts["paths"]["results"].read_text())
    assert schema_problems(written) == []


def test_the_schema_rejects_what_it_must(clean: dict[str, Any]) -> None:
    """The schema is not vacuous: a pass without run_complete, an unknown verdict, a leaked key all fail it."""
    base = clean["results"]
    tampered = [
        {**base, "run_complete": False},  # verdict "passed" but not complete
        {**base, "checks": [{**base["checks"][0], "outcome": "ok"}]},
        {**base, "config": {**base["config"], "api_key": "sk-real"}},
        {key: value for key, value in base.items() if key != "planned"},
    ]
    for document in tampered:
        assert schema_problems(document), document.keys()


def test_results_carry_everything_issue_5_lists(broken: dict[str, Any]) -> None:
    results = broken["results"]
    assert results["schema_version"].startswith("1.")
    assert results["suite"] == {"name": "openai-conformance", "version": __version__}
    assert results["run_complete"] is True
    assert results["verdict"] == "failed"
    assert results["exit_code"] == 1
    assert results["planned"] == results["executed"] == len(ONLY)
    assert results["not_executed"] == []
    assert results["target"]["model"]
    assert results["target"]["base_url"].endswith("/v1")
    assert results["config"]["api_key"] == "***REDACTED***"
    assert (results["profile"], results["depth"]) == ("openai", "full")
    assert results["requests"] >= len(ONLY)
    assert results["tokens"] > 0
    assert results["duration_s"] > 0
    checks = by_id(results)
    for check in checks.values():
        assert {"id", "level", "feature", "clause", "outcome", "message", "duration_s", "requests_made",
                "transcripts"} <= check.keys()
    assert {i for i, c in checks.items() if c["outcome"] == "failed"} == BROKEN_FAILS
    stream = checks["stream.done-terminator"]
    transcript = stream["transcripts"][stream["failures"][0]["exchange"]]
    assert transcript["request"]["headers"]["Authorization"] == "Bearer $OPENAI_API_KEY"
    assert transcript["response"]["status"] == 200
    assert "data: " in transcript["response"]["body"]
    # The raw SSE comes with its timing: each network chunk and each event with its arrival time.
    assert transcript["sse"]["events"] > 1
    assert transcript["sse"]["chunks"][0]["t"] >= 0
    start, end = stream["failures"][0]["byte_range"]
    assert transcript["response"]["body"].encode()[start:end].startswith(b"data: ")


def test_a_truncated_run_never_reads_as_a_pass(broken_server: ServerThread, tmp_path: Path) -> None:
    result = certify(broken_server.base_url, only=ONLY, api_key=KEY, max_requests=3)
    results = result.to_json()
    assert results["run_complete"] is False
    assert results["verdict"] in ("incomplete", "invalid")
    assert result.exit_code == 2
    assert schema_problems(results) == []
    paths = render(results, tmp_path)
    page = paths["html"].read_text()
    assert re.search(r'id="cert-verdict" data-verdict="(incomplete|invalid)"', page)
    suite = ET.parse(paths["junit"]).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("errors", 0)) >= 1
    names = {case.get("name"): case for case in suite.iter("testcase")}
    assert names["run-complete"].find("error") is not None
    for check_id in results["not_executed"]:
        assert names[check_id].find("error") is not None
    # A results.json that claims a pass without run_complete is refused: no report reads it as a pass.
    claimed = tmp_path / "claimed.json"
    claimed.write_text(json.dumps({**results, "verdict": "passed"}))
    with pytest.raises(UsageError, match=r"does not match results\.schema\.json"):
        load_results(claimed)


# -- junit.xml ------------------------------------------------------------------------------------------
def junit_cases(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    return {case.get("name", ""): case for case in root.iter("testcase")}


def test_junit_names_are_check_ids_and_verdicts_map(clean: dict[str, Any], broken: dict[str, Any]) -> None:
    for artifacts in (clean, broken):
        cases = junit_cases(artifacts["paths"]["junit"])
        checks = by_id(artifacts["results"])
        assert set(cases) == set(checks)
        for check_id, case in cases.items():
            check = checks[check_id]
            assert case.get("classname") == f"conformance.{check['feature']}"
            kinds = {child.tag for child in case} - {"properties", "system-out", "system-err"}
            expected = {"passed": set(), "failed": {"failure"}, "error": {"error"}, "skipped": {"skipped"},
                        "unsupported": {"skipped"}, "not_applicable": {"skipped"},
                        "inconclusive": {"skipped"}}[check["outcome"]]
            assert kinds == expected, (check_id, check["outcome"], kinds)
    assert junit_cases(clean["paths"]["junit"])["auth.missing-key"].find("skipped") is not None
    failure = junit_cases(broken["paths"]["junit"])["stream.done-terminator"].find("failure")
    assert failure is not None
    assert "[DONE]" in (failure.get("message", "") + (failure.text or ""))


def test_junit_maps_errors_and_unsupported(tmp_path: Path) -> None:
    """Errors from a real run against a closed port; unsupported from a verdict the renderer must map."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = certify(f"http://127.0.0.1:{port}/v1", only=("schema.chat-completion", "usage.total-is-sum"),
                      connect_timeout_s=0.5).to_json()
    assert {c["outcome"] for c in results["checks"]} == {"error"}
    results["checks"][0] = {**results["checks"][0], "outcome": "unsupported", "message": "declined"}
    cases = junit_cases(render(results, tmp_path)["junit"])
    assert cases["schema.chat-completion"].find("skipped") is not None
    assert cases["usage.total-is-sum"].find("error") is not None


def test_junit_suite_is_the_run_not_the_rendering(broken: dict[str, Any], tmp_path: Path) -> None:
    """Suite name, time and timestamp come from results.json (a 9.3 s run is not a 0.1 s suite)."""
    results = json.loads(json.dumps(broken["results"]))
    results["duration_s"] = 9.3
    by_id(results)["stream.done-terminator"]["duration_s"] = 2.5
    root = ET.parse(render(results, tmp_path)["junit"]).getroot()
    assert root.get("name") == "openai-conformance"
    suite = root.find("testsuite")
    assert suite is not None
    target = results["target"]
    assert suite.get("name") == f"openai-conformance: {target['model']} @ {target['base_url']}"
    assert suite.get("time") == "9.300"
    assert suite.get("timestamp") == results["started_at"]
    properties = {p.get("name"): p.get("value") for p in suite.iterfind("properties/property")}
    assert properties["verdict"] == "failed"
    assert (properties["profile"], properties["depth"]) == ("openai", "full")
    for check_id, case in junit_cases(tmp_path / "junit.xml").items():
        assert float(case.get("time", "")) == round(by_id(results)[check_id]["duration_s"], 3), check_id
    assert junit_cases(tmp_path / "junit.xml")["stream.done-terminator"].get("time") == "2.500"


def test_a_flaky_check_fails_in_junit_whatever_its_most_severe_verdict(broken: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    """--repeat: a check that passed once and was inconclusive once certifies nothing, live or replayed."""
    results = json.loads(json.dumps(broken["results"]))
    check = by_id(results)["schema.chat-completion"]
    check.update(outcome="inconclusive", repeats=["passed"], flaky=True,
                 pass_rate={"passed": 1, "runs": 2, "rate": 0.5})
    failure = junit_cases(render(results, tmp_path)["junit"])["schema.chat-completion"].find("failure")
    assert failure is not None
    assert "flaky: passed 1 of 2 runs (inconclusive, passed); the most severe run:" in failure.get("message", "")


NOT_JUDGED = (Verdict.SKIPPED, Verdict.UNSUPPORTED, Verdict.NOT_APPLICABLE, Verdict.INCONCLUSIVE)


def flaky_of(verdict: Verdict) -> str:
    return f"flaky: passed 1 of 2 runs ({verdict}, passed)"


@pytest.mark.parametrize(("verdict", "flaky", "phase", "raised", "text"), [
    (Verdict.PASSED, "", None, None, ""),
    (Verdict.FAILED, "", "call", CheckFailure, "why"),
    (Verdict.ERROR, "", "setup", HarnessError, "why"),
    *((v, "", "call", pytest.skip.Exception, f"{v}: why") for v in NOT_JUDGED),
    (Verdict.INCONCLUSIVE, flaky_of(Verdict.INCONCLUSIVE), "call", CheckFailure,
     f"{flaky_of(Verdict.INCONCLUSIVE)}; the most severe run:\nwhy"),
    (Verdict.ERROR, flaky_of(Verdict.ERROR), "setup", HarnessError,
     f"{flaky_of(Verdict.ERROR)}; the most severe run:\nwhy"),
], ids=["passed", "failed", "error", *NOT_JUDGED, "flaky-inconclusive", "flaky-error"])
def test_one_mapping_of_verdicts_to_pytest_outcomes(verdict: Verdict, flaky: str, phase: str | None,
                                                    raised: type[BaseException] | None, text: str) -> None:
    """The plugin's items and the replayed ones raise through `enact`: an error in setup, the rest in the call."""
    seen: tuple[str, BaseException] | None = None
    phases: tuple[Literal["setup", "call"], ...] = ("setup", "call")
    for when in phases:  # as pytest runs an item: the call only after a setup that raised nothing
        try:
            enact(verdict, "why", flaky, phase=when)
        except (CheckFailure, HarnessError, pytest.skip.Exception) as exc:
            seen = (when, exc)
            break
    if raised is None:
        assert seen is None
        return
    assert seen is not None
    assert (seen[0], type(seen[1])) == (phase, raised)
    assert (seen[1].msg if isinstance(seen[1], pytest.skip.Exception) else str(seen[1])) == text


# -- report.html ----------------------------------------------------------------------------------------
def test_report_html_summary_for_a_person(broken: dict[str, Any]) -> None:
    page = broken["paths"]["html"].read_text()
    assert 'data-verdict="failed"' in page
    assert "NOT CERTIFIED" in page
    rollup = page[page.index('id="feature-rollup"'):]
    assert '<tr data-feature="streaming">' in rollup
    assert 'class="f-failed"' in rollup
    matrix = page[page.index('id="method-matrix"'):page.index("</table>", page.index('id="method-matrix"'))]
    assert "POST /v1/chat/completions" in matrix
    assert "GET /v1/models" in matrix
    failing = page[page.index('id="failing-checks"'):page.index("</ol>", page.index('id="failing-checks"'))]
    links = re.findall(r'href="#check-([^"]+)"', failing)
    assert set(links) == BROKEN_FAILS
    for check_id in links:
        assert f'id="check-{check_id}"' in page  # every link has its target
    # Failing checks are open articles; any other check's detail is its row in pytest-html's table, the
    # one list of every check (passed rows start collapsed). No second list, no duplicate anchor.
    assert '<article class="check c-failed" id="check-stream.done-terminator"' in page
    assert 'id="other-checks"' not in page
    everything = rendered_html(broken["paths"]["html"])
    for check_id in ONLY:
        assert everything.count(f'id="check-{check_id}"') == 1, check_id
    assert re.search(r'<div class="check c-passed" id="check-schema.chat-completion"', everything)
    assert not re.search(r"<(link|script|img)[^>]+(href|src)=[\"']?(https?:)?//", page)  # self-contained


def test_failing_check_detail_has_everything(broken: dict[str, Any]) -> None:
    page = broken["paths"]["html"].read_text()
    start = page.index('id="check-stream.done-terminator"')
    detail = page[start:page.index("</article>", start)]
    assert "<dt>Expected</dt>" in detail
    assert "<dt>Received</dt>" in detail
    assert "documented-api § 4 FAQ streaming" in detail
    assert "terminated with a data: [DONE] message" in detail
    mark = re.search(r'<mark class="offending" id="[^"]+-m0">(.*?)</mark>', detail, re.S)
    assert mark
    assert html.unescape(mark.group(1)).split("</span>")[-1].startswith("data: {")
    assert 'class="t" data-t="+' in detail  # SSE arrival times
    curl = html.unescape(re.search(r'<pre class="repro"><code>(.*?)</code></pre>', detail, re.S).group(1))
    assert '"Authorization: Bearer $OPENAI_API_KEY"' in curl
    assert KEY not in page


def rendered_html(path: Path) -> str:
    """The page and the HTML pytest-html's script inserts from its data blob (row cells and row details)."""
    page = path.read_text()
    blob = json.loads(html.unescape(re.search(r'data-jsonblob="([^"]*)"', page).group(1)))  # type: ignore[union-attr]
    parts = [page]
    for runs in blob["tests"].values():
        for test in runs:
            parts += [*test["resultsTableRow"], test.get("log", ""), *(e["content"] for e in test["extras"])]
    return "\n".join(parts)


def test_one_duration_format() -> None:
    seconds = (0, 0.0254, 0.9994, 0.9996, 9.3, 59.96, 125.4, 3725)
    assert [duration(s) for s in seconds] == ["0 ms", "25 ms", "999 ms", "1.0 s", "9.3 s", "1 min 00 s",
                                              "2 min 05 s", "1 h 02 min"]


def test_report_durations_are_in_one_format(broken: dict[str, Any], tmp_path: Path) -> None:
    results = json.loads(json.dumps(broken["results"]))
    results["duration_s"] = 9.3
    by_id(results)["stream.done-terminator"]["duration_s"] = 9.3
    page = rendered_html(render(results, tmp_path)["html"])
    cells = re.findall(r'<td class="col-elapsed">(?:<!--\d+-->)?([^<]*)</td>', page)
    assert len(cells) == len(ONLY)
    assert all(re.fullmatch(r"\d+ ms|\d+\.\d s", cell) for cell in cells), cells
    assert "9.3 s" in cells
    assert "col-duration" not in page  # pytest-html's own cell, with its 00:00:09 for a second or more
    assert "9.3 s" in page[page.index('id="run-facts"'):page.index("</dl>", page.index('id="run-facts"'))]
    notes = re.findall(r'<p class="note">[^<]*(?:<[^p][^>]*>[^<]*)*?· ([^<·]+)</p>', page)
    assert notes
    assert all(re.fullmatch(r"\d+ ms|\d+\.\d s", note) for note in notes), notes


def test_a_shared_exchange_names_the_check_that_sent_it(broken: dict[str, Any]) -> None:
    """schema.chat-completion and usage.total-is-sum judge one shared completion: one of them sent it."""
    results = broken["results"]
    checks = by_id(results)
    shared = [c for c in results["checks"] if c["requests_made"] == 0 and c["transcripts"]]
    assert shared, "the run had no shared exchange"
    senders = exchange_senders(Results.from_json(results).checks)
    page = rendered_html(broken["paths"]["html"])
    assert "0 request(s)" not in page
    for check in shared:
        sender = senders[check["id"]][0]
        assert sender is not None, check["id"]
        assert checks[sender]["requests_made"] > 0
        assert check["transcripts"][0] in checks[sender]["transcripts"]
        detail = re.search(rf'id="check-{re.escape(check["id"])}".*?<p class="note">(.*?)</p>', page, re.S)
        assert detail, check["id"]
        note = re.sub(r"<[^>]+>", "", detail.group(1))
        assert note.startswith(f"no request of its own: shared with {sender} · "), note
    # A check that sent its own requests says how many.
    assert re.search(r'id="check-stream.done-terminator".*?<p class="note">1 request · ', page, re.S)


def test_exchange_senders_when_it_cannot_be_told(broken: dict[str, Any]) -> None:
    """X and Y each sent one request and both hold exchanges T and U: which sent which is not derivable."""
    from conformance.report._html import check_detail

    holder = json.loads(json.dumps(next(c for c in broken["results"]["checks"]
                                        if c["requests_made"] == 0 and c["transcripts"])))
    t = holder["transcripts"][0]
    u = {**t, "elapsed_s": t["elapsed_s"] + 1}
    twins = [{**holder, "id": name, "transcripts": [t, u], "requests_made": 1} for name in ("x.one", "y.two")]
    senders = exchange_senders(CheckRecord.from_json(c) for c in [holder, *twins])
    assert senders == {holder["id"]: [None], "x.one": [], "y.two": []}
    note = re.sub(r"<[^>]+>", "", check_detail(CheckRecord.from_json(holder), senders=senders[holder["id"]]))
    assert "no request of its own: shared exchange · " in note
    # Once Y is known to have sent only U, X sent T.
    twins[1]["transcripts"] = [u]
    assert exchange_senders(CheckRecord.from_json(c) for c in [holder, *twins])[holder["id"]] == ["x.one"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_repro_curl_reproduces_the_failure(broken: dict[str, Any], broken_server: ServerThread) -> None:
    """Run each failing check's rendered curl with bash: the live faulty server answers the same status."""
    page = broken["paths"]["html"].read_text()
    checks = by_id(broken["results"])
    ran = 0
    for check_id in ("params.temperature.bounds", "stream.done-terminator"):
        start = page.index(f'<article class="check c-failed" id="check-{check_id}"')
        detail = page[start:page.index("</article>", start)]
        commands = [html.unescape(c) for c in re.findall(r'<pre class="repro"><code>(.*?)</code></pre>', detail, re.S)]
        statuses = [checks[check_id]["transcripts"][int(i)]["response"]["status"]
                    for i in re.findall(r"<b>Transcript #(\d+)</b>", detail)]
        for command, status in zip(commands, statuses, strict=True):
            answer = subprocess.run(["bash", "-c", command], check=False, capture_output=True, text=True,
                                    env={"OPENAI_API_KEY": KEY, "PATH": "/usr/bin:/bin"}, timeout=20)
            assert answer.returncode == 0, answer.stderr
            assert int(answer.stdout.split()[1]) == status, (command, answer.stdout[:200])
            if check_id == "stream.done-terminator":
                assert "data: [DONE]" not in answer.stdout  # the fault itself is reproduced
            ran += 1
    assert ran >= 2
    assert any(checks["params.temperature.bounds"]["transcripts"][i]["response"]["status"] == 400
               for i in range(len(checks["params.temperature.bounds"]["transcripts"])))
    # The key comes from the environment: without it the same command is refused.
    refused = subprocess.run(["bash", "-c", commands[0]], check=False, env={"PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, timeout=20)
    assert int(refused.stdout.split()[1]) == 401


# -- matrix.html ----------------------------------------------------------------------------------------
def test_matrix_of_targets(clean: dict[str, Any], broken: dict[str, Any], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    lone = tmp_path / "lone" / "results.json"  # a results.json without a report.html next to it
    lone.parent.mkdir()
    lone.write_text(broken["paths"]["results"].read_text())
    output = tmp_path / "pub" / "matrix.html"
    code = main(["report", str(clean["paths"]["results"]), str(broken["paths"]["results"]), str(lone),
                 "-o", str(output.parent)])
    assert code == 0, capsys.readouterr()
    assert capsys.readouterr().out == f"matrix: {output}\n"
    page = output.read_text()
    assert page.count('<th class="target">') == 3
    # Targets are named by base URL and model (both servers serve the same model); a second run of one
    # target says which file it came from.
    headers = [re.sub(r"<[^>]+>", " ", h).split() for h in re.findall(r'<th class="target">(.*?)</th>', page)]
    for header, artifacts in zip(headers, (clean, broken, broken), strict=True):
        target = artifacts["results"]["target"]
        assert header[:2] == [target["base_url"].removeprefix("http://"), target["model"]], header
    assert len({" ".join(h) for h in headers}) == 3, headers
    assert "lone" in " ".join(headers[2])
    for check_id in ONLY:
        row = re.search(rf'<tr data-check="{re.escape(check_id)}">(.*?)</tr>', page, re.S)
        assert row, check_id
        cells = re.findall(r'<td class="cell c-(\w+)"[^>]*><a href="([^"]+)">', row.group(1))
        verdicts = [c[0] for c in cells]
        assert verdicts[1] == verdicts[2] == ("failed" if check_id in BROKEN_FAILS else by_id(broken["results"])
                                              [check_id]["outcome"])
        # Columns with a report.html link into it; the lone results link to an inline detail section.
        assert cells[0][1].endswith(f"report.html#check-{check_id}")
        assert not cells[0][1].startswith("/")
        assert cells[2][1] == f"#t2-check-{check_id}"
        assert f'id="t2-check-{check_id}"' in page
        # An inline detail's "shared with" link stays inside its own column's details.
        inline = page[page.index('id="t2-details"'):]
        assert re.search(r'shared with <a href="#t2-check-', inline)
        assert not re.search(r'href="#check-', inline)
        target = (output.parent / cells[1][1].split("#")[0]).resolve()
        assert target == broken["paths"]["html"].resolve()
    assert not re.search(r"<(link|script)[^>]+(href|src)=", page)  # self-contained


def test_report_cli_errors_are_one_line(tmp_path: Path, clean: dict[str, Any],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"hello": 1}))
    results = str(clean["paths"]["results"])
    for argv in (["report", str(tmp_path / "missing.json")], ["report", str(bad)], ["report", str(foreign)],
                 ["report", results, results], ["report", results, str(bad), "-o", str(tmp_path)],
                 ["report", results, results, "-o", str(tmp_path / "m.html")],
                 ["report", results, "-o", str(bad)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith("conformance: error:"), err
    main(["report", results, results, "-o", str(tmp_path / "m.html")])
    assert "-o is a directory: the matrix goes to " in capsys.readouterr().err
    assert not (tmp_path / "m.html").exists()


def test_report_cli_rerenders(clean: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(clean["paths"]["results"]), "-o", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").read_text().count('id="cert-verdict"') == 1
    assert junit_cases(tmp_path / "junit.xml").keys() == by_id(clean["results"]).keys()


# Fields results.json gained after schema 1.0 (run level, `summary`, each check, each transcript).
LATER_FIELDS = {
    "run": ("headline", "strict", "selection", "chat_route", "finished_at", "catalogue", "not_executed", "retries",
            "tokens_estimated", "http_status_counts", "root_causes", "concurrency", "repeat"),
    "summary": ("not_applicable", "inconclusive", "by_level"),
    "check": ("basis", "evidence", "declared_unsupported", "accepts", "model_dependent", "tokens_used", "depths",
              "profiles", "details", "repeats", "flaky", "pass_rate"),
    "transcript": ("limit_exceeded", "attempts", "contended", "sse"),
}


def test_a_results_json_of_schema_1_0_still_renders(broken: dict[str, Any], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Only what schema 1.0 required: it loads, and every report renders from it as before."""
    old = json.loads(json.dumps(broken["results"]))
    old["schema_version"] = "1.0"
    for key in LATER_FIELDS["run"]:
        old.pop(key, None)
    for key in LATER_FIELDS["summary"]:
        old["summary"].pop(key, None)
    for check in old["checks"]:
        for key in LATER_FIELDS["check"]:
            check.pop(key, None)
        for transcript in check["transcripts"]:
            for key in LATER_FIELDS["transcript"]:
                transcript.pop(key, None)
    path = tmp_path / "old" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(old))
    results = load_results(path)
    assert (results.verdict, results.headline, results.root_causes, results.chat_route) == (
        "failed", "NOT CERTIFIED", (), None)
    assert summary(results, {}).startswith("NOT CERTIFIED: ")
    assert main(["report", str(path)]) == 0
    assert 'data-verdict="failed"' in (path.parent / "report.html").read_text()
    assert junit_cases(path.parent / "junit.xml").keys() == by_id(old).keys()
    assert main(["report", str(path), str(broken["paths"]["results"]), "-o", str(tmp_path / "matrix")]) == 0
    assert main(["diff", str(path), str(broken["paths"]["results"])]) == 0
    assert "**0 regressions**" in capsys.readouterr().out


# -- terminal -------------------------------------------------------------------------------------------
class FakeTTY:
    def __init__(self, tty: bool) -> None:
        self.text, self.tty = "", tty

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


def test_progress_on_a_terminal_only(broken_server: ServerThread) -> None:
    config = RunConfig(target=Target(broken_server.base_url, "conformance-ref-1", KEY),
                       only=("stream.done-terminator", "usage.total-is-sum", "schema.chat-completion"))
    tty, pipe = FakeTTY(True), FakeTTY(False)
    for stream in (tty, pipe):
        run(config, on_event=Progress(stream, enabled=stream.isatty()))  # type: ignore[arg-type]
    assert pipe.text == ""
    frames = [f for f in tty.text.split("\r\x1b[2K") if f]
    assert frames[-1].startswith("[3/3] ")
    assert "2 failed" in frames[-1]
    assert any("✗ stream.done-terminator" in f or "✗ usage.total-is-sum" in f for f in frames)
    assert KEY not in tty.text


def test_summary_table(broken: dict[str, Any]) -> None:
    text = summary(Results.from_json(broken["results"]), broken["paths"])
    lines = text.splitlines()
    assert lines[0].startswith("NOT CERTIFIED (partial run: ")
    assert " failed: conformance-ref-1 @ http://127.0.0.1:" in lines[0]
    assert any(line.split()[:2] == ["Checks", f"{len(ONLY)}/{len(ONLY)}"] for line in lines)
    for check_id in BROKEN_FAILS:
        assert any(check_id in line and line.split()[0] == "MUST" for line in lines)
    for path in broken["paths"].values():
        assert any(line.endswith(str(path)) for line in lines)
    assert "\x1b" not in text
    assert "\r" not in text
    assert "\x1b[1;31mNOT CERTIFIED" in summary(Results.from_json(broken["results"]), broken["paths"], colour=True)


def test_cli_run_output_is_clean_when_not_a_tty(reference_server: ServerThread, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--base-url", reference_server.base_url, "--only", "schema.chat-completion",
                 "--report-dir", str(tmp_path), "--no-html"])
    out, err = capsys.readouterr()
    assert code == 0, out
    assert out.startswith("PARTIAL RUN: 1 of ")
    assert "\r" not in out + err
    assert "\x1b" not in out + err
    assert f"results.json  {tmp_path / 'results.json'}" in out


def default_sigint() -> None:
    """Background shells start the tests with SIGINT ignored; the child must get the default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupted_run_leaves_no_stale_pass(tmp_path: Path) -> None:
    """Ctrl-C mid-run: results.json says incomplete, and the previous run's passing reports are gone."""
    (tmp_path / "report.html").write_text("a previous run's passing report")
    (tmp_path / "junit.xml").write_text("<testsuites/>")
    (tmp_path / "results.json").write_text(json.dumps({"verdict": "passed"}))
    # Slow and sequential (>= 2.4 s of requests), so the signal surely lands mid-run even on a loaded machine.
    with ServerThread(ServerConfig(latency_ms=400)) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "conformance", "run", "--base-url", server.base_url, "--report-dir",
             str(tmp_path), "--only", "params.temperature.bounds", "--concurrency", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,  # noqa: PLW1509 - only resets a signal
            env={k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"})
        deadline = time.monotonic() + 30
        while "did not finish" not in (tmp_path / "results.json").read_text():
            assert time.monotonic() < deadline
            assert process.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)  # past the start-up, into the requests
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    results = json.loads((tmp_path / "results.json").read_text())
    assert (results["verdict"], results["run_complete"], results["exit_code"]) == ("incomplete", False, 2)
    assert schema_problems(results) == []
    assert not (tmp_path / "report.html").exists()
    assert not (tmp_path / "junit.xml").exists()
