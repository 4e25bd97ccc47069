"""What a check sees: the target, a recording HTTP client, the run's depth and profile."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ._model import Depth, Failure, Feature, Profile
from .errors import CheckFailed, CheckInconclusive, CheckNotApplicable, CheckSkipped, CheckUnsupported
from .http import Exchange, Recorder, Session, fail_on_limit

CHAT_PATH = "/chat/completions"
MODELS_PATH = "/models"
# OpenAI's chat route: the route probe tries it first, and requests sent before the route is known use it.
OPENAI_ROUTE = ("POST", CHAT_PATH)
# Small enough to be cheap on paid targets, large enough for most properties.
SMALL_MAX_TOKENS = 16
# The shared exchange of the run's basic completion (the chat route's probe, when it served chat).
BASIC_COMPLETION = "basic-completion"


class SharedExchanges:
    """Responses that several checks judge, fetched once per run (saves requests on paid targets).

    Each key holds the future of its one request: `get` sends in the caller's thread, `submit`
    without waiting (Recorder.submit); whoever asks for the key meanwhile waits for that request.
    A fetch that raised is not kept: the next caller tries for itself.
    """

    def __init__(self) -> None:
        self._futures: dict[str, Future[Exchange]] = {}
        self._guard = threading.Lock()

    def get(self, key: str, fetch: Callable[[], Exchange]) -> Exchange:
        while True:
            with self._guard:
                future = self._futures.get(key)
                if future is None or _raised(future):
                    future = self._futures[key] = Future()
                    mine = True
                else:
                    mine = False
            if not mine:
                try:
                    return future.result()
                except Exception:  # noqa: BLE001 - raised where it was sent: this caller tries for itself
                    continue
            try:
                exchange = fetch()
            except BaseException as exc:
                future.set_exception(exc)
                raise
            future.set_result(exchange)
            return exchange

    def submit(self, key: str, send: Callable[[], Future[Exchange]]) -> Future[Exchange]:
        """The key's future: `send()` (which must not block) unless it was sent or is being sent."""
        with self._guard:
            future = self._futures.get(key)
            if future is None or _raised(future):
                future = self._futures[key] = send()
            return future


class PendingRoute:
    """The chat route while the run finds it (it is found while the first checks start).

    Until it is known, up to `early` chat requests go out at once on OpenAI's route, which the probe
    tries first and nearly every server has, instead of waiting a round trip for the probe. One is
    kept when the probe confirms that route; otherwise it leaves the check's transcript (it stays in
    the run's cost) and is sent again on the route found. A check therefore only ever judges answers
    from the route found. On a slow target this saves the probe's round trip; on one without OpenAI's
    route it costs at most `early` requests, recorded in results.json (`chat_route.early`).
    """

    def __init__(self, found: Future[Any], early: int) -> None:
        self.found = found
        self._early = max(0, early)
        self.sent = 0
        self.resent = 0
        self._guard = threading.Lock()

    def take_early(self) -> bool:
        """Whether a chat request may go out now on OpenAI's route (False: the route is known, or the
        early requests are used up; wait for the route)."""
        with self._guard:
            if self.found.done() or self.sent >= self._early:
                return False
            self.sent += 1
            return True

    def confirmed(self) -> bool:
        """Waits for the route: whether an early request went where it should have."""
        route = self.found.result()
        return (route["method"], route["path"]) == OPENAI_ROUTE

    def record_resent(self) -> None:
        with self._guard:
            self.resent += 1

    def summary(self) -> dict[str, int]:
        with self._guard:
            return {"sent": self.sent, "resent": self.resent}


def _raised(future: Future[Exchange]) -> bool:
    return future.done() and future.exception() is not None


def _copy(done: Future[Exchange], into: Future[Exchange]) -> None:
    exc = done.exception()
    if exc is not None:
        into.set_exception(exc)
    else:
        into.set_result(done.result())


def basic_chat_request(model: str) -> dict[str, Any]:
    """The run's basic chat request: the body of the shared basic completion and of the route's probe."""
    return {"model": model, "messages": [{"role": "user", "content": "Say hello in five words."}],
            "max_tokens": SMALL_MAX_TOKENS}


class CheckContext:
    def __init__(
        self,
        session: Session,
        shared: SharedExchanges,
        *,
        depth: Depth,
        profile: Profile,
        route: PendingRoute | None = None,
    ) -> None:
        self.session = session
        self.http = Recorder(session)
        self._shared = shared
        # Where chat is served, while the run finds it (None: known from the start).
        self._route = route
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
        body = basic_chat_request(self.model)
        for key, value in overrides.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = copy.deepcopy(value)
        return body

    @property
    def chat_route(self) -> tuple[str, str]:
        """(method, path) where the target serves chat: found at the start of the run, or --chat-path.

        Waits until the route is known: a check that never sends chat never waits."""
        if self._route is not None:
            self._route.found.result()
        target = self.session.target
        return target.chat_method, target.chat_path

    @property
    def on_openai_route(self) -> bool:
        return self.chat_route == ("POST", CHAT_PATH)

    def chat(self, body: dict[str, Any] | None = None, *, method: str | None = None, path: str | None = None,
             **kwargs: Any) -> Exchange:
        """Send a chat request on the run's chat route; the transcript is kept for the report."""
        json_body = body if body is not None else self.chat_request()
        if method is not None or path is not None:
            route_method, route_path = self.chat_route
            return self.http.request(method or route_method, path or route_path, json_body=json_body, **kwargs)
        return self.on_chat_route(lambda m, p: self.http.request(m, p, json_body=json_body, **kwargs))

    def chat_raw(self, content: str | bytes, **kwargs: Any) -> Exchange:
        """Send a raw body (not JSON, or JSON of the wrong type) on the run's chat route."""
        return self.on_chat_route(lambda m, p: self.http.request(m, p, content=content, **kwargs))

    def on_chat_route(self, send: Callable[[str, str], Exchange]) -> Exchange:
        """`send(method, path)` on the chat route: early on OpenAI's route while the route is being found
        (`PendingRoute`), sent again on the route found when that is another."""
        pending = self._route
        if pending is None or not pending.take_early():
            return send(*self.chat_route)
        exchange = send(*OPENAI_ROUTE)
        if pending.confirmed():
            return exchange
        self.http.forget(exchange)
        pending.record_resent()
        return send(*self.chat_route)

    def submit_on_chat_route(self, submit: Callable[[str, str], Future[Exchange]]) -> Future[Exchange]:
        """`on_chat_route` without waiting: `submit(method, path)` sends (Recorder.submit)."""
        pending = self._route
        if pending is None or not pending.take_early():
            return submit(*self.chat_route)
        early = submit(*OPENAI_ROUTE)
        outcome: Future[Exchange] = Future()

        def settle(_: Future[Any]) -> None:  # the route is known: keep the early answer, or send again
            try:
                if early.exception() is not None or pending.confirmed():
                    _copy(early, outcome)
                    return
                self.http.forget(early.result())
                pending.record_resent()
                again = submit(*self.chat_route)
            except BaseException as exc:  # noqa: BLE001 - a callback: the check's future says what went wrong
                outcome.set_exception(exc)
                return
            again.add_done_callback(lambda sent: _copy(sent, outcome))

        early.add_done_callback(lambda _: pending.found.add_done_callback(settle))
        return outcome

    def shared(self, key: str, fetch: Callable[[CheckContext], Exchange]) -> Exchange:
        """An exchange fetched once per run under `key`; it still appears in this check's transcript."""
        exchange = self._shared.get(key, lambda: fetch(self))
        if exchange not in self.http.exchanges:
            self.http.exchanges.append(exchange)
        return exchange

    def shared_submit(self, key: str, send: Callable[[CheckContext], Future[Exchange]]) -> Future[Exchange]:
        """Like `shared` without waiting: `send` submits the request (`self.http.submit`) unless another
        check sent it already; `checks._parallel.Batch` adds it to this check's transcript."""
        return self._shared.submit(key, lambda: send(self))

    def shared_completion(self) -> Exchange:
        """The run's basic non-stream completion, judged by several checks."""
        return self.shared(BASIC_COMPLETION, lambda ctx: ctx.chat())

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

    def not_applicable(self, reason: str) -> CheckNotApplicable:
        """The check's premise does not hold for this target: `raise ctx.not_applicable(...)`."""
        return CheckNotApplicable(reason)

    def inconclusive(self, reason: str) -> CheckInconclusive:
        """The model's output allowed no judgement (never the server's fault, never a pass)."""
        return CheckInconclusive(reason)

    def declined(self, exchange: Exchange, feature: Feature | None, *names: str) -> CheckUnsupported | None:
        """A 4xx whose body names one of `names`: the target declared `feature` (an optional feature as a
        whole) or, with None, this one request (a limit, e.g. n=2 streams) unsupported.

        Anything else (a 5xx, a 2xx that ignores the request, a 4xx that names nothing) is no
        declaration; the caller judges it as a failure.
        """
        status = exchange.status or 0
        text = exchange.text.lower()
        if 400 <= status < 500 and any(name.lower() in text for name in names):
            what = f"{feature.value}" if feature else "this request"
            return CheckUnsupported(f"the target declared {what} unsupported: HTTP {status}: "
                                    f"{_excerpt(exchange.text, 200)}", feature)
        return None


def _excerpt(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


excerpt = _excerpt
