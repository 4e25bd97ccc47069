"""Terminal output of `conformance run`: progress while it runs, a summary table at the end.

Progress on a terminal (stderr a tty) is one line rewritten in place; in a CI log it is a plain
line every 10 checks or every 10 s, whichever comes first, so a long run is never silent. The
summary is plain text when stdout is not a terminal, coloured otherwise unless NO_COLOR is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from .._model import CheckFinished, CheckNotExecuted, Level, RunEvent, RunFinished, RunStarted, RunVerdict, Verdict
from ._records import CheckRecord, Results
from ._results import (
    VERDICTS,
    concurrency_note,
    curl_for,
    curl_lines,
    example_transcript,
    failing,
    first_line,
    flaky_note,
    repeat_note,
    root_cause_line,
    route_label,
)

# Root causes listed in full; a repro curl longer than this points at the report instead.
ROOT_CAUSES_SHOWN = 8
CURL_SHOWN = 1000

GLYPH = {"passed": "✓", "failed": "✗", "not_applicable": "·", "skipped": "-", "unsupported": "~", "inconclusive": "?",
         "error": "!"}
COLOUR = {"passed": "32", "failed": "31", "partial": "33", "incomplete": "33", "invalid": "33", "error": "33"}


class Progress:
    """An engine event handler that shows how far the run is.

    enabled (a terminal): `[done/total] ✓ check-id · N failed · 3.2s`, rewritten in place; the engine
    reports checks as they finish (several run at once), so the line names the one that finished last.
    plain (a CI log): `conformance: 20/68 checks · 57 requests · 1 failed · 12.3s` every `every_checks`
    checks or `every_s` seconds; `ticking()` keeps the seconds going while a long check runs.
    """

    def __init__(self, stream: TextIO, *, enabled: bool, plain: bool = False, every_checks: int = 10,
                 every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.enabled = enabled
        self.plain = plain and not enabled
        self.every_checks, self.every_s, self.clock = every_checks, every_s, clock
        self.failures = 0
        self.errors = 0
        self.skipped_run = 0
        self.planned = 0
        self.done = 0
        self.requests = 0  # sent by the checks that finished (a shared response counts once)
        self.started = clock()
        self.ticker_stopped = True
        self._running = False
        self._last_line_at = self.started
        self._last_line_done = 0
        self._lock = threading.Lock()

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            with self._lock:
                self.planned = event.planned
                self.started = self._last_line_at = self.clock()
                self._running = True
        elif isinstance(event, CheckFinished):
            result = event.result
            verdict = result.verdict.value
            with self._lock:
                self.failures += verdict == "failed"
                self.errors += verdict == "error"
                self.requests += result.requests
                self.done = event.done
            self._show(event.done, event.planned, f"{GLYPH.get(verdict, '?')} {result.spec.id}")
            if self.plain and (self.done - self._last_line_done >= self.every_checks
                               or self.clock() - self._last_line_at >= self.every_s):
                self._plain_line()
        elif isinstance(event, CheckNotExecuted):
            self.skipped_run += 1
        elif isinstance(event, RunFinished):
            self._running = False
            if self.enabled:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()

    def line(self, done: int, planned: int, current: str) -> str:
        parts = [f"[{done:>{len(str(planned))}}/{planned}] {current}", f"{self.failures} failed"]
        if self.errors:
            parts.append(f"{self.errors} error")
        if self.skipped_run:
            parts.append(f"{self.skipped_run} not executed")
        parts.append(f"{self.clock() - self.started:.1f}s")
        return " · ".join(parts)

    def plain_line(self) -> str:
        parts = [f"conformance: {self.done}/{self.planned} checks", f"{self.requests} requests",
                 f"{self.failures} failed"]
        if self.errors:
            parts.append(f"{self.errors} error")
        if self.skipped_run:
            parts.append(f"{self.skipped_run} not executed")
        parts.append(f"{self.clock() - self.started:.1f}s")
        return " · ".join(parts)

    def heartbeat(self) -> None:
        """A plain line if none was printed for `every_s` seconds (called by `ticking()`)."""
        if self.plain and self._running and self.clock() - self._last_line_at >= self.every_s:
            self._plain_line()

    @contextlib.contextmanager
    def ticking(self, interval: float = 1.0) -> Iterator[None]:
        """While the block runs, check every `interval` s whether a plain line is due."""
        if not self.plain:
            yield
            return
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(interval):
                self.heartbeat()

        ticker = threading.Thread(target=tick, name="progress", daemon=True)
        self.ticker_stopped = False
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join(timeout=5)
            self.ticker_stopped = not ticker.is_alive()

    def _plain_line(self) -> None:
        with self._lock:
            self._last_line_at, self._last_line_done = self.clock(), self.done
            self.stream.write(self.plain_line() + "\n")
            self.stream.flush()

    def _show(self, done: int, planned: int, current: str) -> None:
        if not self.enabled:
            return
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        self.stream.write("\r\x1b[2K" + self.line(done, planned, current)[:width])
        self.stream.flush()


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def summary(results: Results, paths: dict[str, Path], *, colour: bool = False,
            baseline: Sequence[str] = ()) -> str:
    """The end-of-run table: verdict, counts, features, failed checks, cost, where the reports are."""
    verdict = results.verdict

    def paint(text: str, key: str) -> str:
        code = COLOUR.get(key)
        return f"\x1b[1;{code}m{text}\x1b[0m" if colour and code else text

    target = results.target
    counts = results.summary.counts
    # The first line keeps the form scripts grep for: "CERTIFIED core, …: model @ url (profile …, depth …)".
    strict = ", strict" if results.strict else ""
    first = (f"{paint(results.headline, verdict)}: {target.model} @ {target.base_url} "
             f"(profile {results.profile}, depth {results.depth}{strict})")
    rows = []
    if results.reason or verdict is not RunVerdict.PASSED:
        rows.append(("Why", results.reason or _why(results)))
    if concurrency_note(results):
        rows.append(("Load", concurrency_note(results)))
    if repeat_note(results):
        rows.append(("Repeat", repeat_note(results)))
    rows += [
        ("Checks", f"{results.executed}/{results.planned} judged: "
                   + " · ".join(paint(f"{counts[v]} {v}", v) for v in VERDICTS if counts.get(v))),
        ("Features", " · ".join(f"{k} {v}" for k, v in results.summary.features.items())),
        ("Cost", f"{results.requests} requests · {results.tokens} tokens · {results.duration_s:.1f} s"),
    ]
    if results.chat_route is not None:
        rows.append(("Chat", route_label(results)))
    lines = [first, *_cause_lines(results)] + [f"  {name:<9} {value}" for name, value in rows]
    lines += _failed_lines(results)
    lines += [f"  {'Baseline' if i == 0 else '':<9} {text}" for i, text in enumerate(baseline)]
    named = {path.name: path for path in paths.values()}
    width = max((len(n) for n in named), default=0)
    lines += [f"  {'Reports' if i == 0 else '':<9} {name:<{width}}  {path}" for i, (name, path) in
              enumerate(named.items())]
    return "\n".join(lines) + "\n"


def _cause_lines(results: Results) -> list[str]:
    """The root causes, first after the headline: each one's title, its checks and a curl that reproduces it."""
    causes = results.root_causes
    if not causes:
        return []
    out = [f"  {'Causes':<9} {root_cause_line(results)}"]
    for number, cause in enumerate(causes[:ROOT_CAUSES_SHOWN], start=1):
        checks = cause.checks
        shown = ", ".join(checks[:4]) + (f" and {len(checks) - 4} more" if len(checks) > 4 else "")
        out.append(f"    {number}. {first_line(cause.title, 110)}")
        out.append(f"       {len(checks)} check{'s' if len(checks) != 1 else ''}: {shown}")
        transcript = example_transcript(results, cause)
        if transcript is not None:
            length = len(curl_for(transcript))
            out += ([f"       {line}" for line in curl_lines(transcript)] if length <= CURL_SHOWN else
                    [f"       repro: report.html#root-cause-{number} (a {length}-character curl)"])
    if len(causes) > ROOT_CAUSES_SHOWN:
        out.append(f"    … and {len(causes) - ROOT_CAUSES_SHOWN} more (see the report)")
    return out


def _why(results: Results) -> str:
    musts = sum(c.outcome is Verdict.FAILED and c.level is Level.MUST for c in results.checks)
    return f"{musts} MUST check{'s' if musts != 1 else ''} failed"


def _failed_lines(results: Results, limit: int = 20) -> list[str]:
    checks = failing(results)
    if not checks:
        return []
    width = min(44, max(len(c.id) for c in checks[:limit]))
    out = ["  Failing"]
    for check in checks[:limit]:
        out.extend(_failed_check_lines(check, width))
    if len(checks) > limit:
        out.append(f"    … and {len(checks) - limit} more (see the report)")
    return out


def _failed_check_lines(check: CheckRecord, width: int) -> list[str]:
    tag = "flaky" if check.flaky else check.level.value if check.outcome is Verdict.FAILED else "error"
    head = f"    {tag:<6} {check.id:<{width}}  "
    if check.flaky:
        return [head + first_line(flaky_note(check), 100)]
    if check.failures:  # the first violation, as Expected / Received (the report has them all)
        failure = check.failures[0]
        return [head + "Expected: " + first_line(failure.expected, 80),
                " " * len(head) + "Received: " + first_line(failure.received, 80)]
    return [head + first_line(check.message, 90)]
