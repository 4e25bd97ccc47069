"""The engine: runs selected checks against a target and yields typed results.

The CLI, the pytest plugin and every report consume what this module produces; nothing else
talks to the target.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from . import __version__
from ._causes import RootCause, root_causes
from ._compat import (
    copy_sys_modules_for_hypothesis_lambdas,
    keep_suite_constants_out_of_hypothesis,
    serialise_ast_parse,
)
from ._context import BASIC_COMPLETION, CheckContext, PendingRoute, SharedExchanges, basic_chat_request
from ._model import (
    LOAD_STREAMS,
    OPTIONAL_FEATURES,
    ChatRouteFound,
    CheckFinished,
    CheckNotExecuted,
    CheckResult,
    Depth,
    Failure,
    Feature,
    FeatureVerdict,
    Level,
    Profile,
    RunEvent,
    RunFinished,
    RunStarted,
    RunVerdict,
    Verdict,
)
from ._start import STAGES, Flags, check_base_url, preflight
from .checks import RegisteredCheck, all_checks, select
from .errors import (
    BudgetExhausted,
    CheckFailed,
    CheckInconclusive,
    CheckNotApplicable,
    CheckSkipped,
    CheckUnsupported,
)
from .http import (
    REDACTED,
    Exchange,
    Limits,
    Recorder,
    Session,
    Target,
    TargetDown,
    TransportError,
    limit_failure,
    redact_url,
    scrub_key,
    urgent,
)
from .spec import load_spec

SCHEMA_VERSION = "1.2"
EventHandler = Callable[[RunEvent], None]


EXIT_CODES = {RunVerdict.PASSED: 0, RunVerdict.FAILED: 1, RunVerdict.PARTIAL: 0, RunVerdict.INCOMPLETE: 2,
              RunVerdict.INVALID: 2}
# Where a chat completion may be served, in the order the run tries them: OpenAI's route, then the
# documented URL with POST (the FAQ's fallback) and with GET (the document's own call).
CHAT_ROUTES: tuple[tuple[str, str], ...] = (("POST", "/chat/completions"), ("POST", "/models"), ("GET", "/models"))
# Which run of a repeated check its record shows: the most severe (a failure's evidence is never hidden).
SEVERITY = {Verdict.PASSED: 0, Verdict.NOT_APPLICABLE: 1, Verdict.SKIPPED: 2, Verdict.UNSUPPORTED: 3,
            Verdict.INCONCLUSIVE: 4, Verdict.ERROR: 5, Verdict.FAILED: 6}


@dataclass(frozen=True, slots=True)
class RunConfig:
    target: Target
    limits: Limits = field(default_factory=Limits)
    depth: Depth = Depth.FULL
    profile: Profile = Profile.OPENAI
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    concurrency: int = 4
    builtin_target: bool = False
    # Every SHOULD counts as MUST: exact OpenAI parity (h2spec's strict mode).
    strict: bool = False
    # --chat-path METHOD PATH; None: found at the start of the run.
    chat_route: tuple[str, str] | None = None
    # A selection made outside --only/--skip (pytest's -k): recorded, and never a certification.
    selection: tuple[str, ...] = ()
    # --repeat K: the model-dependent checks run K times; a verdict that changes makes them flaky.
    repeat: int = 1

    @property
    def selected(self) -> tuple[str, ...]:
        """How the catalogue was narrowed, as given (empty: the whole catalogue at this depth and profile)."""
        return (*(f"--only {p}" for p in self.only), *(f"--skip {p}" for p in self.skip), *self.selection)

    def to_json(self) -> dict[str, Any]:
        """The run's settings with every secret replaced (the key itself never leaves the process)."""
        lim = self.limits
        return {
            "base_url": redact_url(self.target.base_url, keep_user=False),
            "model": self.target.model,
            "builtin_target": self.builtin_target,
            "depth": self.depth.value,
            "profile": self.profile.value,
            "only": list(self.only),
            "skip": list(self.skip),
            "selection": list(self.selected),
            "strict": self.strict,
            "chat_path": list(self.chat_route) if self.chat_route else None,
            "concurrency": self.concurrency,
            "repeat": self.repeat,
            "api_key": REDACTED if self.target.api_key else None,
            "limits": {name: getattr(lim, name) for name in lim.__dataclass_fields__},
        }


@dataclass
class RunResult:
    config: RunConfig
    results: list[CheckResult]
    planned: int
    started_at: dt.datetime
    duration_s: float
    requests: int
    tokens: int
    verdict: RunVerdict
    reason: str | None
    status_counts: dict[str, int]
    # Where chat was served: {method, path, source: discovered|forced|none, probes: [...]}.
    chat_route: dict[str, Any] = field(default_factory=dict)
    # Checks in the whole catalogue at this depth and profile (a selection runs fewer).
    catalogue: int = 0
    # IDs of planned checks that never sent a request because the budget or the run deadline ran out.
    not_executed: tuple[str, ...] = ()
    # Part of `tokens` estimated for responses that reported no usage (an upper bound, for --max-tokens).
    tokens_estimated: int = 0
    # 429/503 answers that were retried (never counted as non-conformance).
    retries: int = 0
    # What the run did about requests that failed only while others were in flight (see `adapted`).
    concurrency: dict[str, Any] = field(default_factory=dict)

    @property
    def root_causes(self) -> list[RootCause]:
        """The failures grouped by cause (`conformance._causes`), the cause failing most checks first."""
        return root_causes(self.results, self.config.target.model)

    @property
    def repeat(self) -> dict[str, Any] | None:
        """--repeat K: which checks ran K times, pass^k (the share that passed every time), the flaky ones."""
        k = self.config.repeat
        if k <= 1:
            return None
        repeated = [r for r in self.results if r.repeats]
        judged = [r for r in repeated if any(v in (Verdict.PASSED, Verdict.FAILED) for v in r.verdicts)]
        always = [r for r in judged if r.passed_runs == len(r.verdicts)]
        return {"k": k, "checks": [r.spec.id for r in repeated],
                "pass_k": round(len(always) / len(judged), 4) if judged else None,
                "flaky": [r.spec.id for r in repeated if r.flaky]}

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def features(self) -> dict[str, FeatureVerdict]:
        return feature_certification(self.results, strict=self.config.strict)

    @property
    def headline(self) -> str:
        """`CERTIFIED core, streaming, methods; tools unsupported` or the run's verdict and why."""
        return headline(self.verdict, self.features, self.catalogue or self.planned, len(self.results),
                        selection=bool(self.config.selected))

    def to_json(self) -> dict[str, Any]:
        counts = Counter(r.verdict.value for r in self.results)
        by_level: dict[str, dict[str, int]] = {}
        for r in self.results:
            by_level.setdefault(r.spec.level.value, Counter())[r.verdict.value] += 1
        document = {
            "schema_version": SCHEMA_VERSION,
            "suite": {"name": "openai-conformance", "version": __version__},
            # Only a run that judged every planned check can certify; anything else reads as incomplete.
            "run_complete": self.verdict in (RunVerdict.PASSED, RunVerdict.FAILED, RunVerdict.PARTIAL)
            and len(self.results) == self.planned,
            "verdict": self.verdict.value,
            "headline": self.headline,
            "strict": self.config.strict,
            "selection": list(self.config.selected),
            "chat_route": self.chat_route,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": (self.started_at + dt.timedelta(seconds=self.duration_s)).isoformat(timespec="seconds"),
            "duration_s": round(self.duration_s, 3),
            "target": {
                "base_url": redact_url(self.config.target.base_url, keep_user=False),
                "model": self.config.target.model,
                "builtin": self.config.builtin_target,
            },
            "profile": self.config.profile.value,
            "depth": self.config.depth.value,
            "config": self.config.to_json(),
            "planned": self.planned,
            "catalogue": self.catalogue or self.planned,
            "executed": len(self.results),
            "not_executed": list(self.not_executed),
            "requests": self.requests,
            "retries": self.retries,
            "tokens": self.tokens,
            "tokens_estimated": self.tokens_estimated,
            "http_status_counts": self.status_counts,
            "summary": {
                "total": len(self.results),
                **{v.value: counts.get(v.value, 0) for v in Verdict},
                "by_level": {k: dict(v) for k, v in by_level.items()},
                "features": {k: v.value for k, v in self.features.items()},
            },
            "checks": [r.to_json() for r in self.results],
            "root_causes": [cause.to_json() for cause in self.root_causes],
            "concurrency": self.concurrency or {"requested": self.config.concurrency, "final": self.config.concurrency,
                                                "lowered": False, "reason": None, "steps": [], "contention": [],
                                                "rerun": []},
        }
        if self.repeat is not None:
            document["repeat"] = self.repeat
        scrubbed: dict[str, Any] = scrub_key(document, self.config.target.api_key)
        return scrubbed


def start_failure(config: RunConfig, planned: int, message: str, stage: str) -> dict[str, Any]:
    """results.json of a run stopped before its first check: `invalid`, `run_complete: false`,
    nothing executed, the reason, and `start_error` (schema 1.1) saying at which stage it stopped."""
    assert stage in STAGES, stage
    result = RunResult(config=config, results=[], planned=planned, started_at=dt.datetime.now(dt.UTC),
                       duration_s=0.0, requests=0, tokens=0, verdict=RunVerdict.INVALID,
                       reason=f"the run could not start: {message}", status_counts={})
    document = result.to_json()
    document["start_error"] = {"stage": stage, "message": message}
    scrubbed: dict[str, Any] = scrub_key(document, config.target.api_key)
    return scrubbed


def feature_certification(results: Sequence[CheckResult], *, strict: bool = False) -> dict[str, FeatureVerdict]:
    """Per feature, from its MUST checks (SHOULD too under --strict): the one place this is decided.

    failed: a MUST failed (in every run, when repeated). unsupported: an optional feature the target
    declared unsupported (a 4xx naming it), the rest of its MUST checks passed or not applicable.
    certified: every MUST passed or did not apply. partial: a MUST could not be judged (inconclusive,
    error, skipped, a limit) or is flaky (--repeat: its verdict changed between runs, so neither a pass
    nor a failure is proven).
    """
    declared = declared_features(results)
    verdicts: dict[str, FeatureVerdict] = {}
    for feature in Feature:
        musts = [r for r in results if r.spec.feature is feature and r.spec.effective_level(strict) is Level.MUST]
        if not musts:
            verdicts[feature.value] = FeatureVerdict.NOT_TESTED
        elif any(r.verdict is Verdict.FAILED and not r.flaky for r in musts):
            verdicts[feature.value] = FeatureVerdict.FAILED
        elif not all(_judged(r, declared) for r in musts):
            verdicts[feature.value] = FeatureVerdict.PARTIAL
        elif feature in declared:
            verdicts[feature.value] = FeatureVerdict.UNSUPPORTED
        else:
            verdicts[feature.value] = FeatureVerdict.CERTIFIED
    return verdicts


def declared_features(results: Sequence[CheckResult]) -> set[Feature | None]:
    """The optional features the target declared unsupported (a 4xx naming them)."""
    return {r.declared_unsupported for r in results
            if r.verdict is Verdict.UNSUPPORTED and r.declared_unsupported in OPTIONAL_FEATURES}


def _judged(result: CheckResult, declared: set[Feature | None]) -> bool:
    """Passed, not applicable, or unsupported because the target declared a whole optional feature
    (every time, for a repeated check)."""
    if result.flaky:
        return False
    if result.verdict in (Verdict.PASSED, Verdict.NOT_APPLICABLE):
        return True
    return result.verdict is Verdict.UNSUPPORTED and result.declared_unsupported in declared


def unjudged_musts(results: Sequence[CheckResult], *, strict: bool = False) -> list[CheckResult]:
    declared = declared_features(results)
    return [r for r in results if r.spec.effective_level(strict) is Level.MUST
            and (r.verdict is not Verdict.FAILED or r.flaky) and not _judged(r, declared)]


def headline(verdict: RunVerdict, features: dict[str, FeatureVerdict], catalogue: int, executed: int, *,
             selection: bool) -> str:
    label = verdict.label
    if verdict is RunVerdict.PARTIAL:
        return f"{label}: {executed} of {catalogue} checks"
    if selection:
        label = f"{label} (partial run: {executed} of {catalogue} checks)"
    groups: dict[FeatureVerdict, list[str]] = {}
    for name, feature_verdict in features.items():
        groups.setdefault(feature_verdict, []).append(name)
    parts = []
    if verdict is RunVerdict.PASSED:
        parts.append(", ".join(groups.get(FeatureVerdict.CERTIFIED, [])))
    else:
        parts += [f"{', '.join(groups[v])} {v.value}" for v in (FeatureVerdict.FAILED, FeatureVerdict.PARTIAL,
                                                                    FeatureVerdict.CERTIFIED) if v in groups]
    if FeatureVerdict.UNSUPPORTED in groups:
        parts.append(f"{', '.join(groups[FeatureVerdict.UNSUPPORTED])} unsupported")
    return f"{label} " + "; ".join(p for p in parts if p) if parts else label


def discover_chat_route(session: Session, model: str, *,
                        go_on: Callable[[], bool] = lambda: True) -> tuple[dict[str, Any], Exchange | None]:
    """Where the target serves chat: the first route of CHAT_ROUTES answering a chat.completion, and that
    answer (the run's basic completion: the probe sends its body).

    One request on a server with OpenAI's route; never more than three. `go_on()` is asked before each
    probe after the first (False: stop; the target could not be reached).
    """
    recorder = Recorder(session)
    body = basic_chat_request(model)
    probes: list[dict[str, Any]] = []
    for method, path in CHAT_ROUTES:
        if probes and not go_on():
            break
        try:
            exchange = recorder.request(method, path, json_body=body)
        except (TransportError, BudgetExhausted) as exc:  # rate limited, down, out of budget: the checks say so
            probes.append({"method": method, "path": path, "status": None, "chat": False, "error": str(exc)})
            break
        payload = exchange.json() if exchange.error is None and not exchange.limit_exceeded else None
        serves = (exchange.status is not None and 200 <= exchange.status < 300 and isinstance(payload, dict)
                  and isinstance(payload.get("choices"), list))
        probes.append({"method": method, "path": path, "status": exchange.status, "chat": serves})
        if exchange.error is not None or exchange.limit_exceeded:
            break  # no answer at all (a hang, a reset): trying the other routes would only wait again
        if serves:
            return {"method": method, "path": path, "source": "discovered", "probes": probes,
                    "tokens": recorder.tokens}, exchange
    # Nowhere: the checks run on OpenAI's route and report what it answers.
    return {"method": "POST", "path": "/chat/completions", "source": "none", "probes": probes,
            "tokens": recorder.tokens}, None


class RunSession:
    """One run against one target: what `run()`, `conformance run` and the pytest plugin all use.

        run = RunSession.open(config)      # the target reached once, the model and the chat route chosen
        run.run_planned(on_event)          # every planned check, scheduled (`run`, the CLI), or
        run.run_check(registered)          # one check at a time (the pytest plugin's items)
        result = run.finish()              # the RunResult; its verdict is decided here

    The chat route is found while the first checks start: a check waits for it only when it sends chat,
    and the route's probe is the run's basic completion. The checks' modules load while the target is
    reached. Both keep the run's wall time near requests × latency / concurrency on a slow target.
    """

    def __init__(self, config: RunConfig, *, transport: httpx.BaseTransport | None,
                 started: tuple[dt.datetime, float], warm_up: _WarmUp) -> None:
        self.config = config
        self.session = Session(config.target, config.limits, transport=transport, concurrency=config.concurrency)
        self._started_at, self._started = started
        self._warm_up = warm_up
        self._shared = _UrgentSharedExchanges()
        # run_check's repetitions: round i of every check shares the exchanges of round i.
        self._rounds = [_UrgentSharedExchanges() for _ in range(config.repeat - 1)]
        self._route: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        # While the route is being found, up to --concurrency chat requests go early on OpenAI's route
        # (`_find_route`); none when --chat-path gives it.
        self._pending = PendingRoute(self._route, early=0)
        # Whether the start succeeded (the target reached): the route's further probes wait for it.
        self._reached: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._results: dict[str, CheckResult] = {}
        # Whether the preflight's round trip says the run waits on the target more than on its own CPU.
        self._slow_target = False
        self._reruns: list[dict[str, Any]] = []
        self._finished: RunResult | None = None

    @classmethod
    def open(cls, config: RunConfig, *, flags: Flags | None = None, api_key_from: str | None = None,
             transport: httpx.BaseTransport | None = None,
             checks: Sequence[RegisteredCheck] | None = None) -> RunSession:
        """Start a run. With `flags` (the CLI's or the plugin's spelling of its options), the base URL is
        checked and the target reached once first, as `_start.preflight` does: a target that cannot be
        certified raises one ConformanceError line naming those flags, and an empty model is chosen from
        GET /models. Without, the config is used as given (a library call, a test transport)."""
        started = dt.datetime.now(dt.UTC), time.monotonic()
        if flags is not None:  # sends nothing: a malformed URL is one line before anything starts
            base_url = check_base_url(config.target.base_url, flags)
            config = dataclasses.replace(config, target=dataclasses.replace(config.target, base_url=base_url))
        chosen = config

        def planned() -> list[RegisteredCheck]:
            return list(checks) if checks is not None else select(
                all_checks(), depth=chosen.depth, profile=chosen.profile, only=chosen.only, skip=chosen.skip)

        warm_up = _WarmUp(planned)
        run = cls(config, transport=transport, started=started, warm_up=warm_up)
        try:
            if flags is not None and config.target.model:
                # The model is known: the route's first probe goes out while the target is reached (the
                # others, if needed, only once it was).
                run._find_route()
                run._reach(flags, api_key_from)
            else:
                if flags is not None:
                    run._reach(flags, api_key_from)
                run._find_route()
        except BaseException as exc:
            run._reached.set_result(False)
            run.close()
            if not isinstance(exc, KeyboardInterrupt):  # Ctrl-C: out at once; else no thread left importing
                warm_up.join()
            raise
        run._reached.set_result(True)
        return run

    @property
    def planned(self) -> list[RegisteredCheck]:
        """The checks this run runs (chosen while the target is reached; waits for that)."""
        return self._warm_up.checks()

    def _reach(self, flags: Flags, api_key_from: str | None) -> None:
        """The preflight (`_start.preflight`); the model it chose when none was given."""
        target = self.config.target
        started = time.monotonic()
        reached = preflight(target.base_url, target.api_key, target.model or None, self.config.limits, flags=flags,
                            api_key_from=api_key_from)
        self._slow_target = time.monotonic() - started >= SLOW_ROUND_TRIP_S
        if reached.model != target.model:
            self.config = dataclasses.replace(self.config, target=dataclasses.replace(target, model=reached.model))
            self.session.target = dataclasses.replace(self.session.target, model=reached.model)

    # -- the chat route ------------------------------------------------------------------------------
    def _find_route(self) -> None:
        forced = self.config.chat_route
        if forced is not None:
            self._found({"method": forced[0], "path": forced[1], "source": "forced", "probes": []})
            return
        self._pending = PendingRoute(self._route, early=self.config.concurrency)
        served: concurrent.futures.Future[Exchange] = concurrent.futures.Future()
        self._shared.submit(BASIC_COMPLETION, lambda: served)
        threading.Thread(target=self._discover, args=(served,), name="chat-route", daemon=True).start()

    def _discover(self, served: concurrent.futures.Future[Exchange]) -> None:
        try:
            with urgent():  # every check that sends chat waits for it
                route, exchange = discover_chat_route(self.session, self.config.target.model,
                                                      go_on=self._reached.result)
        except BaseException as exc:  # noqa: BLE001 - a harness error: every chat check reports it
            served.set_exception(exc)
            self._route.set_exception(exc)
            return
        if exchange is not None:
            served.set_result(exchange)
        else:  # no route served chat: the first check to need the basic completion sends it on OpenAI's route
            served.set_exception(TransportError("no route served a chat completion"))
        self._found(route)

    def _found(self, route: dict[str, Any]) -> None:
        self.session.target = dataclasses.replace(self.session.target, chat_method=route["method"],
                                                  chat_path=route["path"])
        self._route.set_result(route)

    @property
    def route(self) -> dict[str, Any]:
        """Where chat was served (waits for the discovery, which is bounded like every request)."""
        try:
            return self._route.result()
        except Exception as exc:  # noqa: BLE001 - recorded, never raised from a report
            return {"method": "POST", "path": "/chat/completions", "source": "none", "probes": [],
                    "error": f"{type(exc).__name__}: {exc}"}

    # -- running checks ------------------------------------------------------------------------------
    @property
    def stopped(self) -> str | None:
        """Why no further check can run (budget, deadline, target down), or None."""
        return self.session.stopped

    @property
    def results(self) -> list[CheckResult]:
        """The results so far, in the planned order."""
        order = {registered.spec.id: i for i, registered in enumerate(self.planned)}
        return sorted(self._results.values(), key=lambda r: order.get(r.spec.id, len(order)))

    def run_check(self, registered: RegisteredCheck) -> CheckResult | None:
        """One check to its result, K runs of a model-dependent one under --repeat K (run i sharing the
        exchanges of run i of the other checks); None when the run had stopped before it sent anything."""
        self._warm_up.join()
        if self.session.budget_exhausted:
            return None
        if registered.spec.load:  # one check at a time: its requests are the only ones in flight
            with self.session.probing():
                first, started = self._execute(registered, self._shared)
        else:
            first, started = self._execute(registered, self._shared)
        if not started:
            return None
        runs = [first]
        if registered.spec.model_dependent:
            for shared in self._rounds:
                again, started = self._execute(registered, shared)
                if not started:  # the budget ran out: the run reads incomplete
                    break
                runs.append(again)
        result = merge_runs(runs)
        self._results[registered.spec.id] = result
        return result

    def run_planned(self, on_event: EventHandler | None = None) -> RunResult:
        """Run every planned check, then finish.

        In order: every check at once, within --concurrency. Checks start longest first (by their
        declared `requests`) and their requests are served in that order, so the longest chain of
        sequential requests starts at once and the run ends close to total requests × latency /
        concurrency; the load checks (`load=True`) start last, their requests together once that many
        slots are free, beside the last of the others. Then the checks that a request failing only under
        contention left unjudged run again, one at a time (`_rerun_contended`); with --repeat K the
        model-dependent checks run K - 1 more times (`_repeat`); last a load check that did not pass
        beside the others runs again, at the full --concurrency with nothing else in flight, and that
        run decides. A check that never sent a request because the budget or the run deadline ran out
        is reported as not executed.
        """
        emit = on_event or _ignore
        try:
            self._warm_up.checks()  # the modules' own preloads go on: only their checks wait for them
        except KeyboardInterrupt:
            self.close()
            raise
        self._route.add_done_callback(lambda found: None if found.exception() else emit(ChatRouteFound(found.result())))
        emit(RunStarted(len(self.planned)))

        beside: dict[str, CheckResult] = {}  # load checks that did not pass beside the others: judged alone

        def finished(registered: RegisteredCheck, result: CheckResult | None) -> None:
            check_id = registered.spec.id
            if result is None and check_id in beside:  # the run stopped before the load check ran alone
                result = beside.pop(check_id)
            if result is None:
                emit(CheckNotExecuted(registered.spec, self.session.stopped))
                return
            if registered.spec.load and check_id not in beside and result.verdict in JUDGED_ALONE_AFTER:
                beside[check_id] = result
                return
            if check_id in beside:
                result = judged_alone(result, beside.pop(check_id))
            self._results[check_id] = result
            emit(CheckFinished(result, len(self._results), len(self.planned)))

        try:
            self._run_all(self.planned, self._shared, finished)
            self._rerun_contended()
            self._repeat()
            for registered in [c for c in self.planned if c.spec.id in beside]:
                with self.session.probing():  # its own requests are the only ones in flight, up to --concurrency
                    self._run_all([registered], self._shared, finished)
        except KeyboardInterrupt:  # stop sending and cut what is in flight (the re-runs run in this thread)
            self.session.interrupt("interrupted")
            self.session.close()
            raise
        outcome = self.finish()
        emit(RunFinished(outcome.verdict, outcome.headline))
        return outcome

    def finish(self) -> RunResult:
        """Close the session and decide the run: its verdict, features and headline (once; later calls
        return the same result)."""
        if self._finished is not None:
            return self._finished
        route = self.route
        if self._pending.sent:
            route = {**route, "early": self._pending.summary()}
        self.session.close()
        session, config = self.session, self.config
        results = self.results
        status_counts = dict(session.status_counts)
        verdict, reason = run_verdict(results, len(self.planned), session, status_counts, config)
        self._finished = RunResult(
            config=config,
            results=results,
            planned=len(self.planned),
            started_at=self._started_at,
            duration_s=time.monotonic() - self._started,
            requests=session.requests,
            tokens=session.tokens,
            verdict=verdict,
            reason=reason,
            status_counts=status_counts,
            not_executed=tuple(c.spec.id for c in self.planned if c.spec.id not in self._results),
            tokens_estimated=session.tokens_estimated,
            retries=session.retries,
            chat_route=route,
            catalogue=len(select(all_checks(), depth=config.depth, profile=config.profile)),
            concurrency=adapted(session, self._reruns),
        )
        return self._finished

    def close(self) -> None:
        """Cut what is in flight and release the connections (finish() does it too)."""
        if self._finished is None:
            self.session.interrupt("the run was closed before it finished")
        self.session.close()

    def _run_all(self, checks: Sequence[RegisteredCheck], shared: SharedExchanges,
                 finished: Callable[[RegisteredCheck, CheckResult | None], None]) -> None:
        """Run `checks` at once in a pool of threads (the session's gate bounds the requests in flight)."""
        if not checks:
            return
        # Not a `with` block: its exit joins the workers, and on Ctrl-C one of them may sit in a request
        # that connected just after the cut (a read timeout).
        workers = _workers(self.config.concurrency, len(checks))
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check")
        futures = {pool.submit(self._run_scheduled, registered, rank, shared): registered
                   for rank, registered in starting_order(schedule(checks, self.config.concurrency), workers,
                                                          light_first=self._slow_target)}
        try:
            for future in concurrent.futures.as_completed(futures):
                finished(futures[future], future.result())
        except KeyboardInterrupt:
            # Threads cannot be killed: stop sending and cut what is in flight, so they end at once.
            self.session.interrupt("interrupted")
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def _run_scheduled(self, registered: RegisteredCheck, rank: int, shared: SharedExchanges) -> CheckResult | None:
        """The check's result, or None when the run stopped (budget, deadline) before it sent anything."""
        if self.session.budget_exhausted:
            return None
        if self.session.target_down:  # an error at once: no setup work (hypothesis, schemathesis) for a dead target
            return CheckResult(registered.spec, Verdict.ERROR, f"not run: {self.session.target_down}", 0.0)
        self._warm_up.wait_for(registered)
        result, started = self._execute(registered, shared, priority=rank)
        return result if started else None

    def _rerun_contended(self) -> None:
        """Judge again, one at a time and on fresh exchanges, every check that contention left without a
        pass: a request that failed only next to others says nothing of the check's clause. The load checks
        (`load`) keep their verdict: contention is what they judge."""
        results, session = self._results, self.session
        affected = [c for c in self.planned if c.spec.id in results and not c.spec.load
                    and results[c.spec.id].verdict is not Verdict.PASSED and contended(results[c.spec.id])]
        if not affected or session.stopped:
            return
        session.lower_concurrency(1, f"re-running {len(affected)} check(s) hit by contention one at a time")
        fresh = _UrgentSharedExchanges()
        for registered in affected:
            before = results[registered.spec.id]
            result, started = self._execute(registered, fresh)
            if not started:  # the budget ran out: the first verdict stays, the run says it stopped early
                break
            results[registered.spec.id] = result
            self._reruns.append({"id": registered.spec.id, "before": before.verdict.value,
                                 "after": result.verdict.value})

    def _repeat(self) -> None:
        """--repeat K: K - 1 more rounds of the model-dependent checks, each on fresh shared exchanges (a
        repeat that judged the same response again would prove nothing); each check's runs are merged."""
        results = self._results
        repeated = [c for c in self.planned if c.spec.model_dependent and c.spec.id in results]
        if self.config.repeat <= 1 or not repeated:
            return
        runs: dict[str, list[CheckResult]] = {c.spec.id: [results[c.spec.id]] for c in repeated}

        def finished(registered: RegisteredCheck, result: CheckResult | None) -> None:
            if result is not None:
                runs[registered.spec.id].append(result)

        for _ in range(self.config.repeat - 1):
            if self.session.stopped:
                break
            self._run_all(repeated, _UrgentSharedExchanges(), finished)
        for check_id, check_runs in runs.items():
            results[check_id] = merge_runs(check_runs)

    def _execute(self, registered: RegisteredCheck, shared: SharedExchanges, *,
                 priority: int = 0) -> tuple[CheckResult, bool]:
        """The check's result, and whether it started (False: the budget ran out before its first request)."""
        config, session = self.config, self.session
        ctx = CheckContext(session, shared, depth=config.depth, profile=config.profile,
                           route=self._pending)
        ctx.http.priority = priority
        ctx.http.label = registered.spec.id
        ctx.http.probe = registered.spec.load
        started = time.monotonic()
        try:
            registered.run(ctx)
            outcome: BaseException | None = None
        except Exception as exc:  # noqa: BLE001 - whatever a check raises becomes its verdict, never a crash
            outcome = exc
        verdict, message, failures = _verdict(outcome, ctx.failures)
        leading = _leading(outcome)
        declared = (leading.feature if verdict is Verdict.UNSUPPORTED and isinstance(leading, CheckUnsupported)
                    else None)
        verdict, message, failures = _with_limit_failures(verdict, message, failures, ctx)
        cut_before_start = isinstance(_leading(outcome), BudgetExhausted) and ctx.http.sent == 0
        redact = session.redact
        result = CheckResult(
            spec=registered.spec,
            verdict=verdict,
            message=_clean(redact(message) or ""),
            duration_s=time.monotonic() - started,
            failures=tuple(_clean(failures)) if verdict is Verdict.FAILED else (),
            exchanges=tuple(e.to_json(redact) for e in ctx.http.exchanges),
            requests=ctx.http.sent,
            tokens=ctx.http.tokens,
            details=_clean(ctx.details),
            declared_unsupported=declared,
        )
        return result, not cut_before_start


def run(
    config: RunConfig,
    *,
    on_event: EventHandler | None = None,
    transport: httpx.BaseTransport | None = None,
    checks: Sequence[RegisteredCheck] | None = None,
) -> RunResult:
    """Run the selected checks (`RunSession.run_planned`); never raises for anything the target does.

    The config is used as given: the target is not preflighted (`RunSession.open(config, flags=...)` is)."""
    return RunSession.open(config, transport=transport, checks=checks).run_planned(on_event)


class _WarmUp:
    """What the checks need before they start, done in a thread while the target is reached.

    First what every check waits for (`checks()`): the checks chosen (their modules imported), the spec
    parsed, what lets hypothesis draw in several threads, and each chosen module's `preload()` (the
    fuzzers' lazy imports: under pytest, schemathesis's modules are compiled from rewritten source, which
    must not happen while another thread draws: see `_compat`). Then each chosen module's
    `load_in_background()`, which only that module's checks wait for: the openai SDK is some 650 modules
    (0.9 s of CPU), loaded while the target is reached and the other checks start.
    """

    def __init__(self, planned: Callable[[], list[RegisteredCheck]]) -> None:
        self._planned = planned
        self._ready: concurrent.futures.Future[list[RegisteredCheck]] = concurrent.futures.Future()
        self._loads: dict[str, concurrent.futures.Future[None]] = {}
        self._thread = threading.Thread(target=self._run, name="warm-up", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            checks = self._planned()
            load_spec()  # parsed once here, not by every thread that reaches the cold cache at the same time
            serialise_ast_parse()
            copy_sys_modules_for_hypothesis_lambdas()
            keep_suite_constants_out_of_hypothesis()
            for preload in _module_hooks(checks, "preload").values():
                preload()
        except BaseException as exc:  # noqa: BLE001 - raised where the checks are asked for
            self._ready.set_exception(exc)
            return
        loads = _module_hooks(checks, "load_in_background")
        self._loads = {name: concurrent.futures.Future() for name in loads}
        self._ready.set_result(checks)
        for name, load in loads.items():
            try:
                load()
            except BaseException as exc:  # noqa: BLE001 - that module's checks report it
                self._loads[name].set_exception(exc)
            else:
                self._loads[name].set_result(None)

    def checks(self) -> list[RegisteredCheck]:
        """The chosen checks, once every check may start (raises what choosing them raised)."""
        return self._ready.result()

    def wait_for(self, registered: RegisteredCheck) -> None:
        """Until `registered` may start: its module's background load done too."""
        self.checks()
        loaded = self._loads.get(registered.run.__module__)
        if loaded is not None:
            loaded.result()

    def join(self) -> None:
        """Until everything is loaded."""
        self._thread.join()


def _module_hooks(checks: Sequence[RegisteredCheck], hook: str) -> dict[str, Callable[[], None]]:
    """{module: its `hook` function} of the modules the checks come from, in order, where defined."""
    modules = dict.fromkeys(c.run.__module__ for c in checks)
    found = {name: getattr(sys.modules.get(name), hook, None) for name in modules}
    return {name: function for name, function in found.items() if callable(function)}


def _ignore(event: RunEvent) -> None:
    """No observer."""


def contended(result: CheckResult) -> bool:
    """One of the check's requests failed only while others were in flight (a cut stream, a reset…)."""
    return any("contended" in transcript for transcript in result.exchanges)


def adapted(session: Session, reruns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """results.json's record of the concurrency: requested and final, each step down and why, the re-runs."""
    events = session.contention
    kinds = Counter(e["kind"] for e in events)
    reason = None
    if session.steps:
        failed = f"{len(events)} request{'s' if len(events) != 1 else ''} failed only while others were in flight (" \
                 + ", ".join(f"{kind} ×{n}" for kind, n in kinds.items()) + ")"
        judged = [r for r in reruns if r["after"] not in (Verdict.ERROR.value,)]
        alone = (f"; {len(judged)} of {len(reruns)} check(s) re-run one at a time were judged alone" if reruns
                 else "")
        reason = failed + alone
    return {
        "requested": session.requested_concurrency,
        "final": session.concurrency,
        "lowered": session.concurrency < session.requested_concurrency,
        "reason": reason,
        "steps": list(session.steps),
        "contention": events[:50],
        "rerun": list(reruns),
    }


def merge_runs(runs: Sequence[CheckResult]) -> CheckResult:
    """One record for the runs of a repeated check: the most severe run's (its evidence is shown) with the
    other runs' verdicts as `repeats`, in the order they ran."""
    main = max(runs, key=lambda r: SEVERITY[r.verdict])  # the first of the most severe
    others = tuple(r.verdict for r in runs if r is not main)
    return dataclasses.replace(main, repeats=others) if len(runs) > 1 else main


def schedule(checks: Sequence[RegisteredCheck], concurrency: int) -> list[RegisteredCheck]:
    """The order in which the checks' requests are served (their priority): longest first (declared
    requests), then by ID, the classic LPT order that shortens the critical path. A load check goes
    before the last few of them, as many as there are slots beside its streams (--concurrency less
    LOAD_STREAMS): its requests wait for their slots to be free together (the requests behind it wait
    too), which comes as the run drains, and those last checks, one request each, fill the slots beside
    its streams, so that the run ends with one full wave instead of idle slots."""
    ordered = sorted((c for c in checks if not c.spec.load), key=lambda c: (-c.spec.requests, c.spec.id))
    at = max(0, len(ordered) - max(0, concurrency - LOAD_STREAMS))
    return ordered[:at] + [c for c in checks if c.spec.load] + ordered[at:]


def starting_order(scheduled: list[RegisteredCheck], workers: int, *,
                   light_first: bool) -> list[tuple[int, RegisteredCheck]]:
    """(rank, check) in the order the checks' threads start: the scheduled order, or with `light_first`
    (a slow target) the first `workers`, which start at once, lightest first, so that their requests are
    on their way before the heaviest (hypothesis, schemathesis) take the CPU; against a fast target the
    run is bound by its own CPU, and the longest checks must start first. The rank (`schedule`) stays
    the requests' order either way."""
    ranked = list(enumerate(scheduled))
    return ranked[:workers][::-1] + ranked[workers:] if light_first else ranked


# A preflight slower than this: the run is bound by the target's latency, not by its own CPU.
SLOW_ROUND_TRIP_S = 0.2
# A load check with one of these verdicts beside the other checks runs again alone, and that run decides.
JUDGED_ALONE_AFTER = frozenset({Verdict.FAILED, Verdict.ERROR, Verdict.INCONCLUSIVE})


def judged_alone(alone: CheckResult, beside: CheckResult) -> CheckResult:
    """A load check's result alone, which decides, with what it did beside the other checks (its
    requests count; its verdict is kept in details)."""
    return dataclasses.replace(alone, requests=alone.requests + beside.requests, tokens=alone.tokens + beside.tokens,
                               details={**alone.details, "beside_other_checks": {
                                   "verdict": beside.verdict.value, "message": beside.message,
                                   "requests": beside.requests}})


def _workers(concurrency: int, checks: int) -> int:
    # More threads than request slots: a check waiting for a shared exchange or doing local work
    # must not leave a slot idle. The gate in Session still bounds requests in flight.
    return max(1, min(checks, 2 * concurrency + 4))


class _UrgentSharedExchanges(SharedExchanges):
    """Shared fetches jump the request queue: every check that needs them is waiting."""

    def get(self, key: str, fetch: Callable[[], Exchange]) -> Exchange:
        def fetch_urgently() -> Exchange:
            with urgent():
                return fetch()

        return super().get(key, fetch_urgently)

    def submit(self, key: str, send: Callable[[], concurrent.futures.Future[Exchange]]
               ) -> concurrent.futures.Future[Exchange]:
        def send_urgently() -> concurrent.futures.Future[Exchange]:
            with urgent():  # the priority is taken when the request is submitted
                return send()

        return super().submit(key, send_urgently)


# Which exception decides the verdict when a check raised several at once (hypothesis groups).
_RUN_LEVEL: tuple[type[BaseException], ...] = (BudgetExhausted, TargetDown, TransportError)
_PRECEDENCE: tuple[type[BaseException], ...] = (*_RUN_LEVEL, CheckFailed, CheckUnsupported, CheckInconclusive,
                                                CheckSkipped, CheckNotApplicable)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from or during (a client library wraps our exceptions in its own)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _leading(exc: BaseException | None) -> BaseException | None:
    """The exception that decides the verdict.

    hypothesis may group several exceptions, and a check that drives a client library (the openai
    SDK) sees our BudgetExhausted or TargetDown wrapped in the library's own error: a stopped run or
    a transport failure anywhere in the chain decides, so it is never reported as a failure.
    """
    if exc is None:
        return None
    leaves = _leaves(exc)
    linked = [cause for leaf in leaves for cause in _chain(leaf)]
    for kind in _PRECEDENCE:
        for candidate in linked if kind in _RUN_LEVEL else leaves:
            if isinstance(candidate, kind):
                return candidate
    return leaves[0]


# Exceptions that end a check without judging the target: error, with this prefix.
_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (BudgetExhausted, "not run to the end"),
    (TargetDown, "not run"),
    (TransportError, "no usable response from the target"),
)


def _verdict(outcome: BaseException | None,  # noqa: PLR0911 - one return per verdict
             collected: Sequence[Failure]) -> tuple[Verdict, str, list[Failure]]:
    failures = list(collected)
    if outcome is not None:
        for leaf in _leaves(outcome):  # failures raised (fail_on_limit, stop) and not collected with ctx.fail
            failures.extend(f for f in getattr(leaf, "failures", ()) if f not in failures)
    exc = _leading(outcome)
    for kind, prefix in _ERRORS:
        if isinstance(exc, kind):
            return Verdict.ERROR, f"{prefix}: {exc}", failures
    if failures:
        return Verdict.FAILED, str(CheckFailed(*failures)), failures
    if isinstance(exc, CheckNotApplicable):
        return Verdict.NOT_APPLICABLE, str(exc), failures
    if isinstance(exc, CheckInconclusive):
        return Verdict.INCONCLUSIVE, str(exc), failures
    if isinstance(exc, CheckSkipped):
        return Verdict.SKIPPED, str(exc), failures
    if isinstance(exc, CheckUnsupported):
        return Verdict.UNSUPPORTED, str(exc), failures
    if exc is not None:
        return Verdict.ERROR, f"harness error: {type(exc).__name__}: {exc}{_raised_at(exc)}", failures
    return Verdict.PASSED, "passed", failures


def _raised_at(exc: BaseException) -> str:
    """Where a harness error was raised (the innermost frame), so that a bug report can point at it."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"


def _with_limit_failures(verdict: Verdict, message: str, failures: list[Failure],
                         ctx: CheckContext) -> tuple[Verdict, str, list[Failure]]:
    """A response cut by a bound (too big, too slow, endless) is a failure of every check that judged it.

    Without this, a check that only looks at the status code could pass on a truncated body, and a
    check cut short afterwards (the breaker tripped, the budget ran out) would hide what the target did.
    """
    limits = [limit_failure(e, i) for i, e in enumerate(ctx.http.exchanges) if e.limit_exceeded]
    if not limits or message.startswith("harness error"):
        return verdict, message, failures
    if verdict is Verdict.ERROR:  # what was collected may be an artefact of the stop: keep the bound only
        return Verdict.FAILED, str(CheckFailed(*limits)), limits
    seen = {f.received for f in failures}
    added = failures + [f for f in limits if f.received not in seen]
    if len(added) == len(failures):
        return verdict, message, failures
    return Verdict.FAILED, str(CheckFailed(*added)), added


def _clean(value: Any) -> Any:
    """Lone surrogates (from JSON escapes like "\\ud800" in a hostile body) cannot be written as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, Failure):
        return Failure(_clean(value.expected), _clean(value.received), _clean(value.where), value.exchange,
                       value.byte_range)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    return value


def run_verdict(results: Sequence[CheckResult], planned: int, session: Session,  # noqa: PLR0911 - one per verdict
                 status_counts: dict[str, int], config: RunConfig) -> tuple[RunVerdict, str | None]:
    """The run's verdict, decided here only: every report reads it.

    CERTIFIED (passed) needs a complete run of the whole catalogue (at its depth and profile) where
    every MUST (every SHOULD too under --strict) passed or did not apply, or belongs to an optional
    feature the target declared unsupported. A selection is never a certification; a vacuous run never passes.
    """
    total = sum(status_counts.values())
    refused = sum(status_counts.get(code, 0) for code in ("401", "403", "404"))
    # A run where the target mostly said "unauthorised"/"not found" proved nothing: never a pass.
    if total >= 5 and refused / total > 0.5:
        return RunVerdict.INVALID, (
            f"{refused} of {total} responses were 401/403/404: check --api-key, --base-url (it must end "
            f"with /v1) and --model"
        )
    stopped = _stopped_reason(results, planned, session)
    if stopped:
        return RunVerdict.INCOMPLETE, stopped
    failed = [r.spec.id for r in results
              if r.verdict is Verdict.FAILED and not r.flaky and r.spec.effective_level(config.strict) is Level.MUST]
    if failed:
        return RunVerdict.FAILED, f"{len(failed)} MUST check(s) failed" + (" (--strict: SHOULD counts as MUST)"
                                                                           if config.strict else "")
    if not any(r.passed_runs for r in results):  # a flaky check that passed in some run did verify something
        return RunVerdict.INCOMPLETE, "no check passed: nothing was verified (all skipped, unsupported or errored)"
    if config.selected:
        return RunVerdict.PARTIAL, (f"only {len(results)} selected check(s) ran ({'; '.join(config.selected)}): "
                                    f"a partial run is never a certification")
    unjudged = unjudged_musts(results, strict=config.strict)
    if unjudged:
        shown = ", ".join(f"{r.spec.id} ({_unjudged_why(r)})" for r in unjudged[:5])
        return RunVerdict.INCOMPLETE, f"{len(unjudged)} MUST check(s) could not be judged: {shown}"
    return RunVerdict.PASSED, None


def _unjudged_why(result: CheckResult) -> str:
    if result.flaky:
        return f"flaky: passed {result.passed_runs} of {len(result.verdicts)} runs"
    return result.verdict.value


def _stopped_reason(results: Sequence[CheckResult], planned: int, session: Session) -> str | None:
    """Why the run did not run every planned check to the end, or None."""
    missing = planned - len(results)
    not_run = f"; {missing} of {planned} planned checks not executed" if missing else ""
    if session.budget_exhausted:
        return f"stopped early: {session.budget_exhausted}{not_run}"
    if session.target_down:
        return f"{session.target_down}{not_run}"
    if missing:
        return f"only {len(results)} of {planned} checks ran"
    return None
