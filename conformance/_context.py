"""What a check sees: the target, a recording HTTP client, the run's depth and profile."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from ._http import Exchange, Recorder, Session, fail_on_limit
from ._model import Depth, Failure, Profile
from .errors import CheckFailed, CheckSkipped

CHAT_PATH = "/chat/completions"
MODELS_PATH = "/models"
# Small enough to be cheap on paid targets, large enough for most properties.
SMALL_MAX_TOKENS = 16


class SharedExchanges:
    """Responses that several checks judge, fetched once per run (saves requests on paid targets)."""

    def __init__(self) -> None:
        self._values: dict[str, Exchange] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, fetch: Callable[[], Exchange]) -> Exchange:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = fetch()
            return self._values[key]


class CheckContext:
    def __init__(
        self,
        session: Session,
        shared: SharedExchanges,
        *,
        depth: Depth,
        profile: Profile,
    ) -> None:
        self.session = session
        self.http = Recorder(session)
        self._shared = shared
        self.depth = depth
        self.profile = profile
        self.failures: list[Failure] = []
        self.details: dict[str, Any] = {}

    # -- target ---------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.session.target.model

    @property
    def has_api_key(self) -> bool:
        return bool(self.session.target.api_key)

    @property
    def full(self) -> bool:
        return self.depth is Depth.FULL

    def chat_request(self, **overrides: Any) -> dict[str, Any]:
        """A minimal valid chat request with `overrides` applied (None removes a key)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Say hello in five words."}],
            "max_tokens": SMALL_MAX_TOKENS,
        }
        for key, value in overrides.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = copy.deepcopy(value)
        return body

    def chat(self, body: dict[str, Any] | None = None, *, method: str = "POST", path: str = CHAT_PATH,
             **kwargs: Any) -> Exchange:
        """Send a chat request; the transcript is kept for the report."""
        return self.http.request(method, path, json_body=body if body is not None else self.chat_request(),
                                 **kwargs)

    def shared(self, key: str, fetch: Callable[[CheckContext], Exchange]) -> Exchange:
        """An exchange fetched once per run under `key`; it still appears in this check's transcript."""
        exchange = self._shared.get(key, lambda: fetch(self))
        if exchange not in self.http.exchanges:
            self.http.exchanges.append(exchange)
        return exchange

    def shared_completion(self) -> Exchange:
        """The run's basic non-stream completion, judged by several checks."""
        return self.shared("basic-completion", lambda ctx: ctx.chat())

    # -- verdicts -------------------------------------------------------------------------------
    def where(self, exchange: Exchange, pointer: str = "") -> str:
        return f"{exchange.method} {exchange.url}" + (f" → {pointer}" if pointer else "")

    def index_of(self, exchange: Exchange) -> int | None:
        try:
            return self.http.exchanges.index(exchange)
        except ValueError:
            return None

    def fail(self, expected: str, received: str, where: str, *, exchange: Exchange | None = None,
             byte_range: tuple[int, int] | None = None) -> None:
        """Record a failure and go on, so one run reports every violation of the check."""
        index = self.index_of(exchange) if exchange is not None else None
        self.failures.append(Failure(expected, received, where, index, byte_range))

    def expect(self, condition: bool, expected: str, received: str, where: str, *,
               exchange: Exchange | None = None) -> bool:
        if not condition:
            self.fail(expected, received, where, exchange=exchange)
        return condition

    def stop(self, expected: str, received: str, where: str, *, exchange: Exchange | None = None) -> CheckFailed:
        """A failure after which the check cannot go on: `raise ctx.stop(...)`."""
        self.fail(expected, received, where, exchange=exchange)
        return CheckFailed(*self.failures)

    def ok_json(self, exchange: Exchange, what: str = "a 2xx JSON response") -> dict[str, Any]:
        """The JSON object body of a successful response, or a failure that ends the check."""
        exchange.require_response()
        fail_on_limit(self.http, exchange)
        if exchange.status is None or not 200 <= exchange.status < 300:
            raise self.stop(what, f"HTTP {exchange.status}: {_excerpt(exchange.text)}", self.where(exchange),
                            exchange=exchange)
        payload = exchange.json()
        if not isinstance(payload, dict):
            raise self.stop(what, f"body is not a JSON object: {_excerpt(exchange.text)}", self.where(exchange),
                            exchange=exchange)
        return payload

    def skip(self, reason: str) -> CheckSkipped:
        return CheckSkipped(reason)


def _excerpt(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


excerpt = _excerpt
