"""Error details: a prompt over the context window, and what error bodies put in `param` and `code`.

The error probes of errors.py (an out-of-range temperature, an unknown route) are shared, so
errors.param-code-not-stringified judges them for free. The context probe is one request with a
prompt of about 5,000 tokens and max_tokens 1, at full depth only (it costs more prompt tokens than a
whole quick run): a target whose window holds it answers 200, and the checks are then not applicable.
"""

from __future__ import annotations

from typing import Any

from .._context import CheckContext, excerpt
from .._model import Depth, Feature, Level, openai
from ..http import Exchange, fail_on_limit
from ._judge import envelope_problems
from ._registry import check
from .errors import bad_temperature, unknown_route

# One token per word on common tokenizers (and on the reference server's, whose window is 4,096):
# over a 4k or 8k window, about 30 KB of request, far below any body limit.
OVERFLOW_WORDS = 5000
OVERFLOW_PROMPT = "Reply with OK." + " hello" * OVERFLOW_WORDS
OVERFLOW = f"a prompt of about {OVERFLOW_WORDS} tokens"
OVERFLOW_CLAUSE = openai("invalid_request_error context_length_exceeded", "This model's maximum context length is "
                         "4097 tokens. However, your messages resulted in 5000 tokens. Please reduce the length of the "
                         "messages.")
SDK_RETRIES_5XX = ("openai-python retries a 5xx and then raises InternalServerError (openai/_base_client.py "
                   "_should_retry): https://github.com/openai/openai-python#retries")
# What OpenAI answers; clients that tell an overflow from other 400s match such words in the body.
OVERFLOW_TYPE, OVERFLOW_CODE = "invalid_request_error", "context_length_exceeded"
# Python's str(None) and its kin: a null that was stringified on its way into the body.
NULL_STRINGS = ("None", "none", "null", "NULL", "nil", "undefined")


def context_overflow(ctx: CheckContext) -> Exchange:
    """The run's over-long prompt (max_tokens 1: a target whose window holds it costs one token of output)."""
    return ctx.shared("errors:context-overflow", lambda c: c.chat(c.chat_request(
        max_tokens=1, messages=[{"role": "user", "content": OVERFLOW_PROMPT}])))


def overflow_rejection(ctx: CheckContext) -> Exchange:
    """The answer to the over-long prompt (a 429 the harness could not wait out is an error before this);
    not applicable when the target served it: its window is larger, which is no fault."""
    exchange = context_overflow(ctx)
    exchange.require_response()
    fail_on_limit(ctx.http, exchange)
    status = exchange.status or 0
    if 200 <= status < 300:
        raise ctx.not_applicable(f"the target served {OVERFLOW} (HTTP {status}, usage {_usage(exchange)}): its "
                                 f"context window holds it, so there was nothing to overflow")
    return exchange


def _usage(exchange: Exchange) -> Any:
    body = exchange.json()
    return body.get("usage") if isinstance(body, dict) else None


@check(
    "errors.context-overflow",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=OVERFLOW_CLAUSE,
    client_break=SDK_RETRIES_5XX,
    description=f"A prompt over the context window ({OVERFLOW_WORDS} repeated words, max_tokens 1) gets a 4xx with "
                f"{{\"error\": {{\"message\"}}}}, never a 5xx (not applicable when the window holds it).",
    accepts=("400 (or another 4xx) with error.message", "not applicable on a 200: the window is larger"),
    depths=(Depth.FULL,),
)
def context_overflow_rejected(ctx: CheckContext) -> None:
    """Too long a prompt is bad input: a 5xx makes openai-python retry it, then raise InternalServerError."""
    exchange = overflow_rejection(ctx)
    status = exchange.status or 0
    if not 400 <= status < 500:
        ctx.fail(f"{OVERFLOW}, over the context window: HTTP 400 with {{error: {{message}}}} (bad input is a 4xx, "
                 f"never a 5xx)", f"HTTP {status}: {excerpt(exchange.text, 200)}", ctx.where(exchange),
                 exchange=exchange)
        return
    for problem in envelope_problems(exchange):
        ctx.fail(f"{OVERFLOW}: the {status} body is {{error: {{message: string}}}}", problem, ctx.where(exchange),
                 exchange=exchange)


@check(
    "errors.context-overflow-type",
    level=Level.INFO,
    feature=Feature.CORE,
    clause=openai("invalid_request_error context_length_exceeded", f'"type": "{OVERFLOW_TYPE}", "param": '
                  f'"messages", "code": "{OVERFLOW_CODE}"'),
    description=f"The context-overflow rejection says error.type {OVERFLOW_TYPE}, as OpenAI's does (its code, "
                f"OpenAI's {OVERFLOW_CODE}, is recorded: error bodies may leave code out).",
    depths=(Depth.FULL,),
)
def context_overflow_type(ctx: CheckContext) -> None:
    exchange = overflow_rejection(ctx)
    body = exchange.json()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        raise ctx.not_applicable("the rejection has no error object (judged by errors.context-overflow)")
    ctx.details.update(type=error.get("type"), code=error.get("code"))
    ctx.expect(error.get("type") == OVERFLOW_TYPE, f"error.type {OVERFLOW_TYPE!r} for a prompt over the context "
               f"window", f"error.type {error.get('type', '<absent>')!r}", ctx.where(exchange, "error.type"),
               exchange=exchange)


@check(
    "errors.param-code-not-stringified",
    level=Level.INFO,
    feature=Feature.CORE,
    clause=openai("ErrorResponse", "param and code are string or null"),
    description='A bad parameter and an unknown route get error.param and error.code that are null or names, not '
                'a stringified null ("None", "null") or the HTTP status as a string ("400").',
    requests=2,
)
def param_code_not_stringified(ctx: CheckContext) -> None:
    for what, exchange in (("temperature 2.0000001", bad_temperature(ctx)), ("an unknown route", unknown_route(ctx))):
        exchange.require_response()
        body = exchange.json()
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            continue  # no envelope at all: errors.message and errors.envelope report it
        for key in ("param", "code"):
            problem = _stringified(error.get(key), exchange.status)
            if problem:
                ctx.fail(f"{what}: error.{key} null or a name (OpenAI: \"param\": \"temperature\" or null, "
                         f"\"code\": \"invalid_value\" or null)", f"error.{key} {error[key]!r}: {problem}",
                         ctx.where(exchange, f"error.{key}"), exchange=exchange)


def _stringified(value: Any, status: int | None) -> str | None:
    if value in NULL_STRINGS:
        return "a null written as a string"
    if isinstance(value, str) and status is not None and value == str(status):
        return "the HTTP status written as a string"
    return None
