"""The options `conformance run` and the pytest plugin share: one definition of each name, type,
default and help text, so the plugin's `--conformance-max-requests` is the CLI's `--max-requests`.

The pytest11 entry imports this module in every pytest run: it uses the standard library only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEPTHS = ("quick", "full")
PROFILES = ("openai", "documented")
DEPTH_HELP = ("quick: the cheap subset, for PR CI against a paid API; full (default). "
              "`conformance run --dry-run` shows what a depth costs")
PROFILE_HELP = "openai (default): POST must work; documented: the GET /v1/models quirk must work too"
MAX_RETRIES = 10
REPEAT_HELP = ("run the model-dependent checks (sampling, tools, JSON mode, stream equivalence, prompt usage) K "
               "times: the report gives each one's pass rate and pass^k, and a check whose verdict changes is flaky "
               "(a flaky MUST check leaves its feature partial); default 1")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def retry_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= MAX_RETRIES:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and {MAX_RETRIES}")
    return value


@dataclass(frozen=True, slots=True)
class LimitOption:
    """One bound of a run: `--NAME` in the CLI, `--conformance-NAME` in the plugin, `Limits.field`."""

    name: str
    field: str
    type: Callable[[str], Any]
    default: int | float | None
    help: str
    metavar: str = "N"

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def full_help(self) -> str:
        return self.help if self.default is None else f"{self.help} (default {self.default:g})"


LIMIT_OPTIONS: tuple[LimitOption, ...] = (
    LimitOption("max-requests", "max_requests", positive_int, None,
                "spending cap: stop (INCOMPLETE, exit 2) after this many requests"),
    LimitOption("max-tokens", "max_tokens", positive_int, None,
                "spending cap: stop (INCOMPLETE, exit 2) after this many tokens (reported usage; an upper-bound "
                "estimate where a response reports none)"),
    LimitOption("timeout", "read_timeout_s", positive_float, 20.0, "read timeout per chunk, s", "S"),
    LimitOption("connect-timeout", "connect_timeout_s", positive_float, 5.0, "connect timeout, s", "S"),
    LimitOption("request-deadline", "request_deadline_s", positive_float, 45.0,
                "total time per request incl. streams, s", "S"),
    LimitOption("run-deadline", "run_deadline_s", positive_float, 900.0, "whole-run deadline, s", "S"),
    LimitOption("max-response-bytes", "max_response_bytes", positive_int, 4_000_000,
                "a larger response is a failure of the checks judging it"),
    LimitOption("max-sse-events", "max_sse_events", positive_int, 5_000,
                "a longer stream is a failure of the checks judging it"),
    LimitOption("retries", "retries", retry_count, 3,
                f"retries of a 429/503, honouring Retry-After, each wait <= 10 s (0..{MAX_RETRIES})"),
)


def add_limit_options(add: Callable[..., Any], *, prefix: str = "") -> None:
    """Declare every bound with `add` (argparse's `add_argument` or pytest's `addoption`)."""
    for option in LIMIT_OPTIONS:
        add(f"--{prefix}{option.name}", type=option.type, default=option.default, metavar=option.metavar,
            help=option.full_help)


def limit_values(get: Callable[[str], Any], *, prefix: str = "") -> dict[str, Any]:
    """Keyword arguments of `Limits` from parsed options; `get(dest)` reads one option's value."""
    return {option.field: get(prefix.replace("-", "_") + option.dest) for option in LIMIT_OPTIONS}
