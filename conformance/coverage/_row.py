"""One row of the coverage map: a statement of documented-api.txt and what answers for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    """A statement of the document, by a stable key, with a short verbatim quote.

    Exactly one of three answers: the checks that enforce it, why no request can observe it
    (`untestable`), or why it is testable but has no check yet (`gap`).
    """

    key: str
    quote: str
    checks: tuple[str, ...] = ()
    untestable: str = ""
    gap: str = ""

    @property
    def testable(self) -> bool:
        return not self.untestable

    @property
    def covered(self) -> bool:
        return bool(self.checks)

    @property
    def reason(self) -> str | None:
        """Why the row has no check: not testable from outside, or not checked yet."""
        return self.untestable or self.gap or None

    def answers(self) -> int:
        """How many of the three answers the row gives (the map's tests want exactly one)."""
        return sum((bool(self.checks), bool(self.untestable), bool(self.gap)))


def enforced(key: str, quote: str, *checks: str) -> Row:
    return Row(key, quote, checks=checks)


def untestable(key: str, quote: str, reason: str) -> Row:
    return Row(key, quote, untestable=reason)


def gap(key: str, quote: str, reason: str) -> Row:
    return Row(key, quote, gap=reason)
