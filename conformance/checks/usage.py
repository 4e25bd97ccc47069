"""Usage arithmetic: counts are integers >= 0, add up, are bounded by max_tokens and track the prompt."""

from __future__ import annotations

from .._context import CheckContext
from .._model import Depth, Feature, Level, documented
from ._judge import completion_or_stop, completion_tokens, usage_problems
from ._registry import check
from .sampling import LONG_ANSWER

PADDING = (" Take your time, read this request carefully, think about every word of it, and keep in mind that "
           "this sentence is only here to make the prompt noticeably longer than the short one.")


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
        raise ctx.not_applicable("the response carries no usage (judged by usage.present)")
    for problem in usage_problems(body["usage"]):
        ctx.fail("prompt_tokens + completion_tokens = total_tokens, all integers >= 0", problem,
                 ctx.where(exchange, "usage"), exchange=exchange)


@check(
    "usage.present",
    level=Level.MUST,
    feature=Feature.CORE,
    # A documented response field (the OpenAI spec marks it optional; the document does not).
    clause=documented("2 Response Parameters: usage", "Usage statistics for the completion request."),
    description="A non-stream completion carries a usage object.",
)
def present(ctx: CheckContext) -> None:
    exchange = ctx.shared_completion()
    body = completion_or_stop(ctx, exchange)
    ctx.expect(isinstance(body.get("usage"), dict), "a `usage` object in the non-stream response",
               "no usage" if "usage" not in body else f"usage = {body['usage']!r}", ctx.where(exchange, "usage"),
               exchange=exchange)


@check(
    "usage.completion-bounded",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 max_tokens", "The maximum number of tokens to generate in the chat completion."),
    description="With n=2 and max_tokens=4, usage.completion_tokens <= n × max_tokens = 8 (usage sums every "
                "choice, max_tokens bounds each).",
)
def completion_bounded(ctx: CheckContext) -> None:
    n, max_tokens = 2, 4
    exchange = ctx.chat(ctx.chat_request(n=n, max_tokens=max_tokens,
                                         messages=[{"role": "user", "content": LONG_ANSWER}]))
    body = completion_or_stop(ctx, exchange)
    if "usage" not in body:
        raise ctx.not_applicable("the response carries no usage (judged by usage.present)")
    completion = completion_tokens(body)
    if completion is None:
        raise ctx.not_applicable("usage.completion_tokens is not an integer (judged by usage.total-is-sum)")
    ctx.details["completion_tokens"] = completion
    ctx.expect(completion <= n * max_tokens, f"completion_tokens <= n × max_tokens = {n} × {max_tokens}",
               f"completion_tokens = {completion}", ctx.where(exchange, "usage.completion_tokens"),
               exchange=exchange)


@check(
    "usage.prompt-grows",
    model_dependent=True,
    level=Level.INFO,
    feature=Feature.CORE,
    clause=documented("2 usage.prompt_tokens", "Number of tokens consumed by the input prompt."),
    description="prompt_tokens is larger for a prompt with ~35 more words than for the basic prompt.",
    requests=2,
    depths=(Depth.FULL,),
)
def prompt_grows(ctx: CheckContext) -> None:
    short = ctx.shared_completion()
    short_body = completion_or_stop(ctx, short)
    prompt = ctx.chat_request()["messages"][0]["content"]
    long = ctx.chat(ctx.chat_request(messages=[{"role": "user", "content": prompt + PADDING}]))
    long_body = completion_or_stop(ctx, long)
    short_count, long_count = _prompt_tokens(short_body), _prompt_tokens(long_body)
    if short_count is None or long_count is None:
        raise ctx.not_applicable("usage.prompt_tokens missing or not an integer (judged by usage.present and "
                       "usage.total-is-sum)")
    ctx.details["prompt_tokens"] = {"short": short_count, "long": long_count}
    ctx.expect(long_count > short_count, f"prompt_tokens > {short_count} (the shorter prompt's count)",
               f"prompt_tokens = {long_count}", ctx.where(long, "usage.prompt_tokens"), exchange=long)


def _prompt_tokens(body: dict[str, object]) -> int | None:
    usage = body.get("usage")
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
