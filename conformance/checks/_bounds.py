"""Hypothesis properties for bounded parameters.

schemathesis's negative mode does not probe just outside a bound (it sends 3, not 2.0000001), so
every bounded parameter gets an explicit property: the edges are accepted, values just outside
are rejected with a 4xx and the error envelope.

At quick depth only the explicit examples run (the edges and the values just outside them); full
depth adds generated values on each side. The values do not depend on any answer, so hypothesis
draws them first (derandomized: the same values every run), then every request is sent at once
and the answers are judged in the order the property lists them. Every request is shared
(`ctx.shared`), so `params.error-names-param` and `errors.*` judge the same rejections without
paying for them again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from .._context import CheckContext, excerpt
from ..http import Exchange
from ._judge import envelope_problems, schema_errors
from ._parallel import Batch, submit_chat

REJECT_STATUSES = (400, 422)
# Generated values above a one-sided minimum stay small: max_tokens and n cost tokens on paid targets.
ONE_SIDED_SPAN = 16

Wrap = Callable[[Any], Any]
Judge = Callable[[CheckContext, str, Exchange], None]


def probe_settings(ctx: CheckContext, generated: int) -> settings:
    """Deterministic, shrink-free settings: every example costs a request on a paid target.

    Hypothesis's first draw is its simplest value, which is usually an edge already sent as an
    explicit example (free: shared); `generated` counts the draws after it.
    """
    return settings(
        max_examples=generated + 1 if ctx.full else 1,
        phases=[Phase.explicit] + ([Phase.generate] if ctx.full else []),
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def just_outside(minimum: float, maximum: float | None, integer: bool) -> tuple[Any, ...]:
    if integer:
        return (int(minimum) - 1,) + ((int(maximum) + 1,) if maximum is not None else ())
    return (minimum - 1e-9,) + ((maximum + 1e-7,) if maximum is not None else ())


def bounds_body(ctx: CheckContext, param: str, value: Any, wrap: Wrap | None = None) -> dict[str, Any]:
    """The request a bounds property sends: the cheapest valid request with `param` set."""
    return {**ctx.chat_request(max_tokens=1), param: wrap(value) if wrap else value}


def send_shared(ctx: CheckContext, body: dict[str, Any]) -> Exchange:
    """Send `body` once per run; any check sending the same body (2.0 and 2 alike) reuses the exchange."""
    return ctx.shared(shared_key(body), lambda c: c.chat(body))


def submit_shared(batch: Batch, body: dict[str, Any]) -> None:
    """`send_shared` without waiting, into `batch`."""
    batch.shared(shared_key(body), lambda c: submit_chat(c, body))


def shared_key(body: dict[str, Any]) -> str:
    return "bounds:" + json.dumps(_same_numbers(body), sort_keys=True)


def _same_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _same_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_same_numbers(v) for v in value]
    return value


def shown(param: str, value: Any, wrap: Wrap | None) -> str:
    return f"{param}={json.dumps(wrap(value) if wrap else value)}"


def judge_accepted(ctx: CheckContext, label: str, exchange: Exchange) -> None:
    exchange.require_response()
    if exchange.status != 200:
        ctx.fail(f"{label} (inside the documented range) accepted with 200",
                 f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)


def judge_rejected(ctx: CheckContext, label: str, exchange: Exchange) -> None:
    exchange.require_response()
    if exchange.status not in REJECT_STATUSES:
        ctx.fail(f"{label} (outside the documented range) rejected with 400 or 422",
                 f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)
        return
    for problem in envelope_problems(exchange):
        ctx.fail("the rejection carries the error envelope {error: {message}}", problem,
                 ctx.where(exchange), exchange=exchange)


def probe_values(ctx: CheckContext, param: str, *, inside: st.SearchStrategy[Any] | None,
                 outside: st.SearchStrategy[Any], accept: Sequence[Any], reject: Sequence[Any], generated: int = 1,
                 wrap: Wrap | None = None) -> None:
    """The core property: `accept` and values drawn from `inside` get 200; `reject` and `outside` get 4xx.

    Every value is re-validated against the spec before its verdict is demanded, so a generated
    value that happens to be legal (or illegal) is never judged by its label.
    """

    def body_for(value: Any) -> dict[str, Any]:
        return bounds_body(ctx, param, value, wrap)

    def legal(value: Any) -> bool:
        return not schema_errors("CreateChatCompletionRequest", body_for(value), view="openai")

    def outside_range(value: Any) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        # Re-validate the exact payload before calling it invalid (schemathesis's false-positive trap).
        return not legal(value)

    plan: list[tuple[Judge, Any]] = []
    if inside is not None:
        plan += [(judge_accepted, v) for v in drawn(ctx, inside, accept, generated) if legal(v)]
    plan += [(judge_rejected, v) for v in drawn(ctx, outside, reject, generated) if outside_range(v)]
    batch = Batch(ctx)
    for _, value in plan:
        submit_shared(batch, body_for(value))
    for (judge, value), exchange in zip(plan, batch.results(), strict=True):
        judge(ctx, shown(param, value, wrap), exchange)


def drawn(ctx: CheckContext, strategy: st.SearchStrategy[Any], explicit: Sequence[Any], generated: int) -> list[Any]:
    """The values the property runs on, in its order: the explicit examples, then (full depth) the drawn ones."""
    values: list[Any] = []
    run_property(ctx, values.append, strategy, explicit, generated)
    return values


def run_property(ctx: CheckContext, test: Callable[[Any], None], strategy: st.SearchStrategy[Any],
                 explicit: Sequence[Any], generated: int) -> None:
    """Run `test` on the explicit examples, then (full depth) on `generated` drawn values."""

    # derandomize seeds hypothesis from this function's source: changing it changes the drawn values.
    def prop(value: Any) -> None:
        test(value)

    wrapped = given(value=strategy)(prop)
    for value in reversed(explicit):  # @example stacks apply bottom-up; keep the declared order
        wrapped = example(value=value)(wrapped)
    probe_settings(ctx, generated)(wrapped)()


def probe_range(ctx: CheckContext, param: str, minimum: float, maximum: float | None, *, integer: bool = False,
                generated: int = 1, wrap: Wrap | None = None, accept: Sequence[Any] | None = None,
                reject: Sequence[Any] | None = None) -> None:
    """Accept the edges and random interior values; reject values just outside and random outside ones.

    `maximum=None` is a one-sided range (max_tokens); `wrap` puts the value inside the parameter
    (logit_bias values); `accept`/`reject` replace the default edges and just-outside values.
    """
    top = maximum if maximum is not None else minimum + ONE_SIDED_SPAN
    if integer:
        inside: st.SearchStrategy[Any] = st.integers(int(minimum), int(top))
        below: st.SearchStrategy[Any] = st.integers(int(minimum) - 1000, int(minimum) - 1)
        outside = below if maximum is None else st.one_of(st.integers(int(maximum) + 1, int(maximum) + 1000), below)
    else:
        inside = st.floats(minimum, top, allow_nan=False)
        # Starting at the just-outside values makes Hypothesis's first (simplest) draw repeat one.
        below = st.floats(minimum - 10, minimum - 1e-9)
        outside = below if maximum is None else st.one_of(st.floats(maximum + 1e-7, maximum + 10), below)
    edges = (minimum,) + ((maximum,) if maximum is not None else ())
    probe_values(ctx, param, inside=inside, outside=outside, accept=accept if accept is not None else edges,
                 reject=reject if reject is not None else just_outside(minimum, maximum, integer),
                 generated=generated, wrap=wrap)


def rejection_for(ctx: CheckContext, param: str, value: Any, wrap: Wrap | None = None) -> Exchange:
    """The (shared) exchange a bounds property got for an out-of-range value."""
    return send_shared(ctx, bounds_body(ctx, param, value, wrap))


def submit_rejection(batch: Batch, param: str, value: Any, wrap: Wrap | None = None) -> None:
    """`rejection_for` without waiting, into `batch`."""
    submit_shared(batch, bounds_body(batch.ctx, param, value, wrap))
