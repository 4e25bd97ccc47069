"""The one request before a run, bounded like any request of a run but outside its budget."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .budget import Limits
from .exchange import Exchange
from .recorder import Recorder
from .session import Session, Target


def preflight(base_url: str, api_key: str | None, limits: Limits, *, method: str = "GET", path: str = "/models",
              json_body: Any = None) -> Exchange:
    """One request before a run (GET /models by default), bounded like any request of a run but
    outside its budget; `conformance._start` judges the answer.

    Raises RateLimited when the target only answers 429/503.
    """
    session = Session(Target(base_url, "", api_key), replace(limits, max_requests=None, max_tokens=None, retries=1),
                      concurrency=1)
    try:
        return Recorder(session).request(method, path, json_body=json_body)
    finally:
        session.close()
