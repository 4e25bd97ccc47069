"""The correct responses of the reference server: choices, usage, the envelope, the completion and
error bodies, the stream's chunks, the model list.

Only the documented, fault-free behaviour is built here; faults and variants change it through the
hooks (hooks.py) called at each point.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from . import generate
from .hooks import ApiError, Choice, Draft, Patches, Reply, ReplyKind, Stream

JSON_FORMATS = ("json_object", "json_schema")


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


# -- generation ------------------------------------------------------------------------------------
def choices(payload: dict[str, Any], patches: Patches, *, streamed: bool = False) -> list[Choice]:
    made = [_choice(payload, index, patches) for index in range(payload.get("n") or 1)]
    for choice in made:
        patches.choice(choice, streamed)
    return made


def _tool_to_call(payload: dict[str, Any]) -> dict[str, Any] | None:
    tools = payload.get("tools") or []
    choice = payload.get("tool_choice") or "auto"
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        # None only when a fault lets an unknown name through (validation refuses it).
        return next((t["function"] for t in tools if t["function"]["name"] == choice["function"]["name"]), None)
    if choice == "required":
        first: dict[str, Any] = tools[0]["function"]
        return first
    last_user = next((generate.message_text(m) for m in reversed(payload["messages"]) if m.get("role") == "user"), "")
    return next((t["function"] for t in tools if t["function"]["name"] in last_user), None)


def _choice(payload: dict[str, Any], index: int, patches: Patches) -> Choice:
    max_tokens = payload.get("max_tokens")
    function = _tool_to_call(payload)
    if function is not None:
        arguments = generate.tool_arguments(function, payload, index)
        call_id = "call_" + uuid.uuid5(uuid.NAMESPACE_URL, f"{function['name']}{arguments}{index}").hex[:24]
        tokens = [function["name"], *generate.tokenize(arguments)]
        truncated = max_tokens is not None and len(tokens) > max_tokens
        if truncated:
            tokens = tokens[:max_tokens]
            arguments = "".join(tokens[1:])  # cut mid-JSON, as a model's call is cut at max_tokens
        call = {"id": call_id, "type": "function", "function": {"name": function["name"], "arguments": arguments}}
        return Choice(index, tokens, "length" if truncated else "tool_calls", truncated, call)
    text, _ = generate.apply_stop(_text(payload, index, patches), payload.get("stop"))
    tokens = generate.tokenize(text)
    truncated = max_tokens is not None and len(tokens) > max_tokens
    if truncated:
        tokens = tokens[:max_tokens]
    return Choice(index, tokens, "length" if truncated else "stop", truncated)


def _text(payload: dict[str, Any], index: int, patches: Patches) -> str:
    """The text of one choice before it is cut: JSON under response_format, else a sentence."""
    if (payload.get("response_format") or {}).get("type") in JSON_FORMATS:
        draft = Draft(payload, index, generate.json_text(payload, index), prose=False)
    else:
        draft = Draft(payload, index, generate.sentence_text(payload, index), prose=True)
    patches.text(draft)
    return draft.text


def usage(payload: dict[str, Any], choices: list[Choice], patches: Patches) -> dict[str, int]:
    prompt = generate.prompt_tokens(payload["messages"])
    completion = sum(len(c.tokens) for c in choices)
    counted = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    patches.usage(counted, payload, choices)
    return counted


# -- bodies ----------------------------------------------------------------------------------------
def envelope(payload: dict[str, Any], object_name: str, completion_id: str, patches: Patches) -> dict[str, Any]:
    body = {"id": completion_id, "object": object_name, "created": int(time.time()), "model": payload["model"]}
    patches.envelope(body)
    return body


def completion(payload: dict[str, Any], patches: Patches) -> dict[str, Any]:
    made = choices(payload, patches)
    body = envelope(payload, "chat.completion", new_id(), patches)
    body["choices"] = [{"index": c.index, "message": _message(c), "logprobs": None, "finish_reason": c.finish_reason}
                       for c in made]
    body["usage"] = usage(payload, made, patches)
    patches.completion(body)
    return body


def _message(choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.content, "refusal": None}
    if choice.tool_call is not None:
        message["tool_calls"] = [choice.tool_call]
    return message


def stream_chunks(payload: dict[str, Any], patches: Patches) -> list[dict[str, Any]]:
    """Per choice a delta with the role, one per token (or piece of the tool call) and one with the
    finish reason; then the usage chunk, when include_usage asks for it."""
    made = choices(payload, patches, streamed=True)
    completion_id = new_id()
    usage_requested = bool((payload.get("stream_options") or {}).get("include_usage"))

    def chunk(entries: list[dict[str, Any]]) -> dict[str, Any]:
        body = envelope(payload, "chat.completion.chunk", completion_id, patches)
        body["choices"] = entries
        if usage_requested:
            body["usage"] = None  # until the usage chunk
        return body

    def usage_of(counted: list[Choice]) -> dict[str, int]:
        return usage(payload, counted, patches)

    out = [chunk([entry]) for choice in made for entry in _stream_entries(choice)]
    if usage_requested:
        last = chunk([])
        last["usage"] = usage_of(made)
        out.append(last)
    patches.chunks(out, Stream(payload, made, usage_requested, chunk, usage_of))
    return out


def _stream_entries(choice: Choice) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]]
    if choice.tool_call is not None:
        first, *rest = _tool_call_items(choice.tool_call)
        deltas = [{"role": "assistant", "content": None, "tool_calls": [first]}, *({"tool_calls": [i]} for i in rest)]
    else:
        deltas = [{"role": "assistant", "content": ""}, *({"content": token} for token in choice.tokens)]
    entries: list[dict[str, Any]] = [{"index": choice.index, "delta": delta, "logprobs": None, "finish_reason": None}
                                     for delta in deltas]
    entries.append({"index": choice.index, "delta": {}, "logprobs": None, "finish_reason": choice.finish_reason})
    return entries


def _tool_call_items(call: dict[str, Any]) -> list[dict[str, Any]]:
    """The first item names the call; the others carry the arguments in three pieces."""
    args = call["function"]["arguments"]
    step = max(1, len(args) // 3 + 1)
    first = {"index": 0, "id": call["id"], "type": "function",
             "function": {"name": call["function"]["name"], "arguments": ""}}
    return [first] + [{"index": 0, "function": {"arguments": args[start:start + step]}}
                      for start in range(0, len(args), step)]


def model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "conformance"}


def model_list(models: tuple[str, ...]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in models]}


# -- HTTP ------------------------------------------------------------------------------------------
def json_reply(kind: ReplyKind, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(kind, status, {"content-type": "application/json", **(headers or {})}, body)


def error_reply(error: ApiError, patches: Patches) -> Reply:
    body = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    return json_reply(ReplyKind.ERROR, patches.error(body, error.status), error.status, error.headers)


def method_not_allowed(method: str, path: str, use: str, allow: str) -> ApiError:
    return ApiError(405, f"Method {method} is not allowed on {path}; use {use}.", code="method_not_supported",
                    headers={"Allow": allow})
