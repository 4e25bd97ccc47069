"""Seeded faults and legal variants of the reference server.

A fault is one named protocol defect, switched on by name at start (`conformance serve --fault
NAME`). Each declares here what it changes, as hooks into the server's correct code (hooks.py), and
names the check IDs that must catch it, which the selftest verifies. A variant is behaviour the
documents allow, declared the same way; every check must accept it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..spec import View
from . import generate, responses
from .hooks import (
    CHAT_PATH,
    MODELS_PATH,
    NO_HOOKS,
    ApiError,
    Choice,
    ChoiceHook,
    ChunksHook,
    Destination,
    Draft,
    Endpoint,
    HandlerCrash,
    Hooks,
    Refusal,
    RefusalHook,
    Reply,
    ReplyHook,
    ReplyKind,
    RequestHook,
    SchemaPatch,
    SsePlan,
    Stream,
)


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    description: str
    killed_by: tuple[str, ...]
    # Faults in request validation loosen or tighten the request schema the server enforces.
    schema_patch: SchemaPatch | None = None
    hooks: Hooks = NO_HOOKS
    # A fault that remembers earlier requests (single-slot-cuts-streams) makes fresh hooks per server.
    hooks_per_server: Callable[[], Hooks] | None = None


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    description: str
    # SHOULD checks this legal behaviour trips: the run stays CERTIFIED, `--strict` is NOT CERTIFIED.
    flags: tuple[str, ...] = ()
    # The profiles under which the behaviour is legal (documented-route-only: not under openai).
    profiles: tuple[str, ...] = ("openai", "documented")
    schema_patch: SchemaPatch | None = None
    hooks: Hooks = NO_HOOKS
    # Whose limits the request schema enforces: OpenAI's, or only the document's (lenient-params).
    enforces: View = "openai"


def _set(prop: str, **changes: Any) -> SchemaPatch:
    def patch(schema: dict[str, Any]) -> None:
        schema["properties"][prop].update(changes)

    return patch


def _label(kind: ReplyKind, content_type: str) -> ReplyHook:
    """Replies of this kind say `content_type` (JSON ones only, when the kind is JSON)."""

    def patch(reply: Reply) -> None:
        if reply.kind is kind and (kind is ReplyKind.STREAM or reply.headers["content-type"].startswith(
                "application/json")):
            reply.headers["content-type"] = content_type

    return patch


def _waive(*reasons: Refusal) -> RefusalHook:
    """The server serves what these checks should refuse."""

    def hook(reason: Refusal, error: ApiError) -> ApiError | None:
        return None if reason in reasons else error

    return hook


def _status(reason: Refusal, was: int, status: int) -> RefusalHook:
    """This refusal gets `status` instead of `was` (unless a hook before changed it already)."""

    def hook(refused: Refusal, error: ApiError) -> ApiError | None:
        if refused is reason and error.status == was:
            error.status = status
        return error

    return hook


def _crash(reason: Refusal, exception: str) -> RefusalHook:
    """Instead of this refusal the handler crashes: a plain-text 500."""

    def hook(refused: Refusal, error: ApiError) -> ApiError | None:
        if refused is reason:
            raise HandlerCrash(exception)
        return error

    return hook


def _ignores(param: str, when: Callable[[dict[str, Any]], bool] = lambda payload: True) -> RequestHook:
    """The server reads the request as if `param` had not been sent (where `when` holds)."""

    def hook(payload: dict[str, Any]) -> None:
        if when(payload):
            payload.pop(param, None)

    return hook


def _streamed(payload: dict[str, Any]) -> bool:
    return bool(payload.get("stream"))


def _finish(reason: str, *, calls: bool, truncated: bool) -> ChoiceHook:
    """Choices of one kind (a tool call or text; cut at max_tokens or not) end with `reason`."""

    def hook(choice: Choice, streamed: bool) -> None:
        if (choice.tool_call is not None) == calls and choice.truncated == truncated:
            choice.finish_reason = reason

    return hook


def _keep_sum(usage: dict[str, int], key: str, count: int) -> None:
    """Set one count; total_tokens moves with it (keeping any offset another fault put there)."""
    usage["total_tokens"] += count - usage[key]
    usage[key] = count


def _each_chunk(patch: Callable[[dict[str, Any]], None]) -> ChunksHook:
    def hook(chunks: list[dict[str, Any]], stream: Stream) -> None:
        for chunk in chunks:
            patch(chunk)

    return hook


def _each_entry(patch: Callable[[dict[str, Any]], None]) -> ChunksHook:
    """Patches every choice entry of every chunk."""

    def hook(chunks: list[dict[str, Any]], stream: Stream) -> None:
        for chunk in chunks:
            for entry in chunk["choices"]:
                patch(entry)

    return hook


def _usage_chunk(chunks: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((chunk for chunk in reversed(chunks) if isinstance(chunk.get("usage"), dict)), None)


def _fingerprint(envelope: dict[str, Any]) -> None:
    envelope["system_fingerprint"] = "fp_conformance_ref"


FAULTS: dict[str, Fault] = {}
VARIANTS: dict[str, Variant] = {}


def fault(name: str, description: str, killed_by: tuple[str, ...], schema_patch: SchemaPatch | None = None, *,
          hooks: Hooks = NO_HOOKS, hooks_per_server: Callable[[], Hooks] | None = None) -> None:
    if name in FAULTS:
        raise ValueError(f"fault {name!r} declared twice")
    FAULTS[name] = Fault(name, description, killed_by, schema_patch, hooks, hooks_per_server)


def variant(name: str, description: str, flags: tuple[str, ...] = (),
            profiles: tuple[str, ...] = ("openai", "documented"), *, schema_patch: SchemaPatch | None = None,
            hooks: Hooks = NO_HOOKS, enforces: View = "openai") -> None:
    if name in VARIANTS:
        raise ValueError(f"variant {name!r} declared twice")
    VARIANTS[name] = Variant(name, description, flags, profiles, schema_patch, hooks, enforces)


def active_hooks(faults: Iterable[str], variants: Iterable[str]) -> list[Hooks]:
    """The hooks of these faults and variants, in the order they apply: from the last declared to the
    first, like stacked decorators. So a variant patches before any fault, and where two touch the same
    value the one declared first has the last word."""
    on = set(faults) | set(variants)
    unknown = on - FAULTS.keys() - VARIANTS.keys()
    if unknown:
        raise KeyError(f"not a declared fault or variant: {', '.join(sorted(unknown))}")
    items: list[Fault | Variant] = [*FAULTS.values(), *VARIANTS.values()]
    return [item.hooks_per_server() if isinstance(item, Fault) and item.hooks_per_server else item.hooks
            for item in reversed(items) if item.name in on]


# --- usage ------------------------------------------------------------------------------------------
def _off_by_one(usage: dict[str, int], payload: dict[str, Any], choices: list[Choice]) -> None:
    usage["total_tokens"] += 1


fault("usage-total-off-by-one", "usage.total_tokens is prompt + completion + 1", ("usage.total-is-sum",),
      hooks=Hooks(usage=_off_by_one))


# --- response shape ---------------------------------------------------------------------------------
def _created_as_string(envelope: dict[str, Any]) -> None:
    envelope["created"] = str(envelope["created"])


fault("created-as-string", "`created` is a string, not an integer", ("schema.chat-completion",),
      hooks=Hooks(envelope=_created_as_string))


def _created_in_ms(envelope: dict[str, Any]) -> None:
    envelope["created"] = int(time.time() * 1000)


# Chunks carry it too (stream.chunk-schema fails as well); declared by the non-stream checks only,
# since the stream tests want a marked byte range from every check a stream fault declares.
fault("created-in-milliseconds", "`created` is a Unix timestamp in milliseconds, not seconds",
      ("schema.chat-completion", "documented.request-example"), hooks=Hooks(envelope=_created_in_ms))


def _plural_object(envelope: dict[str, Any]) -> None:
    if envelope["object"] == "chat.completion":
        envelope["object"] = "chat.completions"


fault("object-misspelled", "`object` is `chat.completions`", ("schema.openai-fields",),
      hooks=Hooks(envelope=_plural_object))


# --- streaming --------------------------------------------------------------------------------------
def _no_done(plan: SsePlan) -> None:
    if "[DONE]" in plan.closing:
        plan.closing.remove("[DONE]")


fault("stream-no-done", "the stream ends without `data: [DONE]`", ("stream.done-terminator",),
      hooks=Hooks(sse=_no_done))
# framing (sse hooks) and whether a stream is served (request and reply hooks)
fault("stream-wrong-content-type", "a stream is served as `application/json` (openclaw PR #97454)",
      ("stream.content-type",), hooks=Hooks(reply=_label(ReplyKind.STREAM, "application/json")))


def _stream_false(payload: dict[str, Any]) -> None:
    if payload.get("stream"):
        payload["stream"] = False


fault("stream-ignored", "stream: true is answered with one plain JSON completion (tinyagents PR #56)",
      ("stream.content-type", "stream.data-is-json", "stream.done-terminator"), hooks=Hooks(request=_stream_false))


def _stream_true(payload: dict[str, Any]) -> None:
    payload["stream"] = True


fault("sse-on-non-stream", "a stream: false request is answered with SSE (decolua/9router#3492)",
      ("stream.not-sse-when-false",), hooks=Hooks(request=_stream_true))


def _bare_data(plan: SsePlan) -> None:
    plan.data_field = ""


fault("stream-no-data-prefix", "events are bare JSON lines without `data: `",
      ("stream.data-is-json", "sdk.stream-usage", "sdk.stream-tool-call"), hooks=Hooks(sse=_bare_data))


def _single_newline(plan: SsePlan) -> None:
    plan.blank_line = False


fault("stream-single-newline", "events are separated by one newline, not a blank line",
      ("stream.data-is-json", "stream.done-terminator"), hooks=Hooks(sse=_single_newline))


def _truncate_middle_event(plan: SsePlan) -> None:
    if len(plan.events) > 2:
        middle = len(plan.events) // 2
        plan.events[middle] = plan.events[middle][: len(plan.events[middle]) // 2]


fault("stream-truncated-json", "one chunk in the middle carries only the first half of its JSON",
      ("stream.data-is-json", "sdk.stream-usage", "sdk.stream-tool-call"), hooks=Hooks(sse=_truncate_middle_event))


def _event_after_done(plan: SsePlan) -> None:
    if plan.events:
        plan.closing.append(json.dumps({**json.loads(plan.events[0]), "choices": []}))


fault("stream-data-after-done", "one more chunk follows `data: [DONE]`", ("stream.done-terminator",),
      hooks=Hooks(sse=_event_after_done))


# chunks (chunks hooks; the usage ones add, move or repeat the usage chunk the correct stream has)
def _object_completion(chunk: dict[str, Any]) -> None:
    chunk["object"] = "chat.completion"


fault("stream-chunk-object-completion", "chunks say object `chat.completion`", ("stream.chunk-object",),
      hooks=Hooks(chunks=_each_chunk(_object_completion)))


def _content_length(entry: dict[str, Any]) -> None:
    if isinstance(entry["delta"].get("content"), str):
        entry["delta"]["content"] = len(entry["delta"]["content"])


fault("stream-delta-content-number", "delta.content is the number of characters, not the text",
      ("stream.chunk-schema",), hooks=Hooks(chunks=_each_entry(_content_length)))


def _new_id(chunk: dict[str, Any]) -> None:
    chunk["id"] = responses.new_id()


fault("stream-id-changes", "every chunk has a new id", ("stream.consistent-identity",),
      hooks=Hooks(chunks=_each_chunk(_new_id)))


def _no_delta_role(entry: dict[str, Any]) -> None:
    entry["delta"].pop("role", None)


fault("stream-no-role", "no delta carries role (openai/openai-node#553)", ("stream.first-delta-role",),
      hooks=Hooks(chunks=_each_entry(_no_delta_role)))


def _null_finish(entry: dict[str, Any]) -> None:
    if entry.get("finish_reason"):
        entry["finish_reason"] = None


fault("stream-no-finish-reason", "finish_reason is null in every chunk", ("stream.finish-reason-once",),
      hooks=Hooks(chunks=_each_entry(_null_finish)))


def _empty_pending_finish(entry: dict[str, Any]) -> None:
    if entry["delta"] and entry.get("finish_reason") is None:  # each chunk before a choice's last
        entry["finish_reason"] = ""


fault("stream-finish-reason-empty-string", "finish_reason is \"\" in every chunk before the last "
      "(ollama/ollama#4357)", ("stream.finish-reason-once",), hooks=Hooks(chunks=_each_entry(_empty_pending_finish)))


def _drop_null_finish(entry: dict[str, Any]) -> None:
    if "finish_reason" in entry and entry["finish_reason"] is None:  # None-valued keys dropped (LiteLLM)
        del entry["finish_reason"]


fault("stream-finish-reason-key-omitted", "chunk choices omit the finish_reason key until the last "
      "(BerriAI/liteLLM-proxy#19)", ("stream.finish-reason-key",), hooks=Hooks(chunks=_each_entry(_drop_null_finish)))


def _entry_index_zero(entry: dict[str, Any]) -> None:
    entry["index"] = 0


fault("stream-n-all-index-0", "with n > 1 every choice streams as index 0", ("stream.n-partition",),
      hooks=Hooks(chunks=_each_entry(_entry_index_zero)))


def _unrequested_usage(chunks: list[dict[str, Any]], stream: Stream) -> None:
    if not stream.usage_requested:
        chunk = stream.chunk([])
        chunk["usage"] = stream.usage(stream.choices)
        chunks.append(chunk)


fault("stream-usage-unrequested", "a usage chunk is sent without include_usage (Rapid-MLX PR #792)",
      ("stream.usage-not-requested",), hooks=Hooks(chunks=_unrequested_usage))


def _usage_off_by_one(chunks: list[dict[str, Any]], stream: Stream) -> None:
    for chunk in chunks:
        if isinstance(chunk.get("usage"), dict):
            chunk["usage"]["total_tokens"] += 1


fault("stream-usage-wrong", "the usage chunk's total_tokens is prompt + completion + 1", ("stream.usage-include",),
      hooks=Hooks(chunks=_usage_off_by_one))


def _usage_on_finish(chunks: list[dict[str, Any]], stream: Stream) -> None:
    if (chunk := _usage_chunk(chunks)) is not None:
        chunks.remove(chunk)
        chunks[-1]["usage"] = chunk["usage"]


fault("stream-usage-on-finish-chunk", "usage rides on the last finish chunk instead of a `choices: []` chunk",
      ("stream.usage-include",), hooks=Hooks(chunks=_usage_on_finish))


def _usage_twice(chunks: list[dict[str, Any]], stream: Stream) -> None:
    if (chunk := _usage_chunk(chunks)) is not None:
        chunks.append(copy.deepcopy(chunk))


fault("stream-usage-twice", "the usage chunk is sent twice", ("stream.usage-include",),
      hooks=Hooks(chunks=_usage_twice))


def _usage_per_choice(chunks: list[dict[str, Any]], stream: Stream) -> None:
    if (chunk := _usage_chunk(chunks)) is not None and len(stream.choices) > 1:
        chunks.remove(chunk)
        for choice in stream.choices:  # each usage chunk counts its own choice
            per_choice = stream.chunk([])
            per_choice["usage"] = stream.usage([choice])
            chunks.append(per_choice)


fault("stream-usage-per-choice", "an n > 1 stream gets one usage chunk per choice, each counting that choice only",
      ("stream.usage-n-choices",), hooks=Hooks(chunks=_usage_per_choice))


def _usage_counts_chunks(chunks: list[dict[str, Any]], stream: Stream) -> None:
    if (chunk := _usage_chunk(chunks)) is not None:  # the chunks before it, not tokens; the sum stays right
        usage, before = chunk["usage"], chunks.index(chunk)
        usage["completion_tokens"], usage["total_tokens"] = before, usage["prompt_tokens"] + before


fault("stream-usage-counts-chunks", "stream usage counts SSE chunks as completion tokens (sum kept)",
      ("stream.equivalent-usage",), hooks=Hooks(chunks=_usage_counts_chunks))


def _other_last_token(choice: Choice, streamed: bool) -> None:
    if streamed and len(choice.tokens) > 1:
        choice.tokens = [*choice.tokens[:-1], " streamed"]  # same count, other text


fault("stream-equivalence-broken", "the streamed text's last token differs from the non-stream text",
      ("stream.equivalent-content",), hooks=Hooks(choice=_other_last_token))
fault("stream-max-tokens-ignored", "streams ignore max_tokens: full text, finish_reason stop",
      ("stream.max-tokens",), hooks=Hooks(request=_ignores("max_tokens", when=_streamed)))
fault("stream-stop-ignored", "streams ignore stop sequences", ("stream.stop",),
      hooks=Hooks(request=_ignores("stop", when=_streamed)))


def _no_tool_call_index(entry: dict[str, Any]) -> None:
    for item in entry["delta"].get("tool_calls", []):
        del item["index"]


fault("stream-tool-call-no-index", "tool_calls deltas carry no `index` (openai/openai-python#2806)",
      ("stream.tool-call-deltas", "sdk.stream-tool-call"), hooks=Hooks(chunks=_each_entry(_no_tool_call_index)))


def _drop_last_argument_piece(chunks: list[dict[str, Any]], stream: Stream) -> None:
    def is_piece(chunk: dict[str, Any]) -> bool:  # a tool-call delta after the one that names the call
        return any("id" not in item for entry in chunk["choices"] for item in entry["delta"].get("tool_calls", []))

    pieces = [position for position, chunk in enumerate(chunks) if is_piece(chunk)]
    for position in reversed(pieces):
        if position + 1 not in pieces:  # the last piece of a call
            del chunks[position]


fault("stream-tool-args-broken", "the last piece of the tool-call arguments is never sent",
      ("stream.tool-call-deltas",), hooks=Hooks(chunks=_drop_last_argument_piece))
# request validation (a refusal hook)
fault("stream-options-without-stream-accepted", "stream_options is accepted with stream: false",
      ("stream.options-without-stream",), hooks=Hooks(refusal=_waive(Refusal.STREAM_OPTIONS_WITHOUT_STREAM)))


# --- parameter bounds -------------------------------------------------------------------------------
fault("accept-temperature-2.5", "temperature up to 2.5 is accepted", ("params.temperature.bounds",),
      _set("temperature", maximum=2.5))
fault("reject-temperature-2", "temperature 2.0 (a legal edge) is rejected", ("params.temperature.bounds",),
      _set("temperature", exclusiveMaximum=2))


# --- parameters, errors, auth, methods, fuzz (checks in params/errors/methods/fuzz.py) -----------------
def _set_in(*path: str | int, **changes: Any) -> SchemaPatch:
    """Like `_set`, for a subschema deeper in the request schema (e.g. logit_bias values)."""

    def patch(schema: dict[str, Any]) -> None:
        node: Any = schema["properties"]
        for key in path:
            node = node[key]
        node.update(changes)

    return patch


def _drop_in(prop: str, key: str) -> SchemaPatch:
    def patch(schema: dict[str, Any]) -> None:
        schema["properties"][prop].pop(key, None)

    return patch


fault("accept-top-p-1.5", "top_p up to 1.5 is accepted", ("params.top_p.bounds",), _set("top_p", maximum=1.5))
fault("reject-top-p-0", "top_p 0 (a legal edge) is rejected", ("params.top_p.bounds",),
      _set("top_p", exclusiveMinimum=0))
fault("accept-presence-penalty-3", "presence_penalty up to 3 is accepted", ("params.presence-penalty.bounds",),
      _set("presence_penalty", maximum=3))
fault("accept-frequency-penalty--2.5", "frequency_penalty down to -2.5 is accepted",
      ("params.frequency-penalty.bounds",), _set("frequency_penalty", minimum=-2.5))
fault("accept-n-0", "n = 0 is accepted (and answered with no choices)", ("params.n.bounds",), _set("n", minimum=0))
fault("accept-max-tokens-0", "max_tokens = 0 is accepted (and honoured: nothing is generated)",
      ("params.max-tokens.bounds",), _set("max_tokens", minimum=0))


def _zero_as_no_limit(payload: dict[str, Any]) -> None:
    if payload.get("max_tokens") == 0:
        payload["max_tokens"] = None


fault("max-tokens-0-generates", "max_tokens = 0 is accepted and read as \"no limit\": a full reply is generated",
      ("params.max-tokens.zero",), _set("max_tokens", minimum=0), hooks=Hooks(request=_zero_as_no_limit))
fault("accept-logit-bias-150", "logit_bias values up to 150 are accepted", ("params.logit-bias.values",),
      _set_in("logit_bias", "additionalProperties", maximum=150))
fault("accept-logit-bias-word-keys", "logit_bias keys need not be token IDs (`{\"abc\": 1}` is accepted)",
      ("params.logit-bias.keys",), _drop_in("logit_bias", "propertyNames"))
fault("accept-five-stop-sequences", "`stop` may hold 5 sequences", ("params.stop.max-items",),
      _set_in("stop", "oneOf", 2, maxItems=5))
fault("accept-empty-messages", "`messages: []` is accepted",
      ("params.empty-messages",), _set("messages", minItems=0), hooks=Hooks(refusal=_waive(Refusal.EMPTY_MESSAGES)))
fault("accept-unknown-role", "messages are only checked for a `role` key, so role `wizard` is accepted",
      ("params.unknown-role",), _set_in("messages", items={"type": "object", "required": ["role"]}))


def _param_null(body: dict[str, Any], status: int) -> dict[str, Any]:
    if "param" in body.get("error", {}):
        body["error"]["param"] = None
    return body


fault("error-without-param", "errors always carry `param: null`, even for a bad parameter",
      ("params.error-names-param",), hooks=Hooks(error=_param_null))


def _str_of_none(body: dict[str, Any], status: int) -> dict[str, Any]:
    if "param" in body.get("error", {}):  # str() of Python's None and of the status
        body["error"].update(param=str(body["error"]["param"]), code=str(status))
    return body


fault("error-param-string-none", "errors carry `param: \"None\"` for no parameter and `code` as the HTTP status "
      "string (`\"400\"`)", ("errors.param-code-not-stringified",), hooks=Hooks(error=_str_of_none))


def _detail(body: dict[str, Any], status: int) -> dict[str, Any]:
    return {"detail": body["error"]["message"]} if "error" in body else body  # FastAPI's default error body


fault("detail-error-shape", "errors are FastAPI-style `{\"detail\": \"...\"}` instead of the OpenAI envelope",
      ("errors.message", "errors.envelope", "params.wrong-type", "methods.answer-shapes", "fuzz.schemathesis.negative"),
      hooks=Hooks(error=_detail))
fault("error-status-200", "invalid parameters get the error envelope with HTTP 200",
      ("params.temperature.bounds", "errors.message", "errors.envelope", "fuzz.schemathesis.negative",
       "sdk.error-classes"), hooks=Hooks(refusal=_status(Refusal.SCHEMA, 400, 200)))
fault("error-content-type-text", "error bodies are labelled `Content-Type: text/plain`", ("errors.content-type",),
      hooks=Hooks(reply=_label(ReplyKind.ERROR, "text/plain")))


def _crash_unless_object(body: Any) -> None:
    if not isinstance(body, dict):  # `body.get("stream")`, read before the type check
        raise HandlerCrash(f"AttributeError: '{type(body).__name__}' object has no attribute 'get'")


fault("500-on-malformed-body", "a body that is not a JSON object crashes the handler (plain-text 500)",
      ("params.malformed-body", "fuzz.schemathesis.negative"),
      hooks=Hooks(parsed=_crash_unless_object, refusal=_crash(Refusal.NOT_JSON, "JSONDecodeError")))


def _crash_without_messages(body: Any) -> None:
    if isinstance(body, dict) and "messages" not in body:
        raise HandlerCrash("KeyError: 'messages'")  # read before validation


fault("500-on-missing-messages", "a body without `messages` crashes the handler (plain-text 500)",
      ("params.required",), hooks=Hooks(parsed=_crash_without_messages))
fault("unknown-model-500", "a request for a model the server does not have crashes the handler (plain-text 500)",
      ("errors.unknown-model",),
      hooks=Hooks(refusal=_crash(Refusal.UNKNOWN_MODEL, "KeyError: the model, looked up without a check")))
fault("malformed-json-415", "a body that is not valid JSON gets 415 Unsupported Media Type (a 4xx, but not 400)",
      ("params.malformed-body-400",), hooks=Hooks(refusal=_status(Refusal.NOT_JSON, 400, 415)))


SAMPLING_PARAMS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def _coerce_sampling(*, nulls: bool) -> Callable[[Any], None]:
    """Trust the types and coerce early: float("hot") and float(None) crash."""

    def hook(body: Any) -> None:
        if not isinstance(body, dict):
            return
        for name in SAMPLING_PARAMS:
            if name in body and (body[name] is None) == nulls:
                try:
                    body[name] = float(body[name])
                except (TypeError, ValueError) as exc:
                    raise HandlerCrash(exc) from exc

    return hook


fault("500-on-wrong-type", "sampling parameters are coerced with float() before validation, so `\"hot\"` "
      "crashes the handler (plain-text 500)", ("params.wrong-type",), hooks=Hooks(parsed=_coerce_sampling(nulls=False)))
fault("500-on-null-sampling-param", "a sampling parameter sent as null (legal: nullable) crashes the handler",
      ("fuzz.schemathesis.positive",), hooks=Hooks(parsed=_coerce_sampling(nulls=True)))
fault("500-on-context-overflow", "a prompt over the context window crashes the handler (plain-text 500)",
      ("errors.context-overflow",),
      hooks=Hooks(refusal=_crash(Refusal.CONTEXT_OVERFLOW, "IndexError: index out of range in self")))


def _vllm_names(reason: Refusal, error: ApiError) -> ApiError | None:
    if reason is Refusal.CONTEXT_OVERFLOW:
        return ApiError(error.status, error.message, type="BadRequestError")  # vLLM's names: no code to match on
    return error


fault("context-overflow-generic-error", "a prompt over the context window gets 400 with type `BadRequestError` and "
      "no code (vLLM's names), not `invalid_request_error`", ("errors.context-overflow-type",),
      hooks=Hooks(refusal=_vllm_names))
fault("missing-key-403", "a request without a key gets 403, not 401 (needs --api-key)", ("auth.status-401",),
      hooks=Hooks(refusal=_status(Refusal.MISSING_KEY, 401, 403)))
fault("missing-key-accepted", "a request without any Authorization header is served, while a wrong key gets 401: "
      "an authentication bypass (needs --api-key)", ("auth.missing-key",),
      hooks=Hooks(refusal=_waive(Refusal.MISSING_KEY)))
fault("wrong-key-accepted", "any bearer key is accepted; only a missing key is refused (needs --api-key)",
      ("auth.wrong-key",), hooks=Hooks(refusal=_waive(Refusal.WRONG_KEY)))


def _chat_on_get(method: str, path: str, route: Destination) -> Destination:
    """The chat route takes the documented "HTTP Method: GET" literally."""
    if path != CHAT_PATH or (isinstance(route, ApiError) and route.status == 404):
        return route
    return Endpoint.CHAT if method == "GET" else responses.method_not_allowed(method, path, "GET", "GET")


fault("post-answers-405", "the chat route takes the documented GET literally and answers POST with 405",
      ("methods.post-chat",), hooks=Hooks(route=_chat_on_get))


def _models_500(method: str, path: str, route: Destination) -> Destination:
    if path == MODELS_PATH and method in ("GET", "HEAD"):
        return ApiError(500, "The model registry is unavailable.", type="server_error")
    return route


fault("models-get-500", "GET /v1/models answers 500, with or without a body",
      ("methods.no-server-error", "methods.models-list", "methods.get-quirk-info", "methods.get-quirk"),
      hooks=Hooks(route=_models_500))


def _no_allow(reply: Reply) -> None:
    reply.headers.pop("Allow", None)


fault("no-allow-header", "405 answers carry no `Allow` header", ("methods.allow-header",), hooks=Hooks(reply=_no_allow))


def _models_only(method: str, path: str, route: Destination) -> Destination:
    return Endpoint.MODELS if route is Endpoint.MODELS_OR_CHAT else route


fault("get-models-ignores-body", "GET /v1/models ignores a chat body and lists models (fails only under "
      "--profile documented)", ("methods.get-quirk", "documented.request-example-documented-route"),
      hooks=Hooks(route=_models_only))


# --- usage, response shape, sampling, JSON mode, tools (checks in usage/schema/sampling/json_mode/tools.py)
def _no_usage(body: dict[str, Any]) -> None:
    del body["usage"]


fault("usage-missing", "non-stream responses carry no `usage`", ("usage.present",), hooks=Hooks(completion=_no_usage))


def _negative_prompt(usage: dict[str, int], payload: dict[str, Any], choices: list[Choice]) -> None:
    _keep_sum(usage, "prompt_tokens", -usage["prompt_tokens"])


fault("usage-negative-count", "usage.prompt_tokens is negative (total stays prompt + completion)",
      ("usage.total-is-sum", "schema.chat-completion"), hooks=Hooks(usage=_negative_prompt))


def _five_times(usage: dict[str, int], payload: dict[str, Any], choices: list[Choice]) -> None:
    if payload.get("max_tokens") is not None:
        _keep_sum(usage, "completion_tokens", usage["completion_tokens"] * 5)


fault("completion-tokens-unbounded", "with max_tokens set, usage.completion_tokens is 5x the tokens generated",
      ("usage.completion-bounded", "sampling.max-tokens-length"), hooks=Hooks(usage=_five_times))


def _first_choice_only(usage: dict[str, int], payload: dict[str, Any], choices: list[Choice]) -> None:
    if choices:  # as if n were 1: the other choices are free
        _keep_sum(usage, "completion_tokens", len(choices[0].tokens))


fault("usage-counts-one-choice", "with n > 1, usage.completion_tokens counts the first choice only",
      ("usage.completion-counts-every-choice",), hooks=Hooks(usage=_first_choice_only))


def _prompt_nine(usage: dict[str, int], payload: dict[str, Any], choices: list[Choice]) -> None:
    _keep_sum(usage, "prompt_tokens", 9)


fault("prompt-tokens-constant", "usage.prompt_tokens is 9 whatever the prompt", ("usage.prompt-grows",),
      hooks=Hooks(usage=_prompt_nine))


def _no_role(body: dict[str, Any]) -> None:
    for choice in body["choices"]:
        del choice["message"]["role"]


fault("role-missing", "non-stream messages have no `role`", ("schema.message-role", "schema.chat-completion"),
      hooks=Hooks(completion=_no_role))
fault("json-as-text-plain", "non-stream completions are labelled `Content-Type: text/plain`",
      ("schema.content-type",), hooks=Hooks(reply=_label(ReplyKind.COMPLETION, "text/plain")))


def _as_event_stream(reply: Reply) -> None:
    if reply.kind is ReplyKind.COMPLETION:
        reply.text = f"data: {json.dumps(reply.body)}\n\ndata: [DONE]\n\n"
        reply.headers = {"content-type": "text/event-stream"}


fault("non-stream-as-event-stream", "a non-stream request gets `text/event-stream` with `data: {json}` and "
      "`data: [DONE]` (decolua/9router#3492)", ("schema.content-type", "schema.chat-completion", "sdk.create"),
      hooks=Hooks(reply=_as_event_stream))
fault("n-ignored", "`n` is ignored: always one choice", ("sampling.n-choices",), hooks=Hooks(request=_ignores("n")))


def _index_zero(choice: Choice, streamed: bool) -> None:
    choice.index = 0  # each choice is still generated as itself


fault("every-index-zero", "every choice reports `index: 0`", ("sampling.n-choices",), hooks=Hooks(choice=_index_zero))
fault("stop-ignored", "`stop` is ignored: the text runs through the stop sequence", ("sampling.stop",),
      hooks=Hooks(request=_ignores("stop")))
fault("max-tokens-ignored", "`max_tokens` is ignored: generation is never truncated",
      ("sampling.max-tokens-length", "usage.completion-bounded"), hooks=Hooks(request=_ignores("max_tokens")))
fault("finish-stop-when-truncated", "truncation at max_tokens reports finish_reason `stop` (ik_llama.cpp #2321)",
      ("sampling.max-tokens-length",), hooks=Hooks(choice=_finish("stop", calls=False, truncated=True)))
fault("finish-reason-eos", "a natural end reports finish_reason `eos` (old llama.cpp shims)",
      ("sampling.finish-reason-enum", "sampling.stop"),
      hooks=Hooks(choice=_finish("eos", calls=False, truncated=False)))


def _random_text(draft: Draft) -> None:
    if draft.prose:
        draft.text = generate.sentence_text({**draft.payload, "seed": uuid.uuid4().int % 2**63}, draft.index)


fault("nondeterministic", "text is random even with temperature 0 and a seed, while responses carry "
      "`system_fingerprint` (OpenAI's marker for seeded determinism)", ("sampling.deterministic",),
      hooks=Hooks(text=_random_text, envelope=_fingerprint))


def _prose_for_json_object(draft: Draft) -> None:
    if (draft.payload.get("response_format") or {}).get("type") == "json_object":
        draft.text, draft.prose = generate.sentence_text(draft.payload, draft.index), True


fault("json-mode-ignored", "response_format json_object is ignored: plain text", ("json-mode.object",),
      hooks=Hooks(text=_prose_for_json_object))


def _generic_json(payload: dict[str, Any]) -> None:
    """Valid JSON, but the generic object json_object gets, whatever the schema says."""
    if (payload.get("response_format") or {}).get("type") == "json_schema":
        payload["response_format"] = {"type": "json_object"}


fault("json-schema-ignored", "response_format json_schema gets a JSON object that ignores the schema",
      ("json-mode.schema",), hooks=Hooks(request=_generic_json))


def _parsed_arguments(body: dict[str, Any]) -> None:
    for choice in body["choices"]:
        calls = choice["message"].get("tool_calls")
        if calls:
            choice["message"]["tool_calls"] = [
                {**call, "function": {**call["function"], "arguments": json.loads(call["function"]["arguments"])}}
                for call in calls]


fault("tool-arguments-not-string", "non-stream tool_calls[].function.arguments is an object, not a JSON string",
      ("tools.required-call", "tools.named-call", "sdk.tool-call"), hooks=Hooks(completion=_parsed_arguments))
fault("tool-choice-none-ignored", "tool_choice `none` is treated as `auto`", ("tools.none-no-calls",),
      hooks=Hooks(request=_ignores("tool_choice", when=lambda payload: payload.get("tool_choice") == "none")))
fault("tool-choice-required-ignored", "tool_choice `required` is treated as `auto`", ("tools.required-call",),
      hooks=Hooks(request=_ignores("tool_choice", when=lambda payload: payload.get("tool_choice") == "required")))
fault("named-tool-choice-ignored", "a named tool_choice is treated as `auto`", ("tools.named-call",),
      hooks=Hooks(request=_ignores("tool_choice", when=lambda payload: isinstance(payload.get("tool_choice"), dict))))
fault("tool-calls-finish-stop", "tool calls end with finish_reason `stop` (earendil-works/pi#6226)",
      ("tools.finish-reason",), hooks=Hooks(choice=_finish("stop", calls=True, truncated=False)))
fault("tool-call-cut-finish-tool-calls", "a tool call cut by max_tokens (arguments not JSON) still says "
      "finish_reason `tool_calls`", ("tools.cut-call-finish-length",),
      hooks=Hooks(choice=_finish("tool_calls", calls=True, truncated=True)))
fault("unknown-named-tool-accepted", "a tool_choice naming a function not in `tools` is answered with text",
      ("tools.unknown-named-function",), hooks=Hooks(refusal=_waive(Refusal.UNKNOWN_TOOL)))


# --- load (checks in load.py) -----------------------------------------------------------------------
class _Slot:
    """One generation at a time: each chat request takes the slot, and the stream that held it stops
    mid-way, which the client reads as a cut connection."""

    PACE_S = 0.01  # between pieces, so that a stream is still in progress when the next request comes

    def __init__(self) -> None:
        self._holder: asyncio.Event | None = None

    def hooks(self) -> Hooks:
        return Hooks(chat=self.take)

    def take(self) -> ReplyHook:
        if self._holder is not None:
            self._holder.set()
        cut = self._holder = asyncio.Event()

        def patch(reply: Reply) -> None:
            if reply.stream is not None:
                reply.stream = self._paced(reply.stream, cut)

        return patch

    async def _paced(self, stream: AsyncIterator[bytes], cut: asyncio.Event) -> AsyncIterator[bytes]:
        async for piece in stream:
            await asyncio.sleep(self.PACE_S)
            if cut.is_set():
                raise ConnectionAbortedError("single-slot-cuts-streams: another request took the slot")
            yield piece


fault("single-slot-cuts-streams", "one request at a time: a request that arrives cuts the stream in progress "
      "(streams are paced so that they are in progress)", ("load.concurrent-streams",),
      hooks_per_server=lambda: _Slot().hooks())


# --- the document's own example (checks in documented.py) --------------------------------------------
def _forbid(prop: str) -> SchemaPatch:
    """A property the server refuses whatever its value (a `false` schema), as if it did not know it."""

    def patch(schema: dict[str, Any]) -> None:
        schema["properties"][prop] = False

    return patch


fault("user-rejected", "a request carrying `user` (documented in 1.2) is refused with 400, as by servers that forbid "
      "fields they do not know", ("documented.request-example", "documented.request-example-documented-route"),
      _forbid("user"))


# --- legal variants ---------------------------------------------------------------------------------
def _charset(reply: Reply) -> None:
    if reply.kind is not ReplyKind.STREAM and reply.headers["content-type"] == "application/json":
        reply.headers["content-type"] = "application/json; charset=utf-8"


variant("json-charset", "JSON responses say `application/json; charset=utf-8`", hooks=Hooks(reply=_charset))


def _crlf(plan: SsePlan) -> None:
    plan.newline = "\r\n"


variant("sse-crlf", "SSE lines end with CRLF", hooks=Hooks(sse=_crlf))


def _no_space(plan: SsePlan) -> None:
    plan.data_field = "data:"


variant("sse-no-space", "`data:{json}` with no space after the colon", hooks=Hooks(sse=_no_space))


def _keepalive(plan: SsePlan) -> None:
    plan.comment = ": keep-alive"


variant("sse-keepalive", "`: keep-alive` comment lines between events", hooks=Hooks(sse=_keepalive))


def _retry_field(plan: SsePlan) -> None:
    plan.preamble.append("retry: 3000")


variant("sse-retry-field", "a `retry: 3000` field opens the stream", hooks=Hooks(sse=_retry_field))


def _small_writes(reply: Reply) -> None:
    if reply.stream is not None:
        reply.stream = _in_7_byte_writes(reply.stream)


async def _in_7_byte_writes(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for piece in stream:
        for start in range(0, len(piece), 7):
            yield piece[start:start + 7]
            await asyncio.sleep(0)


variant("sse-small-writes", "the stream is written in 7-byte pieces", hooks=Hooks(reply=_small_writes))


def _latency_field(envelope: dict[str, Any]) -> None:
    envelope["x_provider_latency_ms"] = 3


def _choice_note(body: dict[str, Any]) -> None:
    for choice in body["choices"]:
        choice["x_choice_note"] = "extra"


def _chunk_seq(chunk: dict[str, Any]) -> None:
    chunk["x_chunk_seq"] = 1


variant("extra-fields", "unknown extra fields in responses and chunks",
        hooks=Hooks(envelope=_latency_field, completion=_choice_note, chunks=_each_chunk(_chunk_seq)))
variant("system-fingerprint", "responses and chunks carry `system_fingerprint`", hooks=Hooks(envelope=_fingerprint))


def _null_usage(chunk: dict[str, Any]) -> None:
    chunk.setdefault("usage", None)


variant("usage-null-every-chunk", "every stream chunk carries `usage: null` unless usage was asked for",
        hooks=Hooks(chunks=_each_chunk(_null_usage)))


def _leading_crlf(draft: Draft) -> None:
    if draft.prose:
        draft.text = "\r\n\r\n" + draft.text


variant("leading-crlf-content", "content starts with `\\r\\n\\r\\n`, as in the documented example",
        hooks=Hooks(text=_leading_crlf))
variant("no-auth", "the server ignores the API key and accepts every request",
        hooks=Hooks(refusal=_waive(Refusal.MISSING_KEY, Refusal.WRONG_KEY)))
# Legal by the document, but not OpenAI's own behaviour: certified by default, flagged by the SHOULD checks.
variant("lenient-params", "only the document's limits are enforced: `stop: []` or 5 sequences, `logit_bias: "
        "{\"abc\": 1}`, n 0 or 129, top_p 1.5, max_tokens 0 (honoured: nothing generated) are accepted",
        flags=("params.stop.max-items", "params.logit-bias.keys", "params.logit-bias.values", "params.n.bounds",
               "params.top_p.bounds", "params.max-tokens.bounds"),
        schema_patch=_set("max_tokens", minimum=0), enforces="document")
variant("any-model", "every model name is served, as single-model servers (llama.cpp) do",
        flags=("errors.unknown-model",), hooks=Hooks(refusal=_waive(Refusal.UNKNOWN_MODEL)))


def _message_and_type(body: dict[str, Any], status: int) -> dict[str, Any]:
    if "error" not in body:
        return body
    return {"error": {"message": body["error"]["message"], "type": body["error"]["type"]}}


variant("errors-message-type-only", "error bodies are {\"error\": {\"message\", \"type\"}} without param/code",
        flags=("errors.envelope", "errors.unknown-model", "auth.status-401"), hooks=Hooks(error=_message_and_type))


def _no_model(envelope: dict[str, Any]) -> None:
    del envelope["model"]


variant("no-model-field", "responses and chunks carry no `model` (the document's response table has none)",
        flags=("schema.openai-fields",), hooks=Hooks(envelope=_no_model))
variant("malformed-json-422", "a body that is not JSON gets 422 (no client tells it from 400)",
        flags=("params.malformed-body-400",), hooks=Hooks(refusal=_status(Refusal.NOT_JSON, 400, 422)))


def _documented_route_only(method: str, path: str, route: Destination) -> Destination:
    if path == CHAT_PATH:
        return ApiError(404, f"Unknown route {method} {path}; chat is served on /v1/models.", code="unknown_url")
    if path == MODELS_PATH and method == "POST":
        return Endpoint.CHAT  # the FAQ: "If GET does not work, try using POST."
    return route


variant("documented-route-only", "chat is served only on the documented URL (GET or POST /v1/models); POST "
        "/v1/chat/completions is 404", profiles=("documented",), hooks=Hooks(route=_documented_route_only))
