"""Response shape: the documented response parameters (section 2), judged against the spec."""

from __future__ import annotations

from .._context import CheckContext, excerpt
from .._model import Feature, Level, documented, openai
from ._judge import choices_or_stop, completion_or_stop, media_type, schema_errors
from ._registry import check
from .sampling import three_choices


@check(
    "schema.chat-completion",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("2 Response Parameters", "The object type, which is typically chat.completion. ... The Unix "
                      "timestamp (in seconds) of when the request was created. ... A list of chat completion choices."),
    description="A non-stream completion matches the documented response table (the spec's "
                "CreateChatCompletionResponse without OpenAI's extras: no `model` needed).",
)
def chat_completion_schema(ctx: CheckContext) -> None:
    exchange = ctx.shared_completion()
    body = completion_or_stop(ctx, exchange)
    for problem in schema_errors("CreateChatCompletionResponse", body):
        ctx.fail("a body valid against the documented CreateChatCompletionResponse", problem, ctx.where(exchange),
                 exchange=exchange)


@check(
    "schema.openai-fields",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("CreateChatCompletionResponse", "required: choices, created, id, model, object; object enum "
                  "[chat.completion]; finish_reason enum"),
    description="A non-stream completion also has what OpenAI's spec adds: `model`, object exactly "
                "\"chat.completion\", finish_reason from OpenAI's enum.",
)
def openai_fields(ctx: CheckContext) -> None:
    exchange = ctx.shared_completion()
    body = completion_or_stop(ctx, exchange)
    documented_problems = set(schema_errors("CreateChatCompletionResponse", body, limit=50))
    for problem in schema_errors("CreateChatCompletionResponse", body, limit=50, view="openai"):
        if problem not in documented_problems:  # those are schema.chat-completion's, at MUST
            ctx.fail("a body valid against OpenAI's CreateChatCompletionResponse", problem, ctx.where(exchange),
                     exchange=exchange)


@check(
    "schema.message-role",
    level=Level.MUST,
    feature=Feature.CORE,
    # MUST: clients append the reply to `messages`, where role is required: without it the next turn is a 400.
    clause=documented("2 Response Parameters: message.role", "The role of the author of this message, typically "
                      "assistant."),
    description='Every choice\'s message.role is "assistant", in a one-choice and a three-choice response.',
    requests=2,
)
def message_role(ctx: CheckContext) -> None:
    # The three-choice response is shared with sampling.n-choices: the schema check sees only one choice.
    for exchange in (ctx.shared_completion(), three_choices(ctx)):
        body = completion_or_stop(ctx, exchange)
        for i, choice in enumerate(choices_or_stop(ctx, exchange, body)):
            message = choice.get("message")
            role = message.get("role", "<absent>") if isinstance(message, dict) else f"no message ({message!r})"
            ctx.expect(role == "assistant", 'message.role "assistant"', repr(role),
                       ctx.where(exchange, f"choices[{i}].message.role"), exchange=exchange)


@check(
    "schema.content-type",
    level=Level.MUST,
    feature=Feature.CORE,
    # MUST: openai-python hands back a plain str instead of a ChatCompletion when the type is not JSON.
    clause=documented("1.1 Header Parameters: Accept application/json", "Expected response format."),
    description="A non-stream 200 is labelled Content-Type application/json (parameters such as charset allowed).",
)
def content_type(ctx: CheckContext) -> None:
    exchange = ctx.shared_completion()
    exchange.require_response()
    if exchange.status != 200:
        raise ctx.stop("a 200 response to a basic non-stream request", f"HTTP {exchange.status}: "
                       f"{excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)
    ctx.expect(media_type(exchange) == "application/json", "Content-Type: application/json (charset allowed)",
               repr(exchange.content_type or "<no Content-Type>"), ctx.where(exchange, "Content-Type header"),
               exchange=exchange)
