"""Deterministic text generation and token counting for the reference server.

The same request always gives the same text: the seed depends on everything that shapes the
answer but not on `stop`, `max_tokens` or `stream`, so truncated, stopped and streamed answers are
prefixes of one and the same text.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

VOCABULARY = (  # noqa: SIM905 - one sentence reads better than a list of 45 quoted words
    "hello there friend the quick answer is simple and clear we can help you today with this question "
    "about models tokens streams data events choices usage sampling temperature nucleus penalty bias "
    "function tools format json object reply message content assistant user system kind words short"
).split()

_TOKEN = re.compile(r"\s*\S+|\s+")


def tokenize(text: str) -> list[str]:
    """Tokens are words with their leading whitespace; the tokens concatenate back to the text."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    # 3 tokens of framing per message plus 3 for the reply primer, as OpenAI's cookbook counts.
    return 3 + sum(3 + count_tokens(message_text(m)) for m in messages)


def _rng(request: dict[str, Any], index: int) -> random.Random:
    material = json.dumps(
        {
            "model": request.get("model"),
            "messages": request.get("messages"),
            "temperature": request.get("temperature"),
            "top_p": request.get("top_p"),
            "seed": request.get("seed"),
            "response_format": request.get("response_format"),
            "index": index,
        },
        sort_keys=True,
    )
    return random.Random(hashlib.sha256(material.encode()).digest())


def sentence_text(request: dict[str, Any], index: int) -> str:
    rng = _rng(request, index)
    words = [rng.choice(VOCABULARY) for _ in range(rng.randint(18, 32))]
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


def value_for(schema: Any, rng: random.Random) -> Any:  # noqa: PLR0911 - one return per JSON Schema type
    """A value that satisfies a simple JSON Schema (the shapes tools and json_schema use)."""
    if not isinstance(schema, dict):
        return rng.choice(VOCABULARY)
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: value_for(sub, rng) for name, sub in props.items()}
    if kind == "array":
        return [value_for(schema.get("items", {}), rng)]
    if kind == "integer":
        return rng.randint(1, 9)
    if kind == "number":
        return rng.randint(1, 90) / 10
    if kind == "boolean":
        return True
    return rng.choice(VOCABULARY)


def json_text(request: dict[str, Any], index: int) -> str:
    rng = _rng(request, index)
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        return json.dumps(value_for(schema, rng))
    return json.dumps({"reply": " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(6, 12)))})


def tool_arguments(function: dict[str, Any], request: dict[str, Any], index: int) -> str:
    params = function.get("parameters") or {"type": "object", "properties": {}}
    return json.dumps(value_for(params, _rng(request, index)))


def apply_stop(text: str, stop: Any) -> tuple[str, bool]:
    """Cut `text` before the earliest stop sequence; the result never contains one."""
    sequences = [stop] if isinstance(stop, str) else list(stop or [])
    cut = len(text)
    for sequence in sequences:
        if sequence:
            found = text.find(sequence)
            if found != -1:
                cut = min(cut, found)
    return text[:cut], cut < len(text)
