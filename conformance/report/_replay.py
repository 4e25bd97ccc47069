"""A pytest plugin that replays results.json as test items, so that pytest-html and pytest's JUnit
writer render reports from results.json alone (never from a live run).

Passed → pass, failed → failure, error → error (raised in setup), skipped/unsupported → skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import _html

RESULTS_KEY = pytest.StashKey[dict[str, Any]]()


class CheckFailure(Exception):
    """The target violated the check's clause."""


class HarnessError(Exception):
    """The check could not be judged (network or harness); never non-conformance."""


class ResultsFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        results = self.config.stash[RESULTS_KEY]
        for check in results["checks"]:
            yield CheckItem.from_parent(self, name=check["id"], check=check)


class CheckItem(pytest.Item):
    def __init__(self, *, check: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.user_properties.extend(
            [("level", check["level"]), ("feature", check["feature"]), ("outcome", check["outcome"])]
        )

    def setup(self) -> None:
        if self.check["outcome"] == "error":
            raise HarnessError(self.check["message"])

    def runtest(self) -> None:
        outcome = self.check["outcome"]
        if outcome == "failed":
            raise CheckFailure(self.check["message"])
        if outcome in ("skipped", "unsupported"):
            pytest.skip(f"{outcome}: {self.check['message']}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, (CheckFailure, HarnessError)):
            kind = "FAILED" if isinstance(excinfo.value, CheckFailure) else "ERROR (not counted as non-conformance)"
            return f"[{self.check['level']}] {self.check['id']} {kind}\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.check['id']} [{self.check['level']}]"


class ReplayPlugin:
    def __init__(self, results: dict[str, Any], results_path: Path) -> None:
        self.results = results
        self.results_path = results_path
        self.by_id = {c["id"]: c for c in results["checks"]}

    @pytest.hookimpl
    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[RESULTS_KEY] = self.results

    @pytest.hookimpl
    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        if file_path.resolve() == self.results_path.resolve():
            return ResultsFile.from_parent(parent, path=file_path)
        return None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if isinstance(item, CheckItem) and report.when == "call":
            report.duration = float(item.check.get("duration_s", 0.0))
        return report

    # -- pytest-html hooks ----------------------------------------------------------------------
    def pytest_html_report_title(self, report: Any) -> None:
        report.title = _html.title(self.results)

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str],
                                    session: pytest.Session) -> None:
        prefix.extend(_html.summary_sections(self.results))

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, '<th class="sortable" data-column-type="level">Level</th>')
        cells.insert(3, '<th class="sortable" data-column-type="feature">Feature</th>')

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        check = self._check_of(report)
        cells.insert(2, f'<td class="col-level">{check["level"] if check else ""}</td>')
        cells.insert(3, f'<td class="col-feature">{check["feature"] if check else ""}</td>')

    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        check = self._check_of(report)
        if check is not None and report.when in ("call", "setup"):
            data[:] = [_html.check_detail(check, self.results)]

    def _check_of(self, report: Any) -> dict[str, Any] | None:
        return self.by_id.get(report.nodeid.rsplit("::", 1)[-1])


def render(results_path: Path, html_path: Path | None, junit_path: Path | None) -> int:
    """Render report.html and junit.xml from results.json with pytest-html and pytest's junitxml."""
    results = json.loads(results_path.read_text(encoding="utf-8"))
    args = [
        str(results_path),
        "-q",
        "-p", "no:cacheprovider",
        "-p", "no:conformance",
        "-p", "no:randomly",
        "-p", "no:hypothesispytest",
        "--rootdir", str(results_path.parent),
        "-c", str(_empty_ini()),
        "-o", "render_collapsed=passed",
        "-o", "junit_family=xunit2",
        "-o", "junit_suite_name=openai-conformance",
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
    ]
    if html_path is not None:
        args += ["--html", str(html_path), "--self-contained-html"]
    if junit_path is not None:
        args += ["--junitxml", str(junit_path)]
    import contextlib
    import io

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        code = pytest.main(args, plugins=[ReplayPlugin(results, results_path)])
    return int(code)


def _empty_ini() -> Path:
    """An empty ini, so the user's own pytest configuration never changes how reports render."""
    import tempfile

    ini = Path(tempfile.gettempdir()) / "conformance-render.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")
    return ini
