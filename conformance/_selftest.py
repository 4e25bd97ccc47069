"""The selftest: proves the suite can fail, and never wrongly flags legal behaviour.

It certifies the built-in reference server in-process, once clean, once per legal variant and once
per seeded fault (see refserver/faults.py), and scores the outcome (the mutation score):

    clean      every MUST and SHOULD check passes; an INFO check may fail but must not error
    variant    the same: legal behaviour is never flagged
    fault      at least one of the checks the fault declares in `killed_by` fails
    catalogue  every declared ID exists, and every MUST and SHOULD check kills at least one fault

Each variant runs the whole catalogue except the expensive checks (the schemathesis fuzzers, which
declare more than EXPENSIVE_REQUESTS requests): those run once against a server with every variant
switched on at once (the subject `all-variants`, which runs every check), so that the selftest fits
in CI time. `thorough=True` (and any run restricted with `only_variants`) runs them per variant too.

A fault run is narrow: only the checks it declares, first at the quick depth and, only if none of
them failed, again at full depth (a check may need its full probes to see the defect). A proof pass
then runs each MUST/SHOULD check that has not failed yet against one fault that declares it, until
it fails: so a full-only check declared next to a cheaper one is still shown to be able to fail.
`wide=True` runs the whole catalogue against every fault and shows collateral kills too.

Every run uses an API key, so the auth checks are exercised. That includes the variant `no-auth`
("no auth at all", which documented-api 1.1 allows: "Required: No"): certified with a key, as a user
who has one would certify it, the auth checks must see that the target serves keyless requests and
skip, rather than report the accepted made-up key (that is the fault `wrong-key-accepted`, where a
missing key is still refused). A variant may make a check skip only where VARIANT_SKIPS says so.

`conformance selftest` and tests/test_selftest.py consume `selftest()`.
"""

from __future__ import annotations

import concurrent.futures
import enum
import fnmatch
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._engine import RunConfig, run
from ._model import Depth, Level, Profile, Verdict
from .checks import RegisteredCheck, all_checks
from .http import Limits, Target
from .refserver import DEFAULT_MODEL, FAULTS, VARIANTS, ServerConfig, ServerThread
from .refserver.faults import Fault, Variant

__all__ = [
    "ALL_VARIANTS",
    "EXPENSIVE_REQUESTS",
    "SELFTEST_API_KEY",
    "VARIANT_SKIPS",
    "CheckVerdict",
    "DepthMode",
    "FaultResult",
    "SelftestConfig",
    "SelftestReport",
    "Subject",
    "SubjectKind",
    "SubjectOutcome",
    "VariantResult",
    "fault_table",
    "kill_table",
    "proof_obligations",
    "score",
    "selftest",
    "variant_table",
]

# Not a secret: the reference servers of the selftest live on loopback for a few seconds.
SELFTEST_API_KEY = "sk-selftest-0000"
# Checks (ID globs) a legal variant leaves with nothing to judge: there, and only there, a skip passes.
VARIANT_SKIPS: dict[str, tuple[str, ...]] = {
    "no-auth": ("auth.*",),
    # Without OpenAI's param there is no error.param to read.
    "errors-message-type-only": ("params.error-names-param",),
    # The SDK only posts to /chat/completions, and no 405 is answered on the documented URL.
    "documented-route-only": ("sdk.*", "methods.allow-header"),
    # openai-python cannot read a field-only `retry:` block (openai/openai-python#2722): its stream
    # checks skip and say so, since the server is right and the SDK is wrong.
    "sse-retry-field": ("sdk.stream-usage", "sdk.stream-tool-call"),
}
# Checks that may send more requests than this are expensive (the schemathesis fuzzers: 30-40); a
# variant leaves them to the combined subject unless the selftest is thorough.
EXPENSIVE_REQUESTS = 20
ALL_VARIANTS = "all-variants"
# Short bounds: a fault that hangs a response must cost seconds, not the default minute.
SELFTEST_LIMITS = Limits(connect_timeout_s=5.0, read_timeout_s=8.0, request_deadline_s=20.0, run_deadline_s=300.0)
CLEAN = "clean"


@dataclass(frozen=True, slots=True)
class SelftestStarted:
    subjects: int


@dataclass(frozen=True, slots=True)
class SubjectFinished:
    """The clean server, a variant or a fault was certified (its first pass)."""

    outcome: SubjectOutcome
    done: int
    planned: int


@dataclass(frozen=True, slots=True)
class ProofFinished:
    """A fault was run again for the checks it declares that no first pass proved."""

    outcome: SubjectOutcome
    checks: tuple[str, ...]


SelftestEvent = SelftestStarted | SubjectFinished | ProofFinished
EventHandler = Callable[[SelftestEvent], None]


class DepthMode(enum.StrEnum):
    """auto: clean at both depths, variants at full, faults quick first and full only if needed."""

    AUTO = "auto"
    QUICK = "quick"
    FULL = "full"

    @property
    def depths(self) -> tuple[Depth, ...]:
        return {"auto": (Depth.QUICK, Depth.FULL), "quick": (Depth.QUICK,), "full": (Depth.FULL,)}[self.value]


class SubjectKind(enum.StrEnum):
    CLEAN = "clean"
    VARIANT = "variant"
    COMBINED = "combined"  # every variant at once
    FAULT = "fault"


@dataclass(frozen=True, slots=True)
class Subject:
    """One reference server configuration to certify."""

    kind: SubjectKind
    name: str
    description: str = ""
    # For faults: the check IDs that must catch it, as declared.
    declared: tuple[str, ...] = ()
    # The variants switched on (one, or all for the combined subject).
    variants: tuple[str, ...] = ()
    # A variant that leaves the expensive checks to the combined subject.
    skip_expensive: bool = False
    # SHOULD checks the variant's legal behaviour must trip (lenient variants): detected, still certified.
    flags: tuple[str, ...] = ()
    # The profiles under which the variant is legal (None: every profile).
    profiles: tuple[Profile, ...] | None = None

    def may_skip(self, check_id: str) -> bool:
        globs = [g for v in self.variants for g in VARIANT_SKIPS.get(v, ())]
        return any(fnmatch.fnmatchcase(check_id, g) for g in globs)

    def server_config(self) -> ServerConfig:
        return ServerConfig(
            api_key=SELFTEST_API_KEY,
            faults=frozenset({self.name}) if self.kind is SubjectKind.FAULT else frozenset(),
            variants=frozenset(self.variants),
        )


@dataclass(frozen=True, slots=True)
class CheckVerdict:
    """One check's verdict in one run of a subject."""

    check_id: str
    level: Level
    verdict: Verdict
    depth: Depth
    profile: Profile
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.check_id, "level": self.level.value, "outcome": self.verdict.value,
                "depth": self.depth.value, "profile": self.profile.value, "message": self.message}


@dataclass(frozen=True, slots=True)
class SubjectOutcome:
    subject: Subject
    verdicts: tuple[CheckVerdict, ...]
    duration_s: float
    requests: int = 0
    # The server or the harness broke before any verdict: never a pass, never a kill.
    problem: str | None = None


def default_jobs() -> int:
    """Two per CPU (one subject alone keeps a core ~60% busy); at most 8, each worker costs ~100 MB."""
    return min(8, 2 * (os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class SelftestConfig:
    depth: DepthMode = DepthMode.AUTO
    # None: all; a tuple: only these (when one of the two is given, the other defaults to none).
    only_faults: tuple[str, ...] | None = None
    only_variants: tuple[str, ...] | None = None
    # Check IDs or globs: run only these, and only the faults that declare one of them.
    only_checks: tuple[str, ...] = ()
    # Subjects certified at once. Each runs in its own worker process (spawned, so both cores of a
    # CI runner work: one process is held to one core by the GIL), or in a thread of this process
    # when `processes` is False or the catalogue is not the registered one (a child could not see it).
    jobs: int = field(default_factory=default_jobs)
    processes: bool = True
    concurrency: int = 4
    wide: bool = False
    # Run the expensive checks against every variant, not once against all variants combined.
    thorough: bool = False
    # The catalogues; None means the registered checks and the declared faults and variants.
    checks: Sequence[RegisteredCheck] | None = None
    faults: Mapping[str, Fault] | None = None
    variants: Mapping[str, Variant] | None = None


# -- planning -----------------------------------------------------------------------------------------
def catalogue(config: SelftestConfig) -> tuple[list[RegisteredCheck], list[RegisteredCheck]]:
    """(every check, the checks this selftest runs)."""
    every = list(config.checks) if config.checks is not None else all_checks()
    if not config.only_checks:
        return every, every
    unknown = [g for g in config.only_checks if not any(fnmatch.fnmatchcase(c.spec.id, g) for c in every)]
    if unknown:
        raise ValueError(f"no check matches {', '.join(map(repr, unknown))} (see `conformance checks`)")
    return every, [c for c in every if any(fnmatch.fnmatchcase(c.spec.id, g) for g in config.only_checks)]


def relevant_faults(config: SelftestConfig, chosen: Sequence[RegisteredCheck]) -> list[Fault]:
    """The faults that declare one of the chosen checks: all of them must run to judge those checks."""
    faults = config.faults if config.faults is not None else FAULTS
    ids = {c.spec.id for c in chosen}
    return [f for f in faults.values() if not config.only_checks or ids & set(f.killed_by)]


def plan(config: SelftestConfig, chosen: Sequence[RegisteredCheck]) -> list[Subject]:
    """Clean first, then the chosen variants and faults."""
    variants = config.variants if config.variants is not None else VARIANTS
    only_f, only_v = config.only_faults, config.only_variants
    if only_f is not None and only_v is None:
        only_v = ()
    if only_v is not None and only_f is None:
        only_f = ()
    faults = config.faults if config.faults is not None else FAULTS
    unknown = [n for n in only_f or () if n not in faults] + [n for n in only_v or () if n not in variants]
    if unknown:
        raise ValueError(f"unknown fault or variant: {', '.join(unknown)} (see `conformance serve --list-faults`)")
    subjects = [Subject(SubjectKind.CLEAN, CLEAN, "the reference server as shipped")]
    chosen_variants = [v for v in variants.values() if only_v is None or v.name in only_v]
    combine = only_v is None and not config.thorough and len(chosen_variants) > 1
    everywhere = [v for v in chosen_variants if set(v.profiles) == {p.value for p in Profile}]
    if combine:
        subjects.append(Subject(SubjectKind.COMBINED, ALL_VARIANTS, "every legal variant at once (those legal "
                                "under every profile)", variants=tuple(v.name for v in everywhere),
                                flags=tuple(dict.fromkeys(f for v in everywhere for f in v.flags))))
    subjects += [Subject(SubjectKind.VARIANT, v.name, v.description, variants=(v.name,),
                         skip_expensive=combine and v in everywhere, flags=v.flags,
                         profiles=tuple(Profile(p) for p in v.profiles))
                 for v in chosen_variants]
    subjects += [Subject(SubjectKind.FAULT, f.name, f.description, tuple(f.killed_by))
                 for f in relevant_faults(config, chosen) if only_f is None or f.name in only_f]
    return subjects


Stage = tuple[Depth, Profile, tuple[RegisteredCheck, ...]]


def _depths_for(check: RegisteredCheck, mode: DepthMode) -> list[Depth]:
    wanted = [d for d in mode.depths if d in check.spec.depths]
    # A check that exists at only the other depth still runs there: else it could never be judged.
    return wanted or [check.spec.depths[0]]


def _strictest_profile(check: RegisteredCheck, allowed: tuple[Profile, ...] | None = None) -> Profile | None:
    # `documented` requires everything `openai` does and the GET quirk on top.
    profiles = [p for p in check.spec.profiles if allowed is None or p in allowed]
    if not profiles:
        return None  # the check does not apply where the subject is legal
    return Profile.DOCUMENTED if Profile.DOCUMENTED in profiles else profiles[0]


def _group(pairs: Iterable[tuple[Depth, Profile, RegisteredCheck]]) -> list[Stage]:
    order = [(d, p) for d in (Depth.QUICK, Depth.FULL) for p in (Profile.OPENAI, Profile.DOCUMENTED)]
    buckets: dict[tuple[Depth, Profile], list[RegisteredCheck]] = {}
    for depth, profile, check in pairs:
        buckets.setdefault((depth, profile), []).append(check)
    return [(d, p, tuple(buckets[(d, p)])) for d, p in order if (d, p) in buckets]


def stages(subject: Subject, checks: Sequence[RegisteredCheck], mode: DepthMode, *, wide: bool) -> list[Stage]:
    """The engine runs one subject needs, cheapest first.

    Clean: every check at every depth of the mode, in its strictest profile. Variants: the same at
    the mode's deepest depth only (a variant changes framing and shape, which every probe of a check
    sees alike; full probes are a superset of quick ones), without the expensive checks when the
    combined subject runs those. Faults: each declared check at the quick depth first and at full
    only if that did not kill (the caller stops at the first stage that kills), in every profile it
    supports.
    """
    if subject.kind is SubjectKind.CLEAN:
        return _group((d, p, c) for c in checks for d in _depths_for(c, mode)
                      if (p := _strictest_profile(c)) is not None)
    if subject.kind in (SubjectKind.VARIANT, SubjectKind.COMBINED):
        kept = [c for c in checks if not (subject.skip_expensive and c.spec.requests > EXPENSIVE_REQUESTS)]
        return _group((_depths_for(c, mode)[-1], p, c) for c in kept
                      if (p := _strictest_profile(c, subject.profiles)) is not None)
    chosen = checks if wide else [c for c in checks if c.spec.id in subject.declared]
    return _group((d, p, c) for c in chosen for d in _depths_for(c, mode) for p in c.spec.profiles)


# -- execution ----------------------------------------------------------------------------------------
def _run_stage(base_url: str, subject: Subject, stage: Stage, concurrency: int) -> tuple[list[CheckVerdict], int]:
    depth, profile, checks = stage
    config = RunConfig(
        target=Target(base_url, DEFAULT_MODEL, SELFTEST_API_KEY),
        limits=SELFTEST_LIMITS,
        depth=depth,
        profile=profile,
        concurrency=concurrency,
        builtin_target=True,
    )
    result = run(config, checks=checks)
    verdicts = [CheckVerdict(r.spec.id, r.spec.level, r.verdict, depth, profile, _first_line(r.message))
                for r in result.results]
    return verdicts, result.requests


def _first_line(message: str, limit: int = 240) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= limit else line[:limit] + "…"


def execute(subject: Subject, checks: Sequence[RegisteredCheck], mode: DepthMode, *, wide: bool = False,
            concurrency: int = 4, prove: bool = False) -> SubjectOutcome:
    """Start the subject's server, run its stages, stop it; never raises.

    A fault run stops at the first stage that kills it. `prove=True` (the proof pass) instead runs
    each of `checks` against the fault until that check fails, to show that it can.
    """
    started = time.monotonic()
    verdicts: list[CheckVerdict] = []
    requests = 0
    proven: set[str] = set()
    try:
        with ServerThread(subject.server_config()) as server:
            for depth, profile, stage_checks in stages(subject, checks, mode, wide=wide or prove):
                todo = tuple(c for c in stage_checks if c.spec.id not in proven)
                if not todo:
                    continue
                stage_verdicts, stage_requests = _run_stage(server.base_url, subject, (depth, profile, todo),
                                                            concurrency)
                verdicts += stage_verdicts
                requests += stage_requests
                if prove:
                    proven |= {v.check_id for v in stage_verdicts if v.verdict is Verdict.FAILED}
                elif subject.kind is SubjectKind.FAULT and _kills(subject, stage_verdicts) and not wide:
                    break
    except Exception as exc:  # noqa: BLE001 - one broken subject must not hide the others' results
        return SubjectOutcome(subject, tuple(verdicts), time.monotonic() - started, requests,
                              problem=f"{type(exc).__name__}: {exc}")
    return SubjectOutcome(subject, tuple(verdicts), time.monotonic() - started, requests)


def proof_obligations(outcomes: Sequence[SubjectOutcome], checks: Sequence[RegisteredCheck],
                      mode: DepthMode) -> dict[Subject, list[str]]:
    """MUST/SHOULD checks that killed nothing yet, each with one declaring fault to prove it on.

    A fault run stops at its first kill, so a check that needs full depth may not have run at all
    against the faults that declare it. Each such check gets one more try on the first declaring
    fault where it did not run at every depth and profile; a check no fault declares stays unproven.
    """
    faults = [o for o in outcomes if o.subject.kind is SubjectKind.FAULT and o.problem is None]
    failed = {v.check_id for o in faults for v in o.verdicts if v.verdict is Verdict.FAILED}
    obligations: dict[Subject, list[str]] = {}
    for check in checks:
        if check.spec.level is Level.INFO or check.spec.id in failed:
            continue
        runs_needed = len(_depths_for(check, mode)) * len(check.spec.profiles)
        for outcome in faults:
            runs = sum(v.check_id == check.spec.id for v in outcome.verdicts)
            if check.spec.id in outcome.subject.declared and runs < runs_needed:
                obligations.setdefault(outcome.subject, []).append(check.spec.id)
                break
    return obligations


def _kills(subject: Subject, verdicts: Iterable[CheckVerdict]) -> bool:
    return any(v.verdict is Verdict.FAILED and v.check_id in subject.declared for v in verdicts)


# -- scoring ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VariantResult:
    """The clean server or one legal variant: it must pass."""

    name: str
    description: str
    passed: bool
    problems: tuple[str, ...]
    counts: dict[str, int]
    duration_s: float
    # Checks that skipped without it being a problem (VARIANT_SKIPS, or skipped on clean too).
    allowed_skips: tuple[str, ...] = ()
    # SHOULD checks that flagged the variant's legal deviation from OpenAI, as declared.
    flagged: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "passed": self.passed,
                "problems": list(self.problems), "counts": self.counts, "allowed_skips": list(self.allowed_skips),
                "flagged": list(self.flagged),
                "duration_s": round(self.duration_s, 3)}


@dataclass(frozen=True, slots=True)
class FaultResult:
    """One seeded fault: it must be killed by at least one of the checks it declares."""

    name: str
    description: str
    declared: tuple[str, ...]
    unknown: tuple[str, ...]  # declared IDs missing from the catalogue (a typo, or a removed check)
    killed_by: tuple[str, ...]  # declared checks that failed
    collateral: tuple[str, ...]  # other checks that failed (wide runs only)
    depth: Depth | None  # the depth of the kill
    problems: tuple[str, ...]  # declared checks that errored, a server that did not start
    duration_s: float

    # The strongest level among the checks that killed it: MUST (a kill) or SHOULD (a detection).
    level: Level | None = None

    @property
    def killed(self) -> bool:
        return bool(self.killed_by)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "declared": list(self.declared),
                "unknown_checks": list(self.unknown), "killed": self.killed, "killed_by": list(self.killed_by),
                "collateral": list(self.collateral), "depth": self.depth.value if self.depth else None,
                "level": self.level.value if self.level else None,
                "problems": list(self.problems), "duration_s": round(self.duration_s, 3)}


@dataclass(frozen=True, slots=True)
class SelftestReport:
    clean: VariantResult
    variants: tuple[VariantResult, ...]
    faults: tuple[FaultResult, ...]
    # Every check of the catalogue → the faults it killed (empty: the check never failed).
    kills: dict[str, tuple[str, ...]]
    levels: dict[str, Level]
    # False when only some faults ran: then an unkilling check is not evidence of anything.
    complete: bool
    duration_s: float
    requests: int
    depth: DepthMode = DepthMode.AUTO
    # Every variant at once (absent in thorough or variant-restricted runs).
    combined: VariantResult | None = None
    outcomes: tuple[SubjectOutcome, ...] = field(default=(), repr=False)

    @property
    def judged_checks(self) -> list[str]:
        """MUST and SHOULD checks: each must kill at least one fault."""
        return [c for c, level in self.levels.items() if level is not Level.INFO]

    @property
    def unproven(self) -> list[str]:
        return [c for c in self.judged_checks if not self.kills[c]]

    @property
    def survivors(self) -> list[FaultResult]:
        return [f for f in self.faults if not f.killed]

    @property
    def unknown_declarations(self) -> dict[str, tuple[str, ...]]:
        return {f.name: f.unknown for f in self.faults if f.unknown}

    @property
    def ok(self) -> bool:
        return (self.clean.passed and all(v.passed for v in self.variants) and not self.survivors
                and (self.combined is None or self.combined.passed)
                and not self.unknown_declarations and (not self.complete or not self.unproven))

    def score_line(self) -> str:
        killed, total = len(self.faults) - len(self.survivors), len(self.faults)
        must_kills = sum(f.level is Level.MUST for f in self.faults)
        passed, variants = sum(v.passed for v in self.variants), len(self.variants)
        judged = self.judged_checks
        proven = len(judged) - len(self.unproven)
        partial = "" if self.complete else " (partial run)"
        return (f"faults caught: {killed}/{total} ({_percent(killed, total)}: {must_kills} MUST kills, "
                f"{killed - must_kills} SHOULD detections), variants passed: {passed}/{variants} "
                f"({_percent(passed, variants)}), checks proven: {proven}/{len(judged)}{partial}")

    def problems(self) -> list[str]:
        """Every reason the selftest fails, one line each."""
        lines = [f"clean server: {p}" for p in self.clean.problems]
        if self.combined is not None:
            lines += [f"all variants at once: {p}" for p in self.combined.problems]
        lines += [f"variant {v.name}: {p}" for v in self.variants for p in v.problems]
        for fault in self.faults:
            if fault.unknown:
                lines.append(f"fault {fault.name}: killed_by names unknown check(s) {', '.join(fault.unknown)}")
            if not fault.killed:
                why = "; ".join(fault.problems) or "every declared check passed"
                lines.append(f"fault {fault.name} survived ({', '.join(fault.declared) or 'no checks declared'}): "
                             f"{why}")
        if self.complete:
            lines += [f"check {c} [{self.levels[c].value}] kills no fault: it is not shown to be able to fail"
                      for c in self.unproven]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "score": self.score_line(),
            "complete": self.complete,
            "depth": self.depth.value,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "clean": self.clean.to_json(),
            "combined": self.combined.to_json() if self.combined else None,
            "variants": [v.to_json() for v in self.variants],
            "faults": [f.to_json() for f in self.faults],
            "checks": {c: {"level": self.levels[c].value, "kills": list(k)} for c, k in self.kills.items()},
            "unproven": self.unproven if self.complete else [],
            "problems": self.problems(),
        }


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "n/a"


def _judge_passing(outcome: SubjectOutcome, allowed_skips: frozenset[str]) -> VariantResult:
    """A clean or variant run passes when no MUST/SHOULD check failed, errored, was unsupported or
    skipped (unless it skips on the clean server too, or VARIANT_SKIPS allows it), and no INFO check
    errored."""
    subject = outcome.subject
    problems = [f"the server did not run: {outcome.problem}"] if outcome.problem else []
    counts: dict[str, int] = {}
    skipped: list[str] = []
    flagged: list[str] = []
    for v in outcome.verdicts:
        counts[v.verdict.value] = counts.get(v.verdict.value, 0) + 1
        at = f"{v.check_id} [{v.level.value}, {v.depth.value}]"
        if v.verdict is Verdict.ERROR:
            problems.append(f"{at} errored: {v.message}")
        elif v.level is Level.INFO:
            continue
        elif v.check_id in subject.flags and not (v.verdict in (Verdict.SKIPPED, Verdict.NOT_APPLICABLE)
                                                  and subject.may_skip(v.check_id)):
            if v.level is not Level.SHOULD:
                problems.append(f"{at}: a legal variant may only trip SHOULD checks")
            elif v.verdict is Verdict.FAILED:
                flagged.append(v.check_id)
        elif v.verdict in (Verdict.FAILED, Verdict.UNSUPPORTED, Verdict.INCONCLUSIVE):
            problems.append(f"{at} {v.verdict.value}: {v.message}")
        elif v.verdict in (Verdict.SKIPPED, Verdict.NOT_APPLICABLE):
            if v.check_id in allowed_skips or subject.may_skip(v.check_id) or v.check_id in subject.flags:
                skipped.append(v.check_id)
            else:
                problems.append(f"{at} {v.verdict.value}: {v.message}")
    ran = {v.check_id for v in outcome.verdicts if v.check_id not in skipped}
    problems += [f"{c} [SHOULD] did not flag this legal deviation from OpenAI (it must, or --strict cannot)"
                 for c in subject.flags if c in ran and c not in flagged]
    return VariantResult(subject.name, subject.description, not problems, tuple(problems), counts,
                         outcome.duration_s, tuple(dict.fromkeys(skipped)), tuple(dict.fromkeys(flagged)))


def _judge_fault(outcome: SubjectOutcome, known: set[str]) -> FaultResult:
    subject = outcome.subject
    failed = list(dict.fromkeys(v.check_id for v in outcome.verdicts if v.verdict is Verdict.FAILED))
    killed_by = tuple(c for c in failed if c in subject.declared)
    kill_depths = [v.depth for v in outcome.verdicts if v.verdict is Verdict.FAILED and v.check_id in killed_by]
    problems = [f"{v.check_id} [{v.depth.value}] errored: {v.message}" for v in outcome.verdicts
                if v.verdict is Verdict.ERROR and v.check_id in subject.declared]
    if outcome.problem:
        problems.insert(0, f"the server did not run: {outcome.problem}")
    return FaultResult(
        name=subject.name,
        description=subject.description,
        declared=subject.declared,
        unknown=tuple(c for c in subject.declared if c not in known),
        killed_by=killed_by,
        collateral=tuple(c for c in failed if c not in subject.declared),
        depth=min(kill_depths, key=lambda d: d is Depth.FULL) if kill_depths else None,
        problems=tuple(problems),
        duration_s=outcome.duration_s,
        level=min((v.level for v in outcome.verdicts if v.verdict is Verdict.FAILED and v.check_id in killed_by),
                  key=list(Level).index, default=None),
    )


def score(outcomes: Sequence[SubjectOutcome], checks: Sequence[RegisteredCheck], *, complete: bool,
          duration_s: float = 0.0, depth: DepthMode = DepthMode.AUTO, known: set[str] | None = None
          ) -> SelftestReport:
    """Judge the runs of `checks` (`known`: every check ID, to tell a typo in `killed_by`); a pure
    function, so the scoring itself can be tested without servers."""
    known = known if known is not None else {c.spec.id for c in checks}
    clean_outcome = next(o for o in outcomes if o.subject.kind is SubjectKind.CLEAN)
    clean_skips = frozenset(v.check_id for v in clean_outcome.verdicts if v.verdict is Verdict.SKIPPED)
    clean = _judge_passing(clean_outcome, frozenset())
    variants = tuple(_judge_passing(o, clean_skips) for o in outcomes if o.subject.kind is SubjectKind.VARIANT)
    combined = next((_judge_passing(o, clean_skips) for o in outcomes if o.subject.kind is SubjectKind.COMBINED),
                    None)
    faults = tuple(_judge_fault(o, known) for o in outcomes if o.subject.kind is SubjectKind.FAULT)
    kills: dict[str, list[str]] = {c.spec.id: [] for c in checks}
    for fault in faults:
        for check_id in (*fault.killed_by, *fault.collateral):
            if check_id in kills:
                kills[check_id].append(fault.name)
    return SelftestReport(
        clean=clean,
        variants=variants,
        faults=faults,
        kills={c: tuple(f) for c, f in kills.items()},
        levels={c.spec.id: c.spec.level for c in checks},
        complete=complete,
        duration_s=duration_s,
        requests=sum(o.requests for o in outcomes),
        depth=depth,
        combined=combined,
        outcomes=tuple(outcomes),
    )


def selftest(config: SelftestConfig | None = None, *, on_event: EventHandler | None = None) -> SelftestReport:
    """Certify the clean reference server, every variant and every fault, in parallel; score them."""
    config = config or SelftestConfig()
    emit = on_event or (lambda event: None)
    every, checks = catalogue(config)
    subjects = plan(config, checks)
    started = time.monotonic()
    emit(SelftestStarted(len(subjects)))
    outcomes: list[SubjectOutcome] = []
    with _pool(config, len(subjects)) as pool:
        futures = [_submit(pool, config, s, checks) for s in subjects]
        for future in concurrent.futures.as_completed(futures):
            outcomes.append(future.result())
            emit(SubjectFinished(outcomes[-1], len(outcomes), len(subjects)))
        if not config.wide:
            outcomes = _prove(pool, config, outcomes, checks, emit)
    position = {s: i for i, s in enumerate(subjects)}
    outcomes.sort(key=lambda o: position[o.subject])
    # Only a run of every fault that declares a check can show that the check kills none.
    ran = {s.name for s in subjects if s.kind is SubjectKind.FAULT}
    complete = all(f.name in ran for f in relevant_faults(config, checks))
    return score(outcomes, checks, complete=complete, duration_s=time.monotonic() - started, depth=config.depth,
                 known={c.spec.id for c in every})


def _prove(pool: concurrent.futures.Executor, config: SelftestConfig, outcomes: list[SubjectOutcome],
           checks: Sequence[RegisteredCheck], emit: EventHandler) -> list[SubjectOutcome]:
    """The proof pass: run the not yet proven checks against a fault that declares them; merge."""
    by_id = {c.spec.id: c for c in checks}
    obligations = proof_obligations(outcomes, checks, config.depth)
    futures = {_submit(pool, config, subject, [by_id[i] for i in ids], prove=True): subject
               for subject, ids in obligations.items()}
    merged = {o.subject: o for o in outcomes}
    for future in concurrent.futures.as_completed(futures):
        extra = future.result()
        first = merged[extra.subject]
        merged[extra.subject] = SubjectOutcome(first.subject, first.verdicts + extra.verdicts,
                                               first.duration_s + extra.duration_s, first.requests + extra.requests,
                                               first.problem or extra.problem)
        emit(ProofFinished(extra, tuple(obligations[extra.subject])))
    return list(merged.values())


def _in_processes(config: SelftestConfig) -> bool:
    return config.processes and config.checks is None and config.jobs > 1 and _spawn_works()


def _spawn_works() -> bool:
    """A spawned child re-imports the parent's main script; under `python -` there is none to import."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.exists(main_file)


def _pool(config: SelftestConfig, subjects: int) -> concurrent.futures.Executor:
    jobs = max(1, min(config.jobs, subjects))
    if _in_processes(config):
        # spawn, not fork: forking a process that runs server threads can copy a held lock.
        return concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    return concurrent.futures.ThreadPoolExecutor(max_workers=jobs)


def _submit(pool: concurrent.futures.Executor, config: SelftestConfig, subject: Subject,
            checks: Sequence[RegisteredCheck], *, prove: bool = False) -> concurrent.futures.Future[SubjectOutcome]:
    if _in_processes(config):
        ids = tuple(c.spec.id for c in checks)
        return pool.submit(_execute_registered, subject, ids, config.depth, wide=config.wide,
                           concurrency=config.concurrency, prove=prove)
    return pool.submit(execute, subject, checks, config.depth, wide=config.wide, concurrency=config.concurrency,
                       prove=prove)


def _execute_registered(subject: Subject, check_ids: tuple[str, ...], mode: DepthMode, *, wide: bool,
                        concurrency: int, prove: bool) -> SubjectOutcome:
    """`execute` in a worker process, which finds the checks in its own registry by ID."""
    # A fault that crashes the handler is expected here: its traceback is noise, the verdicts tell.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    by_id = {c.spec.id: c for c in all_checks()}
    return execute(subject, [by_id[i] for i in check_ids], mode, wide=wide, concurrency=concurrency, prove=prove)


# -- text rendering (the CLI prints these) --------------------------------------------------------------
def kill_table(report: SelftestReport) -> str:
    """Which checks killed which faults, one row per check; unproven MUST/SHOULD checks are marked."""
    width = max((len(c) for c in report.kills), default=10)
    lines = [f"{'CHECK':<{width}}  LEVEL   KILLS"]
    for check_id, faults in sorted(report.kills.items()):
        level = report.levels[check_id]
        if faults:
            shown = ", ".join(faults)
        else:
            shown = "-" if level is Level.INFO or not report.complete else "UNPROVEN: kills no fault"
        lines.append(f"{check_id:<{width}}  {level.value:<6}  {shown}")
    return "\n".join(lines)


def fault_table(report: SelftestReport) -> str:
    """One row per fault: who killed it, at which depth, or why it survived."""
    width = max((len(f.name) for f in report.faults), default=10)
    lines = [f"{'FAULT':<{width}}  DEPTH  KILLED BY"]
    for fault in report.faults:
        if fault.killed:
            extra = f" (also: {', '.join(fault.collateral)})" if fault.collateral else ""
            depth = fault.depth.value if fault.depth else "-"
            lines.append(f"{fault.name:<{width}}  {depth:<5}  {', '.join(fault.killed_by)}{extra}")
        else:
            lines.append(f"{fault.name:<{width}}  -      SURVIVED (declared: {', '.join(fault.declared) or 'none'})")
    return "\n".join(lines)


def variant_table(report: SelftestReport) -> str:
    rows = [report.clean, *([report.combined] if report.combined else []), *report.variants]
    width = max(len(r.name) for r in rows)
    lines = []
    for row in rows:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(row.counts.items()))
        allowed = f" (allowed skips: {', '.join(row.allowed_skips)})" if row.allowed_skips else ""
        lines.append(f"{row.name:<{width}}  {'passed' if row.passed else 'FAILED'}  {counts}{allowed}")
    return "\n".join(lines)
