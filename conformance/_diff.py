"""Compare two runs, or a run against a baseline, check by check: the CI gate and the PR comment.

Every check ID is put in exactly one category (first match wins):

    flaky               the new run holds different verdicts for it (a check run more than once)
    new-failure         fails now, did not before (or is new and fails)           ← regression
    newly-unsupported   unsupported now, passed before                            ← regression
    fixed               failed before (a known failure), passes now: shrink the baseline
    still-failing       failed before and fails now (expected)
    new-check           not in the old run, does not fail
    removed-check       in the old run, not in the new one (removed, or not selected)
    changed             any other change of verdict (e.g. passed → skipped, failed → error)
    unchanged           same verdict

How a results file says "flaky": a check entry's optional `repeats` list holds the verdicts of
further executions of the check in the same run, and one ID may appear more than once in
`checks`. `combine()` folds repeated runs of one target into one such run.

A baseline is a small JSON file of accepted failures, each with a reason:

    {"schema_version": 1, "kind": "openai-conformance-baseline",
     "target": {"model": "...", "base_url": "..."}, "profile": "openai", "depth": "full",
     "known_failures": {"stream.done-terminator": {"verdict": "failed", "reason": "TGI #1896"}},
     "verdicts": {"stream.done-terminator": "failed", "usage.present": "passed", ...}}

`verdicts` (every check's verdict when the baseline was recorded) is optional; without it every
check that is not a known failure is taken to have passed. `--update-baseline` writes each new
known failure with the reason PLACEHOLDER; a baseline that still holds it is refused (exit 2).

A results.json may stand wherever a baseline is read (`--baseline`, the OLD side of `diff`): its
failures are then the known failures. Several NEW files given to `diff` must be repeated runs of one
target (same base URL, model, profile and depth), never runs of different targets.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._model import Level, RunVerdict, Verdict
from .errors import BaselineError
from .report import CheckRecord, Results, RootCauseRecord, load_results
from .report._results import LEVEL_ORDER, first_line

BASELINE_SCHEMA_VERSION = 1
BASELINE_KIND = "openai-conformance-baseline"
# The reason --update-baseline writes for a new known failure: not a reason until a person replaces it.
PLACEHOLDER = "TODO(--update-baseline): say why this failure is accepted"
_LEGACY_PLACEHOLDER = "accepted by --update-baseline on "  # what versions before 0.2 wrote

CATEGORIES: dict[str, str] = {
    "new-failure": "New failures",
    "newly-unsupported": "Newly unsupported",
    "flaky": "Flaky (different verdicts within one run)",
    "fixed": "Fixed",
    "still-failing": "Still failing (expected)",
    "new-check": "New checks",
    "removed-check": "Not in the new run",
    "changed": "Other changes",
    "unchanged": "Unchanged",
}
REGRESSIONS = ("new-failure", "newly-unsupported")
# Long categories fold away in the Markdown so the PR comment leads with what changed.
FOLDED = ("still-failing", "new-check", "removed-check", "changed", "unchanged")


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a comparison: a results.json or a baseline."""

    label: str
    kind: str  # "results" or "baseline"
    model: str
    base_url: str
    profile: str
    depth: str
    verdict: RunVerdict | None  # the run's verdict; None for a baseline
    # Per check, its verdicts in the run (several: a check run more than once); a baseline's may be
    # combined ones it recorded, e.g. `failed/passed`.
    verdicts: dict[str, tuple[str, ...]]
    levels: dict[str, Level] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    # The run's root causes (a baseline has none).
    causes: tuple[RootCauseRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "model": self.model, "base_url": self.base_url,
                "profile": self.profile, "depth": self.depth, "verdict": self.verdict}


@dataclass(frozen=True, slots=True)
class Change:
    id: str
    category: str
    old: str | None
    new: str | None
    level: Level | None
    new_verdicts: tuple[str, ...] = ()
    message: str = ""
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "old": self.old, "new": self.new, "level": self.level,
                "new_verdicts": list(self.new_verdicts), "message": self.message, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Diff:
    old: Side
    new: Side
    changes: tuple[Change, ...]

    def of(self, category: str) -> list[Change]:
        return [c for c in self.changes if c.category == category]

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.category in REGRESSIONS]

    @property
    def new_complete(self) -> bool:
        return self.new.verdict in (RunVerdict.PASSED, RunVerdict.FAILED)

    @property
    def new_causes(self) -> list[RootCauseRecord]:
        """Root causes of the new run that the old one did not have (all of them against a baseline)."""
        known = {cause.id for cause in self.old.causes}
        return [cause for cause in self.new.causes if cause.id not in known]

    @property
    def gone_causes(self) -> list[RootCauseRecord]:
        """Root causes of the old run that the new one no longer has (none against a baseline)."""
        now = {cause.id for cause in self.new.causes}
        return [cause for cause in self.old.causes if cause.id not in now]

    @property
    def exit_code(self) -> int:
        """2 for an invalid run (its failures are the harness's); 1 on a regression; 2 when the new run is
        incomplete (a missing regression proves nothing); else 0."""
        if self.new.verdict is RunVerdict.INVALID:
            return 2
        if self.regressions:
            return 1
        return 0 if self.new_complete else 2

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "old": self.old.to_json(),
            "new": self.new.to_json(),
            "exit_code": self.exit_code,
            "regressions": [c.id for c in self.regressions],
            "counts": {name: len(self.of(name)) for name in CATEGORIES},
            "checks": [c.to_json() for c in self.changes],
            "root_causes": {"new_run": [c.to_json() for c in self.new.causes], "new": [c.id for c in self.new_causes],
                            "gone": [c.id for c in self.gone_causes]},
        }

    def to_markdown(self) -> str:
        return _markdown(self)


# -- reading ------------------------------------------------------------------------------------------
def side_of_results(results: Results, label: str) -> Side:
    verdicts: dict[str, list[str]] = {}
    levels: dict[str, Level] = {}
    messages: dict[str, str] = {}
    for check in results.checks:
        verdicts.setdefault(check.id, []).extend(v.value for v in check.verdicts)
        levels[check.id] = check.level
        if check.outcome in (Verdict.FAILED, Verdict.ERROR) or check.id not in messages:
            messages[check.id] = _why(check)
    target = results.target
    return Side(label, "results", target.model, target.base_url, results.profile.value, results.depth.value,
                results.verdict, {k: tuple(v) for k, v in verdicts.items()}, levels, messages,
                causes=results.root_causes)


def _why(check: CheckRecord) -> str:
    if check.outcome is Verdict.FAILED and check.failures:
        failure = check.failures[0]
        return first_line(f"expected {failure.expected}; received {failure.received}", 200)
    return first_line(check.message, 200) if check.outcome is not Verdict.PASSED else ""


def load_baseline(path: Path) -> dict[str, Any]:
    """A baseline file, checked; any problem is one BaselineError line (exit 2)."""
    if not path.is_file():
        raise BaselineError(f"baseline {path} does not exist (write one with `conformance run --update-baseline "
                            f"{path}`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline {path} is not valid JSON: {exc}") from None
    problem = baseline_problem(data) or _placeholder_problem(data)
    if problem:
        raise BaselineError(f"baseline {path}: {problem}")
    return dict(data)


def is_placeholder(reason: str) -> bool:
    """The reason is still the one --update-baseline wrote, not a person's."""
    return reason.strip().startswith((PLACEHOLDER, _LEGACY_PLACEHOLDER))


def _placeholder_problem(data: dict[str, Any]) -> str | None:
    ids = sorted(check_id for check_id, entry in data["known_failures"].items() if is_placeholder(entry["reason"]))
    if not ids:
        return None
    shown = ", ".join(ids[:12]) + (f" and {len(ids) - 12} more" if len(ids) > 12 else "")
    return (f"{_count(len(ids), 'known failure')} still {'has' if len(ids) == 1 else 'have'} the placeholder "
            f"reason written by --update-baseline: {shown}; replace each with why it is accepted (a ticket, "
            f"an upstream issue)")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def baseline_problem(data: Any) -> str | None:
    """Why `data` is not a usable baseline, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for problem in (_header_problem(data), _known_problem(data.get("known_failures")), _verdicts_problem(data)):
        if problem:
            return problem
    return None


def _header_problem(data: dict[str, Any]) -> str | None:
    if data.get("schema_version") != BASELINE_SCHEMA_VERSION:
        return (f"unknown schema_version {data.get('schema_version')!r} (this suite reads "
                f"{BASELINE_SCHEMA_VERSION}); re-record it with --update-baseline")
    if data.get("kind", BASELINE_KIND) != BASELINE_KIND:
        return f"kind is {data.get('kind')!r}, not {BASELINE_KIND!r}"
    bad: list[str] = [key for key in ("profile", "depth") if key in data and not isinstance(data[key], str)]
    if bad or not isinstance(data.get("target", {}), dict):
        return f"`{(bad or ['target'])[0]}` has the wrong type"
    return None


def _known_problem(known: Any) -> str | None:
    if not isinstance(known, dict):
        return "`known_failures` must be an object {check_id: {verdict, reason}}"
    for check_id, entry in known.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("reason"), str) or not entry["reason"].strip():
            return f"known failure {check_id!r} needs a non-empty \"reason\" string (why is it accepted?)"
        if entry.get("verdict", "failed") != "failed":
            return f"known failure {check_id!r} has verdict {entry.get('verdict')!r}; only \"failed\" is baselined"
    return None


def _verdicts_problem(data: dict[str, Any]) -> str | None:
    verdicts = data.get("verdicts", {})
    if not isinstance(verdicts, dict) or not all(isinstance(v, str) for v in verdicts.values()):
        return "`verdicts` must be an object {check_id: verdict}"
    return None


def side_of_baseline(data: dict[str, Any], label: str) -> Side:
    known = data["known_failures"]
    verdicts: dict[str, tuple[str, ...]] = {str(k): (str(v),) for k, v in data.get("verdicts", {}).items()}
    verdicts.update(dict.fromkeys(known, ("failed",)))
    target = data.get("target", {})
    return Side(label, "baseline", str(target.get("model", "")), str(target.get("base_url", "")),
                str(data.get("profile", "")), str(data.get("depth", "")), None, verdicts,
                reasons={check_id: entry["reason"] for check_id, entry in known.items()})


def is_results_file(path: Path) -> bool:
    """A results.json of `conformance run` (it has `checks`, no `known_failures`); else a baseline is meant."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "checks" in data and "known_failures" not in data


def load_reference(path: Path, *, complete: bool) -> Side:
    """What a run is compared with: a baseline file, or a results.json whose failures are the known ones.

    `complete`: a results.json must be of a run that judged every check (the gate; a partial run would
    make every check it missed look new).
    """
    if not complete and not path.is_file():
        raise BaselineError(f"{path} does not exist")
    if not is_results_file(path):
        return side_of_baseline(load_baseline(path), str(path))
    results = load_results(path)
    if complete and results.verdict not in (RunVerdict.PASSED, RunVerdict.FAILED):
        raise BaselineError(f"baseline {path} is the results.json of an {results.verdict} run: it did not judge every "
                            f"check; use a complete run's results.json or a baseline file")
    return side_of_results(results, str(path))


def check_matches(reference: Side, *, model: str, profile: str, depth: str, path: Path) -> None:
    """A baseline recorded for another model, profile or depth would hide or invent regressions."""
    if reference.model and reference.model != model:
        raise BaselineError(f"baseline {path} was recorded for model {reference.model!r}, this run certifies "
                            f"{model!r}: use that target's baseline or record one with --update-baseline")
    if reference.profile and reference.profile != profile:
        raise BaselineError(f"baseline {path} was recorded with --profile {reference.profile}, this run uses "
                            f"--profile {profile}")
    if reference.depth and reference.depth != depth:
        raise BaselineError(f"baseline {path} was recorded with --depth {reference.depth}, this run uses --depth "
                            f"{depth}: run at --depth {reference.depth} or record a baseline at this depth with "
                            f"--update-baseline")


def unknown_checks(reference: Side, known_ids: Iterable[str]) -> list[str]:
    """Check IDs the reference names that this suite does not have (renamed or removed)."""
    return sorted(set(reference.verdicts) - set(known_ids))


# -- comparing ----------------------------------------------------------------------------------------
def compare(old: Side, new: Side) -> Diff:
    ids = sorted(set(old.verdicts) | set(new.verdicts))
    # Without recorded verdicts, a hand-written baseline means "everything else passed".
    assume_passed = old.kind == "baseline" and not (set(old.verdicts) - set(old.reasons))
    changes = []
    for check_id in ids:
        before = old.verdicts.get(check_id)
        if before is None and assume_passed and check_id in new.verdicts:
            before = ("passed",)
        after = new.verdicts.get(check_id)
        changes.append(Change(
            id=check_id,
            category=_category(before, after),
            old=_summary(before),
            new=_summary(after),
            level=new.levels.get(check_id) or old.levels.get(check_id),
            new_verdicts=after or (),
            message=new.messages.get(check_id, ""),
            reason=old.reasons.get(check_id),
        ))
    order = list(CATEGORIES)
    changes.sort(key=lambda c: (order.index(c.category), 3 if c.level is None else LEVEL_ORDER[c.level], c.id))
    return Diff(old, new, tuple(changes))


def _summary(verdicts: tuple[str, ...] | None) -> str | None:
    if not verdicts:
        return None
    distinct = list(dict.fromkeys(verdicts))
    return distinct[0] if len(distinct) == 1 else "/".join(distinct)


def _category(before: tuple[str, ...] | None, after: tuple[str, ...] | None) -> str:
    if after and len(set(after)) > 1:
        return "flaky"
    if after is None:
        return "removed-check"
    now = after[0]
    if before is None:
        return "new-failure" if now == "failed" else "new-check"
    was = "failed" if "failed" in before else before[0]
    if now == "failed":
        return "still-failing" if was == "failed" else "new-failure"
    special = {("passed", "unsupported"): "newly-unsupported", ("failed", "passed"): "fixed"}
    return special.get((was, now), "unchanged" if now == was else "changed")


def diff_results(old: Results, new: Results, *, old_label: str = "old", new_label: str = "new") -> Diff:
    return compare(side_of_results(old, old_label), side_of_results(new, new_label))


def gate(baseline: dict[str, Any], results: Results, *, baseline_label: str = "baseline",
         new_label: str = "this run") -> Diff:
    """The CI gate: the run against accepted failures. Call check_matches first."""
    return compare(side_of_baseline(baseline, baseline_label), side_of_results(results, new_label))


def combine(runs: Sequence[Results], labels: Sequence[str] = ()) -> Results:
    """Repeated runs of one target folded into one: the later runs' verdicts go to the first's `repeats`.

    Runs of different targets are refused (ValueError): their differences are not flakiness.
    """
    if not runs:
        raise ValueError("combine() needs at least one run")
    names = list(labels) or [f"run {i + 1}" for i in range(len(runs))]
    first = runs[0]
    # A check listed twice in the first run takes the later runs' verdicts on its last entry.
    holder = {check.id: index for index, check in enumerate(first.checks)}
    later: dict[int, list[Verdict]] = {}
    for name, run in zip(names[1:], runs[1:], strict=True):
        differences = target_differences(first, run)
        if differences:
            raise ValueError(f"{names[0]} and {name} are not repeated runs of one target ({'; '.join(differences)})"
                             f": several NEW files must be runs of the same base URL, model, profile and depth; "
                             f"compare different targets one at a time")
        for check in run.checks:
            if check.id in holder:
                later.setdefault(holder[check.id], []).extend(check.verdicts)
    checks = tuple(dataclasses.replace(check, repeats=(*check.repeats, *later[index])) if index in later else check
                   for index, check in enumerate(first.checks))
    return dataclasses.replace(first, checks=checks)


def target_differences(a: Results, b: Results) -> list[str]:
    """How two runs' targets differ ("model x vs y", ...); empty for runs of one target.

    Two runs of the built-in reference server are of one target whatever its (random) port.
    """
    pairs = [("base URL", a.target.base_url, b.target.base_url), ("model", a.target.model, b.target.model),
             ("profile", a.profile.value, b.profile.value), ("depth", a.depth.value, b.depth.value)]
    builtin = a.target.builtin and b.target.builtin
    return [f"{what} {x} vs {y}" for what, x, y in pairs if x != y and not (builtin and what == "base URL")]


# -- writing a baseline -------------------------------------------------------------------------------
def make_baseline(results: Results, previous: dict[str, Any] | None = None,
                  today: dt.date | None = None) -> dict[str, Any]:
    """Accept every current failure; reasons already given in `previous` are kept, fixed entries dropped."""
    if results.verdict not in (RunVerdict.PASSED, RunVerdict.FAILED):
        raise BaselineError(f"not writing a baseline from a {results.verdict} run: it did not judge every "
                            f"check ({results.reason or 'stopped early'})")
    kept = (previous or {}).get("known_failures", {})
    day = (today or dt.date.today()).isoformat()
    side = side_of_results(results, "")
    known = {}
    for check_id, verdicts in side.verdicts.items():
        if "failed" in verdicts:
            reason = str(kept.get(check_id, {}).get("reason") or "")
            if not reason.strip() or is_placeholder(reason):
                reason = f"{PLACEHOLDER} (recorded {day}: {side.messages.get(check_id, '')})"
            level = side.levels.get(check_id)
            known[check_id] = {"verdict": "failed", "level": level.value if level else None, "reason": reason}
    return {
        "schema_version": BASELINE_SCHEMA_VERSION,
        "kind": BASELINE_KIND,
        "suite_version": results.suite_version,
        "recorded_at": results.started_at,
        "target": {"model": results.target.model, "base_url": results.target.base_url},
        "profile": results.profile.value,
        "depth": results.depth.value,
        "known_failures": dict(sorted(known.items())),
        "verdicts": {check_id: _summary(v) or "" for check_id, v in sorted(side.verdicts.items())},
    }


def write_baseline(path: Path, baseline: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(baseline, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


# -- Markdown -----------------------------------------------------------------------------------------
def _cell(text: Any) -> str:
    return str(text if text is not None else "—").replace("|", "\\|").replace("\n", " ").strip() or "—"


def _table(changes: Iterable[Change], *, with_reason: bool) -> list[str]:
    head = "| Check | Level | Before | Now | " + ("Baseline reason |" if with_reason else "Why |")
    rows = [head, "|---|---|---|---|---|"]
    for c in changes:
        note = c.reason if with_reason else c.message
        rows.append(f"| `{c.id}` | {_cell(c.level)} | {_cell(c.old)} | {_cell(c.new)} | {_cell(note)} |")
    return rows


def _causes_markdown(diff: Diff) -> list[str]:
    """The new run's root causes (the engine's grouping), those new since the old run marked."""
    causes = diff.new.causes
    if not causes:
        return []
    checks = {check_id for cause in causes for check_id in cause.checks}
    fresh = {cause.id for cause in diff.new_causes} if diff.old.kind == "results" else set()
    lines = [f"#### Root causes of the new run ({len(causes)}, failing {len(checks)} checks)", ""]
    for number, cause in enumerate(causes, start=1):
        shown = ", ".join(f"`{c}`" for c in cause.checks[:6]) + (" …" if len(cause.checks) > 6 else "")
        lines.append(f"{number}. {'**new** ' if cause.id in fresh else ''}{_cell(cause.title)} — {shown}")
    gone = diff.gone_causes
    if gone:
        lines += ["", "Gone since the old run: " + "; ".join(_cell(c.title) for c in gone)]
    return [*lines, ""]


def _markdown(diff: Diff) -> str:
    new, old = diff.new, diff.old
    verdict = new.verdict.label if new.verdict else "NONE"
    lines = [f"### Conformance: {verdict} — `{new.model}` @ {new.base_url}", ""]
    against = (f"baseline `{old.label}` ({len(old.reasons)} known failure{'s' if len(old.reasons) != 1 else ''})"
               if old.kind == "baseline" else f"`{old.label}` ({old.model} @ {old.base_url})")
    lines.append(f"Compared with {against} · profile {new.profile} · depth {new.depth}")
    if old.kind == "results" and (old.model, old.profile) != (new.model, new.profile):
        lines.append(f"\n> **Note:** the two runs certify different targets or profiles ({old.model}/{old.profile} "
                     f"vs {new.model}/{new.profile}).")
    if not diff.new_complete:
        lines.append(f"\n> **Warning:** the new run is {new.verdict}: it did not judge every check, so it "
                     "certifies nothing and a missing regression proves nothing.")
    counts = [f"{len(diff.of(name))} {label.split(' (')[0].lower()}" for name, label in CATEGORIES.items()
              if diff.of(name)]
    regressions = len(diff.regressions)
    lines += ["", f"**{regressions} regression{'s' if regressions != 1 else ''}** · " + " · ".join(counts), ""]
    lines += _causes_markdown(diff)
    for name, label in CATEGORIES.items():
        changes = diff.of(name)
        if not changes:
            continue
        title = f"{label} ({len(changes)})"
        if name == "fixed" and old.kind == "baseline":
            title += " — remove these from the baseline"
        table = _table(changes, with_reason=name in ("fixed", "still-failing") and old.kind == "baseline")
        if name in FOLDED:
            lines += [f"<details><summary>{title}</summary>", "", *table, "", "</details>", ""]
        else:
            mark = "❌ " if name in REGRESSIONS else ("⚠️ " if name == "flaky" else "✅ " if name == "fixed" else "")
            lines += [f"#### {mark}{title}", "", *table, ""]
    return "\n".join(lines).rstrip() + "\n"
