"""A check's verdict as a pytest outcome: one mapping for the plugin's live items and for the items
replayed from results.json (which pytest-html and pytest's JUnit writer render).

    error                                               → an error, raised in setup (never non-conformance)
    failed, or any verdict of a flaky check             → a failure
    skipped, unsupported, not_applicable, inconclusive  → a skip: `<verdict>: <message>`
    passed                                              → a pass

pytest is imported only where an outcome is raised: the renderers that share the flaky note do not load it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from .._model import Clause, Verdict

NOT_JUDGED = frozenset({Verdict.SKIPPED, Verdict.UNSUPPORTED, Verdict.NOT_APPLICABLE, Verdict.INCONCLUSIVE})


class CheckFailure(Exception):
    """The target violated the check's clause."""


class HarnessError(Exception):
    """The check could not be judged (network or harness); never non-conformance."""


def flaky_note(passed: int | str, runs: int | str, verdicts: Iterable[str]) -> str:
    """`flaky: passed 3 of 5 runs (failed, passed, …)`: a repeated check whose verdict changed."""
    return f"flaky: passed {passed} of {runs} runs ({', '.join(verdicts)})"


def with_flaky(message: str, note: str) -> str:
    """The check's message, after its flaky note (the message is the most severe run's)."""
    return f"{note}; the most severe run:\n{message}" if note else message


def enact(verdict: Verdict, message: str, flaky: str, *, phase: Literal["setup", "call"]) -> None:
    """Raise the verdict's outcome in its phase; `flaky` is the check's flaky note, empty when steady.

    An error is raised in setup, so pytest reports an error and not a failure; the rest in the call.
    A flaky check fails whatever its most severe verdict: it never passes or skips silently.
    """
    __tracebackhide__ = True  # pytest then reports the item's line as where a check was skipped
    if phase == "setup":
        if verdict is Verdict.ERROR:
            raise HarnessError(with_flaky(message, flaky))
        return
    if verdict is Verdict.FAILED or flaky:
        raise CheckFailure(with_flaky(message, flaky))
    if verdict in NOT_JUDGED:
        import pytest

        pytest.skip(f"{verdict.value}: {message}")


def failure_text(error: BaseException, level: str, check_id: str, *, clause: Clause | None = None,
                 description: str = "") -> str | None:
    """What pytest shows for a check that failed or erred; None for any other exception (pytest's own).

    With `clause`, for a report (JUnit is read without the catalogue at hand): the check first, then the
    verdict's text, then the clause. Without it, for the live terminal: the verdict's text first, as
    pytest's short summary shows the first line, then the check and its description.
    """
    if not isinstance(error, CheckFailure | HarnessError):
        return None
    failed = isinstance(error, CheckFailure)
    if clause is not None:
        kind = "FAILED" if failed else "ERROR (not counted as non-conformance)"
        return f"[{level}] {check_id} {kind}\n{error}\n\nClause: {clause}"
    kind = "failed" if failed else "error, not counted as non-conformance"
    return f"{error}\n[{level}] {check_id} ({kind}): {description}"
