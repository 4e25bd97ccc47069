"""Reports: results.json is written first; everything else is rendered from it.

    write_results(results, dir)      → results.json (the single source)
    render_reports(results.json)     → report.html (pytest-html) and junit.xml (pytest's junitxml)
    render_matrix([results.json…])   → matrix.html, several targets side by side
    load_results(path)               → a results.json checked against results.schema.json, as typed records
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._records import SCHEMA_PATH as RESULTS_SCHEMA_PATH
from ._records import CheckRecord, Results, RootCauseRecord, Transcript, load_results, schema_problems

__all__ = ["RESULTS_SCHEMA_PATH", "CheckRecord", "Results", "RootCauseRecord", "Transcript", "load_results",
           "render_matrix", "render_reports", "schema_problems", "write_results"]


def write_results(results: dict[str, Any], report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


def render_reports(results_path: Path, report_dir: Path | None = None, *, html: bool = True) -> dict[str, Path]:
    """Render report.html (unless `html` is false) and junit.xml next to (or into report_dir from) results.json."""
    from ._replay import render

    # Written by this suite, or checked by the caller (`conformance report` loads it first): parsed here,
    # not checked against the schema again (that takes about half a second).
    results = Results.from_json(json.loads(results_path.read_text(encoding="utf-8")))
    out = report_dir or results_path.parent
    out.mkdir(parents=True, exist_ok=True)
    html_path, junit_path = out / "report.html", out / "junit.xml"
    render(results, results_path, html_path if html else None, junit_path)
    return {"results": results_path, **({"html": html_path} if html else {}), "junit": junit_path}


def render_matrix(results_paths: list[Path], output: Path) -> Path:
    """matrix.html from several results.json (each checked against the schema first)."""
    from ._matrix import render_matrix as render

    return render([(path, load_results(path)) for path in results_paths], output)
