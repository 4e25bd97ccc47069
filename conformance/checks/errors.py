"""Errors and authentication: the OpenAI error envelope, JSON Content-Type, 401 for a bad key.

The error probes (an out-of-range temperature, an unknown route, an unknown model) are shared, so
errors.envelope and errors.content-type judge the same three responses; a check that judges several
sends them at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from .._context import CheckContext, excerpt
from .._model import Feature, Level, documented, openai
from ..http import MADE_UP_KEY_PREFIX, Exchange
from ..spec import View
from ._bounds import rejection_for, submit_rejection
from ._judge import envelope_problems, media_type
from ._parallel import Batch, submit_chat
from ._registry import check

UNKNOWN_ROUTE = "/nonexistent-route"
UNKNOWN_MODEL = "conformance-no-such-model-7f3a"


def bad_temperature(ctx: CheckContext) -> Exchange:
    # The same request params.temperature.bounds sends just above the edge: shared, so free.
    return rejection_for(ctx, "temperature", 2 + 1e-7)


def submit_bad_temperature(batch: Batch) -> None:
    submit_rejection(batch, "temperature", 2 + 1e-7)


def unknown_route(ctx: CheckContext) -> Exchange:
    return ctx.shared("errors:unknown-route", lambda c: c.http.request("GET", UNKNOWN_ROUTE))


def submit_unknown_route(batch: Batch) -> None:
    batch.shared("errors:unknown-route", lambda c: c.http.submit("GET", UNKNOWN_ROUTE))


def submit_no_messages(batch: Batch) -> None:
    """A request without `messages`: refused by nearly every server, even those that check no range."""
    batch.shared("errors:no-messages", lambda c: submit_chat(c, c.chat_request(messages=None, max_tokens=1)))


def accepted(exchange: Exchange) -> bool:
    """A 2xx answer that is a completion, not an error body: the invalid request was served, which the
    check of that parameter reports (an error body under a 2xx status is a failure of the error checks)."""
    body = exchange.json() if exchange.status is not None and 200 <= exchange.status < 300 else None
    return isinstance(body, dict) and "error" not in body


def unknown_model(ctx: CheckContext) -> Exchange:
    return ctx.shared("errors:unknown-model", lambda c: c.chat(c.chat_request(model=UNKNOWN_MODEL, max_tokens=1)))


def submit_unknown_model(batch: Batch) -> None:
    batch.shared("errors:unknown-model", lambda c: submit_chat(c, c.chat_request(model=UNKNOWN_MODEL, max_tokens=1)))


# (what was sent, how to get it alone, how to send it in a batch, the statuses a conformant server may answer)
ERROR_PROBES: tuple[tuple[str, Callable[[CheckContext], Exchange], Callable[[Batch], None], tuple[int, ...]], ...] = (
    ("temperature 2.0000001", bad_temperature, submit_bad_temperature, (400, 422)),
    (f"GET {UNKNOWN_ROUTE}", unknown_route, submit_unknown_route, (400, 404, 405)),
)
# openai-python's APIStatusError takes its message from error.message; without it the user sees a raw body.
SDK_READS_MESSAGE = ("openai-python: APIStatusError's message comes from the body's error.message "
                     "(openai/_client.py _make_status_error); without it the raw body is shown. "
                     "https://github.com/openai/openai-python/blob/main/src/openai/_client.py")


@check(
    "errors.message",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=openai("ErrorResponse", "{error: Error} with Error requiring message"),
    client_break=SDK_READS_MESSAGE,
    description="An out-of-range temperature and a request without `messages`, when refused, get a 4xx with a JSON "
                "body {\"error\": {\"message\": string}}; never a 5xx, never an error body under 2xx.",
    accepts=("4xx with error.message", "not applicable when the target serves both (params.* report that)"),
    requests=2,
)
def message(ctx: CheckContext) -> None:
    batch = Batch(ctx)
    submit_bad_temperature(batch)
    submit_no_messages(batch)
    judged = 0
    for what, exchange in zip(("temperature 2.0000001", "a request without `messages`"), batch.results(),
                              strict=True):
        exchange.require_response()
        if accepted(exchange):
            continue  # served: params.temperature.bounds / params.required fail it, once
        judged += 1
        judge_error(ctx, what, exchange, tuple(range(400, 500)), view="document")
    if not judged:
        raise ctx.not_applicable("the target served both invalid requests, so it sent no error body to judge "
                                 "(params.temperature.bounds and params.required report the acceptance)")


@check(
    "errors.envelope",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("ErrorResponse", "{error: Error} with Error requiring type, message, param, code; param and "
                  "code are string or null"),
    description="A bad parameter and an unknown route each get a 4xx whose body is OpenAI's full error envelope "
                "(message, type, param, code).",
    accepts=("400/422 bad parameter", "400/404/405 unknown route", "a served probe is not judged here"),
    requests=2,
)
def envelope(ctx: CheckContext) -> None:
    batch = Batch(ctx)
    for _, _, submit, _ in ERROR_PROBES:
        submit(batch)
    judged = 0
    for (what, _, _, statuses), exchange in zip(ERROR_PROBES, batch.results(), strict=True):
        exchange.require_response()
        if accepted(exchange):
            continue  # served, not refused: the bounds and methods checks report that
        judged += 1
        judge_error(ctx, what, exchange, statuses, view="openai")
    if not judged:
        raise ctx.not_applicable("the target served every probe, so it sent no error body to judge")


@check(
    "errors.unknown-model",
    level=Level.SHOULD,
    feature=Feature.CORE,
    # The document says nothing of unknown models; single-model servers (llama.cpp) serve any name.
    clause=openai("model_not_found", "an unknown model is answered 404 with code model_not_found"),
    description="A request for a model the target does not have gets 400/404/422 with the error envelope.",
    accepts=("400/404/422 with the envelope",),
    requests=1,
)
def unknown_model_refused(ctx: CheckContext) -> None:
    judge_error(ctx, f"model {UNKNOWN_MODEL!r}", unknown_model(ctx), (400, 404, 422), view="openai")


def judge_error(ctx: CheckContext, what: str, exchange: Exchange, statuses: tuple[int, ...], *, view: View) -> None:
    exchange.require_response()
    shape = "{error: {message: string}}" if view == "document" else ("{error: {message: string, type: string, "
                                                                       "param: string|null, code: string|null}}")
    if exchange.status not in statuses:
        wanted = "a 4xx" if set(statuses) == set(range(400, 500)) else " or ".join(map(str, statuses))
        ctx.fail(f"{what}: HTTP {wanted} with the body {shape}",
                 f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)
        return
    for problem in envelope_problems(exchange, view=view):
        ctx.fail(f"{what}: the body is {shape}", problem, ctx.where(exchange), exchange=exchange)


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
    batch = Batch(ctx)
    batch.fetch(ctx.shared_completion)
    submit_unknown_model(batch)
    for _, _, submit, _ in ERROR_PROBES:
        submit(batch)
    for exchange in batch.results():
        exchange.require_response()
        if media_type(exchange) != "application/json":
            ctx.fail("Content-Type: application/json", f"HTTP {exchange.status}, Content-Type "
                     f"{exchange.content_type!r}", ctx.where(exchange), exchange=exchange)


# --- auth ------------------------------------------------------------------------------------------
AUTH_CLAUSE = documented("1.1 Authorization", "Bearer {{YOUR_API_KEY}} API key used for authentication.")


def without_key(ctx: CheckContext) -> Exchange:
    """The cheapest chat request, sent with no Authorization header; shared by the auth checks."""
    require_key(ctx)
    exchange = ctx.shared("auth:no-key", lambda c: c.chat(c.chat_request(max_tokens=1), api_key=None))
    exchange.require_response()
    return exchange


def with_wrong_key(ctx: CheckContext) -> Exchange:
    # Random, never derived from the real key, so nothing about the real key can leak through it.
    made_up = MADE_UP_KEY_PREFIX + secrets.token_hex(16)
    exchange = ctx.shared("auth:wrong-key", lambda c: c.chat(c.chat_request(max_tokens=1), api_key=made_up))
    exchange.require_response()
    return exchange


def both_keys(ctx: CheckContext) -> None:
    """Send the request without a key and the one with a made-up key at once, for a check that judges
    both; `without_key` and `with_wrong_key` then read them."""
    require_key(ctx)
    made_up = MADE_UP_KEY_PREFIX + secrets.token_hex(16)
    batch = Batch(ctx)
    batch.shared("auth:no-key", lambda c: submit_chat(c, c.chat_request(max_tokens=1), api_key=None))
    batch.shared("auth:wrong-key", lambda c: submit_chat(c, c.chat_request(max_tokens=1), api_key=made_up))
    batch.results()


def require_key(ctx: CheckContext) -> None:
    if not ctx.has_api_key:
        raise ctx.not_applicable("no API key was given (--api-key), so there is no authentication to test")


def served(exchange: Exchange) -> bool:
    return exchange.status is not None and 200 <= exchange.status < 300


def keyless_target(ctx: CheckContext) -> None:
    """Not applicable when the target serves both a missing and a made-up key: it enforces no keys."""
    if served(without_key(ctx)) and served(with_wrong_key(ctx)):
        # Documented as optional: a target that serves everyone is allowed; it has nothing to reject.
        raise ctx.not_applicable("the target answers requests without a key and with a made-up key: it does not "
                                 "enforce authentication, which documented-api 1.1 allows (Authorization Required: "
                                 "No)")


def judge_refused(ctx: CheckContext, what: str, exchange: Exchange) -> None:
    """Refused with 401/403 and error.message: what makes openai-python raise its auth errors."""
    judge_error(ctx, what, exchange, (401, 403), view="document")


@check(
    "auth.missing-key",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=AUTH_CLAUSE,
    description="A target that enforces keys refuses a request without any Authorization header (401/403 with "
                "error.message): a missing key never gets through where a wrong one does not.",
    accepts=("401/403 with error.message", "not applicable without --api-key or when the target enforces no keys"),
    requests=2,
)
def missing_key(ctx: CheckContext) -> None:
    keyless_target(ctx)
    judge_refused(ctx, "a request without an Authorization header", without_key(ctx))


@check(
    "auth.wrong-key",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=AUTH_CLAUSE,
    description="A target that enforces keys refuses a made-up key (401/403 with error.message).",
    accepts=("401/403 with error.message", "not applicable without --api-key or when the target enforces no keys"),
    requests=2,
)
def wrong_key(ctx: CheckContext) -> None:
    both_keys(ctx)
    keyless_target(ctx)
    judge_refused(ctx, "a request with a made-up key (sk-wrong-…)", with_wrong_key(ctx))


@check(
    "auth.status-401",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("Authentication", "Incorrect API key provided: 401 invalid_api_key"),
    description="A missing and a made-up key both get 401 (not 403) with OpenAI's full error envelope.",
    accepts=("401 with the envelope", "not applicable without --api-key or when the target enforces no keys"),
    requests=2,
)
def status_401(ctx: CheckContext) -> None:
    both_keys(ctx)
    keyless_target(ctx)
    for what, exchange in (("a request without a key", without_key(ctx)),
                           ("a request with a made-up key", with_wrong_key(ctx))):
        if served(exchange):
            continue  # a bypass: auth.missing-key / auth.wrong-key report it at MUST
        judge_error(ctx, what, exchange, (401,), view="openai")
