"""Streaming: SSE framing, chunk identity, deltas, finish, usage and equivalence of `stream: true`.

Most checks judge one of a few shared streams (see _stream_judge), so a quick run pays for six
requests. Every failure marks the offending event's bytes in the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .._context import CheckContext, excerpt
from .._model import Depth, Feature, Level, documented, openai
from ..http import Exchange, fail_on_limit
from ._judge import schema_errors, stop_word, usage_problems
from ._registry import check
from ._stream_judge import (
    INCLUDE_USAGE,
    Chunk,
    Stream,
    basic_stream,  # re-exported: the run's basic stream, for other modules
    decode,
    deterministic_completion,
    deterministic_request,
    fail_at,
    fail_event,
    open_stream,
    require_reproducible,
    short,
    timings,
    usage_stream,
)
from .usage import CUT_MAX_TOKENS, CUT_N, cut_choices, cut_choices_request

STREAMING = Feature.STREAMING
FULL_ONLY = (Depth.FULL,)
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")
# Per check, failures beyond this many events are summarised in one line.
MAX_REPORTED = 5
# Equivalence is judged only on a target that repeated its non-stream reply exactly (see _twins).
REPRODUCIBLE = " (the target repeats its non-stream reply exactly, so its stream must match it)"
SSE_CLAUSE = documented("1.2 stream", "If set to true, partial message deltas will be sent via Server-Sent "
                        "Events (SSE).")
FAQ_CLAUSE = documented("4 FAQ streaming", "Each data chunk is a JSON string prefixed with data: , and the stream "
                        "is terminated with a data: [DONE] message.")


def _more(ctx: CheckContext, stream: Stream, total: int, expected: str) -> None:
    if total > MAX_REPORTED:
        ctx.fail(expected, f"{total - MAX_REPORTED} more events like the ones above", ctx.where(stream.exchange),
                 exchange=stream.exchange)


def _refused(exchange: Exchange) -> bool:
    """The target answered 4xx: it declines an optional request feature."""
    exchange.require_response()
    return exchange.status is not None and 400 <= exchange.status < 500


def _n_stream(ctx: CheckContext) -> Exchange:
    """The run's n=2 stream (full depth): n-partition, and the per-index role and finish checks."""
    return ctx.shared("n2-stream", lambda c: c.chat(c.chat_request(stream=True, n=2, max_tokens=8), stream=True))


def _per_index_streams(ctx: CheckContext) -> list[Stream]:
    """The basic stream, plus at full depth the n=2 stream when the target serves it."""
    streams = [open_stream(ctx, basic_stream(ctx))]
    if ctx.full:
        exchange = _n_stream(ctx)
        if exchange.error is None and exchange.status == 200:
            streams.append(open_stream(ctx, exchange))
    return streams


# -- transport and framing -----------------------------------------------------------------------
@check(
    "stream.content-type",
    level=Level.MUST,
    feature=STREAMING,
    clause=SSE_CLAUSE,
    description="A stream is served as Content-Type text/event-stream (a charset parameter is allowed).",
)
def content_type(ctx: CheckContext) -> None:
    exchange = basic_stream(ctx)
    open_stream(ctx, exchange, need_chunks=False)
    media = exchange.content_type.split(";")[0].strip().lower()
    if media != "text/event-stream":
        ctx.fail("Content-Type: text/event-stream", f"Content-Type: {exchange.content_type!r}" if
                 exchange.content_type else "no Content-Type header", ctx.where(exchange, "Content-Type header"),
                 exchange=exchange)


@check(
    "stream.data-is-json",
    level=Level.MUST,
    feature=STREAMING,
    clause=FAQ_CLAUSE,
    description="Every event's data is a JSON object, except the final [DONE]; no JSON line lacks `data:`.",
)
def data_is_json(ctx: CheckContext) -> None:
    exchange = basic_stream(ctx)
    stream = open_stream(ctx, exchange, need_chunks=False)
    ctx.details.update(timings(exchange, stream))
    expected = "`data: ` followed by a JSON object (or the final [DONE])"
    for event, why in stream.malformed[:MAX_REPORTED]:
        fail_event(ctx, stream, event, expected, f"{why}: {short(event.data)}")
    _more(ctx, stream, len(stream.malformed), expected)
    parser = exchange.sse
    anomalies = parser.anomalies if parser is not None else []
    # A JSON line without `data:` is an unknown field to SSE: clients drop it without a word.
    bare = [a for a in anomalies if a.kind == "unknown-field" and a.detail.lstrip().startswith(("{", "["))]
    for anomaly in bare[:MAX_REPORTED]:
        end = _line_end(exchange.body, anomaly.offset)
        ctx.fail(expected, f"a line without the `data:` prefix, ignored by SSE clients: {short(anomaly.detail)}",
                 ctx.where(exchange, f"bytes {anomaly.offset}..{end}"), exchange=exchange,
                 byte_range=(anomaly.offset, end))
    _more(ctx, stream, len(bare), expected)
    if not stream.chunks:
        incomplete = next((a for a in anomalies if a.kind == "incomplete-event"), None)
        where = (incomplete.offset if incomplete else 0, len(exchange.body)) if exchange.body else None
        ctx.fail("JSON chunk events, each ended by a blank line", f"{len(stream.events)} events, none a JSON "
                 f"object" + (f"; {incomplete.detail}" if incomplete else ""), ctx.where(exchange),
                 exchange=exchange, byte_range=where)


def _line_end(body: bytes, offset: int) -> int:
    ends = [i for i in (body.find(b"\n", offset), body.find(b"\r", offset)) if i != -1]
    return min(ends) if ends else len(body)


@check(
    "stream.done-terminator",
    level=Level.MUST,
    feature=STREAMING,
    clause=FAQ_CLAUSE,
    description="A stream ends with exactly one `data: [DONE]` event and nothing after it.",
)
def done_terminator(ctx: CheckContext) -> None:
    exchange = basic_stream(ctx)
    stream = open_stream(ctx, exchange, need_chunks=False)
    events = stream.events
    if not stream.done:
        last = events[-1] if events else None
        # The last event, or (no event at all) the whole body, is where [DONE] should have been.
        where = (last.start, last.end) if last else (0, len(exchange.body)) if exchange.body else None
        ctx.fail("a final `data: [DONE]` event", f"{len(events)} events, none is [DONE]; last data: "
                 f"{short(last.data) if last else 'none'}", ctx.where(exchange), exchange=exchange, byte_range=where)
        return
    if len(stream.done) > 1:
        number = stream.done[1]
        fail_event(ctx, stream, events[number], "exactly one [DONE]", f"{len(stream.done)} [DONE] events")
    if stream.done[0] != len(events) - 1:
        number = stream.done[0] + 1
        fail_event(ctx, stream, events[number], "nothing after [DONE]",
                   f"event after [DONE]: {short(events[number].data)}")
    if exchange.sse is not None and exchange.sse.pending_incomplete:
        ctx.fail("nothing after [DONE]", f"unterminated trailing data {short(exchange.sse.pending_incomplete)}",
                 ctx.where(exchange), exchange=exchange, byte_range=(events[-1].end, len(exchange.body)))


@check(
    "stream.not-sse-when-false",
    level=Level.MUST,
    feature=STREAMING,
    clause=documented("1.2 stream", "stream boolean No false Whether to stream back partial progress."),
    description="A request without stream, or with stream: false, never gets an SSE body (decolua/9router#3492).",
    requests=2,
)
def not_sse_when_false(ctx: CheckContext) -> None:
    exchanges = [ctx.shared_completion()]
    if ctx.full:
        exchanges.append(ctx.chat(ctx.chat_request(stream=False)))
    for exchange in exchanges:
        exchange.require_response()
        fail_on_limit(ctx.http, exchange)
        if exchange.status is None or not 200 <= exchange.status < 300:
            raise ctx.stop("a 2xx response", f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}",
                           ctx.where(exchange), exchange=exchange)
        media = exchange.content_type.split(";")[0].strip().lower()
        if media == "text/event-stream" or exchange.body.lstrip().startswith(b"data:"):
            events = exchange.sse.events if exchange.sse is not None else []
            where = (events[0].start, events[0].end) if events else (0, _line_end(exchange.body, 0))
            ctx.fail("a plain JSON body (no SSE) when stream is false or absent", f"Content-Type "
                     f"{exchange.content_type!r}, body starts {excerpt(exchange.text, 120)!r}", ctx.where(exchange),
                     exchange=exchange, byte_range=where)


# -- chunk identity ------------------------------------------------------------------------------
@check(
    "stream.chunk-object",
    level=Level.SHOULD,
    feature=STREAMING,
    clause=openai("CreateChatCompletionStreamResponse", 'object enum ["chat.completion.chunk"]'),
    description='Every chunk has object "chat.completion.chunk".',
)
def chunk_object(ctx: CheckContext) -> None:
    stream = open_stream(ctx, basic_stream(ctx))
    bad = [c for c in stream.chunks if c.body.get("object") != "chat.completion.chunk"]
    expected = 'object "chat.completion.chunk"'
    for chunk in bad[:MAX_REPORTED]:
        note = " (an error object mid-stream)" if "error" in chunk.body else ""
        fail_at(ctx, stream, chunk, expected, f"object {short(chunk.body.get('object'))}{note}", at="→ object")
    _more(ctx, stream, len(bad), expected)


@check(
    "stream.consistent-identity",
    level=Level.SHOULD,
    feature=STREAMING,
    clause=openai("CreateChatCompletionStreamResponse.id", "A unique identifier for the chat completion. Each "
                  "chunk has the same ID."),
    description="id, created and model are the same in every chunk of a stream.",
)
def consistent_identity(ctx: CheckContext) -> None:
    stream = open_stream(ctx, basic_stream(ctx))
    first = stream.chunks[0]
    for key in ("id", "created", "model"):
        differing = next((c for c in stream.chunks[1:] if c.body.get(key) != first.body.get(key)), None)
        if differing is not None:
            fail_at(ctx, stream, differing, f"{key} {short(first.body.get(key))}, as in the first chunk (event "
                    f"#{first.number})", f"{key} {short(differing.body.get(key))}", at=f"→ {key}")


@check(
    "stream.chunk-schema",
    level=Level.MUST,
    feature=STREAMING,
    clause=documented("1.2 stream", "If set to true, partial message deltas will be sent via Server-Sent Events "
                      "(SSE)."),
    description="Every chunk (the usage chunk included) is valid against the spec's CreateChatCompletionStreamResponse "
                "in the document's view (OpenAI's `model` and exact `object` are stream.chunk-object's, at SHOULD).",
    requests=2,
)
def chunk_schema(ctx: CheckContext) -> None:
    streams = [open_stream(ctx, basic_stream(ctx))]
    with_usage = usage_stream(ctx)
    if with_usage.error is None and with_usage.status == 200:
        streams.append(decode(with_usage))
    expected = "a chunk valid against CreateChatCompletionStreamResponse"
    for stream in streams:
        bad = [(c, p) for c in stream.chunks if (p := schema_errors("CreateChatCompletionStreamResponse", c.body))]
        for chunk, problems in bad[:MAX_REPORTED]:
            fail_at(ctx, stream, chunk, expected, "; ".join(problems))
        _more(ctx, stream, len(bad), expected)


# -- deltas and finish ---------------------------------------------------------------------------
@check(
    "stream.first-delta-role",
    level=Level.MUST,
    feature=STREAMING,
    clause=openai("streaming delta (openai/openai-node#553)", "stream ended without producing a "
                  "ChatCompletionMessage with role=assistant"),
    client_break="openai-node's stream helper throws \"stream ended without producing a ChatCompletionMessage with "
                 "role=assistant\": https://github.com/openai/openai-node/issues/553",
    description='The first delta for each choice index carries role "assistant".',
    requests=2,
)
def first_delta_role(ctx: CheckContext) -> None:
    for stream in _per_index_streams(ctx):
        seen: set[int] = set()
        for chunk, index, choice in stream.choice_entries():
            if index in seen:
                continue
            seen.add(index)
            delta = choice.get("delta")
            if not isinstance(delta, dict) or delta.get("role") != "assistant":
                fail_at(ctx, stream, chunk, f'role "assistant" in the first delta of choice {index}',
                        f"delta {short(delta)}", at=f"→ choices[index={index}].delta.role")
        if not seen:
            ctx.fail("chunks with choices", "no chunk carries a choice with an integer index",
                     ctx.where(stream.exchange), exchange=stream.exchange)


@check(
    "stream.finish-reason-once",
    level=Level.MUST,
    feature=STREAMING,
    clause=openai("CreateChatCompletionStreamResponse choices (ollama/ollama#4357)", "Each choice requires "
                  "delta, finish_reason, index. finish_reason uses the same enum and is nullable."),
    client_break="finish_reason \"\" on every chunk fails clients' JSON deserialisation "
                 "(https://github.com/sgl-project/sglang/issues/3912) and ends streams early in clients that read a "
                 "non-null finish_reason as the end (https://github.com/vllm-project/vllm/pull/36944)",
    description='Each choice index gets exactly one non-null finish_reason, in the enum; earlier chunks have null '
                '("" is not null) and no delta follows it.',
    requests=2,
)
def finish_reason_once(ctx: CheckContext) -> None:
    for stream in _per_index_streams(ctx):
        _judge_finishes(ctx, stream)


def _judge_finishes(ctx: CheckContext, stream: Stream) -> None:
    finishes = stream.finishes()
    if not finishes:
        ctx.fail("chunks with choices", "no chunk carries a choice with an integer index", ctx.where(stream.exchange),
                 exchange=stream.exchange)
    last_entry: dict[int, Chunk] = {}
    for chunk, index, _ in stream.choice_entries():
        last_entry[index] = chunk
    for index, found in sorted(finishes.items()):
        if not found:
            fail_at(ctx, stream, last_entry[index], f"one non-null finish_reason for choice {index}",
                    "none: every chunk has finish_reason null or none", at=f"→ choices[index={index}]")
            continue
        if len(found) > 1:
            values = [value for _, value in found]
            shown = values if len(values) <= 4 else [*values[:3], "…", values[-1]]
            fail_at(ctx, stream, found[0][0], f"exactly one non-null finish_reason for choice {index}, null before "
                    f'it ("" is not null)', f"{len(found)} non-null values: {short(shown)}",
                    at=f"→ choices[index={index}].finish_reason")
        final_chunk, final = found[-1]
        if final not in FINISH_REASONS:
            fail_at(ctx, stream, final_chunk, f"finish_reason in {', '.join(FINISH_REASONS)}",
                    f"finish_reason {short(final)}", at=f"→ choices[index={index}].finish_reason")
        _no_delta_after(ctx, stream, index, final_chunk)


def _no_delta_after(ctx: CheckContext, stream: Stream, index: int, finish: Chunk) -> None:
    for chunk, i, choice in stream.choice_entries():
        delta = choice.get("delta")
        if i == index and chunk.number > finish.number and isinstance(delta, dict) and (
                delta.get("content") or delta.get("tool_calls")):
            fail_at(ctx, stream, chunk, f"no delta for choice {index} after its finish_reason (event "
                    f"#{finish.number})", f"delta {short(delta)}", at=f"→ choices[index={index}].delta")
            return


@check(
    "stream.finish-reason-key",
    level=Level.SHOULD,
    feature=STREAMING,
    clause=openai("CreateChatCompletionStreamResponse choices (vllm PR #19662)", "Each choice requires delta, "
                  "finish_reason, index. finish_reason uses the same enum and is nullable."),
    description="Every choice of every chunk carries the finish_reason key, null until the choice ends (LiteLLM "
                "dropped it, BerriAI/liteLLM-proxy#19; vLLM fixed it in PR #19662).",
    requests=2,
)
def finish_reason_key(ctx: CheckContext) -> None:
    expected = "the finish_reason key in every chunk choice (null until the choice ends)"
    for stream in _per_index_streams(ctx):
        missing = [entry for entry in stream.choice_entries() if "finish_reason" not in entry[2]]
        for chunk, index, choice in missing[:MAX_REPORTED]:
            fail_at(ctx, stream, chunk, expected, f"choice {index} without the key: {short(choice)}",
                    at=f"→ choices[index={index}]")
        _more(ctx, stream, len(missing), expected)


@check(
    "stream.n-partition",
    level=Level.MUST,
    feature=STREAMING,
    clause=documented("1.2 n", "How many chat completion choices to generate for each input message."),
    description="An n=2 stream carries choice indices exactly 0 and 1, each with content and one finish_reason.",
    depths=FULL_ONLY,
)
def n_partition(ctx: CheckContext) -> None:
    exchange = _n_stream(ctx)
    if _refused(exchange):
        raise _declined_or_failed(ctx, exchange, None, "n=2 with stream: true", '"n"', "'n'", "`n`", " n ")
    stream = open_stream(ctx, exchange)
    seen: dict[int, Chunk] = {}
    for chunk in stream.chunks:
        for choice in chunk.choices():
            index = choice.get("index")
            if not isinstance(index, int) or isinstance(index, bool) or index not in (0, 1):
                fail_at(ctx, stream, chunk, "choice index 0 or 1 (n=2)", f"index {short(index)}",
                        at="→ choices[].index")
            else:
                seen.setdefault(index, chunk)
    finishes = stream.finishes()
    for index in (0, 1):
        if index not in seen:
            fail_at(ctx, stream, stream.chunks[-1], f"chunks for choice index {index} (n=2)", f"indices seen: "
                    f"{sorted(seen)}", at="→ choices[].index")
            continue
        if not stream.content(index) and not _has_tool_calls(stream, index):
            fail_at(ctx, stream, seen[index], f"content deltas for choice {index}", "no content for this index")
        if len(finishes.get(index, [])) != 1:
            fail_at(ctx, stream, seen[index], f"exactly one non-null finish_reason for choice {index}",
                    f"{len(finishes.get(index, []))}: {short([v for _, v in finishes.get(index, [])][:8])}")


def _declined_or_failed(ctx: CheckContext, exchange: Exchange, feature: Feature | None, what: str,
                        *names: str) -> Exception:
    """Unsupported when the 4xx names what it refuses; a documented parameter refused silently is a failure."""
    declared = ctx.declined(exchange, feature, *names) or ctx.declined(exchange, STREAMING, "stream")
    if declared is not None:
        return declared
    return ctx.stop(f"{what} served, or refused with a 4xx naming it ({' / '.join(names)})",
                    f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)


def _has_tool_calls(stream: Stream, index: int) -> bool:
    return any(i == index and isinstance(c.get("delta"), dict) and c["delta"].get("tool_calls")
               for _, i, c in stream.choice_entries())


# -- usage ---------------------------------------------------------------------------------------
@check(
    "stream.usage-include",
    level=Level.SHOULD,
    feature=STREAMING,
    clause=openai("stream_options.include_usage", "an additional chunk will be streamed before the data: [DONE] "
                  "message… choices field will always be an empty array."),
    description="With include_usage: exactly one usage chunk, after the last finish and before [DONE], with "
                "choices [] and total = prompt + completion; all other chunks have usage null or absent.",
)
def usage_include(ctx: CheckContext) -> None:
    exchange = usage_stream(ctx)
    if _refused(exchange):
        raise _declined_or_failed(ctx, exchange, None, "stream_options.include_usage", "stream_options",
                                  "include_usage")
    stream = open_stream(ctx, exchange)
    usage = stream.usage_chunks()
    if not usage:
        fail_at(ctx, stream, stream.chunks[-1], "one chunk with usage before [DONE]", "no chunk carries usage",
                at="→ usage")
        return
    if len(usage) > 1:
        fail_at(ctx, stream, usage[1], "exactly one usage chunk; usage null or absent in all others",
                f"{len(usage)} chunks carry usage (events {', '.join('#' + str(c.number) for c in usage[:8])})",
                at="→ usage")
    for chunk in usage:
        if chunk.body.get("choices") != []:
            fail_at(ctx, stream, chunk, "choices: [] in the usage chunk", f"choices {short(chunk.body.get('choices'))}",
                    at="→ choices")
        for problem in usage_problems(chunk.body["usage"]):
            fail_at(ctx, stream, chunk, "total_tokens = prompt_tokens + completion_tokens, integers >= 0", problem,
                    at="→ usage")
    _judge_usage_position(ctx, stream, usage[-1])


def _judge_usage_position(ctx: CheckContext, stream: Stream, usage: Chunk) -> None:
    finish_numbers = [c.number for found in stream.finishes().values() for c, _ in found]
    if finish_numbers and usage.number <= max(finish_numbers):
        fail_at(ctx, stream, usage, f"the usage chunk after the last finish_reason (event #{max(finish_numbers)})",
                f"usage in event #{usage.number}", at="→ usage")
    later = next((c for c in stream.chunks if c.number > usage.number), None)
    if later is not None:
        fail_at(ctx, stream, later, "nothing but [DONE] after the usage chunk", f"a chunk after it: "
                f"{short(later.body, 200)}")
    if stream.done and usage.number > stream.done[0]:
        fail_at(ctx, stream, usage, "the usage chunk before [DONE]", f"usage after [DONE] (event #{stream.done[0]})")


@check(
    "stream.usage-n-choices",
    level=Level.SHOULD,
    feature=STREAMING,
    clause=openai("stream_options.include_usage (epam/ai-dial-adapter-openai#140)", "The usage field on this chunk "
                  "shows the token usage statistics for the entire request, and the choices field will always be "
                  "an empty array."),
    description=f"An n={CUT_N} stream with include_usage and max_tokens={CUT_MAX_TOKENS} has exactly one usage chunk, "
                f"with choices [], counting the whole request as the non-stream reply does: total = prompt + "
                f"completion, the same prompt_tokens, and {CUT_MAX_TOKENS} completion tokens per choice cut at "
                f"length, at most {CUT_N * CUT_MAX_TOKENS}.",
    requests=2,
    depths=FULL_ONLY,
)
def usage_n_choices(ctx: CheckContext) -> None:
    exchange = ctx.chat(cut_choices_request(ctx, stream=True, stream_options=INCLUDE_USAGE), stream=True)
    if _refused(exchange):
        raise _declined_or_failed(ctx, exchange, None, f"n={CUT_N} with stream_options.include_usage", '"n"', "'n'",
                                  "`n`", " n ", "stream_options", "include_usage")
    stream = open_stream(ctx, exchange)
    usage = stream.usage_chunks()
    if not usage:
        fail_at(ctx, stream, stream.chunks[-1], "one chunk with usage before [DONE]", "no chunk carries usage",
                at="→ usage")
        return
    if len(usage) > 1:
        fail_at(ctx, stream, usage[1], f"exactly one usage chunk for the whole request (n={CUT_N} is one request, "
                f"not one usage per choice)", f"{len(usage)} chunks carry usage (events "
                f"{', '.join('#' + str(c.number) for c in usage[:8])})", at="→ usage")
    cut = sum(any(value == "length" for _, value in found) for found in stream.finishes().values())
    prompt = _plain_prompt_tokens(ctx)
    for chunk in usage[:MAX_REPORTED]:
        if chunk.body.get("choices") != []:
            fail_at(ctx, stream, chunk, "choices: [] in the usage chunk", f"choices {short(chunk.body.get('choices'))}",
                    at="→ choices")
        _judge_request_usage(ctx, stream, chunk, cut, prompt)


def _plain_prompt_tokens(ctx: CheckContext) -> int | None:
    """prompt_tokens of the non-stream reply to the same request, when it has them (the usage checks judge it)."""
    exchange = cut_choices(ctx)
    body = exchange.json() if exchange.error is None and exchange.status == 200 else None
    usage = body.get("usage") if isinstance(body, dict) else None
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _judge_request_usage(ctx: CheckContext, stream: Stream, chunk: Chunk, cut: int, prompt: int | None) -> None:
    """One usage chunk against the whole request: the sum, the prompt, and every choice's tokens."""
    problems = usage_problems(chunk.body["usage"])
    for problem in problems:
        fail_at(ctx, stream, chunk, "total_tokens = prompt_tokens + completion_tokens, integers >= 0", problem,
                at="→ usage")
    if problems:
        return
    usage = chunk.body["usage"]
    if prompt is not None and usage["prompt_tokens"] != prompt:
        fail_at(ctx, stream, chunk, f"prompt_tokens {prompt}, as in the non-stream reply to the same request",
                f"prompt_tokens {usage['prompt_tokens']}", at="→ usage.prompt_tokens")
    completion, least, most = usage["completion_tokens"], cut * CUT_MAX_TOKENS, CUT_N * CUT_MAX_TOKENS
    if not least <= completion <= most:
        fail_at(ctx, stream, chunk, f"completion_tokens from {least} to {most}: every choice counted ({cut} "
                f"ended with finish_reason length after max_tokens = {CUT_MAX_TOKENS}), n = {CUT_N} at most",
                f"completion_tokens {completion}", at="→ usage.completion_tokens")


@check(
    "stream.usage-not-requested",
    level=Level.SHOULD,
    feature=STREAMING,
    clause=openai("stream_options.include_usage (Rapid-MLX PR #792)", "usage sent without include_usage makes "
                  "LangChain / AI-SDK double-count"),
    description="Without stream_options.include_usage no chunk carries a non-null usage.",
)
def usage_not_requested(ctx: CheckContext) -> None:
    stream = open_stream(ctx, basic_stream(ctx))
    usage = stream.usage_chunks()
    expected = "usage null or absent when include_usage was not asked for"
    for chunk in usage[:MAX_REPORTED]:
        fail_at(ctx, stream, chunk, expected, f"usage {short(chunk.body['usage'])}", at="→ usage")
    _more(ctx, stream, len(usage), expected)


# -- equivalence ---------------------------------------------------------------------------------
def _twins(ctx: CheckContext, judged: str) -> tuple[Stream, dict[str, Any]]:
    """The deterministic stream and its non-stream twin, on a reproducible target only.

    A target that gives two different replies to one temperature-0 seeded request (a sampler that is
    not bit-exact, an echo of the clock) makes any stream/non-stream difference noise: the check is
    not applicable, with both replies as evidence. A reproducible target whose stream differs still fails.
    """
    require_reproducible(ctx, judged)
    exchange = usage_stream(ctx)
    if _refused(exchange):
        raise ctx.not_applicable(f"the deterministic stream was refused (HTTP {exchange.status}; see "
                                 f"stream.usage-include)")
    stream = open_stream(ctx, exchange)
    return stream, ctx.ok_json(deterministic_completion(ctx), "a 200 chat.completion")


@check(
    "stream.equivalent-content",
    model_dependent=True,
    level=Level.SHOULD,
    feature=STREAMING,
    clause=SSE_CLAUSE,
    description="The concatenated content deltas equal the non-stream content of the same temperature-0 seeded "
                "request (not applicable when two identical non-stream requests differ).",
    requests=3,
    depths=FULL_ONLY,
)
def equivalent_content(ctx: CheckContext) -> None:
    stream, plain = _twins(ctx, "a stream that differs from it")
    choices = plain.get("choices")
    message = choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) \
        else None
    if not isinstance(message, dict):
        raise ctx.stop("a non-stream choice with a message", short(plain, 200), "the non-stream twin")
    expected = message.get("content") or ""
    received = stream.content(0)
    if received == expected:
        return
    acc = ""
    culprit = None
    for chunk, text in stream.content_pieces(0):
        acc += text
        culprit = chunk
        if not expected.startswith(acc):
            break
    differs_at = next((i for i, (a, b) in enumerate(zip(received, expected, strict=False)) if a != b),
                      min(len(received), len(expected)))
    fail_at(ctx, stream, culprit or stream.chunks[-1], f"the non-stream content {short(expected)}{REPRODUCIBLE}",
            f"{short(received)}, which differs from character {differs_at}", at="→ concatenated delta.content")


@check(
    "stream.equivalent-usage",
    model_dependent=True,
    level=Level.SHOULD,
    feature=STREAMING,
    clause=documented("2 usage.completion_tokens", "Number of tokens generated in the output."),
    description="The stream's usage equals the non-stream usage of the same temperature-0 seeded request "
                "(not applicable when two identical non-stream requests differ).",
    requests=3,
    depths=FULL_ONLY,
)
def equivalent_usage(ctx: CheckContext) -> None:
    stream, plain = _twins(ctx, "a stream whose usage differs from it")
    usage = stream.usage_chunks()
    if not usage:
        raise ctx.not_applicable("the stream carries no usage (judged by stream.usage-include)")
    if not isinstance(plain.get("usage"), dict):
        raise ctx.not_applicable("the non-stream response carries no usage (judged by the usage.* checks)")
    streamed, expected = usage[-1].body["usage"], plain["usage"]
    if not isinstance(streamed, dict):
        return  # not an object: stream.chunk-schema reports it
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if streamed.get(key) != expected.get(key):
            fail_at(ctx, stream, usage[-1], f"{key} {short(expected.get(key))}, as in the non-stream usage"
                    f"{REPRODUCIBLE}", f"{key} {short(streamed.get(key))}", at=f"→ usage.{key}")


# -- max_tokens and stop -------------------------------------------------------------------------
STREAM_MAX_TOKENS = 3
LONG_PROMPT = [{"role": "user", "content": "Write a long story about the sea, at least three hundred words."}]


@check(
    "stream.max-tokens",
    level=Level.MUST,
    feature=STREAMING,
    clause=documented("1.2 max_tokens", "The maximum number of tokens to generate in the chat completion."),
    description=f"max_tokens={STREAM_MAX_TOKENS} on a long reply gives finish_reason length and, by usage, at most "
                f"{STREAM_MAX_TOKENS} completion tokens.",
    requests=2,
)
def max_tokens(ctx: CheckContext) -> None:
    body = ctx.chat_request(messages=LONG_PROMPT, max_tokens=STREAM_MAX_TOKENS, stream=True,
                            stream_options=INCLUDE_USAGE)
    exchange = ctx.chat(body, stream=True)
    if _refused(exchange):  # without include_usage only finish_reason can be judged
        exchange = ctx.chat({k: v for k, v in body.items() if k != "stream_options"}, stream=True)
    stream = open_stream(ctx, exchange)
    usage_chunk = next(iter(stream.usage_chunks()[-1:]), None)
    usage = usage_chunk.body["usage"] if usage_chunk is not None else None
    completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
    ctx.details["completion_tokens"] = completion
    if usage_chunk is not None and isinstance(completion, int) and completion > STREAM_MAX_TOKENS:
        fail_at(ctx, stream, usage_chunk, f"completion_tokens <= max_tokens {STREAM_MAX_TOKENS}",
                f"completion_tokens {completion}", at="→ usage.completion_tokens")
    found = stream.finishes().get(0, [])
    if not found:
        fail_at(ctx, stream, stream.chunks[-1], 'finish_reason "length" for choice 0', "no finish_reason")
        return
    finish_chunk, finish = found[-1]
    stopped_early = isinstance(completion, int) and completion < STREAM_MAX_TOKENS and finish == "stop"
    if finish != "length" and not stopped_early:
        fail_at(ctx, stream, finish_chunk, f'finish_reason "length" (the reply was cut at max_tokens '
                f"{STREAM_MAX_TOKENS})", f"finish_reason {short(finish)}, completion_tokens {completion}",
                at="→ choices[0].finish_reason")


@check(
    "stream.stop",
    level=Level.MUST,
    feature=STREAMING,
    clause=documented("1.2 stop", "The model will stop generating further tokens when it encounters these "
                      "characters."),
    description="A stop sequence taken from an unconstrained streamed reply never appears in the streamed content.",
    requests=3,
)
def stop_sequence(ctx: CheckContext) -> None:
    source, request = usage_stream(ctx), deterministic_request(ctx, stream=True)
    if source.error is not None or source.status != 200:
        source, request = basic_stream(ctx), ctx.chat_request(stream=True)
    reply = open_stream(ctx, source).content(0)
    word = stop_word(reply, min_words=2)
    if word is None:
        raise ctx.inconclusive(f"the unconstrained reply {short(reply)} is too short to take a stop sequence from")
    ctx.details["stop"] = word
    stream = open_stream(ctx, ctx.chat({**request, "stop": [word]}, stream=True))
    acc = ""
    for chunk, text in stream.content_pieces(0):
        acc += text
        if word in acc:
            fail_at(ctx, stream, chunk, f"content without the stop sequence {word!r}", f"content so far "
                    f"{short(acc[-120:])} contains it", at="→ delta.content")
            return


# -- tool-call deltas ----------------------------------------------------------------------------
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@check(
    "stream.tool-call-deltas",
    level=Level.MUST,
    feature=STREAMING,
    clause=openai("ChatCompletionMessageToolCallChunk (openai/openai-python#2806)", "tool_calls[] items "
                  "(ChatCompletionMessageToolCallChunk) require only index"),
    client_break="openai-python's stream accumulator raises TypeError on a tool_calls delta without index: "
                 "https://github.com/openai/openai-python/issues/2806",
    description="Every tool_calls delta has an integer index; id, type and function.name come in the first delta "
                "for that index; the concatenated arguments parse as a JSON object.",
    depths=FULL_ONLY,
)
def tool_call_deltas(ctx: CheckContext) -> None:
    # 48 tokens: a function name plus {"city": "Paris"} must fit, or the arguments would be cut short.
    body = ctx.chat_request(messages=[{"role": "user", "content": "What is the weather in Paris? Use get_weather."}],
                            tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}},
                            stream=True, max_tokens=48)
    exchange = ctx.chat(body, stream=True)
    if _refused(exchange):
        raise _declined_or_failed(ctx, exchange, Feature.TOOLS, "tools with stream: true", "tool")
    stream = open_stream(ctx, exchange)
    calls = _ToolCalls(ctx, stream)
    for chunk, choice_index, choice in stream.choice_entries():
        delta = choice.get("delta")
        tool_calls = delta.get("tool_calls") if isinstance(delta, dict) else None
        if tool_calls is None:
            continue
        for position, item in enumerate(tool_calls if isinstance(tool_calls, list) else [tool_calls]):
            calls.judge_item(chunk, choice_index, position, item)
    if not calls.items:
        # Silently ignoring a forced tool_choice is no declaration: a declared limit is a 4xx naming it.
        raise ctx.stop("tool_calls deltas for the named tool_choice get_weather", "no tool_calls delta in the "
                       "stream", ctx.where(stream.exchange), exchange=stream.exchange)
    calls.judge_arguments()


@dataclass
class _Call:
    first: Chunk
    id: Any
    last: Chunk
    arguments: list[str] = field(default_factory=list)


class _ToolCalls:
    """Tool calls assembled from deltas by (choice index, tool-call index), as the SDKs do."""

    def __init__(self, ctx: CheckContext, stream: Stream) -> None:
        self.ctx, self.stream = ctx, stream
        self.calls: dict[tuple[int, int], _Call] = {}
        self.items = 0

    def fail(self, chunk: Chunk, expected: str, received: str, at: str) -> None:
        fail_at(self.ctx, self.stream, chunk, expected, received, at=at)

    def judge_item(self, chunk: Chunk, choice_index: int, position: int, item: Any) -> None:
        self.items += 1
        at = f"→ choices[{choice_index}].delta.tool_calls[{position}]"
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(index, int) or isinstance(index, bool):
            self.fail(chunk, "an integer index in every tool_calls delta (openai-python raises without it)",
                      f"tool_calls[{position}] {short(item)}", at + ".index")
            return
        raw_function = item.get("function")
        function = raw_function if isinstance(raw_function, dict) else {}
        call = self.calls.get((choice_index, index))
        if call is None:
            call = self.calls[(choice_index, index)] = _Call(chunk, item.get("id"), chunk)
            missing = [name for name, ok in (
                ("id", isinstance(item.get("id"), str) and item["id"]),
                ('type "function"', item.get("type") == "function"),
                ("function.name", isinstance(function.get("name"), str) and function["name"])) if not ok]
            if missing:
                self.fail(chunk, f"id, type and function.name in the first delta of tool call {index}",
                          f"missing: {', '.join(missing)} in {short(item)}", at)
        elif item.get("id") not in (None, call.id):
            self.fail(chunk, f"the id {short(call.id)} of tool call {index} (a new call takes a new index)",
                      f"id {short(item.get('id'))}", at + ".id")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.arguments.append(arguments)
            call.last = chunk
        elif arguments is not None:
            self.fail(chunk, "function.arguments as a string fragment", f"arguments {short(arguments)}",
                      at + ".function.arguments")

    def judge_arguments(self) -> None:
        for (choice_index, index), call in self.calls.items():
            arguments = "".join(call.arguments)
            try:
                parsed = json.loads(arguments)
            except ValueError as exc:
                parsed, why = None, f"not JSON ({exc})"
            else:
                why = f"JSON {type(parsed).__name__}"
            if not isinstance(parsed, dict):
                self.fail(call.last, f"the concatenated arguments of tool call {index} parse as a JSON object",
                          f"{short(arguments)}: {why}", f"→ choices[{choice_index}].delta.tool_calls[index={index}]")


# -- errors --------------------------------------------------------------------------------------
@check(
    "stream.options-without-stream",
    level=Level.SHOULD,
    feature=STREAMING,
    clause=openai("stream_options", "Only set this when you set stream: true"),
    description="stream_options with stream: false is rejected with a 4xx.",
    accepts=("400", "422", "other 4xx"),
)
def options_without_stream(ctx: CheckContext) -> None:
    exchange = ctx.chat(ctx.chat_request(stream=False, stream_options=INCLUDE_USAGE))
    exchange.require_response()
    fail_on_limit(ctx.http, exchange)
    if exchange.status is None or not 400 <= exchange.status < 500:
        ctx.fail("a 4xx (400 or 422): stream_options is only valid with stream: true",
                 f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)

