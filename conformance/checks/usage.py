"""Usage arithmetic: counts are integers >= 0, add up, count every choice, are bounded by max_tokens and track
the prompt."""

from __future__ import annotations

from typing import Any

from .._context import CheckContext
from .._model import Depth, Feature, Level, documented
from ..http import Exchange
from ._judge import choices_or_stop, completion_or_stop, completion_tokens, usage_problems
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


# n=2 choices cut at max_tokens=4: judged from above (usage.completion-bounded) and from below
# (usage.completion-counts-every-choice, which shares its reply with stream.usage-n-choices).
CUT_N, CUT_MAX_TOKENS = 2, 4


def cut_choices_request(ctx: CheckContext, **overrides: Any) -> dict[str, Any]:
    """n=2 and max_tokens=4 on a prompt that needs more: every choice should end with `length`."""
    return ctx.chat_request(n=CUT_N, max_tokens=CUT_MAX_TOKENS, messages=[{"role": "user", "content": LONG_ANSWER}],
                            **overrides)


def cut_choices(ctx: CheckContext) -> Exchange:
    """The non-stream reply to `cut_choices_request`, shared with stream.usage-n-choices."""
    return ctx.shared("usage:cut-choices", lambda c: c.chat(cut_choices_request(c)))


def _completion_tokens(ctx: CheckContext, body: dict[str, Any]) -> int:
    if "usage" not in body:
        raise ctx.not_applicable("the response carries no usage (judged by usage.present)")
    completion = completion_tokens(body)
    if completion is None:
        raise ctx.not_applicable("usage.completion_tokens is not an integer (judged by usage.total-is-sum)")
    ctx.details["completion_tokens"] = completion
    return completion


@check(
    "usage.completion-bounded",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 max_tokens", "The maximum number of tokens to generate in the chat completion."),
    description=f"With n={CUT_N} and max_tokens={CUT_MAX_TOKENS}, usage.completion_tokens <= n × max_tokens = "
                f"{CUT_N * CUT_MAX_TOKENS} (usage sums every choice, max_tokens bounds each).",
)
def completion_bounded(ctx: CheckContext) -> None:
    # Its own request, not the shared one: a shared fetch jumps the request queue, and with it a
    # stale-connection retry in the recorder can land on another stale connection (tests/test_hostile.py).
    exchange = ctx.chat(cut_choices_request(ctx))
    completion = _completion_tokens(ctx, completion_or_stop(ctx, exchange))
    ctx.expect(completion <= CUT_N * CUT_MAX_TOKENS, f"completion_tokens <= n × max_tokens = {CUT_N} × "
               f"{CUT_MAX_TOKENS}", f"completion_tokens = {completion}",
               ctx.where(exchange, "usage.completion_tokens"), exchange=exchange)


@check(
    "usage.completion-counts-every-choice",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("2 usage.completion_tokens", "Number of tokens generated in the output."),
    description=f"With n={CUT_N} and max_tokens={CUT_MAX_TOKENS}, each choice that ends with finish_reason length "
                f"generated {CUT_MAX_TOKENS} tokens and completion_tokens counts them all: "
                f"{CUT_N * CUT_MAX_TOKENS} when both are cut (the upper bound is usage.completion-bounded's).",
)
def completion_counts_every_choice(ctx: CheckContext) -> None:
    """A server that counts one choice (as if n were 1) under-reports what it generated.

    finish_reason "length" is the document's "reached maximum length": such a choice generated
    max_tokens tokens, so the sum over the cut choices is a lower bound of completion_tokens.
    """
    exchange = cut_choices(ctx)
    body = completion_or_stop(ctx, exchange)
    completion = _completion_tokens(ctx, body)
    finishes = [c.get("finish_reason") for c in choices_or_stop(ctx, exchange, body)]
    cut = finishes.count("length")
    ctx.details["finish_reasons"] = finishes
    if not cut:
        raise ctx.inconclusive(f"no choice ended with finish_reason length at max_tokens={CUT_MAX_TOKENS} "
                               f"(finish_reasons {finishes}), so no choice is known to have generated "
                               f"{CUT_MAX_TOKENS} tokens")
    ctx.expect(completion >= cut * CUT_MAX_TOKENS, f"completion_tokens >= {cut * CUT_MAX_TOKENS}: {cut} choice(s) "
               f"ended with finish_reason length, each after max_tokens = {CUT_MAX_TOKENS} tokens",
               f"completion_tokens = {completion} (finish_reasons {finishes})",
               ctx.where(exchange, "usage.completion_tokens"), exchange=exchange)


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
