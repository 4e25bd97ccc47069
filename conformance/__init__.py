"""A conformance suite for OpenAI-compatible Chat Completions APIs.

The library comes first: `run()` (or `RunSession`, step by step) certifies a target and returns typed
results, and `load_results()` reads a results.json back as typed records; the CLI, the pytest plugin
and the report writers are thin consumers of them. Names are imported lazily so that the pytest
plugin entry point stays import-light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run": "._engine",
    "RunConfig": "._engine",
    "RunResult": "._engine",
    "RunSession": "._engine",
    "RunEvent": "._model",
    "RunStarted": "._model",
    "ChatRouteFound": "._model",
    "CheckFinished": "._model",
    "CheckNotExecuted": "._model",
    "RunFinished": "._model",
    "RunVerdict": "._model",
    "Limits": ".http",
    "Target": ".http",
    "CheckResult": "._model",
    "CheckSpec": "._model",
    "Clause": "._model",
    "Depth": "._model",
    "Failure": "._model",
    "Feature": "._model",
    "Level": "._model",
    "Profile": "._model",
    "Verdict": "._model",
    "Results": ".report",
    "load_results": ".report",
}

__all__ = [
    "ChatRouteFound", "CheckFinished", "CheckNotExecuted", "CheckResult", "CheckSpec", "Clause", "Depth", "Failure",
    "Feature", "Level", "Limits", "Profile", "Results", "RunConfig", "RunEvent", "RunFinished", "RunResult",
    "RunSession", "RunStarted", "RunVerdict", "Target", "Verdict", "__version__", "load_results", "run",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'conformance' has no attribute {name!r}")
