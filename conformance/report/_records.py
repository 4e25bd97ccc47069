"""results.json as typed, frozen records: what every renderer reads.

`load_results` checks a file against results.schema.json (the one gate for foreign or damaged
files) and parses it; `Results.from_json` parses a document already known to be valid, such as
the engine's own. Fields a 1.x minor version added are optional here, so older files still load;
fields unknown to this version are ignored, as the schema asks of readers. The run's verdict is
the engine's, as written: nothing here re-decides it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._causes import RootCause
from .._model import Basis, Clause, Depth, Failure, Feature, FeatureVerdict, Level, Profile, RunVerdict, Verdict
from ..errors import UsageError

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
SUPPORTED_MAJOR = "1"


@functools.cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def schema_problems(results: Any, limit: int = 5) -> list[str]:
    """Violations of results.schema.json, each with its JSON path."""
    errors = sorted(_validator().iter_errors(results), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{e.json_path}: {e.message[:200]}" for e in errors[:limit]]


def load_results(path: Path) -> Results:
    """A results.json, checked against its schema; every problem is one UsageError line."""
    return Results.from_json(_checked_document(path))


def _checked_document(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or "checks" not in document or "schema_version" not in document:
        raise UsageError(f"{path} is not a results.json of `conformance run` (no schema_version/checks)")
    major = str(document["schema_version"]).split(".")[0]
    if major != SUPPORTED_MAJOR:
        raise UsageError(f"{path} has schema_version {document['schema_version']!r}; this version reads "
                         f"{SUPPORTED_MAJOR}.x (re-run with a matching suite)")
    problems = schema_problems(document)
    if problems:
        raise UsageError(f"{path} does not match results.schema.json: {problems[0]}")
    return document


# -- one exchange ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    # The key is never here: `Bearer $OPENAI_API_KEY`, `***REDACTED***` or a made-up `sk-wrong-…` key.
    headers: Mapping[str, str]
    body: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Request:
        return cls(str(data["method"]), str(data["url"]), dict(data["headers"]), data["body"])


@dataclass(frozen=True, slots=True)
class Response:
    status: int | None  # None: no response (the transcript's error says why)
    headers: Mapping[str, str]
    body: str  # raw (raw SSE for a stream), cut at 16 KiB
    body_bytes: int
    truncated: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Response:
        return cls(data["status"], dict(data["headers"]), str(data["body"]), int(data["body_bytes"]),
                   bool(data["truncated"]))


@dataclass(frozen=True, slots=True)
class Contended:
    """The request failed only while others were in flight."""

    kind: str
    in_flight_with: int


@dataclass(frozen=True, slots=True)
class SSETiming:
    events: int
    # Arrival of each network chunk (offset, t, bytes) and of each event: (byte offset, length, seconds).
    chunks: tuple[Mapping[str, Any], ...]
    event_offsets: tuple[tuple[int, int, float], ...]
    comments: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SSETiming:
        offsets = tuple((int(e[0]), int(e[1]), float(e[2])) for e in data["event_offsets"])
        return cls(int(data["events"]), tuple(data["chunks"]), offsets, int(data.get("comments", 0)))


@dataclass(frozen=True, slots=True)
class Transcript:
    """One HTTP exchange as a check saw it; several checks may hold the same one (a shared exchange)."""

    request: Request
    response: Response
    error: str | None  # a transport error: no complete response
    elapsed_s: float
    ttfb_s: float | None
    limit_exceeded: str | None = None
    # Earlier attempts of a retried request (429/503): open-ended, kept as written.
    attempts: tuple[Mapping[str, Any], ...] = ()
    contended: Contended | None = None
    sse: SSETiming | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transcript:
        contended = data.get("contended")
        sse = data.get("sse")
        return cls(Request.from_json(data["request"]), Response.from_json(data["response"]), data["error"],
                   float(data["elapsed_s"]), None if data["ttfb_s"] is None else float(data["ttfb_s"]),
                   data.get("limit_exceeded"), tuple(data.get("attempts") or ()),
                   Contended(str(contended["kind"]), int(contended["in_flight_with"])) if contended else None,
                   SSETiming.from_json(sse) if sse else None)

    @property
    def requests(self) -> int:
        """Requests this exchange took: the final attempt and each retried one (none if never sent)."""
        if (self.error or "").startswith("not sent"):
            return 0
        return 1 + len(self.attempts)


# -- one check --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PassRate:
    passed: int
    runs: int
    rate: float


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One check's verdict with its evidence, as results.json's `checks[]` holds it."""

    id: str
    level: Level
    feature: Feature
    clause: Clause
    description: str
    outcome: Verdict
    message: str
    duration_s: float
    failures: tuple[Failure, ...]
    requests: int  # the declared upper bound
    requests_made: int  # sent by this check (a shared exchange counts for its sender only)
    transcripts: tuple[Transcript, ...]
    basis: Basis | None = None  # None: written before checks named their basis
    evidence: str = ""
    declared_unsupported: Feature | None = None
    accepts: tuple[str, ...] = ()
    # --repeat: the verdicts of the check's other runs (`outcome` and the evidence are the most severe run's).
    repeats: tuple[Verdict, ...] = ()
    flaky: bool = False
    pass_rate: PassRate | None = None
    model_dependent: bool = False
    tokens_used: int = 0
    depths: tuple[Depth, ...] = ()
    profiles: tuple[Profile, ...] = ()
    # Check-specific findings (e.g. the method matrix): open-ended, kept as written.
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def verdicts(self) -> tuple[Verdict, ...]:
        return (self.outcome, *self.repeats)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckRecord:
        clause = data["clause"]
        rate = data.get("pass_rate")
        unsupported = data.get("declared_unsupported")
        return cls(
            id=str(data["id"]), level=Level(data["level"]), feature=Feature(data["feature"]),
            clause=Clause(str(clause["source"]), str(clause["section"]), str(clause["quote"])),
            description=str(data["description"]), outcome=Verdict(data["outcome"]), message=str(data["message"]),
            duration_s=float(data["duration_s"]), failures=tuple(_failure(f) for f in data["failures"]),
            requests=int(data["requests"]), requests_made=int(data["requests_made"]),
            transcripts=tuple(Transcript.from_json(t) for t in data["transcripts"]),
            basis=Basis(data["basis"]) if "basis" in data else None, evidence=str(data.get("evidence", "")),
            declared_unsupported=Feature(unsupported) if unsupported else None,
            accepts=tuple(data.get("accepts") or ()), repeats=tuple(Verdict(v) for v in data.get("repeats") or ()),
            flaky=bool(data.get("flaky", False)),
            pass_rate=PassRate(int(rate["passed"]), int(rate["runs"]), float(rate["rate"])) if rate else None,
            model_dependent=bool(data.get("model_dependent", False)), tokens_used=int(data.get("tokens_used", 0)),
            depths=tuple(Depth(d) for d in data.get("depths") or ()),
            profiles=tuple(Profile(p) for p in data.get("profiles") or ()), details=data.get("details") or {},
        )


def _failure(data: Mapping[str, Any]) -> Failure:
    span = data["byte_range"]
    exchange = data["exchange"]
    return Failure(str(data["expected"]), str(data["received"]), str(data["where"]),
                   None if exchange is None else int(exchange), (int(span[0]), int(span[1])) if span else None)


# -- the run ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TargetRecord:
    base_url: str  # any password in the URL redacted
    model: str
    builtin: bool = False  # the built-in reference server was certified


@dataclass(frozen=True, slots=True)
class ChatRoute:
    """Where the target served chat, and how that was known."""

    method: str
    path: str
    source: str  # discovered, forced (--chat-path) or none (no route answered)
    probes: tuple[Mapping[str, Any], ...] = ()
    # Chat requests sent early on OpenAI's route before the route was known, and how many went again.
    early_sent: int = 0
    early_resent: int = 0


@dataclass(frozen=True, slots=True)
class Settings:
    """The run's settings (`config`), secrets redacted."""

    depth: Depth
    profile: Profile
    only: tuple[str, ...]
    skip: tuple[str, ...]
    concurrency: int
    api_key_given: bool
    limits: Mapping[str, float | None]
    repeat: int = 1

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settings:
        return cls(Depth(data["depth"]), Profile(data["profile"]), tuple(data["only"]), tuple(data["skip"]),
                   int(data["concurrency"]), data["api_key"] is not None, dict(data["limits"]),
                   int(data.get("repeat", 1)))


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    counts: Mapping[Verdict, int]  # a verdict an older file did not count is absent
    by_level: Mapping[Level, Mapping[Verdict, int]]
    features: Mapping[Feature, FeatureVerdict]  # in the file's order

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Summary:
        """Keys this version does not know (a feature, a verdict) are ignored."""
        features, verdicts = {f.value for f in Feature}, {v.value for v in Verdict}
        return cls(int(data["total"]), {v: int(data[v.value]) for v in Verdict if v.value in data},
                   {Level(level): {Verdict(v): int(n) for v, n in counts.items() if v in verdicts}
                    for level, counts in (data.get("by_level") or {}).items()},
                   {Feature(f): FeatureVerdict(v) for f, v in data["features"].items() if f in features})


# Root causes read back are the engine's own type (its `from_json`).
RootCauseRecord = RootCause


@dataclass(frozen=True, slots=True)
class ConcurrencyStep:
    from_: int
    to: int
    reason: str
    check: str | None = None


@dataclass(frozen=True, slots=True)
class Rerun:
    """A check re-run alone after contention left it unjudged."""

    id: str
    before: Verdict
    after: Verdict


@dataclass(frozen=True, slots=True)
class ConcurrencyRecord:
    """What the run did when requests failed only while others were in flight."""

    requested: int
    final: int
    lowered: bool
    reason: str | None
    steps: tuple[ConcurrencyStep, ...]
    rerun: tuple[Rerun, ...]
    contention: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConcurrencyRecord:
        steps = tuple(ConcurrencyStep(int(s["from"]), int(s["to"]), str(s["reason"]), s.get("check"))
                      for s in data["steps"])
        rerun = tuple(Rerun(str(r["id"]), Verdict(r["before"]), Verdict(r["after"])) for r in data["rerun"])
        return cls(int(data["requested"]), int(data["final"]), bool(data["lowered"]), data["reason"], steps, rerun,
                   tuple(data.get("contention") or ()))


@dataclass(frozen=True, slots=True)
class RepeatRecord:
    """--repeat K: the model-dependent checks ran K times."""

    k: int
    checks: tuple[str, ...]
    pass_k: float | None  # the share of the repeated checks that passed every time; None: none was judged
    flaky: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StartError:
    """Why the run stopped before its first check."""

    stage: str  # arguments, target or baseline
    message: str


@dataclass(frozen=True, slots=True)
class Results:
    """One run of `conformance run` (or of the pytest plugin), read back from its results.json."""

    schema_version: str
    suite_version: str
    run_complete: bool
    verdict: RunVerdict
    # `CERTIFIED core, streaming; tools unsupported`; the verdict's label for a file older than the headline.
    headline: str
    exit_code: int
    reason: str | None
    started_at: str  # ISO 8601, as written
    duration_s: float
    target: TargetRecord
    profile: Profile
    depth: Depth
    config: Settings
    planned: int
    executed: int
    requests: int
    tokens: int
    summary: Summary
    checks: tuple[CheckRecord, ...]  # one ID may appear twice: runs of one check folded into one file
    finished_at: str | None = None
    strict: bool = False
    selection: tuple[str, ...] = ()  # how the catalogue was narrowed; non-empty: a partial run
    chat_route: ChatRoute | None = None  # None: not known (an older file, or no route was tried)
    catalogue: int | None = None
    not_executed: tuple[str, ...] = ()
    retries: int = 0
    tokens_estimated: int = 0
    http_status_counts: Mapping[str, int] = field(default_factory=dict)
    root_causes: tuple[RootCauseRecord, ...] = ()
    concurrency: ConcurrencyRecord | None = None
    repeat: RepeatRecord | None = None
    start_error: StartError | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Results:
        """Parse a document that matches results.schema.json (`load_results` checks a file first)."""
        verdict = RunVerdict(data["verdict"])
        target, route = data["target"], data.get("chat_route") or {}
        concurrency, repeat, start = data.get("concurrency"), data.get("repeat"), data.get("start_error")
        return cls(
            schema_version=str(data["schema_version"]), suite_version=str(data["suite"]["version"]),
            run_complete=bool(data["run_complete"]), verdict=verdict, headline=data.get("headline") or verdict.label,
            exit_code=int(data["exit_code"]), reason=data["reason"], started_at=str(data["started_at"]),
            duration_s=float(data["duration_s"]),
            target=TargetRecord(str(target["base_url"]), str(target["model"]), bool(target.get("builtin", False))),
            profile=Profile(data["profile"]), depth=Depth(data["depth"]), config=Settings.from_json(data["config"]),
            planned=int(data["planned"]), executed=int(data["executed"]), requests=int(data["requests"]),
            tokens=int(data["tokens"]), summary=Summary.from_json(data["summary"]),
            checks=tuple(CheckRecord.from_json(c) for c in data["checks"]),
            finished_at=data.get("finished_at"), strict=bool(data.get("strict", False)),
            selection=tuple(data.get("selection") or ()),
            chat_route=ChatRoute(str(route["method"]), str(route.get("path", "")), str(route.get("source", "")),
                                 tuple(route.get("probes") or ()), int((route.get("early") or {}).get("sent", 0)),
                                 int((route.get("early") or {}).get("resent", 0))) if route.get("method") else None,
            catalogue=data.get("catalogue"), not_executed=tuple(data.get("not_executed") or ()),
            retries=int(data.get("retries", 0)), tokens_estimated=int(data.get("tokens_estimated", 0)),
            http_status_counts=data.get("http_status_counts") or {},
            root_causes=tuple(RootCauseRecord.from_json(c) for c in data.get("root_causes") or ()),
            concurrency=ConcurrencyRecord.from_json(concurrency) if concurrency else None,
            repeat=RepeatRecord(int(repeat["k"]), tuple(repeat["checks"]),
                                None if repeat["pass_k"] is None else float(repeat["pass_k"]), tuple(repeat["flaky"]))
            if repeat else None,
            start_error=StartError(str(start["stage"]), str(start["message"])) if start else None,
        )

    def check(self, check_id: str) -> CheckRecord | None:
        """The first record of a check, or None."""
        return next((c for c in self.checks if c.id == check_id), None)
