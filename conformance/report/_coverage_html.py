"""The report's "Coverage of the documented API": each statement of the document, judged by this run.

The map (key, quote, checks or reason) is the package's own data; the verdicts and levels come
from results.json's `checks[]` only, so a re-rendered report shows the same (and rendering loads
neither the check catalogue nor the reference server).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from .._model import Level, Verdict
from ._records import CheckRecord
from ._results import anchor

# Row verdicts, worst first: a row takes the worst outcome among its checks that ran.
_ORDER = ("failed", "error", "passed", "skipped", "unsupported")
NOT_RUN = "not run"
NOT_TESTABLE = "not testable"
NO_CHECK = "no check yet"
# A badge class of _html.STYLE for each row verdict.
_CLASS = {"failed": "c-failed", "error": "c-error", "passed": "c-passed", "skipped": "c-skipped",
          "unsupported": "c-unsupported", NOT_RUN: "c-skipped", NOT_TESTABLE: "c-unsupported", NO_CHECK: "c-skipped"}


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def row_verdict(check_ids: tuple[str, ...], outcomes: Mapping[str, str]) -> str:
    """The worst outcome of the row's checks in this run, or "not run" when none of them ran."""
    ran = [outcomes[c] for c in check_ids if c in outcomes]
    return next((v for v in _ORDER if v in ran), NOT_RUN)


def coverage_section(checks: Iterable[CheckRecord]) -> str:
    from ..coverage import ROWS, figure

    checks = list(checks)
    outcomes: dict[str, Verdict] = {c.id: c.outcome for c in checks}
    levels: dict[str, Level] = {c.id: c.level for c in checks}
    body: list[str] = []
    verdicts: Counter[str] = Counter()
    for row in ROWS:
        if not row.checks:
            verdict = NOT_TESTABLE if not row.testable else NO_CHECK
            judged = _esc(row.reason)
        else:
            verdict = row_verdict(row.checks, outcomes)
            judged = " ".join(_check_badge(c, levels.get(c), outcomes.get(c)) for c in row.checks)
            missing = sum(c not in outcomes for c in row.checks)
            if missing:
                judged += (" <small>none ran in this run</small>" if missing == len(row.checks)
                           else f" <small>{missing} of {len(row.checks)} did not run in this run</small>")
        verdicts[verdict] += 1
        body.append(f'<tr data-key="{_esc(row.key)}" data-verdict="{_esc(verdict)}"><td><code>{_esc(row.key)}</code>'
                    f'</td><td>“{_esc(row.quote)}”</td><td>{judged}</td>'
                    f'<td><span class="badge {_CLASS[verdict]}">{_esc(verdict)}</span></td></tr>')
    counts = ", ".join(f"{verdicts[v]} {v}" for v in (*_ORDER, NOT_RUN, NO_CHECK, NOT_TESTABLE) if verdicts[v])
    return (f'<h3 id="coverage">Coverage of the documented API</h3>'
            f"<p>Each statement of documented-api.txt, by key and quote, with the verdict of its checks in this "
            f"run (a row takes the worst of them). The map: {_esc(figure())}.</p>"
            f'<details id="coverage-map"><summary>{_esc(counts)} — show</summary>'
            f"<table><tr><th>Key</th><th>Quote</th><th>Checks in this run, or why none</th><th>Row</th></tr>"
            f'{"".join(body)}</table></details>')


def _check_badge(check_id: str, level: Level | None, outcome: Verdict | None) -> str:
    """The check's ID, level and outcome; a check that ran links to its detail in the report."""
    if outcome is None:
        return f'<span class="badge {_CLASS[NOT_RUN]}">{_esc(check_id)}: {NOT_RUN}</span>'
    return (f'<span class="badge {_CLASS.get(outcome, "")}"><a href="#{_esc(anchor(check_id))}">{_esc(check_id)}</a> '
            f"{_esc(level)}: {_esc(outcome)}</span>")
