"""Terminal output of `conformance run`: a progress line while it runs, a summary table at the end.

The progress line appears only on a terminal (stderr a tty); the summary is plain text when
stdout is not a terminal (CI logs), coloured otherwise unless NO_COLOR is set.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ._results import VERDICTS, failing, first_line, headline, run_verdict

GLYPH = {"passed": "✓", "failed": "✗", "not_applicable": "·", "skipped": "-", "unsupported": "~", "inconclusive": "?",
         "error": "!"}
COLOUR = {"passed": "32", "failed": "31", "partial": "33", "incomplete": "33", "invalid": "33", "error": "33"}


class Progress:
    """`[done/total] ✓ check-id · N failed · 3.2s`, rewritten in place on a terminal.

    The engine reports checks as they finish (several run at once), so the line names the check
    that finished last.
    """

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.failures = 0
        self.errors = 0
        self.skipped_run = 0
        self.planned = 0
        self.started = time.monotonic()

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "run-started":
            self.planned = int(payload.get("planned", 0))
        elif kind == "check-finished":
            verdict = payload["result"].verdict.value
            self.failures += verdict == "failed"
            self.errors += verdict == "error"
            self._show(payload["done"], payload["planned"], f"{GLYPH.get(verdict, '?')} {payload['result'].spec.id}")
        elif kind == "check-not-executed":
            self.skipped_run += 1
        elif kind == "run-finished" and self.enabled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def line(self, done: int, planned: int, current: str) -> str:
        parts = [f"[{done:>{len(str(planned))}}/{planned}] {current}", f"{self.failures} failed"]
        if self.errors:
            parts.append(f"{self.errors} error")
        if self.skipped_run:
            parts.append(f"{self.skipped_run} not executed")
        parts.append(f"{time.monotonic() - self.started:.1f}s")
        return " · ".join(parts)

    def _show(self, done: int, planned: int, current: str) -> None:
        if not self.enabled:
            return
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        self.stream.write("\r\x1b[2K" + self.line(done, planned, current)[:width])
        self.stream.flush()


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def summary(results: dict[str, Any], paths: dict[str, Path], *, colour: bool = False,
            baseline: Sequence[str] = ()) -> str:
    """The end-of-run table: verdict, counts, features, failed checks, cost, where the reports are."""
    verdict = run_verdict(results)

    def paint(text: str, key: str) -> str:
        code = COLOUR.get(key)
        return f"\x1b[1;{code}m{text}\x1b[0m" if colour and code else text

    target = results["target"]
    s = results["summary"]
    # The first line keeps the form scripts grep for: "CERTIFIED core, …: model @ url (profile …, depth …)".
    strict = ", strict" if results.get("strict") else ""
    first = (f"{paint(headline(results), verdict)}: {target['model']} @ {target['base_url']} "
             f"(profile {results['profile']}, depth {results['depth']}{strict})")
    rows = []
    if results.get("reason") or verdict != "passed":
        rows.append(("Why", results.get("reason") or _why(results)))
    rows += [
        ("Checks", f"{results['executed']}/{results['planned']} judged: "
                   + " · ".join(paint(f"{s[v]} {v}", v) for v in VERDICTS if s.get(v))),
        ("Features", " · ".join(f"{k} {v}" for k, v in s["features"].items())),
        ("Cost", f"{results['requests']} requests · {results['tokens']} tokens · {results['duration_s']:.1f} s"),
    ]
    route = results.get("chat_route") or {}
    if route.get("method"):
        rows.append(("Chat", f"{route['method']} {route['path']} ({route.get('source', 'discovered')})"))
    lines = [first] + [f"  {name:<9} {value}" for name, value in rows]
    lines += _failed_lines(results)
    lines += [f"  {'Baseline' if i == 0 else '':<9} {text}" for i, text in enumerate(baseline)]
    named = {path.name: path for path in paths.values()}
    width = max((len(n) for n in named), default=0)
    lines += [f"  {'Reports' if i == 0 else '':<9} {name:<{width}}  {path}" for i, (name, path) in
              enumerate(named.items())]
    return "\n".join(lines) + "\n"


def _why(results: dict[str, Any]) -> str:
    musts = sum(c["outcome"] == "failed" and c["level"] == "MUST" for c in results["checks"])
    return f"{musts} MUST check{'s' if musts != 1 else ''} failed"


def _failed_lines(results: dict[str, Any], limit: int = 20) -> list[str]:
    checks = failing(results)
    if not checks:
        return []
    width = min(44, max(len(c["id"]) for c in checks[:limit]))
    out = ["  Failing"]
    for check in checks[:limit]:
        why = check["failures"][0]["expected"] if check["failures"] else check["message"]
        tag = check["level"] if check["outcome"] == "failed" else "error"
        out.append(f"    {tag:<6} {check['id']:<{width}}  {first_line(why, 90)}")
    if len(checks) > limit:
        out.append(f"    … and {len(checks) - limit} more (see the report)")
    return out
