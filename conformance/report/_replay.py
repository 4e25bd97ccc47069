"""A pytest plugin that replays results.json as test items, so that pytest-html and pytest's JUnit
writer render reports from results.json alone (never from a live run).

Verdict → pytest outcome → JUnit element:
    passed                → pass     → <testcase>
    failed                → failure  → <failure>
    error                 → error    → <error>   (raised in setup: never counted as non-conformance)
    skipped, unsupported, not_applicable, inconclusive → skipped → <skipped>
Each test's name is the check ID; its JUnit classname is `conformance.<feature>`, its time the
check's duration. A run that did not judge every planned check never reads as a pass in CI: each
planned check that never ran is an error (`conformance.not-executed`), and so is a `run-complete`
test (`conformance.run`). The suite is named after the target, and its time and timestamp are the
run's (from results.json), not the few milliseconds the replay took.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .._model import Clause, Verdict
from . import _html
from ._results import duration, exchange_senders, flaky_note, run_verdict
from .outcomes import enact, failure_text

RESULTS_KEY = pytest.StashKey[dict[str, Any]]()


class ResultsFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        results = self.config.stash[RESULTS_KEY]
        for check in replayed(results):
            yield CheckItem.from_parent(self, name=check["id"], check=check)


def replayed(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The checks, plus an error item for each planned check that never ran and for an unfinished run."""
    checks = list(results["checks"])
    for check_id in results.get("not_executed", []):
        checks.append(_pseudo(check_id, "not-executed", "not executed: the run stopped before this check sent a "
                              f"request ({results.get('reason') or 'budget or deadline'})"))
    verdict = run_verdict(results)
    if verdict in ("incomplete", "invalid"):
        checks.append(_pseudo("run-complete", "run", f"the run is {verdict} and certifies nothing: "
                              f"{results.get('reason') or 'not every planned check was judged'}"))
    return checks


def _pseudo(check_id: str, feature: str, message: str) -> dict[str, Any]:
    return {"id": check_id, "level": "-", "feature": feature, "outcome": "error", "message": message,
            "description": message, "duration_s": 0.0, "pseudo": True,
            "clause": {"source": "suite", "section": "run",
                       "quote": "A truncated or aborted run never reads as a pass."}}


class CheckItem(pytest.Item):
    def __init__(self, *, check: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.user_properties.extend(
            [("level", check["level"]), ("feature", check["feature"]), ("outcome", check["outcome"]),
             ("clause", f"{check['clause']['source']} § {check['clause']['section']}")]
        )

    def setup(self) -> None:
        _set_junit_classname(self, f"conformance.{self.check['feature']}")
        enact(Verdict(self.check["outcome"]), self.check["message"], flaky_note(self.check), phase="setup")

    def runtest(self) -> None:
        enact(Verdict(self.check["outcome"]), self.check["message"], flaky_note(self.check), phase="call")

    def _repr_failure_py(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        # pytest 9.1 formats a setup error here, not through repr_failure: without this, a replayed error
        # gets a full traceback of the replay itself (0.16 s each: 85 errors cost 14 s of rendering).
        text = self._verdict_text(excinfo)
        return text if text is not None else super()._repr_failure_py(excinfo, style)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        text = self._verdict_text(excinfo)
        return text if text is not None else str(super().repr_failure(excinfo))

    def _verdict_text(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str | None:
        clause = self.check["clause"]
        return failure_text(excinfo.value, self.check["level"], self.check["id"],
                            clause=Clause(clause["source"], clause["section"], clause["quote"]))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.check['id']} [{self.check['level']}]"


def _set_junit_classname(item: pytest.Item, classname: str) -> None:
    """pytest derives classname from the node path (`results.json`); CI systems group by it."""
    from .._compat import junit_reporter

    reporter = junit_reporter(item.config, item.nodeid)
    if reporter is not None:
        reporter.add_attribute("classname", classname)


class ReplayPlugin:
    def __init__(self, results: dict[str, Any], results_path: Path) -> None:
        self.results = results
        self.results_path = results_path
        self.by_id = {c["id"]: c for c in replayed(results)}
        self.senders = exchange_senders(results)

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
        """The check's duration is the test's (setup and teardown take none); its detail is the row's HTML."""
        report = yield
        if isinstance(item, CheckItem):
            judged = report.when == "call" or (report.when == "setup" and report.failed)
            report.duration = float(item.check.get("duration_s", 0.0)) if judged else 0.0
            if judged:
                from pytest_html import extras

                detail = _html.row_extra(item.check, self.senders.get(item.check["id"], []))
                report.extras = [extras.html(detail)]
        return report

    # -- pytest-metadata / pytest-html hooks ----------------------------------------------------
    def pytest_metadata(self, metadata: dict[str, Any]) -> None:
        """No Environment table: the run's facts are in the certification summary, and the machine that
        replayed results.json is not the one that ran the checks."""
        metadata.clear()

    def pytest_html_report_title(self, report: Any) -> None:
        report.title = _html.title(self.results)

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str],
                                    session: pytest.Session) -> None:
        prefix.extend(_html.summary_sections(self.results, self.senders))

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        # pytest-html writes 25 ms but 00:00:09 and sorts by parsing those: a column of our own instead.
        cells[2] = '<th class="sortable" data-column-type="elapsed">Duration</th>'
        cells[1] = '<th class="sortable" data-column-type="testId">Check ID</th>'
        cells.insert(2, '<th class="sortable" data-column-type="level">Level</th>')
        cells.insert(3, '<th class="sortable" data-column-type="feature">Feature</th>')
        cells[:] = [cell for cell in cells if ">Links<" not in cell]  # no check has a link to list

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        check = self._check_of(report)
        if check is None:
            return
        seconds = float(check.get("duration_s", 0.0))
        # pytest-html sorts a column by its cell's HTML as text: the comment, zero-padded ms, orders it.
        cells[2] = f'<td class="col-elapsed"><!--{round(seconds * 1000):012d}-->{duration(seconds)}</td>'
        cells[1] = f'<td class="col-testId">{_html.esc(check["id"])}</td>'
        cells.insert(2, f'<td class="col-level">{_html.esc(check["level"])}</td>')
        cells.insert(3, f'<td class="col-feature">{_html.esc(check["feature"])}</td>')
        cells[:] = [cell for cell in cells if "col-links" not in cell]

    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        """No log box: pytest's failure text repeats what the check's detail (the row's extra HTML) says."""
        if self._check_of(report) is not None:
            data[:] = []

    def _check_of(self, report: Any) -> dict[str, Any] | None:
        return self.by_id.get(report.nodeid.rsplit("::", 1)[-1])


def render(results_path: Path, html_path: Path | None, junit_path: Path | None) -> int:
    """Render report.html and junit.xml from results.json with pytest-html and pytest's junitxml."""
    results = json.loads(results_path.read_text(encoding="utf-8"))
    args = [
        str(results_path),
        "-q",
        *_plugin_args(),
        "--rootdir", str(results_path.parent),
        "-o", "render_collapsed=passed",
        "-o", "junit_family=xunit2",
        "-W", "ignore::pytest.PytestAssertRewriteWarning",
    ]
    if html_path is not None:
        args += ["--html", str(html_path), "--self-contained-html"]
    if junit_path is not None:
        args += ["--junitxml", str(junit_path)]
    sink = io.StringIO()
    # An empty ini, so the user's own pytest configuration never changes how reports render.
    with tempfile.TemporaryDirectory(prefix="conformance-render-") as tmp, contextlib.redirect_stdout(sink):
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        code = pytest.main([*args, "-c", str(ini)], plugins=[ReplayPlugin(results, results_path)])
    if junit_path is not None and junit_path.is_file():
        _finish_junit(junit_path, results)
    return int(code)


def _finish_junit(path: Path, results: dict[str, Any]) -> None:
    """What pytest's writer cannot know: the suite is the run (its target, duration, start, verdict)."""
    tree = ET.parse(path)
    root = tree.getroot()
    target = results["target"]
    root.set("name", "openai-conformance")
    root.set("time", f"{float(results['duration_s']):.3f}")
    for suite in root.iter("testsuite"):
        suite.set("name", f"openai-conformance: {target['model']} @ {target['base_url']}")
        suite.set("time", f"{float(results['duration_s']):.3f}")
        suite.set("timestamp", str(results["started_at"]))
        properties = suite.find("properties")
        if properties is None:
            properties = ET.Element("properties")
            suite.insert(0, properties)
        facts = {"base_url": target["base_url"], "model": target["model"], "profile": results["profile"],
                 "depth": results["depth"], "verdict": run_verdict(results),
                 "suite_version": results["suite"]["version"]}
        for name, value in facts.items():
            ET.SubElement(properties, "property", name=name, value=str(value))
    tmp = path.with_name(path.name + ".tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)


def _plugin_args() -> list[str]:
    """Load only pytest-html and pytest-metadata: autoloading every installed plugin costs seconds."""
    if pytest.version_tuple >= (8, 4):
        return ["--disable-plugin-autoload", "-p", "pytest_metadata.plugin", "-p", "pytest_html.plugin",
                "-p", "no:cacheprovider"]
    return ["-p", "no:cacheprovider", "-p", "no:conformance", "-p", "no:randomly", "-p", "no:hypothesispytest",
            "-p", "no:schemathesis", "-p", "no:anyio"]

