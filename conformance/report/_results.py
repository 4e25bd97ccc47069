"""Reading results.json, and the facts every renderer derives from it the same way.

HTML, JUnit, the matrix and the diff all go through `load()` and these helpers, so a truncated or
aborted run reads as incomplete everywhere, never as a pass.
"""

from __future__ import annotations

import functools
import json
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

from .._model import RunVerdict
from ..errors import UsageError
from .outcomes import flaky_note as _flaky_note

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
SUPPORTED_MAJOR = "1"
FEATURES = ("core", "streaming", "tools", "json_mode", "methods")
VERDICTS = ("passed", "failed", "not_applicable", "skipped", "unsupported", "inconclusive", "error")
LEVEL_ORDER = {"MUST": 0, "SHOULD": 1, "INFO": 2}


@functools.cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def schema_problems(results: Any, limit: int = 5) -> list[str]:
    """Violations of results.schema.json, each with its JSON path."""
    errors = sorted(_validator().iter_errors(results), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{e.json_path}: {e.message[:200]}" for e in errors[:limit]]


def load(path: Path) -> dict[str, Any]:
    """A results.json, checked against its schema; every problem is one UsageError line."""
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(results, dict) or "checks" not in results or "schema_version" not in results:
        raise UsageError(f"{path} is not a results.json of `conformance run` (no schema_version/checks)")
    major = str(results["schema_version"]).split(".")[0]
    if major != SUPPORTED_MAJOR:
        raise UsageError(f"{path} has schema_version {results['schema_version']!r}; this version reads "
                         f"{SUPPORTED_MAJOR}.x (re-run with a matching suite)")
    problems = schema_problems(results)
    if problems:
        raise UsageError(f"{path} does not match results.schema.json: {problems[0]}")
    return results


def run_verdict(results: dict[str, Any]) -> str:
    """The run's verdict as every report shows it: an unfinished run is never a pass."""
    verdict = str(results.get("verdict", "incomplete"))
    if verdict in ("passed", "failed", "partial") and (
        not results.get("run_complete") or results.get("executed", 0) < results.get("planned", 0)
    ):
        return "incomplete"
    return verdict


def verdict_label(verdict: str | None) -> str:
    """`CERTIFIED` for "passed" and so on (the engine's labels); an unknown verdict in capitals."""
    return RunVerdict(verdict).label if verdict in set(RunVerdict) else str(verdict).upper()


def run_label(results: dict[str, Any]) -> str:
    return verdict_label(run_verdict(results))


def route_label(results: dict[str, Any]) -> str:
    """Where chat was served and how that was known, e.g. `POST /chat/completions (discovered)`."""
    route = results.get("chat_route") or {}
    if not route.get("method"):
        return "POST /chat/completions"
    how = {"discovered": "discovered", "forced": "--chat-path",
           "none": "no route answered a chat completion"}.get(route.get("source", ""), "")
    return f"{route['method']} {route['path']}" + (f" ({how})" if how else "")


def headline(results: dict[str, Any]) -> str:
    """The engine's headline (`CERTIFIED core, streaming; tools unsupported`); the label for an unfinished run."""
    if run_verdict(results) != results.get("verdict") or not results.get("headline"):
        return run_label(results)
    return str(results["headline"])


def target_label(results: dict[str, Any]) -> str:
    """`model @ base URL`: what a target is called wherever several are shown."""
    return f"{results['target']['model']} @ {base_url_label(results)}"


def base_url_label(results: dict[str, Any]) -> str:
    """The base URL without its scheme (`api.example.com/v1`): targets differ by host, port and path."""
    base = str(results["target"]["base_url"])
    return base.split("://", 1)[-1]


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


def exchange_senders(results: dict[str, Any]) -> dict[str, list[str | None]]:
    """Per check, for each transcript it judged but did not send: the ID of the check that sent it.

    Checks share some exchanges (the run's basic completion, its basic stream…): one check sends the
    request, every check that judges the answer holds its transcript, and only the sender counts it
    in `requests_made`. results.json does not name the sender, so it is derived from those counts:
    what a check sent beyond its own (unshared) transcripts went to shared ones, and a shared
    exchange with a single possible sender, or a check whose surplus covers exactly its remaining
    shared exchanges, settles it; repeated until nothing changes. None where that does not single
    one check out (the report then says "a shared exchange").
    """
    keys = {c["id"]: [_key(t) for t in c["transcripts"]] for c in results["checks"]}
    holders: dict[str, list[str]] = {}
    cost: dict[str, int] = {}
    for check in results["checks"]:
        for key, transcript in zip(keys[check["id"]], check["transcripts"], strict=True):
            if check["id"] not in holders.setdefault(key, []):
                holders[key].append(check["id"])
            cost[key] = _cost(transcript)
    shared = {check_id: [k for k in dict.fromkeys(check_keys) if len(holders[k]) > 1]
              for check_id, check_keys in keys.items()}
    # Requests each check sent for shared exchanges: all it sent, less what its unshared transcripts took.
    surplus = {c["id"]: int(c["requests_made"]) - sum(cost[k] for k in keys[c["id"]] if len(holders[k]) == 1)
               for c in results["checks"]}
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


def _key(transcript: dict[str, Any]) -> str:
    return json.dumps(transcript, sort_keys=True)


def _cost(transcript: dict[str, Any]) -> int:
    """Requests one transcript took: the final attempt and each retried one (none if never sent)."""
    if str(transcript.get("error") or "").startswith("not sent"):
        return 0
    return 1 + len(transcript.get("attempts") or [])


def anchor(check_id: str) -> str:
    """The HTML id of a check's detail; the same in report.html and matrix.html."""
    return f"check-{check_id}"


def feature_rollup(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per feature: its certification and the count of each verdict (MUST checks counted apart)."""
    rollup: dict[str, dict[str, Any]] = {}
    certification = results["summary"].get("features", {})
    for feature in FEATURES:
        checks = [c for c in results["checks"] if c["feature"] == feature]
        counts = Counter(c["outcome"] for c in checks)
        musts = [c for c in checks if c["level"] == "MUST"]
        rollup[feature] = {
            "certification": certification.get(feature, "not-tested"),
            "counts": {v: counts.get(v, 0) for v in VERDICTS},
            "must_passed": sum(c["outcome"] == "passed" for c in musts),
            "must_total": len(musts),
        }
    return rollup


def failing(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Failed then errored checks, MUST first: the order a reader works through them."""
    chosen = [c for c in results["checks"] if c["outcome"] in ("failed", "error")]
    return sorted(chosen, key=lambda c: (c["outcome"] != "failed", LEVEL_ORDER.get(c["level"], 3), c["id"]))


def first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def root_causes(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The engine's root causes (empty for a results.json older than schema 1.2)."""
    return list(results.get("root_causes") or [])


def root_cause_line(results: dict[str, Any]) -> str:
    """`8 root causes, failing 37 checks`; empty when nothing failed."""
    causes = root_causes(results)
    if not causes:
        return ""
    checks = {check_id for cause in causes for check_id in cause["checks"]}
    return (f"{len(causes)} root cause{'s' if len(causes) != 1 else ''}, failing {len(checks)} "
            f"check{'s' if len(checks) != 1 else ''}")


def example_transcript(results: dict[str, Any], cause: dict[str, Any]) -> dict[str, Any] | None:
    """The transcript that shows a root cause (and reproduces it), or None."""
    example = cause.get("example")
    if not example:
        return None
    check = next((c for c in results["checks"] if c["id"] == example["check"]), None)
    transcripts = check["transcripts"] if check else []
    index = int(example["transcript"])
    return transcripts[index] if 0 <= index < len(transcripts) else None


def curl_for(transcript: dict[str, Any]) -> str:
    """A copy-pasteable curl for bash; the key is always `$OPENAI_API_KEY`, never the real one."""
    return " ".join(" ".join(group) for group in curl_groups(transcript))


def curl_lines(transcript: dict[str, Any]) -> list[str]:
    """The same curl over several lines (` \\` continuations): the URL, then each header and the body."""
    groups = [" ".join(group) for group in curl_groups(transcript)]
    return [line + " \\" for line in groups[:-1]] + groups[-1:]


def curl_groups(transcript: dict[str, Any]) -> list[list[str]]:
    """The curl's words, grouped: the command and URL, each header, the body."""
    request = transcript["request"]
    accept = next((v for k, v in request["headers"].items() if k.lower() == "accept"), "")
    groups = [["curl", "-sS", "-i", *(["-N"] if "event-stream" in accept else []), "-X", request["method"],
               shlex.quote(request["url"])]]
    for name, value in request["headers"].items():
        if value in ("Bearer $OPENAI_API_KEY", "***REDACTED***"):
            prefix = "Bearer " if value.startswith("Bearer") else ""
            groups.append(["-H", f'"{name}: {prefix}$OPENAI_API_KEY"'])
        else:
            groups.append(["-H", shlex.quote(f"{name}: {value}")])
    if request.get("body") is not None:
        groups.append(["--data-raw", shlex.quote(request["body"])])
    return groups


def flaky_note(check: dict[str, Any]) -> str:
    """`flaky: passed 3 of 5 runs (passed, failed, …)` for a repeated check whose verdict changed; else ''."""
    if not check.get("flaky"):
        return ""
    rate = check.get("pass_rate") or {}
    return _flaky_note(rate.get("passed", "?"), rate.get("runs", "?"), [check["outcome"], *check.get("repeats", [])])


def concurrency_note(results: dict[str, Any]) -> str:
    """`lowered 4 → 1: …` when the run lowered its concurrency; empty otherwise."""
    record = results.get("concurrency") or {}
    if not record.get("lowered") and not record.get("rerun"):
        return ""
    return f"lowered {record['requested']} → {record['final']}: {record.get('reason') or 'see results.json'}"


def repeat_note(results: dict[str, Any]) -> str:
    """`--repeat 5: pass^5 0.92 over 12 checks; flaky: …` for a repeated run; empty otherwise."""
    record = results.get("repeat")
    if not record:
        return ""
    k = record["k"]
    share = "n/a" if record.get("pass_k") is None else f"{record['pass_k']:.2f}"
    flaky = ", ".join(record.get("flaky") or []) or "none"
    return f"--repeat {k}: pass^{k} {share} over {len(record['checks'])} model-dependent checks; flaky: {flaky}"
