"""The hand-written OpenAPI 3.1 spec, shipped inside the package."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Literal

SPEC_PATH = Path(__file__).with_name("chat-completions.openapi.yaml")


@functools.lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    import yaml

    with SPEC_PATH.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


# "document": only what documented-api.txt states (MUST checks); "openai": OpenAI's spec too (SHOULD).
View = Literal["document", "openai"]


@functools.lru_cache(maxsize=2)
def _view(view: View) -> dict[str, Any]:
    return _load() if view == "openai" else document_view(_load())


def document_view(node: Any) -> Any:
    """`node` without what its `x-basis: {source: openai}` markers name (keywords, required names)."""
    if isinstance(node, list):
        return [document_view(item) for item in node]
    if not isinstance(node, dict):
        return node
    basis = node.get("x-basis")
    beyond = basis if isinstance(basis, dict) and basis.get("source") == "openai" else {}
    dropped, not_required = set(beyond.get("keywords", ())), set(beyond.get("required", ()))
    out = {key: document_view(value) for key, value in node.items() if key not in dropped}
    if not_required and isinstance(out.get("required"), list):
        out["required"] = [name for name in out["required"] if name not in not_required]
    return out


# Request fields whose structure the suite keeps from OpenAI's spec even in the document's view: the
# document only names them ("object", "array"), and the fuzzer and the reference server read inside.
STRUCTURED_REQUEST_FIELDS = ("tools", "tool_choice", "response_format", "stream_options", "seed")


def with_openai_structures(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` (the document's view) with OpenAI's request structures and message schema put back."""
    strict = load_spec("openai")["components"]["schemas"]
    schemas = spec["components"]["schemas"]
    for name in STRUCTURED_REQUEST_FIELDS:
        schemas["CreateChatCompletionRequest"]["properties"][name] = strict["CreateChatCompletionRequest"][
            "properties"][name]
    schemas["Message"] = strict["Message"]
    return spec


def load_spec(view: View = "openai") -> dict[str, Any]:
    """A fresh copy of the spec as a dict (callers may mutate it); `document` drops OpenAI's extras."""
    return copy.deepcopy(_view(view))


@functools.lru_cache(maxsize=32)
def schema_validator(name: str, view: View = "document") -> Any:
    """A Draft 2020-12 validator of `components/schemas/<name>`, with the spec's refs resolvable.

    The default view is the document's: what a MUST check may demand.
    """
    import jsonschema

    root = {**_view(view), "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(root)
