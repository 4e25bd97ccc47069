"""The heavy half of the pytest plugin, loaded only when `--conformance-base-url` is given.

Each selected check becomes one test item whose name is the check ID (so `-k usage` works). All
items share one engine Session and one SharedExchanges, exactly like `conformance run`; at the end
the collected CheckResults become the same results.json, and report.html/junit.xml are rendered
from it in a subprocess (the renderer is itself a pytest run, which must not nest in this one).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ._context import SharedExchanges
from ._engine import RunConfig, RunResult, RunVerdict, _run_one, _run_verdict
from ._http import Limits, Session, Target
from ._model import CheckResult, Depth, Profile, Verdict
from .checks import RegisteredCheck, all_checks, select
from .errors import ConformanceError

__all__ = ["CatalogueRun", "CheckItem", "ConformancePlugin"]

COLLECTOR_NAME = "conformance"


class CheckFailure(Exception):
    """The target violated the check's clause."""


class HarnessError(Exception):
    """The check could not be judged (network or harness); never non-conformance."""


class CatalogueRun:
    """One engine session for the whole pytest session: checks run one at a time, results are kept."""

    def __init__(self, base_url: str, model: str | None, api_key: str | None, depth: Depth, profile: Profile,
                 *, limits: Limits | None = None) -> None:
        self.base_url, self.model, self.api_key = base_url, model, api_key
        self.depth, self.profile = depth, profile
        self.limits = limits or Limits()
        self.results: list[CheckResult] = []
        # IDs of the items left after -k/-m/--deselect, in run order.
        self.planned: list[str] = []
        self.started_at = dt.datetime.now(dt.UTC)
        self._started = time.monotonic()
        self._session: Session | None = None
        self._shared = SharedExchanges()
        self._config: RunConfig | None = None
        self._unreachable: str | None = None

    def _open(self) -> tuple[Session, RunConfig] | None:
        """Reach the target once (and pick the model) before the first check; None if it cannot be used."""
        if self._session is None and self._unreachable is None:
            from ._start import PYTEST_FLAGS, preflight

            try:
                model = preflight(self.base_url, self.api_key, self.model, self.limits, flags=PYTEST_FLAGS).model
            except ConformanceError as exc:
                self._unreachable = str(exc)
                return None
            target = Target(self.base_url, model, self.api_key)
            self._config = RunConfig(target=target, limits=self.limits, depth=self.depth, profile=self.profile,
                                     concurrency=1)
            self._session = Session(target, self.limits)
        if self._session is None or self._config is None:
            return None
        return self._session, self._config

    def run(self, registered: RegisteredCheck) -> CheckResult:
        opened = self._open()
        if opened is None:
            result = CheckResult(registered.spec, Verdict.ERROR, f"not run: {self._unreachable}", 0.0)
        else:
            result = _run_one(registered, opened[0], self._shared, opened[1])
        self.results.append(result)
        return result

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def run_result(self) -> RunResult:
        """The same RunResult `conformance.run()` returns, built from the results pytest collected."""
        config = self._config or RunConfig(target=Target(self.base_url, self.model or "", self.api_key),
                                           limits=self.limits, depth=self.depth, profile=self.profile)
        session = self._session
        counts = dict(session.status_counts) if session else {}
        reason: str | None
        if session is None:
            verdict, reason = RunVerdict.INCOMPLETE, self._unreachable or "no check ran"
        else:
            verdict, reason = _run_verdict(self.results, len(self.planned), session, counts)
        ran = {r.spec.id for r in self.results}
        return RunResult(config=config, results=list(self.results), planned=len(self.planned),
                         started_at=self.started_at, duration_s=time.monotonic() - self._started,
                         requests=session.requests if session else 0, tokens=session.tokens if session else 0,
                         verdict=verdict, reason=reason, status_counts=counts,
                         not_executed=tuple(i for i in self.planned if i not in ran),
                         tokens_estimated=session.tokens_estimated if session else 0,
                         retries=session.retries if session else 0)


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
        self.result = self.catalogue.run(self.registered)
        if self.result.verdict is Verdict.ERROR:
            raise HarnessError(self.result.message)

    def runtest(self) -> None:
        result = self.result
        assert result is not None, "setup() runs the check"
        if result.verdict is Verdict.FAILED:
            raise CheckFailure(result.message)
        if result.verdict in (Verdict.SKIPPED, Verdict.UNSUPPORTED):
            pytest.skip(f"{result.verdict.value}: {result.message}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, (CheckFailure, HarnessError)):
            spec = self.registered.spec
            kind = "failed" if isinstance(excinfo.value, CheckFailure) else "error, not counted as non-conformance"
            # The verdict's own text first: pytest's short summary shows the first line.
            return f"{excinfo.value}\n[{spec.level.value}] {spec.id} ({kind}): {spec.description}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.registered.spec.id} [{self.registered.spec.level.value}]"


class ConformancePlugin:
    """Registered by `pytest_plugin.pytest_configure` when `--conformance-base-url` is given."""

    def __init__(self, config: pytest.Config, base_url: str, api_key: str | None) -> None:
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
        self.catalogue = CatalogueRun(base_url, config.getoption("conformance_model"), api_key,
                                      Depth(config.getoption("conformance_depth")),
                                      Profile(config.getoption("conformance_profile")))
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

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.catalogue.close()
        if not self.catalogue.results or hasattr(self.config, "workerinput"):
            return
        from .report import write_results

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
        label = {"passed": "CERTIFIED", "failed": "NOT CERTIFIED", "incomplete": "INCOMPLETE", "invalid": "INVALID"}
        target = run.config.target
        terminalreporter.write_line(f"{label[run.verdict]}: {target.model} @ {target.base_url} "
                                    f"(profile {run.config.profile.value}, depth {run.config.depth.value})")
        if run.reason:
            terminalreporter.write_line(f"  why: {run.reason}")
        terminalreporter.write_line("  reports: " + ", ".join(str(p) for p in self.written.values()))
        if self.render_error:
            terminalreporter.write_line(f"  report.html was not rendered: {self.render_error}", red=True)
