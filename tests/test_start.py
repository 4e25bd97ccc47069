"""A run that cannot start: one clear line, exit 2, and a truthful record in the report dir.

Whatever stops `conformance run` before its first check (a refused, reset, silent or flooding
target, something that is not HTTP, a garbage baseline, bad flags) leaves results.json saying
`invalid` and `run_complete: false`, a junit.xml with one erroring test so CI shows red, and none
of the previous run's reports.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hostile_servers import HostileServer, free_port, huge_body, never_answers, not_http, resets_mid_stream

from conformance.cli import main
from conformance.refserver import ServerThread
from conformance.report import schema_problems

# Small bounds so each failed start takes at most a second or two.
FAST = ["--timeout", "1", "--connect-timeout", "1", "--request-deadline", "2"]
STALE = ("report.html", "junit.xml", "diff.md", "diff.json")


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    """A report dir holding a previous run's passing reports."""
    directory = tmp_path / "reports"
    directory.mkdir()
    (directory / "results.json").write_text(json.dumps({"verdict": "passed", "run_complete": True}))
    for name in STALE:
        (directory / name).write_text("a previous run's passing report")
    return directory


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "CONFORMANCE_MODEL"):
        monkeypatch.delenv(name, raising=False)


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", "--quiet", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err


def junit_cases(path: Path) -> list[ET.Element]:
    return list(ET.parse(path).getroot().iter("testcase"))


def assert_failed_start(report_dir: Path, err: str, *, stage: str, says: str) -> dict[str, Any]:
    """One line on stderr, and the record of a run that could not start."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("conformance: error: ")
    assert says in lines[0]
    results: dict[str, Any] = json.loads((report_dir / "results.json").read_text(encoding="utf-8"))
    assert schema_problems(results) == []
    assert (results["verdict"], results["run_complete"], results["exit_code"]) == ("invalid", False, 2)
    assert results["executed"] == 0
    assert results["checks"] == []
    assert results["start_error"]["stage"] == stage
    assert says in results["start_error"]["message"]
    assert says in results["reason"]
    cases = junit_cases(report_dir / "junit.xml")
    assert len(cases) == 1, [c.attrib for c in cases]
    error = cases[0].find("error")
    assert error is not None
    assert says in (error.get("message", "") + (error.text or ""))
    for name in ("diff.md", "diff.json"):
        assert not (report_dir / name).exists(), name
    return results


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize(
    ("behaviour", "extra", "says"),
    [
        (not_http, (), "cannot talk to"),
        (resets_mid_stream, (), "cannot talk to"),
        (never_answers, (), "did not answer"),
        (huge_body(), ("--max-response-bytes", "200000"), "too large"),
    ],
    ids=["not-http", "reset", "hang", "huge-body"],
)
def test_a_target_that_cannot_be_used_leaves_an_invalid_record(behaviour: Any, extra: tuple[str, ...], says: str,
                                                               report_dir: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(behaviour, models_ok=False) as server:
        code, err = run_cli("--base-url", server.base_url, "--report-dir", str(report_dir), "--no-html", *FAST,
                            *extra, capsys=capsys)
    assert code == 2
    assert_failed_start(report_dir, err, stage="target", says=says)
    assert not (report_dir / "report.html").exists()  # --no-html: the stale page is gone, none rendered


@pytest.mark.usefixtures("no_env")
def test_a_refused_connection_leaves_an_invalid_record_and_a_report_page(report_dir: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli("--base-url", f"http://127.0.0.1:{free_port()}/v1", "--report-dir", str(report_dir), *FAST,
                        capsys=capsys)
    assert code == 2
    results = assert_failed_start(report_dir, err, stage="target", says="cannot connect to")
    assert results["target"]["builtin"] is False
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "a previous run" not in page
    assert "cannot connect to" in page


@pytest.mark.usefixtures("no_env")
def test_a_garbage_baseline_leaves_an_invalid_record(reference_server: ServerThread, report_dir: Path,
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text("{not json")
    code, err = run_cli("--base-url", reference_server.base_url, "--baseline", str(baseline), "--report-dir",
                        str(report_dir), "--no-html", capsys=capsys)
    assert code == 2
    assert_failed_start(report_dir, err, stage="baseline", says=str(baseline))


@pytest.mark.usefixtures("no_env")
def test_an_unknown_check_pattern_leaves_an_invalid_record(report_dir: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli("--only", "no.such.check", "--report-dir", str(report_dir), "--no-html", capsys=capsys)
    assert code == 2
    results = assert_failed_start(report_dir, err, stage="arguments", says="no check matches")
    assert results["target"]["builtin"] is True
    assert results["planned"] == 0


@pytest.mark.usefixtures("no_env")
def test_bad_flags_leave_an_invalid_record_in_the_report_dir_they_name(report_dir: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli("--report-dir", str(report_dir), "--no-html", "--depth", "deep", capsys=capsys)
    assert code == 2
    results = assert_failed_start(report_dir, err, stage="arguments", says="invalid choice")
    assert results["planned"] > 0


@pytest.mark.usefixtures("no_env")
def test_bad_flags_without_a_report_dir_use_the_default_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_cli("--bogus", capsys=capsys)
    assert code == 2
    assert_failed_start(tmp_path / "reports", err, stage="arguments", says="unrecognized arguments")


@pytest.fixture
def key_in_env(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "sk-start-secret-4242"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return key


def test_the_record_of_a_failed_start_never_holds_the_key(key_in_env: str, report_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://user:{key_in_env}@127.0.0.1:{free_port()}/v1"
    code, err = run_cli("--base-url", url, "--report-dir", str(report_dir), *FAST, capsys=capsys)
    assert code == 2
    assert key_in_env not in err
    assert "http://user:***REDACTED***@127.0.0.1:" in err
    for path in report_dir.iterdir():
        assert key_in_env not in path.read_text(encoding="utf-8"), path


def test_no_html_still_writes_junit(reference_server: ServerThread, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`--no-html` skips the HTML only: its help promises results.json and junit.xml."""
    code = main(["run", "--base-url", reference_server.base_url, "--only", "schema.chat-completion", "--quiet",
                 "--report-dir", str(tmp_path), "--no-html"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert not (tmp_path / "report.html").exists()
    assert [c.get("name") for c in junit_cases(tmp_path / "junit.xml")] == ["schema.chat-completion"]
    assert f"junit.xml     {tmp_path / 'junit.xml'}" in out
