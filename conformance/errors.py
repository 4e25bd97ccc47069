"""Exceptions of the suite.

    ConformanceError            base; the CLI prints its message on one line and exits 2
    ├── UsageError              bad flags or arguments
    ├── TargetUnreachable       connection refused, DNS failure, wrong URL
    ├── BaselineError           a malformed or mismatched baseline file
    └── BudgetExhausted         --max-requests / --max-tokens / run deadline reached

    CheckOutcome                raised inside a check to end it with a verdict
    ├── CheckFailed             the target violated the clause
    ├── CheckSkipped            not judged (e.g. the SDK is not installed)
    ├── CheckNotApplicable      the check's premise does not hold (e.g. no authentication to test)
    ├── CheckInconclusive       the model's output allowed no judgement
    └── CheckUnsupported        the target declared a feature unsupported (a 4xx naming it)
"""

from __future__ import annotations

from ._model import Failure, Feature


class ConformanceError(Exception):
    """An error the user can fix; shown as one line, exit code 2."""


class UsageError(ConformanceError):
    pass


class TargetUnreachable(ConformanceError):
    pass


class BaselineError(ConformanceError):
    pass


class BudgetExhausted(ConformanceError):
    pass


class CheckOutcome(Exception):
    pass


class CheckFailed(CheckOutcome):
    def __init__(self, *failures: Failure) -> None:
        super().__init__("\n\n".join(str(f) for f in failures))
        self.failures = failures


class CheckSkipped(CheckOutcome):
    pass


class CheckNotApplicable(CheckOutcome):
    pass


class CheckInconclusive(CheckOutcome):
    pass


class CheckUnsupported(CheckOutcome):
    def __init__(self, message: str, feature: Feature | None = None) -> None:
        super().__init__(message)
        # The optional feature the target declared unsupported (None: the check's own feature).
        self.feature = feature
