"""Errors and authentication: the OpenAI error envelope, JSON Content-Type, 401 for a bad key.

The error probes (an out-of-range temperature, an unknown route, an unknown model) are shared, so
errors.envelope and errors.content-type judge the same three responses.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from .._context import CheckContext, excerpt
from .._http import Exchange
from .._model import Feature, Level, documented, openai
from ._bounds import rejection_for
from ._judge import envelope_problems, media_type
from ._registry import check

UNKNOWN_ROUTE = "/nonexistent-route"
UNKNOWN_MODEL = "conformance-no-such-model-7f3a"


def bad_temperature(ctx: CheckContext) -> Exchange:
    # The same request params.temperature.bounds sends just above the edge: shared, so free.
    return rejection_for(ctx, "temperature", 2 + 1e-7)


def unknown_route(ctx: CheckContext) -> Exchange:
    return ctx.shared("errors:unknown-route", lambda c: c.http.request("GET", UNKNOWN_ROUTE))


def unknown_model(ctx: CheckContext) -> Exchange:
    return ctx.shared("errors:unknown-model", lambda c: c.chat(c.chat_request(model=UNKNOWN_MODEL, max_tokens=1)))


# (what was sent, how to get it, the statuses a conformant server may answer)
ERROR_PROBES: tuple[tuple[str, Callable[[CheckContext], Exchange], tuple[int, ...]], ...] = (
    ("temperature 2.0000001", bad_temperature, (400, 422)),
    (f"GET {UNKNOWN_ROUTE}", unknown_route, (400, 404, 405)),
    (f"model {UNKNOWN_MODEL!r}", unknown_model, (400, 404, 422)),
)


@check(
    "errors.envelope",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=openai("ErrorResponse", "{error: Error} with Error requiring type, message, param, code; param and "
                  "code are string or null"),
    description="A bad parameter, an unknown route and an unknown model each get a 4xx whose body is the error "
                "envelope.",
    accepts=("400/422 bad parameter", "400/404/405 unknown route", "400/404/422 unknown model"),
    requests=3,
)
def envelope(ctx: CheckContext) -> None:
    for what, fetch, statuses in ERROR_PROBES:
        exchange = fetch(ctx)
        exchange.require_response()
        if exchange.status not in statuses:
            ctx.fail(f"{what}: HTTP {' or '.join(map(str, statuses))} with the error envelope",
                     f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)
            continue
        for problem in envelope_problems(exchange):
            ctx.fail(f"{what}: the body is {{error: {{message: string, type: string, param: string|null, "
                     f"code: string|null}}}}", problem, ctx.where(exchange), exchange=exchange)


@check(
    "errors.content-type",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=documented("1.1 Header Parameters", "Accept Yes String application/json Expected response format."),
    description="Error and success JSON responses say Content-Type application/json (a charset is allowed).",
    accepts=("application/json", "application/json; charset=..."),
    requests=4,
)
def content_type(ctx: CheckContext) -> None:
    for exchange in [ctx.shared_completion()] + [fetch(ctx) for _, fetch, _ in ERROR_PROBES]:
        exchange.require_response()
        if media_type(exchange) != "application/json":
            ctx.fail("Content-Type: application/json", f"HTTP {exchange.status}, Content-Type "
                     f"{exchange.content_type!r}", ctx.where(exchange), exchange=exchange)


# --- auth ------------------------------------------------------------------------------------------
AUTH_CLAUSE = documented("1.1 Authorization", "Bearer {{YOUR_API_KEY}} API key used for authentication.")


def without_key(ctx: CheckContext) -> Exchange:
    """The cheapest chat request, sent with no Authorization header; shared by both auth checks."""
    if not ctx.has_api_key:
        raise ctx.skip("no API key was given (--api-key), so there is no authentication to test")
    exchange = ctx.shared("auth:no-key", lambda c: c.chat(c.chat_request(max_tokens=1), api_key=None))
    exchange.require_response()
    if exchange.status is not None and 200 <= exchange.status < 300:
        # Documented as optional: a target that serves everyone is allowed; it has nothing to reject.
        raise ctx.skip(f"the target answered HTTP {exchange.status} without any key: it does not enforce "
                       f"authentication, which documented-api 1.1 allows (Authorization Required: No)")
    return exchange


def judge_401(ctx: CheckContext, what: str, exchange: Exchange) -> None:
    exchange.require_response()
    if exchange.status != 401:
        ctx.fail(f"{what}: HTTP 401 with the error envelope", f"HTTP {exchange.status}: "
                 f"{excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)
        return
    for problem in envelope_problems(exchange):
        ctx.fail(f"{what}: the 401 body is the error envelope", problem, ctx.where(exchange), exchange=exchange)


@check(
    "auth.missing-key",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=AUTH_CLAUSE,
    description="With an API key given, a request without any key gets 401 with the error envelope.",
    accepts=("401 with the envelope", "skipped without --api-key or when the target serves keyless requests"),
    requests=1,
)
def missing_key(ctx: CheckContext) -> None:
    judge_401(ctx, "a request without an Authorization header", without_key(ctx))


@check(
    "auth.wrong-key",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=AUTH_CLAUSE,
    description="With an API key given, a request with a made-up key gets 401 with the error envelope.",
    accepts=("401 with the envelope", "skipped without --api-key or when the target serves keyless requests"),
    requests=2,
)
def wrong_key(ctx: CheckContext) -> None:
    without_key(ctx)
    # Random, never derived from the real key, so nothing about the real key can leak through it.
    made_up = "sk-wrong-" + secrets.token_hex(16)
    exchange = ctx.chat(ctx.chat_request(max_tokens=1), api_key=made_up)
    judge_401(ctx, "a request with a made-up key (sk-wrong-…)", exchange)
