"""Reports: results.json is written first; report.html and junit.xml are rendered from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS_SCHEMA_PATH = Path(__file__).with_name("results.schema.json")


def write_results(results: dict[str, Any], report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


def render_reports(results_path: Path, report_dir: Path | None = None) -> dict[str, Path]:
    """Render report.html and junit.xml next to (or into report_dir from) results.json."""
    from ._replay import render

    out = report_dir or results_path.parent
    out.mkdir(parents=True, exist_ok=True)
    html_path, junit_path = out / "report.html", out / "junit.xml"
    render(results_path, html_path, junit_path)
    return {"results": results_path, "html": html_path, "junit": junit_path}
