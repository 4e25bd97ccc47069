"""Hostile targets: every misbehaviour ends as failures or errors of the affected checks, in bounded
time, with reports written, exit code 1 or 2 and never a traceback.

Error or failure: a bound hit because of what the target sent (too big, too slow, endless) is a
failure of the checks that judged it; no usable answer at all (refused, reset, not HTTP, silence)
is an error, never non-conformance.

The runs use small limits so the module stays fast; `test_hang_with_default_settings` proves the
default bound for a target that hangs. They write results.json (the source every report is rendered
from); the invalid-UTF-8 run also renders report.html and junit.xml, where odd bytes could break them.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore
import pytest
from hostile_servers import (
    HostileServer,
    drips,
    drops_reused_connections,
    free_port,
    huge_body,
    invalid_utf8,
    never_answers,
    not_http,
    resets_mid_stream,
    streams_forever,
)
from support import certify as certify_engine

from conformance.cli import main
from conformance.http import Limits, Recorder, Session, Target
from conformance.http.transport import DeadlineBackend

# Small bounds so each hostile run takes seconds; the defaults are proven separately.
FAST = ["--timeout", "1", "--connect-timeout", "1", "--request-deadline", "2"]
STREAMED = re.compile(r'"stream":\s*true')

# Timed bounds and worker processes: run in one xdist worker, one after another (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("timed")


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    elapsed: float
    report_dir: Path

    @property
    def results(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.report_dir / "results.json").read_text(encoding="utf-8"))
        return document

    def checks(self, outcome: str) -> list[dict[str, Any]]:
        return [c for c in self.results["checks"] if c["outcome"] == outcome]


def certify(base_url: str, report_dir: Path, capsys: pytest.CaptureFixture[str], *extra: str,
            html: bool = False) -> Outcome:
    started = time.monotonic()
    code = main(["run", "--base-url", base_url, "--report-dir", str(report_dir), "--quiet",
                 *([] if html else ["--no-html"]), *extra])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err, elapsed, report_dir)


def assert_contained(outcome: Outcome, within_s: float) -> None:
    """Bounded time, exit 1 or 2, reports written, no traceback."""
    assert outcome.elapsed < within_s, f"took {outcome.elapsed:.1f}s"
    assert outcome.code in (1, 2), outcome.out + outcome.err
    assert "Traceback" not in outcome.out + outcome.err
    assert (outcome.report_dir / "results.json").is_file()
    assert outcome.results["exit_code"] == outcome.code


def assert_one_line_exit_2(outcome: Outcome, within_s: float, says: str) -> None:
    """The preflight could not use the target: one clear line, exit 2, nothing spent."""
    assert outcome.elapsed < within_s, f"took {outcome.elapsed:.1f}s"
    assert outcome.code == 2
    assert "Traceback" not in outcome.out + outcome.err
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"conformance: error: {says}"), outcome.err


def messages(checks: list[dict[str, Any]]) -> str:
    return "\n".join(c["message"] for c in checks)


def transcript_errors(checks: list[dict[str, Any]]) -> str:
    """What the transport said, whichever check's message names it (others may say the breaker tripped)."""
    return "\n".join(t["error"] or "" for c in checks for t in c["transcripts"])


def test_never_answers_chat_is_error_and_the_breaker_ends_the_run(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(never_answers) as server:
        outcome = certify(server.base_url, tmp_path, capsys, *FAST)
    assert_contained(outcome, within_s=30)  # the run takes ~2 s; rendering report.html the rest
    assert outcome.code == 2
    assert outcome.results["verdict"] == "incomplete"
    assert "target stopped answering" in outcome.results["reason"]
    assert "no answer within 1s (read timeout)" in transcript_errors(outcome.checks("error"))
    assert "not run: target stopped answering" in messages(outcome.checks("error"))
    assert not outcome.checks("failed"), "silence is an error, never a failure"


def test_never_answers_at_all_fails_the_preflight_in_one_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(never_answers, models_ok=False) as server:
        outcome = certify(server.base_url, tmp_path, capsys, *FAST)
    assert_one_line_exit_2(outcome, within_s=5, says="http://127.0.0.1")
    assert "did not answer" in outcome.err


def test_drip_is_a_too_slow_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(drips(0.5)) as server:
        outcome = certify(server.base_url, tmp_path, capsys, *FAST)
    assert_contained(outcome, within_s=20)
    failed = outcome.checks("failed")
    assert failed
    assert "too slow: response not complete after" in messages(failed)
    # Every request ran into the deadline: the breaker stopped the run instead of waiting per check.
    assert outcome.code == 2
    assert "target stopped answering" in outcome.results["reason"]


def test_endless_stream_is_a_failure_of_the_stream_checks(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(streams_forever()) as server:
        outcome = certify(server.base_url, tmp_path, capsys, *FAST, "--max-sse-events", "200")
    assert_contained(outcome, within_s=30)
    failed = outcome.checks("failed")
    endless = [c for c in failed if "too many events" in c["message"] or "too slow" in c["message"]]
    assert any("too many events: max_events limit of 200" in c["message"] for c in endless)
    # Only checks that judged a stream were affected; the others ran and were judged on their own merits.
    assert all(any(STREAMED.search(t["request"]["body"] or "") for t in c["transcripts"]) for c in endless)
    assert outcome.checks("passed")


def test_multi_gigabyte_body_is_a_too_large_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(huge_body()) as server:
        outcome = certify(server.base_url, tmp_path, capsys, *FAST, "--max-response-bytes", "200000")
    assert_contained(outcome, within_s=30)
    assert outcome.code == 1, outcome.out
    failed = outcome.checks("failed")
    assert failed
    assert "too large: response larger than 200000 bytes" in messages(failed)
    transcript = failed[0]["transcripts"][0]
    assert transcript["response"]["body_bytes"] == 200_000
    assert transcript["response"]["truncated"]


def test_reset_mid_stream_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(resets_mid_stream) as server:
        outcome = certify(server.base_url, tmp_path, capsys, *FAST)
    assert_contained(outcome, within_s=20)
    assert outcome.code == 2
    assert "Connection reset by peer" in transcript_errors(outcome.checks("error"))
    assert not outcome.checks("failed")


def test_not_http_on_chat_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(not_http) as server:
        outcome = certify(server.base_url, tmp_path, capsys, *FAST)
    assert_contained(outcome, within_s=20)
    assert outcome.code == 2
    assert "RemoteProtocolError" in transcript_errors(outcome.checks("error"))
    assert not outcome.checks("failed")


def test_not_http_at_all_fails_the_preflight_in_one_line(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(not_http, models_ok=False) as server:
        outcome = certify(server.base_url, tmp_path, capsys, *FAST)
    assert_one_line_exit_2(outcome, within_s=5, says="cannot talk to")


def test_invalid_utf8_json_crashes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(invalid_utf8) as server:
        outcome = certify(server.base_url, tmp_path, capsys, *FAST, html=True)
    assert_contained(outcome, within_s=30)
    assert outcome.code == 1
    assert not [c for c in outcome.checks("error") if "harness error" in c["message"]]
    for name in ("results.json", "report.html", "junit.xml"):
        (outcome.report_dir / name).read_bytes().decode("utf-8")  # written, and strictly valid UTF-8


def test_refused_connection_fails_the_preflight_in_one_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    outcome = certify(f"http://127.0.0.1:{free_port()}/v1", tmp_path, capsys, *FAST)
    assert_one_line_exit_2(outcome, within_s=5, says="cannot connect to")


def test_refused_during_the_run_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # /models answers (the preflight passes), then the listener closes: every request is refused.
    with HostileServer(never_answers, refuse_after_models=True) as server:
        outcome = certify(server.base_url, tmp_path, capsys, *FAST)
    assert_contained(outcome, within_s=20)
    assert outcome.code == 2
    assert "target stopped answering" in outcome.results["reason"]
    assert "ConnectError" in transcript_errors(outcome.checks("error"))
    assert not outcome.checks("failed")


def test_a_dropped_keep_alive_connection_is_retried_once_on_a_fresh_one() -> None:
    with HostileServer(drops_reused_connections()) as server:
        result = certify_engine(server.base_url, only=("schema.chat-completion", "stream.done-terminator",
                                                        "usage.completion-bounded"), concurrency=1)
    assert {r.verdict.value for r in result.results} == {"passed"}
    retried = [a for r in result.results for t in r.exchanges for a in t["attempts"]]
    assert retried
    assert all(a["status"] is None and a["error"] for a in retried)  # the dropped attempt is in the transcript


def default_sigint() -> None:
    """A shell that starts the tests in the background ignores SIGINT, and the child would inherit
    that (Python then installs no KeyboardInterrupt handler): give it the terminal's default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_a_hanging_run_exits_at_once(tmp_path: Path) -> None:
    with HostileServer(never_answers) as server:
        child = subprocess.Popen([sys.executable, "-m", "conformance", "run", "--base-url", server.base_url,
                                  "--no-html", "--quiet", "--report-dir", str(tmp_path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                 preexec_fn=default_sigint)  # noqa: PLW1509 - only resets a signal
        # Signal once the run has really started (results.json marks it), whatever the machine's load.
        deadline = time.monotonic() + 30
        results = tmp_path / "results.json"
        while not (results.exists() and "did not finish" in results.read_text()):
            assert time.monotonic() < deadline
            assert child.poll() is None
            time.sleep(0.05)
        time.sleep(1)  # the first requests are in flight and hanging
        child.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = child.communicate(timeout=30)
    assert time.monotonic() - started < 5
    assert child.returncode == 130
    assert "Traceback" not in err


def test_a_connection_opened_after_the_cut_is_cut_too() -> None:
    """Ctrl-C and the breaker cut every connection; a request that passed the breaker just before the cut
    connects afterwards and must not wait out its read timeout (it made Ctrl-C take 20 s now and then)."""
    backend = DeadlineBackend(httpcore.SyncBackend())
    with HostileServer(never_answers) as server:
        backend.cut_all()
        stream = backend.connect_tcp("127.0.0.1", server.port, timeout=5)
        started = time.monotonic()
        assert stream.read(1024, timeout=5) == b""
        stream.close()
    assert time.monotonic() - started < 1


def test_an_environment_proxy_carries_the_requests_and_the_deadline_holds_through_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY is honoured as httpx honours it, and the proxy's connections have the request deadline too."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with HostileServer(drips(0.5)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        session = Session(Target("http://target.invalid/v1", "m"), Limits(read_timeout_s=1, request_deadline_s=2),
                          concurrency=1)
        try:
            models = Recorder(session).request("GET", "/models")
            started = time.monotonic()
            dripped = Recorder(session).request("POST", "/chat/completions", json_body={})
            elapsed = time.monotonic() - started
        finally:
            session.close()
    assert models.status == 200
    assert proxy.requests["GET http://target.invalid/v1/models"] == 1
    assert (dripped.limit_exceeded or "").startswith("too slow: response not complete after 2.0s (request deadline)")
    assert elapsed < 3


@pytest.mark.slow
def test_hang_with_default_settings_ends_within_two_minutes(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """No flags: the default read timeout and the breaker bound a run against a hanging target."""
    with HostileServer(never_answers) as server:
        outcome = certify(server.base_url, tmp_path, capsys)
    assert_contained(outcome, within_s=120)
    assert outcome.code == 2
    assert "target stopped answering" in outcome.results["reason"]
    print(f"hang with defaults: {outcome.elapsed:.1f}s")  # shown with -s, for the README
