"""The document's own example (section 3): its request, sent as written, gets its response's shape.

The answer is judged by the fields of the document's response table (section 2) only: `model`,
which the table lacks, is not required here (schema.chat-completion judges the OpenAI shape).
"""

from __future__ import annotations

import functools
from typing import Any

from .._context import MODELS_PATH, CheckContext, excerpt
from .._model import Feature, Level, Profile, documented
from ..http import Exchange
from ._judge import usage_problems
from ._registry import check

EXAMPLE_CONTENT = "Hello there, how may I assist you today?"
# 99999999999 s is the year 5138; the documented example's 1677652288 has 10 digits, while a
# timestamp in milliseconds (13 digits today) is above this bound.
LATEST_CREATED_SECONDS = 99_999_999_999
_INTEGER = {"type": "integer", "minimum": 0}

# Section 2's table, field for field, as a JSON Schema; `usage` is in the table, so it is required.
DOCUMENTED_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["id", "object", "created", "choices", "usage"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string"},
        "created": {"type": "integer", "minimum": 0, "maximum": LATEST_CREATED_SECONDS},
        "choices": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,  # the example asks for n: 1
            "items": {
                "type": "object",
                "required": ["index", "message", "finish_reason"],
                "properties": {
                    "index": {"type": "integer", "const": 0},  # the only choice of the list
                    "message": {
                        "type": "object",
                        "required": ["role", "content"],
                        # content is a string: the example sends no tools, so there is no call to stand in for it
                        "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
                    },
                    "finish_reason": {"type": "string"},
                },
            },
        },
        "usage": {
            "type": "object",
            "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
            "properties": {"prompt_tokens": _INTEGER, "completion_tokens": _INTEGER, "total_tokens": _INTEGER},
        },
    },
}


def example_request(model: str) -> dict[str, Any]:
    """The body of the document's curl example, key for key; only `model` is the run's own."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": EXAMPLE_CONTENT}],
        "temperature": 1,
        "top_p": 1,
        "n": 1,
        "stream": False,
        "user": "user-1234",
    }


@functools.cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(DOCUMENTED_RESPONSE)


def documented_shape_problems(body: Any) -> list[str]:
    """Where `body` departs from the document's response table, each with its JSON path."""
    errors = sorted(_validator().iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    problems = [f"{e.json_path}: {excerpt(e.message, 200)}" for e in errors]
    if isinstance(body, dict) and isinstance(body.get("usage"), dict) and not problems:
        problems = [f"$.usage: {p}" for p in usage_problems(body["usage"])]
    return problems


def judge_example_answer(ctx: CheckContext, exchange: Exchange) -> None:
    body = ctx.ok_json(exchange, "HTTP 200 with a chat completion, as in the document's response example")
    for problem in documented_shape_problems(body):
        ctx.fail("the fields of the document's response table (id, object, created in seconds, one choice with "
                 "index, message.role, message.content and finish_reason, usage with total = prompt + "
                 "completion)", problem, ctx.where(exchange), exchange=exchange)


@check(
    "documented.request-example",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("3 Request Examples", "Successful Request Example"),
    description="The document's request example (temperature 1, top_p 1, n 1, stream false, user), sent to the chat "
                "route, answers 200 with the fields of the document's response table.",
    accepts=("200 with the documented response fields",),
)
def request_example(ctx: CheckContext) -> None:
    judge_example_answer(ctx, ctx.chat(example_request(ctx.model)))


@check(
    "documented.request-example-documented-route",
    level=Level.MUST,
    feature=Feature.METHODS,
    clause=documented("3 Request Examples", "curl --location --request GET 'https://api.codingplanx.ai/v1/models'"),
    description="The document's request example, sent as the document sends it (GET /v1/models with the JSON body), "
                "answers 200 with the fields of the document's response table.",
    accepts=("200 with the documented response fields",),
    profiles=(Profile.DOCUMENTED,),
)
def request_example_documented_route(ctx: CheckContext) -> None:
    judge_example_answer(ctx, ctx.chat(example_request(ctx.model), method="GET", path=MODELS_PATH))
