"""The facts every renderer derives from a run's records the same way.

HTML, JUnit, the terminal, the matrix and the diff all read `Results` (`_records.py`) and these
helpers, so a run reads the same everywhere: its verdict and headline are the engine's, as written.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .._model import Feature, FeatureVerdict, Level, Verdict
from ..http.redact import BEARER_PLACEHOLDER, REDACTED
from ._records import CheckRecord, Results, RootCauseRecord, Transcript
from .outcomes import flaky_note as _flaky_note

FEATURES = tuple(Feature)
VERDICTS = tuple(Verdict)
LEVEL_ORDER = {Level.MUST: 0, Level.SHOULD: 1, Level.INFO: 2}


def route_label(results: Results) -> str:
    """Where chat was served and how that was known, e.g. `POST /chat/completions (discovered)`."""
    route = results.chat_route
    if route is None:
        return "POST /chat/completions"
    how = {"discovered": "discovered", "forced": "--chat-path",
           "none": "no route answered a chat completion"}.get(route.source, "")
    resent = (f"; {route.early_resent} request{'s' if route.early_resent != 1 else ''} sent early on "
              f"POST /chat/completions sent again there" if route.early_resent else "")
    return f"{route.method} {route.path}" + (f" ({how}{resent})" if how else "")


def target_label(results: Results) -> str:
    """`model @ base URL`: what a target is called wherever several are shown."""
    return f"{results.target.model} @ {base_url_label(results)}"


def base_url_label(results: Results) -> str:
    """The base URL without its scheme (`api.example.com/v1`): targets differ by host, port and path."""
    return results.target.base_url.split("://", 1)[-1]


def duration(seconds: float) -> str:
    """The one way every report writes a duration: `25 ms`, `9.3 s`, `2 min 05 s`, `1 h 02 min`."""
    if round(seconds * 1000) < 1000:
        return f"{round(seconds * 1000)} ms"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def exchange_senders(checks: Iterable[CheckRecord]) -> dict[str, list[str | None]]:
    """Per check, for each transcript it judged but did not send: the ID of the check that sent it.

    Checks share some exchanges (the run's basic completion, its basic stream…): one check sends the
    request, every check that judges the answer holds its transcript, and only the sender counts it
    in `requests_made`. results.json does not name the sender, so it is derived from those counts:
    what a check sent beyond its own (unshared) transcripts went to shared ones, and a shared
    exchange with a single possible sender, or a check whose surplus covers exactly its remaining
    shared exchanges, settles it; repeated until nothing changes. None where that does not single
    one check out (the report then says "a shared exchange").
    """
    checks = list(checks)
    keys = {c.id: [_key(t) for t in c.transcripts] for c in checks}
    holders: dict[str, list[str]] = {}
    cost: dict[str, int] = {}
    for check in checks:
        for key, transcript in zip(keys[check.id], check.transcripts, strict=True):
            if check.id not in holders.setdefault(key, []):
                holders[key].append(check.id)
            cost[key] = transcript.requests
    shared = {check_id: [k for k in dict.fromkeys(check_keys) if len(holders[k]) > 1]
              for check_id, check_keys in keys.items()}
    # Requests each check sent for shared exchanges: all it sent, less what its unshared transcripts took.
    surplus = {c.id: c.requests_made - sum(cost[k] for k in keys[c.id] if len(holders[k]) == 1) for c in checks}
    sent_some = {check_id: n > 0 for check_id, n in surplus.items()}
    sender: dict[str, str] = {}

    def settle(key: str, check_id: str) -> None:
        sender[key] = check_id
        surplus[check_id] -= cost[key]

    changed = True
    while changed:
        changed = False
        for check_id, mine in shared.items():
            open_keys = [k for k in mine if k not in sender]
            if open_keys and surplus[check_id] > 0 and sum(cost[k] for k in open_keys) == surplus[check_id]:
                for key in open_keys:
                    settle(key, check_id)
                changed = True
        for key, ids in holders.items():
            candidates = [i for i in ids if surplus[i] > 0]
            if key not in sender and len(ids) > 1 and len(candidates) == 1 and cost[key] <= surplus[candidates[0]]:
                settle(key, candidates[0])
                changed = True

    senders: dict[str, list[str | None]] = {}
    for check_id, mine in shared.items():
        found: list[str | None] = []
        for key in mine:
            by = sender.get(key)
            if by != check_id and (by is not None or not sent_some[check_id]):
                found.append(by)  # not sent by this check: by another one, or (None) by one not told apart
        senders[check_id] = found
    return senders


def _key(transcript: Transcript) -> str:
    """Equal for the same exchange held by several checks (each check's copy is parsed from the same
    JSON, written by the same code: equal fields in the same order)."""
    return repr(transcript)


def anchor(check_id: str) -> str:
    """The HTML id of a check's detail; the same in report.html and matrix.html."""
    return f"check-{check_id}"


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """One feature of the run: its certification and the count of each verdict (MUST checks counted apart)."""

    certification: FeatureVerdict
    counts: Mapping[Verdict, int]  # every verdict, in VERDICTS order
    must_passed: int
    must_total: int


def feature_rollup(results: Results) -> dict[Feature, FeatureRow]:
    rollup: dict[Feature, FeatureRow] = {}
    for feature in FEATURES:
        checks = [c for c in results.checks if c.feature is feature]
        counts = Counter(c.outcome for c in checks)
        musts = [c for c in checks if c.level is Level.MUST]
        rollup[feature] = FeatureRow(results.summary.features.get(feature, FeatureVerdict.NOT_TESTED),
                                     {v: counts.get(v, 0) for v in VERDICTS},
                                     sum(c.outcome is Verdict.PASSED for c in musts), len(musts))
    return rollup


def failing(results: Results) -> list[CheckRecord]:
    """Failed then errored checks, MUST first: the order a reader works through them."""
    chosen = [c for c in results.checks if c.outcome in (Verdict.FAILED, Verdict.ERROR)]
    return sorted(chosen, key=lambda c: (c.outcome is not Verdict.FAILED, LEVEL_ORDER[c.level], c.id))


def first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def root_cause_line(results: Results) -> str:
    """`8 root causes, failing 37 checks`; empty when nothing failed."""
    causes = results.root_causes
    if not causes:
        return ""
    checks = {check_id for cause in causes for check_id in cause.checks}
    return (f"{len(causes)} root cause{'s' if len(causes) != 1 else ''}, failing {len(checks)} "
            f"check{'s' if len(checks) != 1 else ''}")


def example_transcript(results: Results, cause: RootCauseRecord) -> Transcript | None:
    """The transcript that shows a root cause (and reproduces it), or None."""
    example = cause.example
    if example is None:
        return None
    check = results.check(example.check)
    transcripts = check.transcripts if check else ()
    return transcripts[example.transcript] if 0 <= example.transcript < len(transcripts) else None


def curl_for(transcript: Transcript) -> str:
    """A copy-pasteable curl for bash; the key is always `$OPENAI_API_KEY`, never the real one."""
    return " ".join(" ".join(group) for group in curl_groups(transcript))


def curl_lines(transcript: Transcript) -> list[str]:
    """The same curl over several lines (` \\` continuations): the URL, then each header and the body."""
    groups = [" ".join(group) for group in curl_groups(transcript)]
    return [line + " \\" for line in groups[:-1]] + groups[-1:]


def curl_groups(transcript: Transcript) -> list[list[str]]:
    """The curl's words, grouped: the command and URL, each header, the body."""
    request = transcript.request
    accept = next((v for k, v in request.headers.items() if k.lower() == "accept"), "")
    groups = [["curl", "-sS", "-i", *(["-N"] if "event-stream" in accept else []), "-X", request.method,
               shlex.quote(request.url)]]
    for name, value in request.headers.items():
        if value in (BEARER_PLACEHOLDER, REDACTED):
            prefix = "Bearer " if value.startswith("Bearer") else ""
            groups.append(["-H", f'"{name}: {prefix}$OPENAI_API_KEY"'])
        else:
            groups.append(["-H", shlex.quote(f"{name}: {value}")])
    if request.body is not None:
        groups.append(["--data-raw", shlex.quote(request.body)])
    return groups


def flaky_note(check: CheckRecord) -> str:
    """`flaky: passed 3 of 5 runs (passed, failed, …)` for a repeated check whose verdict changed; else ''."""
    if not check.flaky:
        return ""
    rate = check.pass_rate
    return _flaky_note(rate.passed if rate else "?", rate.runs if rate else "?", check.verdicts)


def concurrency_note(results: Results) -> str:
    """`lowered 4 → 1: …` when the run lowered its concurrency; empty otherwise."""
    record = results.concurrency
    if record is None or (not record.lowered and not record.rerun):
        return ""
    return f"lowered {record.requested} → {record.final}: {record.reason or 'see results.json'}"


def repeat_note(results: Results) -> str:
    """`--repeat 5: pass^5 0.92 over 12 checks; flaky: …` for a repeated run; empty otherwise."""
    record = results.repeat
    if record is None:
        return ""
    k = record.k
    share = "n/a" if record.pass_k is None else f"{record.pass_k:.2f}"
    flaky = ", ".join(record.flaky) or "none"
    return f"--repeat {k}: pass^{k} {share} over {len(record.checks)} model-dependent checks; flaky: {flaky}"
