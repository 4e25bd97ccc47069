"""The heavy half of the pytest plugin, loaded only when `--conformance-base-url` is given.

Each selected check becomes one test item whose name is the check ID (so `-k usage` works). All
items share one engine Session and one SharedExchanges, exactly like `conformance run`; at the end
the collected CheckResults become the same results.json, and report.html/junit.xml are rendered
from it in a subprocess (the renderer is itself a pytest run, which must not nest in this one).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ._engine import RunConfig, RunResult, RunSession, start_failure
from ._model import CheckResult, Depth, Profile, Verdict
from .checks import RegisteredCheck, all_checks, select
from .errors import ConformanceError, TargetUnreachable
from .http import Limits, Target
from .report.outcomes import HarnessError, enact, failure_text, flaky_note

__all__ = ["CatalogueRun", "CheckItem", "ConformancePlugin"]

COLLECTOR_NAME = "conformance"


class CatalogueRun:
    """One engine run (`RunSession`) for the whole pytest session: checks run one at a time as items.

    With `repeat` K, a model-dependent check runs K times in its item; repetition i of every check
    shares its exchanges with repetition i of the others (as `conformance run` does per round).
    """

    def __init__(self, base_url: str, model: str | None, api_key: str | None, depth: Depth, profile: Profile,
                 *, limits: Limits | None = None, strict: bool = False, repeat: int = 1) -> None:
        self.base_url, self.model, self.api_key = base_url, model, api_key
        self.depth, self.profile, self.strict = depth, profile, strict
        self.limits = limits or Limits()
        self.repeat = repeat
        # IDs of the items left after -k/-m/--deselect, in run order.
        self.planned: list[str] = []
        # How pytest narrowed the catalogue (-k, -m, deselection): recorded, never a certification.
        self.selection: tuple[str, ...] = ()
        self._run: RunSession | None = None
        # Why the target cannot be certified (the preflight's one line), once it was tried.
        self.start_error: str | None = None

    def open(self) -> RunSession:
        """Reach the target once (and pick the model) before the first check; ConformanceError if it cannot
        be used (the same start as `conformance run`, its advice naming this plugin's options)."""
        if self.start_error is not None:
            raise TargetUnreachable(self.start_error)
        if self._run is None:
            from ._start import PYTEST_FLAGS

            by_id = {registered.spec.id: registered for registered in all_checks()}
            try:
                self._run = RunSession.open(self._config(), flags=PYTEST_FLAGS,
                                            checks=[by_id[check_id] for check_id in self.planned])
            except ConformanceError as exc:
                self.start_error = str(exc)
                raise
        return self._run

    @property
    def opened(self) -> bool:
        """The target was reached (requests may have been spent even if no check ran)."""
        return self._run is not None

    @property
    def results(self) -> list[CheckResult]:
        return self._run.results if self._run is not None else []

    @property
    def stopped(self) -> str | None:
        """Why no further check can run (budget, deadline, target down), or None."""
        return self._run.stopped if self._run is not None else None

    def run(self, registered: RegisteredCheck) -> CheckResult | None:
        """The check's result; None when the run had stopped before the check sent anything."""
        try:
            run = self.open()
        except ConformanceError as exc:
            return CheckResult(registered.spec, Verdict.ERROR, f"not run: {exc}", 0.0)
        return run.run_check(registered)

    def close(self) -> None:
        """End the run (its result is kept for `run_result`)."""
        if self._run is not None:
            self._run.finish()

    def _config(self) -> RunConfig:
        return RunConfig(target=Target(self.base_url, self.model or "", self.api_key), limits=self.limits,
                         depth=self.depth, profile=self.profile, concurrency=1, strict=self.strict,
                         repeat=self.repeat, selection=self.selection)

    def start_failure(self) -> dict[str, Any]:
        """results.json of a session whose target could not be used (as `conformance run` writes it)."""
        return start_failure(self._config(), len(self.planned), self.start_error or "", "target")

    def run_result(self) -> RunResult:
        """The same RunResult `conformance.run()` returns, from the checks pytest ran."""
        return self.open().finish()


class CatalogueCollector(pytest.Collector):
    """The parent of every check item: node ID `conformance`, so items are `conformance::<check id>`."""

    def __init__(self, *, catalogue: CatalogueRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.catalogue = catalogue

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        chosen = select(all_checks(), depth=self.catalogue.depth, profile=self.catalogue.profile)
        return [CheckItem.from_parent(self, name=registered.spec.id, registered=registered,
                                      catalogue=self.catalogue) for registered in chosen]

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, "openai-conformance check catalogue"


class CheckItem(pytest.Item):
    def __init__(self, *, registered: RegisteredCheck, catalogue: CatalogueRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registered = registered
        self.catalogue = catalogue
        self.result: CheckResult | None = None
        spec = registered.spec
        # `-k MUST`, `-k streaming` select by level and feature too.
        self.extra_keyword_matches.update({spec.level.value, spec.feature.value})
        self.user_properties.extend([("level", spec.level.value), ("feature", spec.feature.value)])

    def setup(self) -> None:
        # The check runs here so that a harness/network error is a pytest *error*, not a failure.
        catalogue = self.catalogue
        result = None if catalogue.stopped and catalogue.results else catalogue.run(self.registered)
        if result is None:
            # The budget, the deadline or the target ended the run: the rest are not executed (results.json
            # lists them), as in `conformance run`. One line, and pytest's "interrupted" exit code 2.
            left = len(catalogue.planned) - len(catalogue.results)
            pytest.exit(f"conformance: the run stopped early: {catalogue.stopped}; {left} of "
                        f"{len(catalogue.planned)} planned checks not executed (results.json: incomplete)",
                        returncode=pytest.ExitCode.INTERRUPTED)
        self.result = result
        enact(result.verdict, result.message, _flaky_note(result), phase="setup")

    def runtest(self) -> None:
        result = self.result
        assert result is not None, "setup() runs the check"
        enact(result.verdict, result.message, _flaky_note(result), phase="call")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        spec = self.registered.spec
        text = failure_text(excinfo.value, spec.level.value, spec.id, description=spec.description)
        return text if text is not None else str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.registered.spec.id} [{self.registered.spec.level.value}]"


def _flaky_note(result: CheckResult) -> str:
    """The live result's flaky note, worded as a replayed one's."""
    return flaky_note(result.passed_runs, len(result.verdicts), result.verdicts) if result.flaky else ""


class ConformancePlugin:
    """Registered by `pytest_plugin.pytest_configure` when `--conformance-base-url` is given."""

    def __init__(self, config: pytest.Config, base_url: str, api_key: str | None) -> None:
        from ._options import limit_values
        from ._start import PYTEST_FLAGS, check_base_url

        try:
            base_url = check_base_url(base_url, PYTEST_FLAGS)
        except ConformanceError as exc:
            raise pytest.UsageError(str(exc)) from None
        if getattr(config.option, "numprocesses", None):
            # pytest-xdist workers would each open a session and none could write the one results.json.
            raise pytest.UsageError("--conformance-base-url runs the catalogue in one pytest process: drop -n "
                                    "(use `conformance run --concurrency N` for parallel checks)")
        self.config = config
        report_dir = Path(config.getoption("conformance_report_dir"))
        self.report_dir = report_dir if report_dir.is_absolute() else config.invocation_params.dir / report_dir
        limits = Limits(**limit_values(config.getoption, prefix="conformance-"))
        self.catalogue = CatalogueRun(base_url, config.getoption("conformance_model"), api_key,
                                      Depth(config.getoption("conformance_depth")),
                                      Profile(config.getoption("conformance_profile")), limits=limits,
                                      strict=config.getoption("conformance_strict"),
                                      repeat=config.getoption("conformance_repeat"))
        self.written: dict[str, Path] = {}
        self.final: RunResult | None = None
        self.render_error: str | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        # tryfirst: the items must exist before `-k`/`-m`/`--deselect` filter the list. genitems()
        # reports the collection like any other collector's, so counts and --co output are right.
        parent = CatalogueCollector.from_parent(session, name=COLLECTOR_NAME, nodeid=COLLECTOR_NAME,
                                                catalogue=self.catalogue)
        items.extend(session.genitems(parent))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.catalogue.planned = [item.name for item in session.items if isinstance(item, CheckItem)]
        catalogue = select(all_checks(), depth=self.catalogue.depth, profile=self.catalogue.profile)
        if len(self.catalogue.planned) < len(catalogue):
            option = session.config.option
            given = [f"-k {option.keyword}" if getattr(option, "keyword", "") else "",
                     f"-m {option.markexpr}" if getattr(option, "markexpr", "") else ""]
            self.catalogue.selection = tuple(g for g in given if g) or (
                f"pytest selected {len(self.catalogue.planned)} of {len(catalogue)} checks",)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """Reach the target before the first check runs; a target that cannot be used ends the session
        with one line (not one error and traceback per check). Collecting alone sends nothing."""
        if session.config.option.collectonly or not any(isinstance(i, CheckItem) for i in session.items):
            return
        try:
            self.catalogue.open()
        except ConformanceError as exc:
            failed = str(exc)
        else:
            return
        pytest.exit(f"conformance: {failed}", returncode=pytest.ExitCode.USAGE_ERROR)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """A check that could not be judged errors in setup: show its verdict, not the harness's traceback."""
        report = yield
        if isinstance(item, CheckItem) and call.excinfo is not None and isinstance(call.excinfo.value, HarnessError):
            report.longrepr = item.repr_failure(call.excinfo)
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.catalogue.close()
        if hasattr(self.config, "workerinput"):
            return
        from .report import write_results

        if self.catalogue.start_error is not None and not self.catalogue.results:
            # As `conformance run`: a truthful record (invalid, run_complete false) replaces the last run's.
            for name in ("report.html", "junit.xml"):
                (self.report_dir / name).unlink(missing_ok=True)
            results_path = write_results(self.catalogue.start_failure(), self.report_dir)
            self.written = {"results": results_path, **self._render(results_path)}
            return
        if not self.catalogue.results and not self.catalogue.opened:
            return  # nothing was sent (e.g. only the project's own tests ran): no record to write
        self.final = self.catalogue.run_result()
        results_path = write_results(self.final.to_json(), self.report_dir)
        self.written = {"results": results_path}
        self.written.update(self._render(results_path))

    def _render(self, results_path: Path) -> dict[str, Path]:
        command = [sys.executable, "-m", "conformance", "report", str(results_path), "-o", str(self.report_dir)]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            self.render_error = (done.stderr or done.stdout).strip()[-500:]
            return {}
        return {"html": self.report_dir / "report.html", "junit": self.report_dir / "junit.xml"}

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        run = self.final
        if run is None:
            return
        terminalreporter.section("conformance")
        target = run.config.target
        terminalreporter.write_line(f"{run.headline}: {target.model} @ {target.base_url} "
                                    f"(profile {run.config.profile.value}, depth {run.config.depth.value})")
        if run.reason:
            terminalreporter.write_line(f"  why: {run.reason}")
        causes = run.root_causes
        if causes:
            checks = {check_id for cause in causes for check_id in cause.checks}
            terminalreporter.write_line(f"  root causes: {len(causes)}, failing {len(checks)} checks "
                                        f"(repro curls in report.html)")
            for number, cause in enumerate(causes, start=1):
                terminalreporter.write_line(f"    {number}. {cause.title} ({len(cause.checks)} checks)")
        terminalreporter.write_line("  reports: " + ", ".join(str(p) for p in self.written.values()))
        if self.render_error:
            terminalreporter.write_line(f"  report.html was not rendered: {self.render_error}", red=True)
