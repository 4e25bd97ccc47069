"""Sending a check's independent requests at once, and reading them back as if sent one by one.

A probe that chains requests which do not depend on each other's answers holds the run's critical
path: against a target that takes 1 s per answer, eight probes in a row take 8 s however many
slots are free. A `Batch` sends them all at once (Recorder.submit, or ctx.shared_submit for a
shared exchange), within the run's concurrency and at the check's priority; `Batch.results` waits
for every one of them, then gives the exchanges in the order they were added and lays the check's
transcript out in that order, so the report, the failures' exchange indexes and the verdicts are
those of the same requests sent one by one.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .._context import CheckContext
from ..http import Exchange


def submit_chat(ctx: CheckContext, body: Any = None, *, raw: str | None = None, **kwargs: Any) -> Future[Exchange]:
    """`ctx.chat` / `ctx.chat_raw` without waiting: a JSON `body` (the minimal request by default), or `raw`."""
    if raw is not None:
        return ctx.submit_on_chat_route(lambda method, path: ctx.http.submit(method, path, content=raw, **kwargs))
    json_body = body if body is not None else ctx.chat_request()
    return ctx.submit_on_chat_route(lambda method, path: ctx.http.submit(method, path, json_body=json_body, **kwargs))


class Batch:
    """Independent requests of one check, sent at once, read back in the order they were added."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self._since = len(ctx.http.exchanges)  # what the transcript held before the batch
        self._items: list[Future[Exchange] | Callable[[], Exchange]] = []

    def add(self, future: Future[Exchange]) -> None:
        self._items.append(future)

    def fetch(self, fetch: Callable[[], Exchange]) -> None:
        """An exchange got by waiting (`ctx.shared_completion`, which jumps the queue): `results` fetches
        it while the rest is on its way, and keeps it in its place."""
        self._items.append(fetch)

    def chat(self, body: Any = None, *, raw: str | None = None) -> None:
        """A chat request on the run's chat route (see `submit_chat`)."""
        self.add(submit_chat(self.ctx, body, raw=raw))

    def shared(self, key: str, send: Callable[[CheckContext], Future[Exchange]]) -> None:
        """The exchange shared under `key`: sent by `send` unless another check sent it already."""
        self.add(self.ctx.shared_submit(key, send))

    def results(self) -> list[Exchange]:
        """The exchanges in the order they were added, once every request has finished.

        Raises the first failure in that order (BudgetExhausted, TargetDown, RateLimited), after all
        have finished: a check must not end while its transcripts are being written. The transcript
        gets what it held before, then these exchanges (those another check sent included, each
        once) in this order: what the same requests sent one by one would have left.
        """
        futures = [item if isinstance(item, Future) else _waited(item) for item in self._items]
        concurrent.futures.wait(futures)
        exchanges = [future.result() for future in futures]
        transcript = self.ctx.http.exchanges
        before = transcript[:self._since]
        added = [e for e in _unique(exchanges) if not _among(e, before)]
        rest = [e for e in transcript[self._since:] if not _among(e, added)]
        transcript[self._since:] = added + rest
        return exchanges


def _waited(fetch: Callable[[], Exchange]) -> Future[Exchange]:
    future: Future[Exchange] = Future()
    try:
        future.set_result(fetch())
    except Exception as exc:  # noqa: BLE001 - raised by `results` once the submitted requests have finished
        future.set_exception(exc)
    return future


def _among(exchange: Exchange, exchanges: list[Exchange]) -> bool:
    return any(exchange is e for e in exchanges)


def _unique(exchanges: list[Exchange]) -> list[Exchange]:
    seen: list[Exchange] = []
    for exchange in exchanges:
        if not _among(exchange, seen):
            seen.append(exchange)
    return seen
