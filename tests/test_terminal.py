"""What `conformance run` prints while it runs and when it ends, on a terminal and in a CI log.

Without a TTY a long run must still show it is alive: a plain line every 10 checks or every 10 s.
The failing-check list shows what was expected and what was received. A run leaves no hypothesis
cache (`.hypothesis/`) in the user's working directory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import ServerFactory, certify

from conformance._model import CheckFinished, CheckResult, RunStarted, Verdict
from conformance.checks import all_checks
from conformance.cli import main
from conformance.refserver import ServerThread
from conformance.report import Results
from conformance.report._terminal import Progress, summary


class Log:
    """A CI log: not a terminal."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def finished(progress: Progress, done: int, planned: int, verdict: Verdict = Verdict.PASSED, requests: int = 2) -> None:
    spec = all_checks()[done % len(all_checks())].spec
    result = CheckResult(spec, verdict, verdict.value, 0.1, requests=requests)
    progress(CheckFinished(result, done, planned))


def test_a_ci_log_gets_a_plain_line_every_ten_checks() -> None:
    log, clock = Log(), Clock()
    progress = Progress(log, enabled=False, plain=True, clock=clock)
    progress(RunStarted(25))
    for done in range(1, 26):
        clock.now += 0.1
        finished(progress, done, 25, Verdict.FAILED if done == 3 else Verdict.PASSED)
    assert log.lines == [
        "conformance: 10/25 checks · 20 requests · 1 failed · 1.0s",
        "conformance: 20/25 checks · 40 requests · 1 failed · 2.0s",
    ]
    assert "\r" not in log.text
    assert "\x1b" not in log.text


def test_a_ci_log_gets_a_plain_line_every_ten_seconds_even_without_a_finished_check() -> None:
    log, clock = Log(), Clock()
    progress = Progress(log, enabled=False, plain=True, clock=clock)
    progress(RunStarted(68))
    clock.now += 4
    finished(progress, 1, 68, Verdict.ERROR)
    progress.heartbeat()
    assert log.lines == []
    clock.now += 6.5  # a long check is running: nothing finishes for a while
    progress.heartbeat()
    assert log.lines == ["conformance: 1/68 checks · 2 requests · 0 failed · 1 error · 10.5s"]
    clock.now += 3
    finished(progress, 2, 68)
    progress.heartbeat()
    assert len(log.lines) == 1  # the next line is due 10 s after the last one
    clock.now += 7
    finished(progress, 3, 68)
    assert log.lines[-1] == "conformance: 3/68 checks · 6 requests · 0 failed · 1 error · 20.5s"


def test_the_progress_ticker_stops_with_the_run() -> None:
    log = Log()
    progress = Progress(log, enabled=False, plain=True)
    with progress.ticking(interval=0.01):
        progress(RunStarted(1))
    assert progress.ticker_stopped


def test_a_terminal_gets_no_plain_lines_and_quiet_gets_nothing() -> None:
    for progress in (Progress(Log(), enabled=True, plain=False), Progress(Log(), enabled=False, plain=False)):
        progress(RunStarted(10))
        for done in range(1, 11):
            finished(progress, done, 10)
        progress.heartbeat()
        assert "conformance: " not in progress.stream.text  # type: ignore[attr-defined]


def test_a_long_cli_run_in_ci_prints_plain_progress(reference_server: ServerThread, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--base-url", reference_server.base_url, "--only", "stream.*", "--depth", "quick",
                 "--report-dir", str(tmp_path), "--no-html"])
    out, err = capsys.readouterr()
    assert code == 0, out
    assert any(line.startswith("conformance: 10/") for line in err.splitlines()), err
    assert "\r" not in err
    assert "\x1b" not in err


def test_the_failing_list_shows_expected_and_received(start_server: ServerFactory) -> None:
    with start_server(faults=["usage-total-off-by-one"]) as server:
        results: dict[str, Any] = certify(server.base_url, only=("usage.total-is-sum",)).to_json()
    failure = results["checks"][0]["failures"][0]
    lines = summary(Results.from_json(results), {}).splitlines()
    failing = lines.index("  Failing")  # after the root causes, which name the check too
    at = next(i for i, line in enumerate(lines) if i > failing and "usage.total-is-sum" in line)
    assert lines[at].split()[0] == "MUST"
    assert lines[at].endswith(f"Expected: {failure['expected']}"[:80])
    assert lines[at + 1].strip().startswith("Received: ")
    assert failure["received"][:40] in lines[at + 1]
    assert lines[at + 1].index("Received") == lines[at].index("Expected")
    assert all(len(line) <= 160 for line in lines)


def test_a_run_leaves_no_hypothesis_folder_in_the_working_directory(reference_server: ServerThread,
                                                                     tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "conformance", "run", "--base-url", reference_server.base_url,
                           "--only", "params.temperature.bounds", "--only", "fuzz.schemathesis.positive", "-q",
                           "--no-html"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]
