"""Reading results.json, and the facts every renderer derives from it the same way.

HTML, JUnit, the matrix and the diff all go through `load()` and these helpers, so a truncated or
aborted run reads as incomplete everywhere, never as a pass.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import UsageError

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
SUPPORTED_MAJOR = "1"
FEATURES = ("core", "streaming", "tools", "json_mode", "methods")
VERDICTS = ("passed", "failed", "not_applicable", "skipped", "unsupported", "inconclusive", "error")
LEVEL_ORDER = {"MUST": 0, "SHOULD": 1, "INFO": 2}
RUN_LABEL = {
    "passed": "CERTIFIED",
    "failed": "NOT CERTIFIED",
    "partial": "PARTIAL RUN",
    "incomplete": "INCOMPLETE",
    "invalid": "INVALID RUN",
}


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


def run_label(results: dict[str, Any]) -> str:
    verdict = run_verdict(results)
    return RUN_LABEL.get(verdict, verdict.upper())


def headline(results: dict[str, Any]) -> str:
    """The engine's headline (`CERTIFIED core, streaming; tools unsupported`); the label for an unfinished run."""
    if run_verdict(results) != results.get("verdict") or not results.get("headline"):
        return run_label(results)
    return str(results["headline"])


def target_label(results: dict[str, Any]) -> str:
    """provider/model for a column header: the host of the base URL and the model."""
    import urllib.parse

    target = results["target"]
    host = urllib.parse.urlsplit(target["base_url"]).netloc or target["base_url"]
    return f"{host}/{target['model']}"


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
