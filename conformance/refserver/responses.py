"""The correct responses of the reference server: choices, usage, the envelope, the completion and
error bodies, the model list.

Only the documented, fault-free behaviour is built here; faults and variants change it through the
hooks (hooks.py) called at each point.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from . import generate
from .hooks import ApiError, Choice, Draft, Patches, Reply, ReplyKind

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
