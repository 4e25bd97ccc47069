"""The pytest11 plugin, from the outside: a separate dummy project runs `python -m pytest` in a
subprocess (the plugin loads through its entry point, as in any project that installed the package).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hostile_servers import free_port
from support import ServerFactory

from conformance import Limits
from conformance._options import LIMIT_OPTIONS
from conformance.cli import build_parser
from conformance.refserver import ServerConfig, ServerThread

HEAVY = ("httpx", "hypothesis", "schemathesis", "jsonschema", "starlette", "openai", "conformance._engine",
         "conformance._pytest_impl")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A provider's own project: a conftest fixture, one test, strict pytest settings."""
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers --strict-config\n")
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        import sys

        import pytest


        @pytest.fixture
        def answer():
            return 42


        def pytest_sessionfinish(session):
            # What the plugin loaded into a run that did not ask for it.
            with open("modules.txt", "w") as f:
                f.write(" ".join(sorted(m for m in sys.modules if m.startswith("conformance"))))
    """))
    (tmp_path / "test_own.py").write_text("def test_own(answer):\n    assert answer == 42\n")
    return tmp_path


def pytest_run(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PYTEST_ADDOPTS")}
    # Other installed plugins are left out: schemathesis' and hypothesis' cost ~2 s of startup per run.
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "-p", "no:schemathesis", "-p", "no:hypothesispytest", *args],
                          cwd=project, capture_output=True, text=True, timeout=180, env={**clean, **(env or {})},
                          check=False)


def test_the_entry_module_imports_nothing_heavy() -> None:
    code = (f"import sys, conformance.pytest_plugin; print([m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_without_the_option_the_plugin_does_nothing(project: Path) -> None:
    done = pytest_run(project, "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "conformance" not in done.stdout.lower()
    assert not (project / "reports").exists()
    loaded = (project / "modules.txt").read_text().split()
    assert "conformance._pytest_impl" not in loaded
    assert "conformance.checks" not in loaded


def test_checks_are_collected_as_items_named_by_check_id(project: Path, reference_server: ServerThread) -> None:
    done = pytest_run(project, "--conformance-base-url", reference_server.base_url, "--co", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line for line in done.stdout.splitlines() if line.startswith("conformance::")]
    assert "conformance::usage.total-is-sum" in ids
    assert "conformance::stream.done-terminator" in ids
    assert "test_own.py::test_own" in done.stdout  # the project's own tests are untouched
    # Collecting costs nothing: no request, no report.
    assert not (project / "reports").exists()


def test_a_run_with_k_writes_the_same_reports_as_conformance_run(project: Path,
                                                                 reference_server: ServerThread) -> None:
    done = pytest_run(project, "--conformance-base-url", reference_server.base_url, "--conformance-report-dir",
                      "out", "-k", "usage or sdk.create or auth.missing-key", "-rA")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED conformance::usage.total-is-sum" in done.stdout
    assert "SKIPPED" in done.stdout  # auth.missing-key: no API key given
    assert "PARTIAL RUN" in done.stdout  # -k is a selection: never a certification
    results = json.loads((project / "out" / "results.json").read_text())
    ran = {c["id"]: c["outcome"] for c in results["checks"]}
    assert all("usage" in i or i in ("sdk.create", "auth.missing-key") for i in ran), sorted(ran)
    assert ran["usage.total-is-sum"] == "passed"
    assert ran["auth.missing-key"] == "not_applicable"
    assert results["planned"] == results["executed"] == len(ran)
    assert results["target"]["base_url"] == reference_server.base_url
    assert results["verdict"] == "partial"
    assert results["selection"] == ["-k usage or sdk.create or auth.missing-key"]
    html = (project / "out" / "report.html").read_text()
    assert "usage.total-is-sum" in html
    assert (project / "out" / "junit.xml").is_file()


def test_a_faulty_server_fails_the_check_and_the_env_key_is_never_written(project: Path,
                                                                          start_server: ServerFactory) -> None:
    key = "sk-plugin-secret-5150"
    with start_server(faults=["usage-total-off-by-one"], api_key=key) as server:
        done = pytest_run(project, "--conformance-base-url", server.base_url, "-k",
                          "total-is-sum or auth.wrong-key or test_own", "--conformance-report-dir", "out",
                          env={"OPENAI_API_KEY": key})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED conformance::usage.total-is-sum" in done.stdout
    assert "Expected:" in done.stdout
    assert "Received:" in done.stdout
    assert "1 failed, 2 passed" in done.stdout  # auth.wrong-key passed: the key came from OPENAI_API_KEY
    results = json.loads((project / "out" / "results.json").read_text())
    assert {c["id"]: c["outcome"] for c in results["checks"]} == {"auth.wrong-key": "passed",
                                                                  "usage.total-is-sum": "failed"}
    assert results["verdict"] == "failed"
    for path in (project / "out").iterdir():
        assert key not in path.read_text(encoding="utf-8", errors="replace"), path
    assert key not in done.stdout


def test_an_unreachable_target_ends_the_session_in_one_line(project: Path) -> None:
    """Not one error per check with its traceback: one line, pytest's usage-error exit code."""
    done = pytest_run(project, "--conformance-base-url", f"http://127.0.0.1:{free_port()}/v1",
                      "--conformance-report-dir", "out")
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output
    said = [line for line in output.splitlines() if "cannot connect to" in line]
    assert len(said) == 1, output
    assert "--conformance-base-url right?" in said[0]
    assert "Traceback" not in output
    assert "ERROR conformance::" not in output
    assert len(output.splitlines()) < 15, output
    results = json.loads((project / "out" / "results.json").read_text())
    assert (results["verdict"], results["run_complete"], results["start_error"]["stage"]) == ("invalid", False,
                                                                                              "target")
    assert results["executed"] == 0


def test_target_advice_names_the_plugins_own_options(project: Path, start_server: ServerFactory) -> None:
    with start_server(api_key="sk-plugin-advice") as server:
        done = pytest_run(project, "--conformance-base-url", server.base_url, "-k", "usage.present")
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "answered 401: pass --conformance-api-key or set OPENAI_API_KEY" in output
    assert " --api-key" not in output


def test_collecting_or_running_only_own_tests_sends_nothing(project: Path) -> None:
    """No check selected: no preflight, so an unreachable target is no error."""
    done = pytest_run(project, "--conformance-base-url", f"http://127.0.0.1:{free_port()}/v1", "-k", "test_own")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_spending_caps_stop_the_session_incomplete(project: Path, reference_server: ServerThread) -> None:
    done = pytest_run(project, "--conformance-base-url", reference_server.base_url, "--conformance-max-requests", "1",
                      "--conformance-report-dir", "out", "-k", "schema.chat-completion or stream.done-terminator "
                      "or stream.content-type or usage.present")
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.INTERRUPTED, output  # like `conformance run`'s exit 2
    assert "--max-requests 1 reached" in output
    assert "Traceback" not in output
    results = json.loads((project / "out" / "results.json").read_text())
    assert results["verdict"] == "incomplete"
    assert results["requests"] == 1
    assert results["config"]["limits"]["max_requests"] == 1
    assert results["executed"] + len(results["not_executed"]) == results["planned"] == 4


def test_the_plugin_takes_every_bound_of_the_cli(project: Path) -> None:
    plugin_help = pytest_run(project, "--help").stdout
    cli_help = run_help()
    for option in LIMIT_OPTIONS:
        assert re.search(rf"--conformance-{option.name}(?![\w-])", plugin_help), option.name
        assert re.search(rf"\s--{option.name}(?![\w-])", cli_help), option.name
    assert "--conformance-depth" in plugin_help
    assert "--conformance-profile" in plugin_help
    assert "--conformance-strict" in plugin_help


def test_strict_counts_should_as_must_in_the_plugin_too(project: Path) -> None:
    """A lenient server (legal by the document) passes; under --conformance-strict its SHOULD failure fails."""
    with ServerThread(ServerConfig(variants=frozenset({"any-model"}))) as server:
        lenient = pytest_run(project, "--conformance-base-url", server.base_url, "--conformance-report-dir", "out",
                             "-k", "errors.unknown-model or usage.present")
        strict = pytest_run(project, "--conformance-base-url", server.base_url, "--conformance-report-dir", "strict",
                            "--conformance-strict", "-k", "errors.unknown-model or usage.present")
    lenient_results = json.loads((project / "out" / "results.json").read_text())
    strict_results = json.loads((project / "strict" / "results.json").read_text())
    assert (lenient_results["verdict"], lenient_results["strict"]) == ("partial", False)
    assert (strict_results["verdict"], strict_results["strict"]) == ("failed", True)
    assert strict.returncode != 0, strict.stdout
    assert "errors.unknown-model" in lenient.stdout


def run_help() -> str:
    """`conformance run --help`."""
    subparsers = next(a for a in build_parser()._actions if isinstance(a.choices, dict) and "run" in a.choices)
    assert isinstance(subparsers.choices, dict)
    return str(subparsers.choices["run"].format_help())


def test_a_bad_bound_is_a_usage_error(project: Path) -> None:
    done = pytest_run(project, "--conformance-base-url", "http://127.0.0.1:9/v1", "--conformance-max-requests", "0")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--conformance-max-requests: 0 must be >= 1" in done.stderr


def test_option_defaults_are_the_library_defaults() -> None:
    defaults = Limits()
    for option in LIMIT_OPTIONS:
        assert option.default == getattr(defaults, option.field), option.name


def test_a_bad_base_url_is_one_usage_line(project: Path) -> None:
    done = pytest_run(project, "--conformance-base-url", "ftp://example")
    assert done.returncode == 4  # pytest's usage error
    assert "--conformance-base-url 'ftp://example'" in done.stderr
