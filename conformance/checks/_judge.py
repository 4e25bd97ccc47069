"""Shared judgements used by several checks: schema validation, the error envelope, usage."""

from __future__ import annotations

from typing import Any

from .._context import CheckContext, excerpt
from .._http import Exchange
from ..spec import schema_validator


def schema_errors(name: str, instance: Any, limit: int = 5) -> list[str]:
    """Human-readable violations of `components/schemas/<name>`, each with its JSON path."""
    validator = schema_validator(name)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{e.json_path}: {excerpt(e.message, 200)}" for e in errors[:limit]]


def envelope_problems(exchange: Exchange) -> list[str]:
    """Why the body is not the OpenAI error envelope {"error": {message, type, param, code}}."""
    body = exchange.json()
    if not isinstance(body, dict):
        return [f"body is not a JSON object: {excerpt(exchange.text, 200)}"]
    return schema_errors("ErrorResponse", body)


def usage_problems(usage: Any) -> list[str]:
    """Integers >= 0 and total_tokens == prompt_tokens + completion_tokens."""
    if not isinstance(usage, dict):
        return [f"usage is {type(usage).__name__}, not an object"]
    problems = []
    fields = ("prompt_tokens", "completion_tokens", "total_tokens")
    for name in fields:
        value = usage.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"{name} = {value!r} is not an integer >= 0")
    if not problems and usage["total_tokens"] != usage["prompt_tokens"] + usage["completion_tokens"]:
        problems.append(
            f"total_tokens {usage['total_tokens']} != prompt_tokens {usage['prompt_tokens']} + "
            f"completion_tokens {usage['completion_tokens']}"
        )
    return problems


def completion_or_stop(ctx: CheckContext, exchange: Exchange) -> dict[str, Any]:
    return ctx.ok_json(exchange, "a 200 chat.completion")
