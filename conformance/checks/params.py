"""Request parameters (section 1.2): bounds, types, required fields and malformed bodies.

Bounds are hypothesis properties (see _bounds.py): edges accepted, values just outside rejected
with 400/422 and the error envelope. Rejections of wrong types, missing fields and malformed bodies
may be any 4xx (never 5xx) with the envelope.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from .._context import CheckContext, excerpt
from .._model import Depth, Feature, Level, documented, openai
from ..http import Exchange
from ._bounds import probe_range, probe_values, rejection_for, submit_rejection
from ._judge import completion_tokens, content_text, envelope_problems, schema_errors
from ._parallel import Batch, submit_chat
from ._registry import check

FULL_ONLY = (Depth.FULL,)
# A token ID every OpenAI tokenizer has (GPT-2's end of text, the example of OpenAI's own docs).
TOKEN_ID = "50256"
# Stop sequences a model is unlikely to meet, so accepting them never changes what is judged.
STOPS = ("<<stop-1>>", "<<stop-2>>", "<<stop-3>>", "<<stop-4>>", "<<stop-5>>")


# --- numeric bounds --------------------------------------------------------------------------------
@check(
    "params.temperature.bounds",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 temperature", "Sampling temperature, between 0 and 2."),
    description="temperature 0 and 2 are accepted; 2.0000001 and -1e-9 are rejected with 4xx and the envelope.",
    accepts=("200 inside", "400/422 outside"),
    requests=8,
)
def temperature_bounds(ctx: CheckContext) -> None:
    probe_range(ctx, "temperature", 0, 2)


@check(
    "params.top_p.bounds",
    level=Level.SHOULD,
    feature=Feature.CORE,
    # The document gives an example (0.1), not a range: the bounds are OpenAI's.
    clause=openai("CreateChatCompletionRequest.top_p", "number min 0 max 1, default 1"),
    description="top_p 0 and 1 are accepted; 1.0000001 and -1e-9 are rejected with 4xx and the envelope.",
    accepts=("200 inside", "400/422 outside"),
    requests=8,
    depths=FULL_ONLY,
)
def top_p_bounds(ctx: CheckContext) -> None:
    probe_range(ctx, "top_p", 0, 1)


@check(
    "params.presence-penalty.bounds",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 presence_penalty", "Number between -2.0 and 2.0."),
    description="presence_penalty -2 and 2 are accepted; 2.0000001 and -2.000000001 are rejected with 4xx.",
    accepts=("200 inside", "400/422 outside"),
    requests=8,
    depths=FULL_ONLY,
)
def presence_penalty_bounds(ctx: CheckContext) -> None:
    probe_range(ctx, "presence_penalty", -2, 2)


@check(
    "params.frequency-penalty.bounds",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 frequency_penalty", "Number between -2.0 and 2.0."),
    description="frequency_penalty -2 and 2 are accepted; 2.0000001 and -2.000000001 are rejected with 4xx.",
    accepts=("200 inside", "400/422 outside"),
    requests=8,
    depths=FULL_ONLY,
)
def frequency_penalty_bounds(ctx: CheckContext) -> None:
    probe_range(ctx, "frequency_penalty", -2, 2)


@check(
    "params.n.bounds",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("CreateChatCompletionRequest.n", "integer min 1 max 128, default 1"),
    description="n 1 and 128 are accepted (with max_tokens 1); 0 and 129 are rejected with 4xx and the envelope.",
    accepts=("200 inside", "400/422 outside"),
    requests=8,
    depths=FULL_ONLY,
)
def n_bounds(ctx: CheckContext) -> None:
    probe_range(ctx, "n", 1, 128, integer=True)


@check(
    "params.max-tokens.bounds",
    level=Level.SHOULD,
    feature=Feature.CORE,
    # The document states no minimum; params.max-tokens.zero judges what a server that accepts 0 does.
    clause=openai("CreateChatCompletionRequest.max_tokens", "OpenAI rejects max_tokens 0 and below"),
    description="max_tokens 1 is accepted; 0 and -1 are rejected with 4xx and the envelope.",
    accepts=("200 for >= 1", "400/422 for <= 0"),
    requests=7,
    depths=FULL_ONLY,
)
def max_tokens_bounds(ctx: CheckContext) -> None:
    probe_range(ctx, "max_tokens", 1, None, integer=True, reject=(0, -1))


@check(
    "params.max-tokens.zero",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 max_tokens", "The maximum number of tokens to generate in the chat completion."),
    description="max_tokens 0 is either rejected with 4xx, or honoured: no completion tokens and no content.",
    accepts=("4xx", "200 with completion_tokens 0 and empty content"),
    requests=1,
)
def max_tokens_zero(ctx: CheckContext) -> None:
    # The same request params.max-tokens.bounds sends: shared, so free at full depth.
    exchange = rejection_for(ctx, "max_tokens", 0)
    exchange.require_response()
    status = exchange.status or 0
    if 400 <= status < 500:
        return  # refused: OpenAI's own behaviour
    body = ctx.ok_json(exchange, "a 4xx, or a 200 chat.completion that generated nothing")
    tokens = completion_tokens(body)
    texts = [content_text(c.get("message") or {}) for c in body.get("choices") or [] if isinstance(c, dict)]
    ctx.expect(tokens in (0, None), "usage.completion_tokens 0 (max_tokens 0 allows no token)",
               f"completion_tokens {tokens}", ctx.where(exchange, "usage.completion_tokens"), exchange=exchange)
    ctx.expect(not any(texts), "no generated content", repr(excerpt(" | ".join(texts), 120)),
               ctx.where(exchange, "choices[].message.content"), exchange=exchange)


@check(
    "params.logit-bias.values",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("CreateChatCompletionRequest.logit_bias", "values from -100 to 100 (the range is in the "
                  "description)"),
    description="logit_bias values -100 and 100 are accepted; 100.0000001, 150 and -100.5 are rejected with 4xx.",
    accepts=("200 inside", "400/422 outside"),
    requests=7,
    depths=FULL_ONLY,
)
def logit_bias_values(ctx: CheckContext) -> None:
    # Integers inside: OpenAI's own schema types the values as integers, so 37.5 proves nothing.
    probe_range(ctx, "logit_bias", -100, 100, integer=True, wrap=lambda v: {TOKEN_ID: v},
                reject=(100.0000001, 150, -100.5), generated=0)


@check(
    "params.logit-bias.keys",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("CreateChatCompletionRequest.logit_bias", "Maps tokens (specified by their token ID in the "
                  "tokenizer) to an associated bias value"),
    description="A logit_bias key that is not a token ID (e.g. \"abc\") is rejected with 4xx and the envelope.",
    accepts=("400/422",),
    requests=3,
    depths=FULL_ONLY,
)
def logit_bias_keys(ctx: CheckContext) -> None:
    words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_", min_size=1, max_size=8)
    probe_values(ctx, "logit_bias", inside=None, outside=words, accept=(), reject=("abc",),
                 wrap=lambda key: {key: 1})


@check(
    "params.stop.max-items",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("StopConfiguration", "Up to 4 sequences where the API will stop generating further tokens"),
    description="stop with 4 sequences is accepted; 5 sequences and [] are rejected with 4xx and the envelope.",
    accepts=("200 for 1..4 items", "400/422 for 0 or 5+"),
    requests=5,
    depths=FULL_ONLY,
)
def stop_max_items(ctx: CheckContext) -> None:
    sequence = st.sampled_from(STOPS)
    probe_values(ctx, "stop", inside=st.lists(sequence, min_size=1, max_size=4),
                 outside=st.lists(sequence, min_size=5, max_size=8), accept=(list(STOPS[:4]),),
                 reject=(list(STOPS), []), generated=0)


# --- error.param -----------------------------------------------------------------------------------
# The rejections params.error-names-param reads: the bounds properties send exactly these, so at
# full depth the check costs nothing extra.
NAMED_REJECTIONS: tuple[tuple[str, Any, Depth], ...] = (
    ("temperature", 2 + 1e-7, Depth.QUICK),
    ("top_p", 1 + 1e-7, Depth.FULL),
    ("n", 0, Depth.FULL),
    ("max_tokens", 0, Depth.FULL),
)


def names_field(param: Any, field: str) -> bool:
    """`temperature`, or a path into it such as `messages[0].role` / `messages.0.role`."""
    return isinstance(param, str) and (param == field or param.startswith((f"{field}.", f"{field}[")))


@check(
    "params.error-names-param",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("ErrorResponse (Together's 400 quoted)", "'param': 'temperature'"),
    description="The rejection of an out-of-range parameter names it in error.param.",
    accepts=("param == field", "param is a path into the field"),
    requests=4,
)
def error_names_param(ctx: CheckContext) -> None:
    judged = 0
    named = [(field, value) for field, value, depth in NAMED_REJECTIONS if depth is Depth.QUICK or ctx.full]
    batch = Batch(ctx)
    for field, value in named:
        submit_rejection(batch, field, value)
    for (field, _), exchange in zip(named, batch.results(), strict=True):
        exchange.require_response()
        body = exchange.json()
        if exchange.status not in (400, 422) or envelope_problems(exchange, view="openai"):
            continue  # not a rejection with OpenAI's envelope: the bounds and errors checks report that
        judged += 1
        param = body["error"]["param"]
        ctx.expect(names_field(param, field), f"error.param names {field!r}", f"error.param = {param!r}",
                   ctx.where(exchange, "error.param"), exchange=exchange)
    if not judged:
        raise ctx.not_applicable("no out-of-range value was rejected with OpenAI's envelope (see the params.*.bounds "
                                 "and errors.* checks)")


# --- types, required fields, malformed bodies ------------------------------------------------------
def judge_client_error(ctx: CheckContext, what: str, exchange: Exchange, statuses: tuple[int, ...] = ()) -> None:
    """A 4xx (or one of `statuses`) with the error envelope; never a 5xx, never a 2xx."""
    exchange.require_response()
    status = exchange.status or 0
    wanted = " or ".join(map(str, statuses)) if statuses else "a 4xx"
    if (statuses and status not in statuses) or not 400 <= status < 500:
        ctx.fail(f"{what} rejected with {wanted} and the error envelope",
                 f"HTTP {status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)
        return
    for problem in envelope_problems(exchange):
        ctx.fail(f"the rejection of {what} uses the error envelope", problem, ctx.where(exchange), exchange=exchange)


def send_invalid(ctx: CheckContext, *cases: tuple[str, Any]) -> None:
    """Send JSON bodies the spec forbids (each re-validated first), all at once, and demand of each a
    4xx with the envelope; `cases` are (what, body), judged in this order."""
    for what, body in cases:
        if not schema_errors("CreateChatCompletionRequest", body, view="openai"):
            raise RuntimeError(f"harness bug: {what} is valid against the spec")
    batch = Batch(ctx)
    for _, body in cases:
        batch.chat(raw=json.dumps(body))
    for (what, _), exchange in zip(cases, batch.results(), strict=True):
        judge_client_error(ctx, what, exchange)


WRONG_TYPES: tuple[tuple[str, Any, bool], ...] = (
    # (field, wrong value, sent at quick depth)
    ("temperature", "hot", True),
    ("model", 5, True),
    ("n", 1.5, False),
    ("messages", "hi", False),
    ("stream", "yes", False),
)


@check(
    "params.wrong-type",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 Body Parameters", "temperature number; n integer; messages array; stream boolean; "
                      "model string"),
    description="Wrong types (temperature \"hot\", n 1.5, messages \"hi\", stream \"yes\", model 5) get 4xx with "
                "the envelope, never 5xx.",
    accepts=("any 4xx with the envelope",),
    requests=5,
)
def wrong_type(ctx: CheckContext) -> None:
    send_invalid(ctx, *((f"{field}={json.dumps(value)}", ctx.chat_request(max_tokens=1, **{field: value}))
                        for field, value, quick in WRONG_TYPES if quick or ctx.full))


@check(
    "params.required",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 Body Parameters", "model string Yes; messages array Yes"),
    description="A request without model or without messages gets 4xx with error.message.",
    accepts=("any 4xx with error.message",),
    requests=2,
)
def required(ctx: CheckContext) -> None:
    cases = [("a request without `messages`", ctx.chat_request(messages=None, max_tokens=1))]
    if ctx.full:
        cases.append(("a request without `model`", ctx.chat_request(model=None, max_tokens=1)))
    send_invalid(ctx, *cases)


@check(
    "params.empty-messages",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("CreateChatCompletionRequest.messages", "array, minItems 1"),
    description="`messages: []` gets 4xx with the error envelope.",
    accepts=("any 4xx with the envelope",),
    requests=1,
    depths=FULL_ONLY,
)
def empty_messages(ctx: CheckContext) -> None:
    send_invalid(ctx, ("`messages: []`", ctx.chat_request(messages=[], max_tokens=1)))


MALFORMED: tuple[tuple[str, str, bool], ...] = (
    ("a body that is not JSON", '{"model": "x", "messages": [', True),
    ("a JSON array body", "[]", False),
    ("a JSON string body", '"x"', False),
)


@check(
    "params.malformed-body",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.1 Header Parameters", "Content-Type Yes String application/json Request body format."),
    client_break="openai-python retries a 5xx and then raises InternalServerError (openai/_base_client.py "
                 "_should_retry); https://github.com/openai/openai-python#retries",
    description="Invalid JSON and a body that is not a JSON object (`[]`, `\"x\"`) get a 4xx with error.message, "
                "never 5xx.",
    accepts=("any 4xx with error.message (no client tells 400 from 422)",),
    requests=3,
)
def malformed_body(ctx: CheckContext) -> None:
    cases = [(what, raw) for what, raw, quick in MALFORMED if quick or ctx.full]
    batch = Batch(ctx)
    for _, raw in cases:
        submit_malformed(batch, raw)
    for (what, _), exchange in zip(cases, batch.results(), strict=True):
        judge_client_error(ctx, what, exchange)


def malformed(ctx: CheckContext, raw: str) -> Exchange:
    return ctx.shared(f"malformed:{raw}", lambda c: c.chat_raw(raw))


def submit_malformed(batch: Batch, raw: str) -> None:
    """`malformed` without waiting, into `batch`."""
    batch.shared(f"malformed:{raw}", lambda c: submit_chat(c, raw=raw))


@check(
    "params.malformed-body-400",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("invalid_request_error", "a body that is not valid JSON is answered 400 (422 is for valid JSON "
                  "of the wrong type, RFC 9110 §15.5.21)"),
    description="A body that is not valid JSON gets 400, not 422.",
    accepts=("400",),
    requests=1,
)
def malformed_body_400(ctx: CheckContext) -> None:
    what, raw, _ = MALFORMED[0]
    judge_client_error(ctx, what, malformed(ctx, raw), statuses=(400,))


@check(
    "params.unknown-role",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("CreateChatCompletionRequest.messages", "oneOf developer/system/user/assistant/tool/function "
                  "messages, discriminator role"),
    description="A message with role \"wizard\" is rejected with 4xx and the envelope.",
    accepts=("any 4xx with the envelope",),
    requests=1,
    depths=FULL_ONLY,
)
def unknown_role(ctx: CheckContext) -> None:
    send_invalid(ctx, ("a message with role \"wizard\"",
                       ctx.chat_request(messages=[{"role": "wizard", "content": "Say hello."}], max_tokens=1)))
