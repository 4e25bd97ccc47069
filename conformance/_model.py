"""The data model every layer shares: check metadata, typed failures and verdicts.

Everything here is frozen and JSON-able; results.json is built from these objects only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Level(enum.StrEnum):
    """RFC 2119 strength of a check: MUST failures fail a certification."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    INFO = "INFO"


class Feature(enum.StrEnum):
    CORE = "core"
    STREAMING = "streaming"
    TOOLS = "tools"
    JSON_MODE = "json_mode"
    METHODS = "methods"


# Features a target may declare unsupported and still be certified (for the rest).
OPTIONAL_FEATURES = (Feature.STREAMING, Feature.TOOLS, Feature.JSON_MODE)


class Verdict(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    # The check's premise does not hold for this target (e.g. it enforces no API key): nothing to judge.
    NOT_APPLICABLE = "not_applicable"
    # Not judged for another reason (e.g. the SDK is not installed): a MUST skipped leaves proof missing.
    SKIPPED = "skipped"
    # The target declared the feature or parameter unsupported (a 4xx naming it).
    UNSUPPORTED = "unsupported"
    # The model's output did not allow a judgement (e.g. a JSON reply cut by max_tokens twice).
    INCONCLUSIVE = "inconclusive"
    # The harness's or the network's fault: never counted as non-conformance.
    ERROR = "error"


class Basis(enum.StrEnum):
    """Why a check exists, which bounds its level: only `document` and `client-break` may be MUST."""

    DOCUMENT = "document"
    CLIENT_BREAK = "client-break"
    OPENAI = "openai"


class RunVerdict(enum.StrEnum):
    PASSED = "passed"  # CERTIFIED
    FAILED = "failed"
    # A selection (--only/--skip/-k) ran: never a certification, whatever passed.
    PARTIAL = "partial"
    INCOMPLETE = "incomplete"
    INVALID = "invalid"

    @property
    def label(self) -> str:
        """What every report calls it: `CERTIFIED`, `NOT CERTIFIED`, `PARTIAL RUN`, …"""
        return RUN_LABELS[self]


RUN_LABELS = {RunVerdict.PASSED: "CERTIFIED", RunVerdict.FAILED: "NOT CERTIFIED", RunVerdict.PARTIAL: "PARTIAL RUN",
              RunVerdict.INCOMPLETE: "INCOMPLETE", RunVerdict.INVALID: "INVALID RUN"}


class FeatureVerdict(enum.StrEnum):
    CERTIFIED = "certified"
    FAILED = "failed"
    # The target declared the optional feature unsupported: legal, and named in the headline.
    UNSUPPORTED = "unsupported"
    # A MUST check of the feature could not be judged: no certification.
    PARTIAL = "partial"
    NOT_TESTED = "not-tested"


class Depth(enum.StrEnum):
    QUICK = "quick"
    FULL = "full"


class Profile(enum.StrEnum):
    """Which behaviour is required: OpenAI's POST route, or also the documented GET quirk."""

    OPENAI = "openai"
    DOCUMENTED = "documented"


@dataclass(frozen=True, slots=True)
class Clause:
    """Where a rule comes from: a section of documented-api.txt or the OpenAI behaviour it follows."""

    source: str  # "documented-api" or "openai"
    section: str
    quote: str

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "section": self.section, "quote": self.quote}

    def __str__(self) -> str:
        return f"{self.source} § {self.section}: “{self.quote}”"


def documented(section: str, quote: str) -> Clause:
    return Clause("documented-api", section, quote)


def openai(section: str, quote: str) -> Clause:
    return Clause("openai", section, quote)


# The most requests a load check sends together (its slots are held for them at once).
LOAD_STREAMS = 8


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """Metadata of one registered check; the function itself lives in the registry."""

    id: str
    level: Level
    feature: Feature
    clause: Clause
    description: str
    # Outcomes the check accepts, e.g. ("400", "422") for a rejected value.
    accepts: tuple[str, ...] = ()
    # Upper bound of HTTP requests the check makes at each depth.
    requests: int = 1
    depths: tuple[Depth, ...] = (Depth.QUICK, Depth.FULL)
    profiles: tuple[Profile, ...] = (Profile.OPENAI, Profile.DOCUMENTED)
    basis: Basis = Basis.DOCUMENT
    # The document's words (basis document), the client and its evidence link (client-break), or the
    # OpenAI reference (openai).
    evidence: str = ""
    # The verdict depends on what the model generates (sampling, tools, JSON mode): `--repeat K` runs
    # the check K times and a verdict that changes between runs makes it flaky.
    model_dependent: bool = False
    # A load check (what it measures is the target under its own load): its requests, at most
    # LOAD_STREAMS, go out together, with slots held for them, beside the last of the other checks; when
    # it does not pass there, it runs again after every other check at the full --concurrency with nothing
    # else in flight, and that run decides.
    load: bool = False

    def effective_level(self, strict: bool) -> Level:
        """Under --strict every SHOULD counts as MUST (exact OpenAI parity)."""
        return Level.MUST if strict and self.level is Level.SHOULD else self.level

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "level": self.level.value,
            "feature": self.feature.value,
            "basis": self.basis.value,
            "evidence": self.evidence,
            "clause": self.clause.to_json(),
            "description": self.description,
            "accepts": list(self.accepts),
            "requests": self.requests,
            "depths": [d.value for d in self.depths],
            "profiles": [p.value for p in self.profiles],
            "model_dependent": self.model_dependent,
        }


@dataclass(frozen=True, slots=True)
class Failure:
    """One violated expectation, phrased as Expected / Received / Where."""

    expected: str
    received: str
    where: str
    # Index into the check's exchanges, so a report can show the offending transcript.
    exchange: int | None = None
    # Byte range in that exchange's raw SSE body, to mark the offending event.
    byte_range: tuple[int, int] | None = None

    def __str__(self) -> str:
        return f"Expected: {self.expected}\nReceived: {self.received}\nWhere: {self.where}"

    def to_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "received": self.received,
            "where": self.where,
            "exchange": self.exchange,
            "byte_range": list(self.byte_range) if self.byte_range else None,
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    spec: CheckSpec
    verdict: Verdict
    message: str
    duration_s: float
    failures: tuple[Failure, ...] = ()
    exchanges: tuple[dict[str, Any], ...] = ()
    requests: int = 0
    tokens: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    # For an unsupported verdict: the optional feature the target declared unsupported.
    declared_unsupported: Feature | None = None
    # --repeat: the verdicts of the check's other runs (this record is the most severe run's).
    repeats: tuple[Verdict, ...] = ()

    @property
    def verdicts(self) -> tuple[Verdict, ...]:
        return (self.verdict, *self.repeats)

    @property
    def flaky(self) -> bool:
        """The verdict changed between the runs of a repeated check: it certifies nothing either way."""
        return len(set(self.verdicts)) > 1

    @property
    def passed_runs(self) -> int:
        return sum(v is Verdict.PASSED for v in self.verdicts)

    def to_json(self) -> dict[str, Any]:
        repeated: dict[str, Any] = {}
        if self.repeats:
            runs = len(self.verdicts)
            repeated = {"repeats": [v.value for v in self.repeats], "flaky": self.flaky,
                        "pass_rate": {"passed": self.passed_runs, "runs": runs,
                                      "rate": round(self.passed_runs / runs, 4)}}
        return {
            **self.spec.to_json(),
            **repeated,
            "outcome": self.verdict.value,
            "declared_unsupported": self.declared_unsupported.value if self.declared_unsupported else None,
            "message": self.message,
            "duration_s": round(self.duration_s, 4),
            "failures": [f.to_json() for f in self.failures],
            "requests_made": self.requests,
            "tokens_used": self.tokens,
            "details": self.details,
            "transcripts": list(self.exchanges),
        }


# -- what a run tells its observer as it goes (`run(config, on_event=...)`) ---------------------------
@dataclass(frozen=True, slots=True)
class RunStarted:
    """The checks start (the target was reached; the chat route may still be being found)."""

    planned: int


@dataclass(frozen=True, slots=True)
class ChatRouteFound:
    """Where chat is served: {method, path, source: discovered|forced|none, probes}."""

    route: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CheckFinished:
    result: CheckResult
    done: int
    planned: int


@dataclass(frozen=True, slots=True)
class CheckNotExecuted:
    """The budget or the run deadline ran out before the check sent anything."""

    spec: CheckSpec
    reason: str | None


@dataclass(frozen=True, slots=True)
class RunFinished:
    verdict: RunVerdict
    headline: str


RunEvent = RunStarted | ChatRouteFound | CheckFinished | CheckNotExecuted | RunFinished
