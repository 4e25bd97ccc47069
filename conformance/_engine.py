"""The engine: runs selected checks against a target and yields typed results.

The CLI, the pytest plugin and every report consume what this module produces; nothing else
talks to the target.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import __version__
from ._context import CheckContext, SharedExchanges
from ._http import Limits, Session, Target, TargetDown, TransportError
from ._model import CheckResult, Depth, Feature, Level, Profile, Verdict
from .checks import RegisteredCheck, all_checks, select
from .errors import BudgetExhausted, CheckFailed, CheckSkipped, CheckUnsupported

SCHEMA_VERSION = "1.0"
EventHandler = Callable[[str, dict[str, Any]], None]


class RunVerdict:
    PASSED = "passed"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    INVALID = "invalid"


EXIT_CODES = {RunVerdict.PASSED: 0, RunVerdict.FAILED: 1, RunVerdict.INCOMPLETE: 2, RunVerdict.INVALID: 2}


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

    def to_json(self) -> dict[str, Any]:
        lim = self.limits
        return {
            "depth": self.depth.value,
            "profile": self.profile.value,
            "only": list(self.only),
            "skip": list(self.skip),
            "concurrency": self.concurrency,
            "api_key": "***REDACTED***" if self.target.api_key else None,
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
    verdict: str
    reason: str | None
    status_counts: dict[str, int]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_json(self) -> dict[str, Any]:
        counts = Counter(r.verdict.value for r in self.results)
        by_level: dict[str, dict[str, int]] = {}
        for r in self.results:
            by_level.setdefault(r.spec.level.value, Counter())[r.verdict.value] += 1  # type: ignore[index]
        return {
            "schema_version": SCHEMA_VERSION,
            "suite": {"name": "openai-conformance", "version": __version__},
            "run_complete": self.verdict in (RunVerdict.PASSED, RunVerdict.FAILED),
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "duration_s": round(self.duration_s, 3),
            "target": {
                "base_url": self.config.target.base_url,
                "model": self.config.target.model,
                "builtin": self.config.builtin_target,
            },
            "profile": self.config.profile.value,
            "depth": self.config.depth.value,
            "config": self.config.to_json(),
            "planned": self.planned,
            "executed": len(self.results),
            "requests": self.requests,
            "tokens": self.tokens,
            "http_status_counts": self.status_counts,
            "summary": {
                "total": len(self.results),
                **{v.value: counts.get(v.value, 0) for v in Verdict},
                "by_level": {k: dict(v) for k, v in by_level.items()},
                "features": feature_certification(self.results),
            },
            "checks": [r.to_json() for r in self.results],
        }


def feature_certification(results: Sequence[CheckResult]) -> dict[str, str]:
    """Per feature: certified, partial (a MUST check skipped/unsupported/errored) or failed."""
    verdicts: dict[str, str] = {}
    for feature in Feature:
        musts = [r for r in results if r.spec.feature is feature and r.spec.level is Level.MUST]
        if not musts:
            verdicts[feature.value] = "not-tested"
        elif any(r.verdict is Verdict.FAILED for r in musts):
            verdicts[feature.value] = "failed"
        elif all(r.verdict is Verdict.PASSED for r in musts):
            verdicts[feature.value] = "certified"
        else:
            verdicts[feature.value] = "partial"
    return verdicts


def run(
    config: RunConfig,
    *,
    on_event: EventHandler | None = None,
    transport: httpx.BaseTransport | None = None,
    checks: Sequence[RegisteredCheck] | None = None,
) -> RunResult:
    """Run the selected checks; never raises for anything the target does."""
    emit = on_event or (lambda kind, payload: None)
    chosen = list(checks) if checks is not None else select(
        all_checks(), depth=config.depth, profile=config.profile, only=config.only, skip=config.skip
    )
    session = Session(config.target, config.limits, transport=transport)
    shared = SharedExchanges()
    started_at = dt.datetime.now(dt.timezone.utc)
    started = time.monotonic()
    emit("run-started", {"planned": len(chosen)})
    results: list[CheckResult] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, config.concurrency)) as pool:
            futures = {
                pool.submit(_run_one, registered, session, shared, config): registered for registered in chosen
            }
            for future in concurrent.futures.as_completed(futures):
                result = future.result()
                results.append(result)
                emit("check-finished", {"result": result, "done": len(results), "planned": len(chosen)})
    finally:
        session.close()
    order = {r.spec.id: i for i, r in enumerate(chosen)}
    results.sort(key=lambda r: order[r.spec.id])
    status_counts = _status_counts(results)
    verdict, reason = _run_verdict(results, len(chosen), session, status_counts)
    outcome = RunResult(
        config=config,
        results=results,
        planned=len(chosen),
        started_at=started_at,
        duration_s=time.monotonic() - started,
        requests=session.requests,
        tokens=session.tokens,
        verdict=verdict,
        reason=reason,
        status_counts=status_counts,
    )
    emit("run-finished", {"run": outcome})
    return outcome


def _run_one(registered: RegisteredCheck, session: Session, shared: SharedExchanges, config: RunConfig) -> CheckResult:
    ctx = CheckContext(session, shared, depth=config.depth, profile=config.profile)
    started = time.monotonic()
    verdict, message = Verdict.PASSED, "passed"
    try:
        registered.run(ctx)
        if ctx.failures:
            raise CheckFailed(*ctx.failures)
    except CheckFailed as exc:
        verdict, message = Verdict.FAILED, str(exc) or "failed"
    except CheckSkipped as exc:
        verdict, message = Verdict.SKIPPED, str(exc)
    except CheckUnsupported as exc:
        verdict, message = Verdict.UNSUPPORTED, str(exc)
    except BudgetExhausted as exc:
        verdict, message = Verdict.ERROR, f"not run to the end: {exc}"
    except TargetDown as exc:
        verdict, message = Verdict.ERROR, f"not run: {exc}"
    except TransportError as exc:
        verdict, message = Verdict.ERROR, f"no usable response from the target: {exc}"
    except Exception as exc:  # noqa: BLE001 - a harness bug must not abort the run
        verdict, message = Verdict.ERROR, f"harness error: {type(exc).__name__}: {exc}"
    if ctx.failures and verdict is not Verdict.FAILED and verdict is not Verdict.ERROR:
        verdict, message = Verdict.FAILED, str(CheckFailed(*ctx.failures))
    redact = session.redact
    return CheckResult(
        spec=registered.spec,
        verdict=verdict,
        message=redact(message) or "",
        duration_s=time.monotonic() - started,
        failures=tuple(ctx.failures) if verdict is Verdict.FAILED else (),
        exchanges=tuple(e.to_json(redact) for e in ctx.http.exchanges),
        requests=sum(1 + len(e.attempts) for e in ctx.http.exchanges),
        tokens=0,
        details=ctx.details,
    )


def _status_counts(results: Sequence[CheckResult]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for result in results:
        for exchange in result.exchanges:
            status = exchange["response"]["status"]
            counts[str(status) if status is not None else "no-response"] += 1
    return dict(counts)


def _run_verdict(
    results: Sequence[CheckResult], planned: int, session: Session, status_counts: dict[str, int]
) -> tuple[str, str | None]:
    total = sum(status_counts.values())
    refused = sum(status_counts.get(code, 0) for code in ("401", "403", "404", "429"))
    # A run where the target mostly said "unauthorised"/"not found" proved nothing: never a pass.
    if total >= 5 and refused / total > 0.5:
        return RunVerdict.INVALID, (
            f"{refused} of {total} responses were 401/403/404/429: check --api-key, --base-url (it must end "
            f"with /v1) and --model"
        )
    if session.budget_exhausted:
        return RunVerdict.INCOMPLETE, f"stopped early: {session.budget_exhausted}"
    if session.target_down:
        return RunVerdict.INCOMPLETE, session.target_down
    if len(results) < planned:
        return RunVerdict.INCOMPLETE, f"only {len(results)} of {planned} checks ran"
    if any(r.verdict is Verdict.FAILED and r.spec.level is Level.MUST for r in results):
        return RunVerdict.FAILED, None
    errored = [r.spec.id for r in results if r.verdict is Verdict.ERROR and r.spec.level is Level.MUST]
    if errored:
        return RunVerdict.INCOMPLETE, f"{len(errored)} MUST check(s) could not be judged: {', '.join(errored[:5])}"
    return RunVerdict.PASSED, None
