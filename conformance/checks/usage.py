"""Usage arithmetic: total_tokens = prompt_tokens + completion_tokens."""

from __future__ import annotations

from .._context import CheckContext
from .._model import Feature, Level, documented
from ._judge import completion_or_stop, usage_problems
from ._registry import check


@check(
    "usage.total-is-sum",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("2 usage.total_tokens", "Total number of tokens consumed (prompt + completion)."),
    description="Non-stream usage has integer counts >= 0 and total_tokens = prompt_tokens + completion_tokens.",
)
def total_is_sum(ctx: CheckContext) -> None:
    exchange = ctx.shared_completion()
    body = completion_or_stop(ctx, exchange)
    if "usage" not in body:
        raise ctx.skip("the response carries no usage (judged by usage.present)")
    for problem in usage_problems(body["usage"]):
        ctx.fail("prompt_tokens + completion_tokens = total_tokens, all integers >= 0", problem,
                 ctx.where(exchange, "usage"), exchange=exchange)
