"""Sampling semantics: n, stop, max_tokens, the finish_reason enum and seeded determinism.

n, stop and max_tokens are documented parameters, and finish_reason's enum is what every client
switches on: MUST. Seeded determinism is best-effort even at OpenAI: SHOULD, worded as advisory.
Nothing here asserts on the generated text beyond the property: the stop string is derived from
the target's own unconstrained reply, so the property bites on any model.
"""

from __future__ import annotations

from .._context import CheckContext, excerpt
from .._model import Depth, Feature, Level, documented, openai
from ..http import Exchange
from ._judge import (
    FINISH_REASONS,
    choices_or_stop,
    completion_or_stop,
    completion_tokens,
    content_text,
    first_message,
    stop_word,
)
from ._registry import check
from ._stream_judge import SEED, deterministic_completion_again, reproducibility, short

# A prompt whose answer needs far more than 16 tokens, so small max_tokens truncate on any model.
LONG_ANSWER = "Write three sentences about the sea."
TRUNCATE_AT = 3
# Room for a short reply to end on its own, so the enum check also sees a natural finish.
NATURAL_END_MAX_TOKENS = 64


def long_answer(ctx: CheckContext, **overrides: object) -> dict[str, object]:
    return ctx.chat_request(messages=[{"role": "user", "content": LONG_ANSWER}], **overrides)


def three_choices(ctx: CheckContext) -> Exchange:
    """n=3 with a tiny max_tokens; shared with schema.message-role."""
    return ctx.shared("three-choices", lambda c: c.chat(c.chat_request(n=3, max_tokens=4)))


def truncated(ctx: CheckContext) -> Exchange:
    """A reply cut at max_tokens=3; shared with sampling.finish-reason-enum."""
    return ctx.shared("truncated-completion", lambda c: c.chat(long_answer(c, max_tokens=TRUNCATE_AT)))


@check(
    "sampling.n-choices",
    model_dependent=True,
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 n", "How many chat completion choices to generate for each input message."),
    description="n=3 gives exactly 3 choices whose index values are 0, 1 and 2, each once.",
)
def n_choices(ctx: CheckContext) -> None:
    exchange = three_choices(ctx)
    choices = choices_or_stop(ctx, exchange, completion_or_stop(ctx, exchange))
    indices = [c.get("index", "<absent>") for c in choices]
    ctx.expect(len(choices) == 3, "exactly 3 choices for n=3", f"{len(choices)} choice(s)",
               ctx.where(exchange, "choices"), exchange=exchange)
    ok = all(type(i) is int for i in indices) and sorted(indices) == [0, 1, 2]
    ctx.expect(ok, "choice indices 0, 1, 2, each exactly once", f"indices {indices}",
               ctx.where(exchange, "choices[*].index"), exchange=exchange)


@check(
    "sampling.stop",
    model_dependent=True,
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 stop", "The model will stop generating further tokens when it encounters these "
                      "characters."),
    description="A word taken from the target's own temperature-0 reply, sent as `stop`, never appears in the "
                "content; finish_reason is stop when the reply ends there.",
    requests=2,
)
def stop(ctx: CheckContext) -> None:
    body = long_answer(ctx, temperature=0)
    reference = ctx.chat(body)
    message, _ = first_message(ctx, reference, completion_or_stop(ctx, reference))
    text = content_text(message)
    word = stop_word(text, min_words=3)
    if word is None:
        raise ctx.inconclusive(f"the unconstrained reply is too short to take a stop word from: {excerpt(text, 120)!r}")
    ctx.details["stop"] = [word]
    constrained = ctx.chat({**body, "stop": [word]})
    message, finish = first_message(ctx, constrained, completion_or_stop(ctx, constrained))
    content = content_text(message)
    ctx.expect(word not in content, f"content without the stop sequence {word!r}",
               f"content {excerpt(content, 200)!r}", ctx.where(constrained, "choices[0].message.content"),
               exchange=constrained)
    # Only when the reply follows the reference up to the word did the stop sequence end it; a reply that
    # diverged (a non-deterministic model) is judged on absence alone.
    ended_there = content.rstrip() == text[:text.find(word)].rstrip()
    ctx.details["finish_reason_judged"] = ended_there
    if ended_there:
        ctx.expect(finish == "stop", 'finish_reason "stop" when generation ends at a stop sequence',
                   repr(finish), ctx.where(constrained, "choices[0].finish_reason"), exchange=constrained)


@check(
    "sampling.max-tokens-length",
    model_dependent=True,
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("2 finish_reason", "E.g., stop (natural stop) or length (reached maximum length)."),
    description=f"max_tokens={TRUNCATE_AT} on a prompt that needs more gives finish_reason length and "
                f"completion_tokens <= {TRUNCATE_AT}.",
)
def max_tokens_length(ctx: CheckContext) -> None:
    exchange = truncated(ctx)
    body = completion_or_stop(ctx, exchange)
    _, finish = first_message(ctx, exchange, body)
    tokens = completion_tokens(body)
    ctx.details["completion_tokens"] = tokens
    if finish == "stop" and tokens is not None and tokens < TRUNCATE_AT:
        raise ctx.inconclusive(f"the reply ended on its own after {tokens} token(s), before max_tokens={TRUNCATE_AT}")
    ctx.expect(finish == "length", f'finish_reason "length" when max_tokens={TRUNCATE_AT} cuts the reply',
               repr(finish), ctx.where(exchange, "choices[0].finish_reason"), exchange=exchange)
    if tokens is not None:
        ctx.expect(tokens <= TRUNCATE_AT, f"completion_tokens <= max_tokens = {TRUNCATE_AT}",
                   f"completion_tokens = {tokens}", ctx.where(exchange, "usage.completion_tokens"),
                   exchange=exchange)


@check(
    "sampling.finish-reason-enum",
    model_dependent=True,
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("CreateChatCompletionResponse.choices[].finish_reason",
                  "enum: stop, length, tool_calls, content_filter, function_call"),
    description="finish_reason is one of stop/length/tool_calls/content_filter/function_call in a basic, a "
                "truncated and a naturally ended reply.",
    requests=3,
)
def finish_reason_enum(ctx: CheckContext) -> None:
    natural = ctx.chat(ctx.chat_request(max_tokens=NATURAL_END_MAX_TOKENS))
    for exchange in (ctx.shared_completion(), truncated(ctx), natural):
        choices = choices_or_stop(ctx, exchange, completion_or_stop(ctx, exchange))
        for i, choice in enumerate(choices):
            reason = choice.get("finish_reason", "<absent>")
            ctx.expect(reason in FINISH_REASONS, f"finish_reason in {', '.join(FINISH_REASONS)}", repr(reason),
                       ctx.where(exchange, f"choices[{i}].finish_reason"), exchange=exchange)


@check(
    "sampling.deterministic",
    model_dependent=True,
    level=Level.SHOULD,
    feature=Feature.CORE,
    # SHOULD, advisory: OpenAI documents seed as best-effort; real models often differ in a token or two.
    clause=openai("CreateChatCompletionRequest.seed", "our system will make a best effort to sample "
                  "deterministically, such that repeated requests with the same seed and parameters should "
                  "return the same result"),
    description="Two identical requests with temperature 0 and a seed give the same content; judged when they do, "
                "or when the target claims seeded determinism (system_fingerprint), else not applicable.",
    requests=2,
    depths=(Depth.FULL,),
)
def deterministic(ctx: CheckContext) -> None:
    """Judges the run's reproducibility probe, shared with the stream equivalence checks (paid once).

    Two different replies prove nothing by themselves: a target may be a sampler that is not bit-exact
    or an echo of the clock, and the document promises no determinism. They fail only a target that
    claims it: one whose replies carry `system_fingerprint`, which OpenAI pairs with `seed` ("used in
    conjunction with the seed request parameter to understand when backend changes have been made that
    might impact determinism"). Any other target that differs is not applicable, with both replies as
    evidence. The fault `nondeterministic` (random text that still carries the fingerprint) fails here.
    """
    probe = reproducibility(ctx)
    ctx.details["reproducibility"] = probe.evidence()
    if probe.reproducible:
        return
    if not probe.claims_seed:
        raise ctx.not_applicable(probe.message("determinism") + "; and no reply carries system_fingerprint, so the "
                                 "target makes no claim of seeded determinism to hold it to")
    second = deterministic_completion_again(ctx)
    ctx.fail(f"the same content twice for identical requests with temperature 0 and seed {SEED}, as the "
             f"system_fingerprint in the replies claims", f"{short(probe.first, 150)} then "
             f"{short(probe.second, 150)} (advisory: seeding is best-effort, and many real models are not "
             f"bit-for-bit reproducible even at temperature 0; a SHOULD does not fail certification)",
             ctx.where(second, "choices[0].message.content"), exchange=second)
