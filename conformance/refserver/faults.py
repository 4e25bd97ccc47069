"""Seeded faults and legal variants of the reference server.

A fault is one named protocol defect, switched on by name at start (`conformance serve --fault
NAME`); the server's real code paths test for it with `config.has(NAME)`. Each fault names the
check IDs that must catch it, which the selftest verifies. A variant is behaviour the documents
allow; every check must accept it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SchemaPatch = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    description: str
    killed_by: tuple[str, ...]
    # Faults in request validation loosen or tighten the request schema the server enforces.
    schema_patch: SchemaPatch | None = None


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    description: str


def _set(prop: str, **changes: Any) -> SchemaPatch:
    def patch(schema: dict[str, Any]) -> None:
        schema["properties"][prop].update(changes)

    return patch


FAULTS: dict[str, Fault] = {}
VARIANTS: dict[str, Variant] = {}


def fault(name: str, description: str, killed_by: tuple[str, ...], schema_patch: SchemaPatch | None = None) -> None:
    if name in FAULTS:
        raise ValueError(f"fault {name!r} declared twice")
    FAULTS[name] = Fault(name, description, killed_by, schema_patch)


def variant(name: str, description: str) -> None:
    if name in VARIANTS:
        raise ValueError(f"variant {name!r} declared twice")
    VARIANTS[name] = Variant(name, description)


# --- usage ------------------------------------------------------------------------------------------
fault("usage-total-off-by-one", "usage.total_tokens is prompt + completion + 1", ("usage.total-is-sum",))

# --- response shape ---------------------------------------------------------------------------------
fault("created-as-string", "`created` is a string, not an integer", ("schema.chat-completion",))
fault("object-misspelled", "`object` is `chat.completions`", ("schema.chat-completion",))

# --- streaming --------------------------------------------------------------------------------------
fault("stream-no-done", "the stream ends without `data: [DONE]`", ("stream.done-terminator",))

# --- parameter bounds -------------------------------------------------------------------------------
fault("accept-temperature-2.5", "temperature up to 2.5 is accepted", ("params.temperature.bounds",),
      _set("temperature", maximum=2.5))
fault("reject-temperature-2", "temperature 2.0 (a legal edge) is rejected", ("params.temperature.bounds",),
      _set("temperature", exclusiveMaximum=2))

# --- legal variants ---------------------------------------------------------------------------------
variant("json-charset", "JSON responses say `application/json; charset=utf-8`")
variant("sse-crlf", "SSE lines end with CRLF")
variant("sse-no-space", "`data:{json}` with no space after the colon")
variant("sse-keepalive", "`: keep-alive` comment lines between events")
variant("sse-retry-field", "a `retry: 3000` field opens the stream")
variant("sse-small-writes", "the stream is written in 7-byte pieces")
variant("extra-fields", "unknown extra fields in responses and chunks")
variant("system-fingerprint", "responses and chunks carry `system_fingerprint`")
variant("usage-null-every-chunk", "every stream chunk carries `usage: null` unless usage was asked for")
variant("leading-crlf-content", "content starts with `\\r\\n\\r\\n`, as in the documented example")
variant("no-auth", "the server ignores the API key and accepts every request")
