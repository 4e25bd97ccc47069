"""matrix.html: several targets side by side, in the style of the Autobahn testsuite's report.

Checks are rows (grouped by feature), targets (base URL and model) are columns, and each cell is
coloured by its verdict and links to the detail: the target's report.html#check-<id> when that
file sits next to its results.json, else a detail section inside this page. Self-contained: one
file, no external resources, rendered from the results.json files alone.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from .._model import FeatureVerdict, Verdict
from . import _html
from ._records import CheckRecord, Results
from ._results import (
    FEATURES,
    VERDICTS,
    anchor,
    base_url_label,
    exchange_senders,
    first_line,
    root_cause_line,
    target_label,
)

MATRIX_STYLE = """
<style>
body { margin: 1.5em 2em; background: #fff; }
.matrix { border-collapse: separate; border-spacing: 0; }
.matrix th, .matrix td { border: 1px solid #d0d7de; padding: .25em .6em; }
.matrix thead th { position: sticky; top: 0; background: #f6f8fa; z-index: 1; vertical-align: bottom; }
.matrix th.target { min-width: 9em; text-align: center; }
.matrix th.target .model { display: block; }
.matrix th.target .note { display: block; font-weight: 400; color: #57606a; font-size: 12px; }
.matrix td.cell { text-align: center; font-weight: 600; font-size: 13px; }
.matrix td.cell a { color: inherit; text-decoration: none; display: block; }
.matrix td.cell a:hover { text-decoration: underline; }
.matrix td.c-none { color: #8c959f; background: #fff; font-weight: 400; }
.matrix tr.group th { background: #eaeef2; text-align: left; font-size: 14px; }
.matrix td.id code { font-size: 12.5px; }
.legend span { margin-right: .5em; }
</style>
"""


@dataclass(frozen=True, slots=True)
class Column:
    results: Results
    source: Path
    report: Path | None  # report.html next to the results, if any
    prefix: str  # id prefix of this column's inline details

    @property
    def by_id(self) -> dict[str, CheckRecord]:
        return {c.id: c for c in self.results.checks}


def render_matrix(runs: list[tuple[Path, Results]], output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    columns = [_column(path, results, i) for i, (path, results) in enumerate(runs)]
    page = _page(columns, output.parent)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(output)
    return output


def _column(path: Path, results: Results, index: int) -> Column:
    report = path.with_name("report.html")
    return Column(results, path, report if report.is_file() else None, f"t{index}-")


def _link(column: Column, check_id: str, out_dir: Path) -> str:
    if column.report is not None:
        relative = Path(os.path.relpath(column.report.resolve(), out_dir.resolve())).as_posix()
        return f"{relative}#{anchor(check_id)}"
    return f"#{column.prefix}{anchor(check_id)}"


def _page(columns: list[Column], out_dir: Path) -> str:
    esc = _html.esc
    labels = ", ".join(target_label(c.results) for c in columns)
    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Chat Completions compatibility matrix — "
            f"{esc(labels)}</title>{_html.STYLE}{MATRIX_STYLE}</head><body><div class='cert' id='matrix-page'>")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    legend = " ".join(f'<span class="badge c-{v}">{v}</span>' for v in VERDICTS)
    intro = (f"<h2>Chat Completions compatibility matrix</h2><p>{len(columns)} target(s), generated {esc(now)} "
             f"from their results.json. Click a cell for the check's detail.</p>"
             f'<p class="legend">{legend} <span class="badge c-none">not run</span></p>')
    parts = [head, intro, _table(columns, out_dir), _inline_details(columns), "</div></body></html>"]
    return "".join(parts)


def _table(columns: list[Column], out_dir: Path) -> str:
    esc = _html.esc
    out = ['<table class="matrix" id="matrix"><thead><tr><th>Check</th><th>Level</th>']
    for column, note in zip(columns, _notes(columns), strict=True):
        results = column.results
        link = (Path(os.path.relpath(column.report.resolve(), out_dir.resolve())).as_posix()
                if column.report else f"#{column.prefix}details")
        extra = f'<span class="note">{esc(note)}</span>' if note else ""
        out.append(f'<th class="target"><a href="{esc(link)}">{esc(base_url_label(results))}</a>'
                   f'<span class="model">{esc(results.target.model)}</span>{extra}'
                   f'<span class="badge v-{esc(results.verdict)}">{esc(results.verdict.label)}</span></th>')
    out.append("</tr></thead><tbody>")
    out.append(_feature_rows(columns))
    checks = _all_checks(columns)
    for feature in FEATURES:
        rows = [c for c in checks if c.feature is feature]
        if not rows:
            continue
        out.append(f'<tr class="group"><th colspan="{2 + len(columns)}">{esc(feature)}</th></tr>')
        for check in rows:
            out.append(f'<tr data-check="{esc(check.id)}"><td class="id" title="{esc(check.description)}">'
                       f"<code>{esc(check.id)}</code></td><td>{esc(check.level)}</td>")
            out.extend(_cell(column, check.id, out_dir) for column in columns)
            out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _notes(columns: list[Column]) -> list[str]:
    """What tells apart columns of one target (same base URL and model): profile and depth, else the
    start time, else the folder of the results file. Empty for a target shown once."""
    notes = [""] * len(columns)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, column in enumerate(columns):
        target = column.results.target
        groups.setdefault((target.base_url, target.model), []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        for way in ("settings", "start", "folder"):
            labels = [_note(columns[i], way) for i in members]
            if len(set(labels)) == len(labels) or way == "folder":
                for i, label in zip(members, labels, strict=True):
                    notes[i] = label
                break
    return notes


def _note(column: Column, way: str) -> str:
    results = column.results
    if way == "settings":
        return f"{results.profile} profile, {results.depth} depth"
    if way == "start":
        return f"started {results.started_at}"
    return f"from {column.source.parent.name or column.source.parent}/"


def _feature_rows(columns: list[Column]) -> str:
    esc = _html.esc
    out = [f'<tr class="group"><th colspan="{2 + len(columns)}">certification per feature</th></tr>']
    for feature in FEATURES:
        out.append(f"<tr><td><b>{esc(feature)}</b></td><td></td>")
        for column in columns:
            state = column.results.summary.features.get(feature, FeatureVerdict.NOT_TESTED)
            out.append(f'<td class="cell f-{esc(state)}">{esc(state)}</td>')
        out.append("</tr>")
    out.append('<tr data-row="root-causes"><td><b>root causes</b></td><td></td>')
    for column in columns:
        causes = column.results.root_causes
        titles = "\n".join(f"{i}. {c.title}" for i, c in enumerate(causes, start=1))
        out.append(f'<td class="cell" title="{esc(titles)}">{esc(root_cause_line(column.results) or "none")}</td>')
    out.append("</tr>")
    return "".join(out)


def _all_checks(columns: list[Column]) -> list[CheckRecord]:
    """Every check ID of every run, once, in ID order (a newer suite may have more checks)."""
    seen: dict[str, CheckRecord] = {}
    for column in columns:
        for check in column.results.checks:
            seen.setdefault(check.id, check)
    return [seen[k] for k in sorted(seen)]


def _cell(column: Column, check_id: str, out_dir: Path) -> str:
    esc = _html.esc
    check = column.by_id.get(check_id)
    if check is None:
        return '<td class="cell c-none">—</td>'
    outcome = check.outcome
    title = first_line(check.message, 200) if outcome is not Verdict.PASSED else "passed"
    label = f"{outcome} (flaky)" if check.flaky else outcome
    return (f'<td class="cell c-{esc(outcome)}" title="{esc(title)}"><a href="{esc(_link(column, check_id, out_dir))}">'
            f"{esc(label)}</a></td>")


def _inline_details(columns: list[Column]) -> str:
    """Detail sections for runs without a report.html next to their results.json."""
    out = []
    for column in columns:
        if column.report is not None:
            continue
        results = column.results
        out.append(f'<section id="{column.prefix}details"><h3>{_html.esc(target_label(results))} — '
                   f"{_html.esc(results.verdict.label)}</h3>")
        if results.reason:
            out.append(f"<p><b>Why:</b> {_html.esc(results.reason)}</p>")
        senders = exchange_senders(results.checks)
        for check in sorted(results.checks, key=lambda c: (not _failing(c), c.id)):
            out.append(_html.check_detail(check, collapsed=not _failing(check), prefix=column.prefix,
                                          senders=senders.get(check.id, [])))
        out.append("</section>")
    return "".join(out)


def _failing(check: CheckRecord) -> bool:
    return check.outcome in (Verdict.FAILED, Verdict.ERROR)
