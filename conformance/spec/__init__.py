"""The hand-written OpenAPI 3.1 spec, shipped inside the package."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).with_name("chat-completions.openapi.yaml")


@functools.lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    import yaml

    with SPEC_PATH.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


def load_spec() -> dict[str, Any]:
    """A fresh copy of the spec as a dict (callers may mutate it)."""
    return copy.deepcopy(_load())


def schema_validator(name: str) -> Any:
    """A Draft 2020-12 validator of `components/schemas/<name>`, with the spec's refs resolvable."""
    import jsonschema

    root = {**_load(), "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(root)
