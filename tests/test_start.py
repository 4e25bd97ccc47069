"""A run that cannot start: one clear line, exit 2, and a truthful record in the report dir.

Whatever stops `conformance run` before its first check (a refused, reset, silent or flooding
target, something that is not HTTP, a garbage baseline, bad flags) leaves results.json saying
`invalid` and `run_complete: false`, a junit.xml with one erroring test so CI shows red, and none
of the previous run's reports.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_servers import (
    ASGIServer,
    Connection,
    HostileServer,
    InFlight,
    Request,
    completion,
    free_port,
    huge_body,
    json_response,
    never_answers,
    not_http,
    resets_mid_stream,
    response_head,
)
from support import ServerFactory

from conformance._start import model_refusal
from conformance.cli import main
from conformance.http import Exchange
from conformance.refserver import ServerConfig, ServerThread
from conformance.refserver.app import create_app
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


# -- mistakes cost nothing and say what to do -----------------------------------------------------------
@pytest.fixture
def counted() -> Iterator[tuple[InFlight, str]]:
    """The reference server, counting every request it gets."""
    app = InFlight(create_app(ServerConfig(models=("ref-a", "ref-b"))))
    with ASGIServer(app) as server:
        yield app, server.base_url


@pytest.mark.usefixtures("no_env")
def test_a_base_url_without_v1_is_caught_at_the_preflight(counted: tuple[InFlight, str], report_dir: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    app, base_url = counted
    root = base_url.removesuffix("/v1")
    code, err = run_cli("--base-url", root, "--model", "ref-a", "--report-dir", str(report_dir), "--no-html",
                        capsys=capsys)
    assert code == 2
    assert_failed_start(report_dir, err, stage="target", says=f"did you mean --base-url {root}/v1 ?")
    # GET /models, GET /v1/models, and the chat route's first probe (with --model given it goes out while the
    # target is reached; the other routes are never tried): not a run of 404s.
    assert app.total <= 3


@pytest.mark.usefixtures("no_env")
def test_a_model_the_target_refuses_stops_at_once_naming_the_listed_ones(counted: tuple[InFlight, str],
                                                                         report_dir: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    app, base_url = counted
    code, err = run_cli("--base-url", base_url, "--model", "gpt-nope", "--report-dir", str(report_dir), "--no-html",
                        capsys=capsys)
    assert code == 2
    assert_failed_start(report_dir, err, stage="target", says="--model 'gpt-nope' is refused by")
    assert "does not exist" in err  # the target's own words
    assert "GET /models lists ref-a, ref-b" in err
    # GET /models, one chat request with max_tokens 1, and the chat route's first probe (sent while the target
    # is reached, since --model is given).
    assert app.total == 3


@pytest.mark.usefixtures("no_env")
def test_a_listed_model_costs_no_probe(counted: tuple[InFlight, str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    app, base_url = counted
    code, _ = run_cli("--base-url", base_url, "--model", "ref-b", "--only", "schema.chat-completion",
                      "--report-dir", str(tmp_path), "--no-html", capsys=capsys)
    assert code == 0
    assert app.total == 2  # GET /models, and finding the chat route (its answer is the check's basic completion)


def accepts_any_model(request: Request, conn: Connection) -> Awaitable[bool]:
    """Lists one model, serves any (as many proxies do)."""
    return conn.send(json_response(completion()))


def route_not_found(request: Request, conn: Connection) -> Awaitable[bool]:
    """FastAPI's 404 for a route it does not have: nothing to do with the model."""
    return conn.send(json_response({"detail": "Not Found"}, status=404))


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("behaviour", [accepts_any_model, route_not_found], ids=["accepted", "route-404"])
def test_an_unlisted_model_without_a_clear_refusal_goes_on(behaviour: Any, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(behaviour) as server:
        code, err = run_cli("--base-url", server.base_url, "--model", "not-listed", "--only",
                            "schema.chat-completion", "--report-dir", str(tmp_path), "--no-html", capsys=capsys)
    results = json.loads((tmp_path / "results.json").read_text())
    assert "start_error" not in results, err
    assert results["executed"] == 1
    assert code == (0 if behaviour is accepts_any_model else 1)


@pytest.mark.usefixtures("no_env")
def test_a_post_route_answering_405_does_not_stop_the_run(start_server: ServerFactory, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The documented API takes chat on GET /v1/models: a 405 on POST is for the checks to judge."""
    with start_server(faults=["post-answers-405"]) as server:
        _, err = run_cli("--base-url", server.base_url, "--model", "unlisted", "--only", "methods.post-chat",
                         "--report-dir", str(tmp_path), "--no-html", capsys=capsys)
    results = json.loads((tmp_path / "results.json").read_text())
    assert "start_error" not in results, err
    assert results["executed"] == 1


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """`python3 -m http.server` on a free port: a web server, not an API."""
    (tmp_path / "index.html").write_text("<!DOCTYPE html><title>my files</title>")
    handler = functools.partial(QuietFiles, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("path", ["/v1", ""])
def test_a_web_server_is_not_an_openai_compatible_api(file_server: str, path: str, report_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli("--base-url", file_server + path, "--model", "gpt-4o-mini", "--report-dir", str(report_dir),
                        "--no-html", capsys=capsys)
    assert code == 2
    assert_failed_start(report_dir, err, stage="target", says="is not an OpenAI-compatible API")
    assert "GET /models answered HTTP 404 text/html" in err


def html_everywhere(request: Request, conn: Connection) -> Awaitable[bool]:
    body = b"<!DOCTYPE html><html><body>Welcome to our product</body></html>"
    return conn.send(response_head(content_type="text/html", length=len(body)) + body)


@pytest.mark.usefixtures("no_env")
def test_an_html_page_is_not_an_openai_compatible_api(report_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(html_everywhere, models_ok=False) as server:
        code, err = run_cli("--base-url", server.base_url, "--report-dir", str(report_dir), "--no-html",
                            capsys=capsys)
    assert code == 2
    assert_failed_start(report_dir, err, stage="target", says="is not an OpenAI-compatible API")
    assert 'GET /models answered HTTP 200 text/html: "<!DOCTYPE html>' in err


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:1/v1/chat/completions", "without /chat/completions: did you mean --base-url "
                                                   "http://127.0.0.1:1/v1 ?"),
        ("http://127.0.0.1:1/v1/models/", "without /models"),
    ],
)
def test_an_endpoint_instead_of_the_base_url_costs_no_request(url: str, says: str, report_dir: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli("--base-url", url, "--report-dir", str(report_dir), "--no-html", capsys=capsys)
    assert code == 2
    assert_failed_start(report_dir, err, stage="arguments", says=says)


# -- where the target came from -------------------------------------------------------------------------
def first_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    main(["run", *argv])
    return capsys.readouterr().err.splitlines()[0]


def test_the_first_line_names_the_target_and_its_origin(reference_server: ServerThread, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "CONFORMANCE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    url = reference_server.base_url
    common = ["--only", "schema.chat-completion", "--report-dir", str(tmp_path), "--no-html"]
    assert first_line(["--base-url", url, *common], capsys) == (
        f"conformance: target {url} (from --base-url) · model: the first of GET /models · no API key")
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-origin-secret")
    monkeypatch.setenv("CONFORMANCE_MODEL", "conformance-ref-1")
    line = first_line(common, capsys)
    assert line == (f"conformance: target {url} (from env OPENAI_BASE_URL) · model conformance-ref-1 "
                    f"(from env CONFORMANCE_MODEL) · API key from env OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert first_line(["--only", "no.such.check", "--report-dir", str(tmp_path)], capsys).startswith(
        "conformance: target the built-in reference server (no --base-url, no OPENAI_BASE_URL)")


def test_a_target_from_the_environment_says_so_in_its_error(report_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    code, err = run_cli("--report-dir", str(report_dir), "--no-html", *FAST, capsys=capsys)
    assert code == 2
    assert_failed_start(report_dir, err, stage="target", says="the target came from env OPENAI_BASE_URL")


# -- the refusal of a model, as real servers word it ----------------------------------------------------
def answer(status: int, payload: Any) -> Exchange:
    return Exchange("POST", "http://x/v1/chat/completions", {}, None, status=status,
                    response_headers={"content-type": "application/json"}, body=json.dumps(payload).encode())


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (404, {"error": {"message": "The model `m` does not exist or you do not have access to it.",
                         "type": "invalid_request_error", "param": None, "code": "model_not_found"}}),  # OpenAI
        (404, {"object": "error", "message": "The model `m` does not exist.", "type": "NotFoundError",
               "param": None, "code": 404}),  # vLLM
        (404, {"error": {"message": 'model "m" not found, try pulling it first', "type": "api_error"}}),  # Ollama
        (400, {"error": {"message": "Invalid model name passed in model=m. Call `/v1/models` to view available "
                                    "models for your key.", "type": "invalid_request_error", "code": "400"}}),
        (400, {"error": "Unknown model: m"}),
    ],
    ids=["openai", "vllm", "ollama", "litellm", "plain"],
)
def test_model_refusals_are_recognised(status: int, payload: Any) -> None:
    assert model_refusal(answer(status, payload), "m")


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (404, {"detail": "Not Found"}),  # the route, not the model
        (405, {"error": {"message": "Method POST is not allowed", "code": "model_not_found"}}),
        (400, {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                    "Use 'max_completion_tokens' instead.", "type": "invalid_request_error",
                         "param": "max_tokens", "code": "unsupported_parameter"}}),
        (400, {"error": {"message": "Invalid value for 'temperature'", "param": "temperature"}}),
        (200, {"error": {"message": "model not found"}}),
        (404, ["not", "an", "object"]),
    ],
    ids=["route-404", "405", "max-tokens", "other-param", "200", "not-an-object"],
)
def test_other_answers_are_no_refusal(status: int, payload: Any) -> None:
    assert model_refusal(answer(status, payload), "m") is None
