"""The coverage map of the documented API: each statement of documented-api.txt and what answers for it.

    ROWS (document_rows.py)   the map's data, edited by hand
    resolved()                each row with its checks' levels and the faults that prove those checks
    figure()                  rows covered / rows testable
    map_problems(rows, ids)   what makes a map wrong (no answer, an unknown check, a repeated key)
    to_json(), table()        what `conformance coverage [--json]` prints
    quote_in(quote, text)     whether a quote is verbatim in the document

The package carries short quotes and stable keys, not the document; the tests look every quote up
in the document when it is at hand.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._row import Row
from .document_rows import ROWS

__all__ = ["ROWS", "SECTIONS", "CoverageFigure", "ResolvedRow", "Row", "figure", "map_problems", "quote_in",
           "resolved", "section_of", "table", "to_json"]

# The document's sections, by the first part of a row's key.
SECTIONS = {
    "intro": "Introduction",
    "endpoint": "Endpoint",
    "header": "1.1 Header Parameters",
    "body": "1.2 Body Parameters",
    "response": "2. Response Parameters",
    "example": "3. Request Examples",
    "faq": "4. FAQs",
}
# What a quote writes between two table cells that the document runs together.
CELL_SEPARATOR = " | "
UNKNOWN_LEVEL = "?"  # a check ID that is not (or no longer) in the catalogue


def section_of(key: str) -> str:
    return SECTIONS.get(key.split(".", 1)[0], "Other")


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def quote_in(quote: str, document: str) -> bool:
    """Whether `quote` is verbatim in `document`, up to cell separators and runs of whitespace.

    Cell separators (" | ") are dropped, since the document's tables have none; every run of
    whitespace counts as one space, since the response example breaks its lines inside a string.
    Nothing else is forgiven: case, punctuation and the non-ASCII bullets must match.
    """
    return _squeeze(quote.replace(CELL_SEPARATOR, "")) in _squeeze(document)


def map_problems(rows: Iterable[Row], check_ids: Iterable[str]) -> list[str]:
    """Why a map is wrong, one line each: the map's tests want none."""
    known, seen = set(check_ids), set[str]()
    problems = []
    for row in rows:
        if row.key in seen:
            problems.append(f"{row.key}: the key is used twice")
        seen.add(row.key)
        if section_of(row.key) == "Other":
            problems.append(f"{row.key}: the key starts with none of {', '.join(SECTIONS)}")
        if row.answers() != 1:
            problems.append(f"{row.key}: needs exactly one of checks, an untestable reason or a gap "
                            f"(has {row.answers()})")
        problems += [f"{row.key}: check {c!r} is not in the catalogue" for c in row.checks if c not in known]
        if not row.quote.strip():
            problems.append(f"{row.key}: no quote")
    return problems


@dataclass(frozen=True, slots=True)
class ResolvedRow:
    """A row with its checks' levels (from the catalogue) and the faults that prove those checks."""

    row: Row
    checks: tuple[tuple[str, str], ...]  # (check ID, level)
    faults: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.row.key,
            "section": section_of(self.row.key),
            "quote": self.row.quote,
            "checks": [{"id": check_id, "level": level} for check_id, level in self.checks],
            "faults": list(self.faults),
            "reason": self.row.reason,
            "testable": self.row.testable,
        }


def resolved(rows: tuple[Row, ...] = ROWS) -> list[ResolvedRow]:
    from ..checks import all_checks
    from ..refserver.faults import FAULTS

    levels = {c.spec.id: c.spec.level.value for c in all_checks()}
    out = []
    for row in rows:
        faults = tuple(sorted(name for name, fault in FAULTS.items() if set(fault.killed_by) & set(row.checks)))
        out.append(ResolvedRow(row, tuple((c, levels.get(c, UNKNOWN_LEVEL)) for c in row.checks), faults))
    return out


@dataclass(frozen=True, slots=True)
class CoverageFigure:
    covered: int  # testable rows with at least one check
    testable: int  # rows a request can observe
    total: int
    gaps: tuple[str, ...]  # keys of testable rows without a check

    def __str__(self) -> str:
        return (f"{self.covered} of {self.testable} testable rows covered ({self.total} rows, "
                f"{self.total - self.testable} not testable from outside)")


def figure(rows: tuple[Row, ...] = ROWS) -> CoverageFigure:
    testable = [r for r in rows if r.testable]
    return CoverageFigure(covered=sum(r.covered for r in testable), testable=len(testable), total=len(rows),
                          gaps=tuple(r.key for r in testable if not r.covered))


def to_json(rows: tuple[Row, ...] = ROWS) -> list[dict[str, Any]]:
    return [r.to_json() for r in resolved(rows)]


def table(rows: tuple[Row, ...] = ROWS, width: int = 120) -> str:
    """The map for a terminal: one block per row under its section, then the coverage figure."""
    key_width = max(len(r.key) for r in rows) + 2
    label_width = len("no check yet") + 2
    wrap = textwrap.TextWrapper(width=max(60, width), subsequent_indent=" " * (key_width + label_width),
                                break_on_hyphens=False, break_long_words=False)

    def line(head: str, label: str, text: str) -> str:
        return wrap.fill(f"{head:<{key_width}}{label:<{label_width}}{text}")

    lines: list[str] = []
    section = None
    for item in resolved(rows):
        row = item.row
        if section_of(row.key) != section:
            section = section_of(row.key)
            lines += ["", section, "-" * len(section)]
        lines.append(line(row.key, "quote", f"“{row.quote}”"))
        if item.checks:
            # A no-break space keeps each ID with its level when the line wraps.
            lines.append(line("", "checks", ", ".join(f"{c}\u00a0({level})" for c, level in item.checks)))
            lines.append(line("", "faults", ", ".join(item.faults) or "none: no seeded fault proves these checks"))
        else:
            lines.append(line("", "not testable" if not row.testable else "no check yet", row.reason or ""))
    result = figure(rows)
    lines += ["", f"Coverage: {result}."]
    if result.gaps:
        lines.append("Testable rows without a check yet: " + ", ".join(result.gaps) + ".")
    return "\n".join(lines).lstrip("\n") + "\n"
