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
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .._model import Clause, RunVerdict, Verdict
from . import _html
from ._records import CheckRecord, Results
from ._results import duration, exchange_senders, flaky_note
from .outcomes import enact, failure_text

RESULTS_KEY = pytest.StashKey[Results]()
# The clause of the items that stand for no check of the catalogue.
RUN_CLAUSE = Clause("suite", "run", "A truncated or aborted run never reads as a pass.")


@dataclass(frozen=True, slots=True)
class Replayed:
    """One test item of the replay: a judged check, or an error that stands for a planned check that
    never ran or for an unfinished run (`check` None, level `-`)."""

    id: str
    level: str
    feature: str
    outcome: Verdict
    message: str
    clause: Clause
    duration_s: float = 0.0
    check: CheckRecord | None = None

    @classmethod
    def of(cls, check: CheckRecord) -> Replayed:
        return cls(check.id, check.level.value, check.feature.value, check.outcome, check.message, check.clause,
                   check.duration_s, check)

    @classmethod
    def error(cls, item_id: str, feature: str, message: str) -> Replayed:
        return cls(item_id, "-", feature, Verdict.ERROR, message, RUN_CLAUSE)

    @property
    def flaky_note(self) -> str:
        return flaky_note(self.check) if self.check is not None else ""


class ResultsFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        results = self.config.stash[RESULTS_KEY]
        for replayed_item in replayed(results):
            yield CheckItem.from_parent(self, name=replayed_item.id, replayed=replayed_item)


def replayed(results: Results) -> list[Replayed]:
    """The checks, plus an error item for each planned check that never ran and for an unfinished run."""
    items = [Replayed.of(check) for check in results.checks]
    for check_id in results.not_executed:
        items.append(Replayed.error(check_id, "not-executed", "not executed: the run stopped before this check sent a "
                                    f"request ({results.reason or 'budget or deadline'})"))
    if results.verdict in (RunVerdict.INCOMPLETE, RunVerdict.INVALID):
        items.append(Replayed.error("run-complete", "run", f"the run is {results.verdict} and certifies nothing: "
                                    f"{results.reason or 'not every planned check was judged'}"))
    return items


class CheckItem(pytest.Item):
    def __init__(self, *, replayed: Replayed, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.replayed = replayed
        self.user_properties.extend(
            [("level", replayed.level), ("feature", replayed.feature), ("outcome", replayed.outcome.value),
             ("clause", f"{replayed.clause.source} § {replayed.clause.section}")]
        )

    def setup(self) -> None:
        _set_junit_classname(self, f"conformance.{self.replayed.feature}")
        enact(self.replayed.outcome, self.replayed.message, self.replayed.flaky_note, phase="setup")

    def runtest(self) -> None:
        enact(self.replayed.outcome, self.replayed.message, self.replayed.flaky_note, phase="call")

    def _repr_failure_py(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        # pytest 9.1 formats a setup error here, not through repr_failure: without this, a replayed error
        # gets a full traceback of the replay itself (0.16 s each: 85 errors cost 14 s of rendering).
        text = self._verdict_text(excinfo)
        return text if text is not None else super()._repr_failure_py(excinfo, style)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        text = self._verdict_text(excinfo)
        return text if text is not None else str(super().repr_failure(excinfo))

    def _verdict_text(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str | None:
        item = self.replayed
        return failure_text(excinfo.value, item.level, item.id, clause=item.clause)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.replayed.id} [{self.replayed.level}]"


def _set_junit_classname(item: pytest.Item, classname: str) -> None:
    """pytest derives classname from the node path (`results.json`); CI systems group by it."""
    from .._compat import junit_reporter

    reporter = junit_reporter(item.config, item.nodeid)
    if reporter is not None:
        reporter.add_attribute("classname", classname)


class ReplayPlugin:
    def __init__(self, results: Results, results_path: Path) -> None:
        self.results = results
        self.results_path = results_path
        self.by_id = {item.id: item for item in replayed(results)}
        self.senders = exchange_senders(results.checks)

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
            report.duration = item.replayed.duration_s if judged else 0.0
            if judged:
                from pytest_html import extras

                check = item.replayed.check
                detail = (_html.row_extra(check, self.senders.get(check.id, [])) if check is not None else
                          _html.run_note_extra(item.replayed.message))
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
        item = self._item_of(report)
        if item is None:
            return
        seconds = item.duration_s
        # pytest-html sorts a column by its cell's HTML as text: the comment, zero-padded ms, orders it.
        cells[2] = f'<td class="col-elapsed"><!--{round(seconds * 1000):012d}-->{duration(seconds)}</td>'
        cells[1] = f'<td class="col-testId">{_html.esc(item.id)}</td>'
        cells.insert(2, f'<td class="col-level">{_html.esc(item.level)}</td>')
        cells.insert(3, f'<td class="col-feature">{_html.esc(item.feature)}</td>')
        cells[:] = [cell for cell in cells if "col-links" not in cell]

    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        """No log box: pytest's failure text repeats what the check's detail (the row's extra HTML) says."""
        if self._item_of(report) is not None:
            data[:] = []

    def _item_of(self, report: Any) -> Replayed | None:
        return self.by_id.get(report.nodeid.rsplit("::", 1)[-1])


def render(results: Results, results_path: Path, html_path: Path | None, junit_path: Path | None) -> int:
    """Render report.html and junit.xml from results.json with pytest-html and pytest's junitxml."""
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


def _finish_junit(path: Path, results: Results) -> None:
    """What pytest's writer cannot know: the suite is the run (its target, duration, start, verdict)."""
    tree = ET.parse(path)
    root = tree.getroot()
    target = results.target
    root.set("name", "openai-conformance")
    root.set("time", f"{results.duration_s:.3f}")
    for suite in root.iter("testsuite"):
        suite.set("name", f"openai-conformance: {target.model} @ {target.base_url}")
        suite.set("time", f"{results.duration_s:.3f}")
        suite.set("timestamp", results.started_at)
        properties = suite.find("properties")
        if properties is None:
            properties = ET.Element("properties")
            suite.insert(0, properties)
        facts = {"base_url": target.base_url, "model": target.model, "profile": results.profile.value,
                 "depth": results.depth.value, "verdict": results.verdict.value, "suite_version": results.suite_version}
        for name, value in facts.items():
            ET.SubElement(properties, "property", name=name, value=value)
    tmp = path.with_name(path.name + ".tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)


def _plugin_args() -> list[str]:
    """Load only pytest-html and pytest-metadata: autoloading every installed plugin costs seconds. Nor
    the builtin plugins that watch for unraisable and thread exceptions: a replay runs no code of its
    own, and they end the session with two full garbage collections (50 ms)."""
    quiet = ["-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:threadexception"]
    if pytest.version_tuple >= (8, 4):
        return ["--disable-plugin-autoload", "-p", "pytest_metadata.plugin", "-p", "pytest_html.plugin", *quiet]
    return [*quiet, "-p", "no:conformance", "-p", "no:randomly", "-p", "no:hypothesispytest", "-p", "no:schemathesis",
            "-p", "no:anyio"]

