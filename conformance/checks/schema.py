"""Response shape: the documented response parameters (section 2), judged against the spec."""

from __future__ import annotations

from .._context import CheckContext
from .._model import Feature, Level, documented
from ._judge import completion_or_stop, schema_errors
from ._registry import check


@check(
    "schema.chat-completion",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("2 Response Parameters", "id, object, created, choices[index, message{role, content}, "
                      "finish_reason], usage"),
    description="A non-stream completion matches the spec's CreateChatCompletionResponse schema.",
)
def chat_completion_schema(ctx: CheckContext) -> None:
    exchange = ctx.shared_completion()
    body = completion_or_stop(ctx, exchange)
    for problem in schema_errors("CreateChatCompletionResponse", body):
        ctx.fail("a body valid against CreateChatCompletionResponse", problem, ctx.where(exchange),
                 exchange=exchange)
