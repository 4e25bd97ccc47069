"""The correct responses of the reference server.

Only the documented, fault-free behaviour is built here; faults and variants change it through the
hooks (hooks.py) this code calls at each point.
"""

from __future__ import annotations

from typing import Any

from .hooks import ApiError, Patches, Reply, ReplyKind


def json_reply(kind: ReplyKind, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(kind, status, {"content-type": "application/json", **(headers or {})}, body)


def error_reply(error: ApiError, patches: Patches) -> Reply:
    body = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    return json_reply(ReplyKind.ERROR, patches.error(body, error.status), error.status, error.headers)


def method_not_allowed(method: str, path: str, use: str, allow: str) -> ApiError:
    return ApiError(405, f"Method {method} is not allowed on {path}; use {use}.", code="method_not_supported",
                    headers={"Allow": allow})


def model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "conformance"}


def model_list(models: tuple[str, ...]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in models]}
