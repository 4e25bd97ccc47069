"""Shared judgements used by several checks: schema validation, the error envelope, usage."""

from __future__ import annotations

import re
from typing import Any

from .._context import CheckContext, excerpt
from ..http import Exchange
from ..spec import View, schema_validator


def schema_errors(name: str, instance: Any, limit: int = 5, *, view: View = "document") -> list[str]:
    """Human-readable violations of `components/schemas/<name>`, each with its JSON path.

    The document's view by default (what a MUST check may demand); `view="openai"` adds OpenAI's extras.
    """
    validator = schema_validator(name, view)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{e.json_path}: {excerpt(e.message, 200)}" for e in errors[:limit]]


def envelope_problems(exchange: Exchange, *, view: View = "document") -> list[str]:
    """Why the body is not the error envelope: {"error": {"message": ...}} in the document's view (what
    openai-python reads), {"error": {message, type, param, code}} in OpenAI's."""
    body = exchange.json()
    if not isinstance(body, dict):
        return [f"body is not a JSON object: {excerpt(exchange.text, 200)}"]
    return schema_errors("ErrorResponse", body, view=view)


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


# --- choices, messages, media types (usage, sampling, json-mode and tools checks) -----------------
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")


def choices_or_stop(ctx: CheckContext, exchange: Exchange, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The body's choices, each an object, or a failure that ends the check."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise ctx.stop("`choices`: an array of choice objects", f"{excerpt(repr(choices), 200)}",
                       ctx.where(exchange, "choices"), exchange=exchange)
    return choices


def first_message(ctx: CheckContext, exchange: Exchange, body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(choices[0].message, choices[0].finish_reason), or a failure that ends the check."""
    choices = choices_or_stop(ctx, exchange, body)
    if not choices or not isinstance(choices[0].get("message"), dict):
        raise ctx.stop("choices[0].message: an object", excerpt(repr(choices[:1]), 200),
                       ctx.where(exchange, "choices[0]"), exchange=exchange)
    return choices[0]["message"], choices[0].get("finish_reason")


def media_type(exchange: Exchange) -> str:
    """The Content-Type without parameters, lower-cased: `application/json; charset=utf-8` → `application/json`."""
    return exchange.content_type.split(";", 1)[0].strip().lower()


def completion_tokens(body: dict[str, Any]) -> int | None:
    """usage.completion_tokens when it is an integer, else None (judged by usage.total-is-sum)."""
    usage = body.get("usage")
    value = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def content_text(message: dict[str, Any]) -> str:
    """message.content when it is a string, else "" (null content is legal, e.g. beside tool_calls)."""
    content = message.get("content")
    return content if isinstance(content, str) else ""


_WORD = re.compile(r"[A-Za-z]{3,}")


def stop_word(text: str, *, min_words: int) -> str | None:
    """A word from the middle of an unconstrained reply: as a stop sequence it cuts the reply there.

    Taken from the target's own reply so the stop property bites on any model; None when the reply
    has fewer than `min_words` words.
    """
    words = _WORD.findall(text)
    return words[len(words) // 2] if len(words) >= min_words else None
