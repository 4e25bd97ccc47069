"""Hypothesis properties for bounded numeric parameters.

schemathesis's negative mode does not probe just outside a bound (it sends 3, not 2.0000001), so
every bounded parameter gets an explicit property: the edges are accepted, values just outside
are rejected with a 4xx and the error envelope.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from .._context import CheckContext, excerpt
from .._http import Exchange
from ._judge import envelope_problems, schema_errors

REJECT_STATUSES = (400, 422)


def probe_settings(ctx: CheckContext, generated: int) -> settings:
    """Deterministic, shrink-free settings: every example costs a request on a paid target."""
    return settings(
        max_examples=max(1, generated if ctx.full else 1),
        phases=[Phase.explicit] + ([Phase.generate] if ctx.full else []),
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def just_outside(minimum: float, maximum: float, integer: bool) -> tuple[Any, Any]:
    if integer:
        return int(minimum) - 1, int(maximum) + 1
    return minimum - 1e-9, maximum + 1e-7


def judge_accepted(ctx: CheckContext, param: str, value: Any, exchange: Exchange) -> None:
    exchange.require_response()
    if exchange.status != 200:
        ctx.fail(f"{param}={value!r} (inside the documented range) accepted with 200",
                 f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)


def judge_rejected(ctx: CheckContext, param: str, value: Any, exchange: Exchange) -> None:
    exchange.require_response()
    if exchange.status not in REJECT_STATUSES:
        ctx.fail(f"{param}={value!r} (outside the documented range) rejected with 400 or 422",
                 f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)
        return
    for problem in envelope_problems(exchange):
        ctx.fail("the rejection uses the error envelope {error: {message, type, param, code}}", problem,
                 ctx.where(exchange), exchange=exchange)


def probe_range(ctx: CheckContext, param: str, minimum: float, maximum: float, *, integer: bool = False,
                generated: int = 2, base: dict[str, Any] | None = None) -> None:
    """Accept the edges and random interior values; reject values just outside and random outside ones."""
    base = base if base is not None else ctx.chat_request(max_tokens=1)
    below, above = just_outside(minimum, maximum, integer)
    inside = (st.integers(int(minimum), int(maximum)) if integer
              else st.floats(minimum, maximum, allow_nan=False))
    outside = (st.one_of(st.integers(int(maximum) + 1, int(maximum) + 1000),
                         st.integers(int(minimum) - 1000, int(minimum) - 1)) if integer
               else st.one_of(st.floats(maximum, maximum + 10, exclude_min=True),
                              st.floats(minimum - 10, minimum, exclude_max=True)))

    def send(value: Any) -> Exchange:
        return ctx.chat({**base, param: value})

    @probe_settings(ctx, generated)
    @given(value=inside)
    @example(value=minimum)
    @example(value=maximum)
    def accepts_inside(value: Any) -> None:
        judge_accepted(ctx, param, value, send(value))

    @probe_settings(ctx, generated)
    @given(value=outside)
    @example(value=below)
    @example(value=above)
    def rejects_outside(value: Any) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            return
        # Re-validate the exact payload before calling it invalid (schemathesis's false-positive trap).
        if not schema_errors("CreateChatCompletionRequest", {**base, param: value}):
            return
        judge_rejected(ctx, param, value, send(value))

    accepts_inside()
    rejects_outside()
