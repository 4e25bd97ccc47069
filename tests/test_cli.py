"""`conformance` end to end: the default certification, a separate server, keys, and exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.cli import main

SERVE_TIMEOUT_S = 15


@pytest.fixture
def served() -> Iterator[callable]:  # type: ignore[valid-type]
    """Start `conformance serve --port 0 ...` in a subprocess; yields a starter returning the base URL."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> str:
        process = subprocess.Popen([sys.executable, "-m", "conformance", "serve", "--port", "0", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert match, f"no URL in {line!r}; stderr: {process.stderr.read() if process.stderr else ''}"
        return match.group(1)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=SERVE_TIMEOUT_S)


def error_line(err: str) -> str:
    """The one line of an error, after the target line `conformance run` prints first."""
    lines = err.strip().splitlines()
    if lines and lines[0].startswith("conformance: target "):
        lines = lines[1:]
    assert len(lines) == 1, err
    assert lines[0].startswith("conformance: error: "), err
    return lines[0]


@pytest.mark.slow
def test_default_run_certifies_the_builtin_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--report-dir", str(tmp_path), "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("CERTIFIED")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["verdict"] == "passed"
    assert results["run_complete"] is True
    assert results["target"]["builtin"] is True
    assert results["executed"] == results["planned"] > 0
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert "<testsuite" in (tmp_path / "junit.xml").read_text()


def test_run_against_a_separately_started_server(served: callable, tmp_path: Path) -> None:  # type: ignore[valid-type]
    base_url = served("--model", "m-1")
    code = main(["run", "--base-url", base_url, "--model", "m-1", "--report-dir", str(tmp_path), "-q",
                 "--depth", "quick", "--no-html"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert code == 0, [c for c in results["checks"] if c["outcome"] != "passed"]
    assert results["target"] == {"base_url": base_url, "model": "m-1", "builtin": False}


def test_model_defaults_to_the_first_listed(served: callable, tmp_path: Path) -> None:  # type: ignore[valid-type]
    base_url = served("--model", "first-model", "--model", "second-model")
    code = main(["run", "--base-url", base_url, "--report-dir", str(tmp_path), "-q", "--no-html",
                 "--only", "schema.chat-completion"])
    assert code == 0
    assert json.loads((tmp_path / "results.json").read_text())["target"]["model"] == "first-model"


def test_keyed_server_without_key_is_a_clear_error(served: callable, tmp_path: Path,  # type: ignore[valid-type]
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    base_url = served("--api-key", "sk-cli-secret")
    code = main(["run", "--base-url", base_url, "--model", "conformance-ref-1", "--report-dir", str(tmp_path)])
    line = error_line(capsys.readouterr().err)
    assert code == 2
    assert "401" in line
    assert "--api-key" in line


def test_keyed_server_with_key_passes(served: callable, tmp_path: Path,  # type: ignore[valid-type]
                                      capsys: pytest.CaptureFixture[str]) -> None:
    base_url = served("--api-key", "sk-cli-secret")
    code = main(["run", "--base-url", base_url, "--api-key", "sk-cli-secret", "--report-dir", str(tmp_path),
                 "-q", "--depth", "quick", "--no-html"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sk-cli-secret" not in out
    assert "sk-cli-secret" not in (tmp_path / "results.json").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--base-url", "http://127.0.0.1:9/v1"], "cannot connect"),
        (["run", "--base-url", "not a url"], "must be an http(s) URL"),
        (["run", "--bogus"], "unrecognized arguments"),
        (["run", "--concurrency", "0"], "must be >= 1"),
        (["run", "--only", "no.such.check"], "no check matches"),
        (["run", "--depth", "deep"], "invalid choice"),
        (["serve", "--fault", "no-such-fault"], "unknown fault"),
        (["report", "/nonexistent/results.json"], "does not exist"),
        ([], "required"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # a failed `run` leaves its record in ./reports
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in error_line(err)
    assert "Traceback" not in err


def test_cli_subprocess_has_no_traceback_on_refused_connection(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "conformance", "run", "--base-url", "http://127.0.0.1:9/v1"],
                          capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 2
    assert error_line(done.stderr).startswith("conformance: error: cannot connect")
    assert "Traceback" not in done.stderr
    assert json.loads((tmp_path / "reports" / "results.json").read_text())["verdict"] == "invalid"


def test_checks_lists_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checks"]) == 0
    table = capsys.readouterr().out
    assert "usage.total-is-sum" in table
    assert "MUST" in table
    assert main(["checks", "--json"]) == 0
    catalogue = json.loads(capsys.readouterr().out)
    ids = [c["id"] for c in catalogue]
    assert len(ids) == len(set(ids))
    assert all(c["clause"]["quote"] and c["level"] in ("MUST", "SHOULD", "INFO") for c in catalogue)


def test_serve_lists_faults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--list-faults"]) == 0
    listing = capsys.readouterr().out
    assert "usage-total-off-by-one" in listing
    assert "sse-crlf" in listing
