"""JSON mode: response_format json_object and json_schema give parseable JSON content.

json_object is documented (FAQ, 1.2 response_format), so it is MUST and a 4xx fails; json_schema is
OpenAI behaviour beyond the documents, so it is SHOULD and a 4xx means unsupported. JSON cut by
max_tokens is legitimately broken, so a truncated reply is retried once with more room before
anything is judged.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from .._context import CheckContext, excerpt
from .._model import Depth, Feature, Level, documented, openai
from ..http import Exchange
from ._judge import completion_or_stop, content_text, first_message
from ._registry import check

# JSON needs room to close its braces; a retry doubles it once.
JSON_MAX_TOKENS = 64
INSTRUCTION = "You answer only with a JSON object, no prose and no code fences."
GREETING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"greeting": {"type": "string"}, "words": {"type": "integer"}},
    "required": ["greeting", "words"],
    "additionalProperties": False,
}


def json_request(ctx: CheckContext, response_format: dict[str, Any], ask: str, max_tokens: int) -> dict[str, Any]:
    return ctx.chat_request(
        messages=[{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": ask}],
        response_format=response_format,
        max_tokens=max_tokens,
    )


def json_reply(ctx: CheckContext, response_format: dict[str, Any], ask: str, *,
               unsupported_on_4xx: bool) -> tuple[Exchange, str]:
    """The content of a JSON-mode reply that was not cut by max_tokens (one retry with twice the room)."""
    for max_tokens in (JSON_MAX_TOKENS, 2 * JSON_MAX_TOKENS):
        exchange = ctx.chat(json_request(ctx, response_format, ask, max_tokens))
        exchange.require_response()
        if unsupported_on_4xx:
            declared = ctx.declined(exchange, Feature.JSON_MODE, "response_format", "json_object", "json_schema",
                                    "json mode")
            if declared is not None:
                raise declared
        message, finish = first_message(ctx, exchange, completion_or_stop(ctx, exchange))
        if finish != "length":
            return exchange, content_text(message)
    raise ctx.inconclusive(f"the JSON reply was cut by max_tokens twice (last at {max_tokens}); truncated JSON "
                           f"cannot be judged")


def parsed_object(ctx: CheckContext, exchange: Exchange, content: str) -> dict[str, Any] | None:
    """The content parsed as a JSON object, or None after recording the failure."""
    where = ctx.where(exchange, "choices[0].message.content")
    try:
        value = json.loads(content)
    except ValueError as exc:
        ctx.fail("content that parses as JSON", f"{exc}: {excerpt(repr(content), 200)}", where, exchange=exchange)
        return None
    if not isinstance(value, dict):
        ctx.fail("a JSON object", f"a JSON {type(value).__name__}: {excerpt(content, 200)}", where,
                 exchange=exchange)
        return None
    return value


@check(
    "json-mode.object",
    model_dependent=True,
    level=Level.MUST,
    feature=Feature.JSON_MODE,
    clause=documented("4 FAQ JSON mode", 'You need to set { "type": "json_object" } within the response_format '
                      "parameter, and explicitly instruct the model (via System or User messages) to output in "
                      "JSON format."),
    description="response_format json_object plus a JSON instruction gives content that parses as a JSON object "
                "(a 4xx fails: the parameter is documented).",
    requests=2,
)
def json_object(ctx: CheckContext) -> None:
    exchange, content = json_reply(ctx, {"type": "json_object"}, "Greet me in JSON with a key named greeting.",
                                   unsupported_on_4xx=True)
    parsed_object(ctx, exchange, content)


@check(
    "json-mode.schema",
    model_dependent=True,
    level=Level.SHOULD,
    feature=Feature.JSON_MODE,
    # SHOULD: json_schema is OpenAI behaviour beyond the documented json_object; a 4xx means unsupported.
    clause=openai("CreateChatCompletionRequest.response_format",
                  'Setting to { "type": "json_schema", "json_schema": {...} } enables Structured Outputs which '
                  "ensures the model will match your supplied JSON schema."),
    description="response_format json_schema with a two-field schema gives content valid against the schema; "
                "a 4xx is reported as unsupported.",
    requests=2,
    depths=(Depth.FULL,),
)
def json_schema(ctx: CheckContext) -> None:
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "greeting", "schema": GREETING_SCHEMA, "strict": True}}
    exchange, content = json_reply(ctx, response_format, "Greet me, and count the words of your greeting.",
                                   unsupported_on_4xx=True)
    value = parsed_object(ctx, exchange, content)
    if value is None:
        return
    for error in jsonschema.Draft202012Validator(GREETING_SCHEMA).iter_errors(value):
        ctx.fail(f"content valid against the schema {json.dumps(GREETING_SCHEMA)}",
                 f"{error.json_path}: {excerpt(error.message, 200)}", ctx.where(exchange, "choices[0].message.content"),
                 exchange=exchange)
