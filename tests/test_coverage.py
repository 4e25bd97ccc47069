"""The coverage map of documented-api.txt: honest data, verbatim quotes, the CLI and the report section."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from documented_api import REPO_ROOT, document_text, find_document
from support import certify

from conformance import coverage
from conformance.checks import all_checks
from conformance.cli import main
from conformance.coverage import ROWS, Row, figure, map_problems, quote_in
from conformance.coverage._row import enforced, gap, untestable
from conformance.refserver import ServerThread
from conformance.report import CheckRecord, render_reports, write_results
from conformance.report._coverage_html import coverage_section, row_verdict

CATALOGUE = {c.spec.id for c in all_checks()}
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


# -- the map's data ---------------------------------------------------------------------------------------
def test_the_map_has_no_problems() -> None:
    """Each row has exactly one answer (checks, an untestable reason or a gap), known checks, a unique key."""
    assert map_problems(ROWS, CATALOGUE) == []


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (Row("body.seed", "seed"), "needs exactly one of checks"),
        (Row("body.seed", "seed", checks=("usage.present",), untestable="why"), "needs exactly one of checks"),
        (enforced("body.seed", "seed", "errors.no-such-check"), "'errors.no-such-check' is not in the catalogue"),
        (untestable("seeds.x", "seed", "why"), "starts with none of"),
    ],
)
def test_map_problems_catches_a_wrong_row(row: Row, problem: str) -> None:
    problems = map_problems([row], CATALOGUE)
    assert any(problem in p for p in problems), problems


def test_a_repeated_key_is_a_problem() -> None:
    row = gap("body.n.default", "n", "why")
    assert map_problems([row, row], CATALOGUE) == ["body.n.default: the key is used twice"]


def test_the_map_covers_every_section_and_every_table_row() -> None:
    keys = {row.key for row in ROWS}
    assert {coverage.section_of(k) for k in keys} == set(coverage.SECTIONS.values())
    body = ("model", "messages", "temperature", "top_p", "n", "stream", "stop", "max_tokens", "presence_penalty",
            "frequency_penalty", "logit_bias", "user", "response_format", "tools", "tool_choice")
    response = ("id", "object", "created", "choices", "choices.index", "choices.message", "choices.message.role",
                "choices.message.content", "choices.finish_reason", "usage", "usage.prompt_tokens",
                "usage.completion_tokens", "usage.total_tokens")
    wanted = ({f"header.{h}" for h in ("content-type", "accept", "authorization")} | {f"body.{b}" for b in body}
              | {f"response.{r}" for r in response} | {"endpoint.method", "endpoint.url", "faq.json-mode"})
    assert wanted - keys == set()


def test_every_stated_default_has_a_row() -> None:
    """The body table's Default column: every parameter with a default (not "-") answers for it."""
    with_default = ("temperature", "top_p", "n", "stream", "stop", "max_tokens", "presence_penalty",
                    "frequency_penalty", "logit_bias", "tool_choice")
    assert [p for p in with_default if f"body.{p}.default" not in {r.key for r in ROWS}] == []


def test_quotes_are_short() -> None:
    """The package carries short quotes and keys, not a copy of the document."""
    assert [r.key for r in ROWS if len(r.quote) > 200] == []
    assert sum(len(r.quote) for r in ROWS) < 6186 * 0.8  # documented-api.txt has 6186 characters


# -- quotes are verbatim --------------------------------------------------------------------------------------
def test_every_quote_is_verbatim_in_the_document() -> None:
    """Compared after dropping " | " cell separators and collapsing whitespace runs (see `quote_in`).

    The document runs table cells together and breaks a line inside the example's content string;
    its `\\r` are a backslash and an r (the example's escaped CR), and its bullets are U+2022.
    """
    document = document_text()
    assert [f"{r.key}: {r.quote}" for r in ROWS if not quote_in(r.quote, document)] == []


def test_quote_in_forgives_cell_separators_and_whitespace_only() -> None:
    document = "ParameterTypeDescription\ncreatedintegerThe Unix timestamp (in seconds)\r\n  of when."
    assert quote_in("created | integer | The Unix timestamp (in seconds)", document)
    assert quote_in("(in seconds) of when.", document)
    assert not quote_in("created integer", document)  # a plain space is not a cell separator
    assert not quote_in("The unix timestamp", document)  # case matters
    assert not quote_in("The Unix timestamp (in milliseconds)", document)


def test_the_document_is_found_upward_from_the_repository(tmp_path: Path) -> None:
    (tmp_path / "shared" / "docs").mkdir(parents=True)
    (tmp_path / "shared" / "docs" / "documented-api.txt").write_text("x", encoding="utf-8")
    checkout = tmp_path / "ci" / "checkouts" / "repo"
    checkout.mkdir(parents=True)
    assert find_document(checkout) == tmp_path / "shared" / "docs" / "documented-api.txt"
    assert find_document(tmp_path / "ci") == tmp_path / "shared" / "docs" / "documented-api.txt"


def test_documented_clauses_of_the_catalogue_quote_the_document() -> None:
    """Each `documented-api` clause of a check, fragment by fragment (joined by "; " or " ... ").

    The catalogue's quotes separate table cells with plain spaces, so whitespace is ignored here.
    """
    squeezed = re.sub(r"\s+", "", document_text())
    offenders = []
    for registered in all_checks():
        clause = registered.spec.clause
        if clause.source != "documented-api":
            continue
        for fragment in re.split(r"\s*(?:\.\.\.|…|;)\s*", clause.quote):
            if fragment and re.sub(r"\s+", "", fragment) not in squeezed:
                offenders.append(f"{registered.spec.id}: {fragment!r}")
    assert offenders == []


# -- the figure and the README ----------------------------------------------------------------------------------
def test_the_figure_counts_rows() -> None:
    rows = (enforced("body.a", "a", "usage.present"), untestable("body.b", "b", "why"), gap("body.c", "c", "why"))
    result = figure(rows)
    assert (result.covered, result.testable, result.total, result.gaps) == (1, 2, 3, ("body.c",))
    assert str(result) == "1 of 2 testable rows covered (3 rows, 1 not testable from outside)"


def test_the_readme_states_the_current_figure() -> None:
    result = figure()
    stated = re.search(r"\*\*(\d+) of (\d+) testable rows\*\* \((\d+) rows", README)
    assert stated, "the README's coverage section lost its figure"
    assert tuple(map(int, stated.groups())) == (result.covered, result.testable, result.total), (
        f"README says {stated.group(0)}, the map gives {result}: update the README")
    for key in result.gaps:
        assert f"`{key}`" in README, f"the README should name the gap {key}"


# -- the CLI -----------------------------------------------------------------------------------------------------------
def test_coverage_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coverage", "--json"]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in rows] == [r.key for r in ROWS]
    for row in rows:
        assert {"key", "quote", "checks", "faults", "reason"} <= row.keys()
        assert isinstance(row["quote"], str)
        assert row["quote"]
        assert all(set(c) == {"id", "level"} and c["level"] in ("MUST", "SHOULD", "INFO") for c in row["checks"])
        assert all(isinstance(f, str) for f in row["faults"])
        if row["checks"]:
            # Every check is proven by a seeded fault, so a covered row names at least one.
            assert row["reason"] is None, row
            assert row["faults"], row
        else:
            assert isinstance(row["reason"], str), row
            assert row["reason"], row
            assert row["faults"] == [], row
    total = next(r for r in rows if r["key"] == "response.usage.total_tokens")
    assert {"id": "usage.total-is-sum", "level": "MUST"} in total["checks"]
    assert "usage-total-off-by-one" in total["faults"]


def test_coverage_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coverage"]) == 0
    out = capsys.readouterr().out
    for row in ROWS:
        assert row.key in out
    assert "usage.total-is-sum\u00a0(MUST)" in out
    assert "not testable" in out
    assert "no check yet" in out
    assert f"Coverage: {figure()}." in out


# -- the report section ------------------------------------------------------------------------------------------
def test_row_verdict_takes_the_worst_outcome_of_the_checks_that_ran() -> None:
    outcomes = {"a": "passed", "b": "failed", "c": "skipped"}
    assert row_verdict(("a", "b"), outcomes) == "failed"
    assert row_verdict(("a", "c"), outcomes) == "passed"
    assert row_verdict(("c",), outcomes) == "skipped"
    assert row_verdict(("x", "y"), outcomes) == "not run"


def _rows_by_key(section: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-key="([^"]+)" data-verdict="([^"]+)">', section))


def judged(check_id: str, level: str, outcome: str) -> CheckRecord:
    """A check's record with only what the coverage section reads filled in."""
    return CheckRecord.from_json({
        "id": check_id, "level": level, "feature": "core", "outcome": outcome, "message": "", "description": "",
        "clause": {"source": "test", "section": "test", "quote": "test"}, "duration_s": 0.0, "requests": 1,
        "requests_made": 1, "transcripts": [],
        "failures": [{"expected": "", "received": "", "where": "", "exchange": None, "byte_range": None}]})


def test_report_section_from_a_small_results_json() -> None:
    checks = [judged("usage.total-is-sum", "MUST", "failed"), judged("usage.prompt-grows", "INFO", "passed"),
              judged("schema.chat-completion", "MUST", "passed"), judged("methods.models-list", "SHOULD", "passed")]
    section = coverage_section(checks)
    assert "Coverage of the documented API" in section
    rows = _rows_by_key(section)
    assert set(rows) == {r.key for r in ROWS}
    assert rows["response.usage.total_tokens"] == "failed"
    assert rows["response.usage.prompt_tokens"] == "failed"  # usage.total-is-sum failed, prompt-grows passed
    assert rows["response.object"] == "passed"
    assert rows["header.authorization"] == "not run"
    assert rows["body.temperature.effect"] == "not testable"
    assert rows["response.id.unique"] == "no check yet"
    row_html = section.split('data-key="header.authorization"')[1].split("</tr>")[0]
    assert "none ran in this run" in row_html
    row_html = section.split('data-key="response.usage.prompt_tokens"')[1].split("</tr>")[0]
    assert "did not run" not in row_html
    row_html = section.split('data-key="endpoint.name"')[1].split("</tr>")[0]  # methods.get-quirk did not run
    assert rows["endpoint.name"] == "passed"
    assert "1 of 2 did not run in this run" in row_html
    assert '<a href="#check-usage.total-is-sum">' in section


def test_report_html_carries_the_section(reference_server: ServerThread, tmp_path: Path) -> None:
    results = certify(reference_server.base_url, only=("usage.total-is-sum", "documented.request-example")).to_json()
    paths = render_reports(write_results(results, tmp_path), tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    assert 'id="coverage"' in page
    rows = _rows_by_key(page)
    assert rows["response.usage.total_tokens"] == "passed"
    assert rows["example.request"] == "passed"
    assert rows["endpoint.method"] == "not run"
