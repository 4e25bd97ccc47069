"""The network under every request: a deadline enforced inside each socket operation, and a way to cut
every connection at once.

httpx has no total timeout, so a server dripping one byte at a time would outlive any read timeout; the
deadline-aware network backend bounds the status line, the headers and the body by one deadline.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx


class Deadline(threading.local):
    """The deadline of the request this thread is sending (httpx's sync client reads in the caller)."""

    at: float | None = None
    hit: bool = False
    received: int = 0


_DEADLINE = Deadline()


@contextmanager
def request_deadline(at: float) -> Iterator[Deadline]:
    """Every socket operation of this thread inside the block ends by `at` (time.monotonic)."""
    state = _DEADLINE
    state.at, state.hit, state.received = at, False, 0
    try:
        yield state
    finally:
        state.at = None


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    """`timeout` shortened to what is left of the request deadline."""
    at = _DEADLINE.at
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        _DEADLINE.hit = True
        raise expired("request deadline reached")
    return left if timeout is None or left < timeout else timeout


def _note_timeout() -> None:
    at = _DEADLINE.at
    if at is not None and time.monotonic() >= at - 0.05:
        _DEADLINE.hit = True


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            data = self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))
        except httpcore.TimeoutException:
            _note_timeout()
            raise
        _DEADLINE.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))
        except httpcore.TimeoutException:
            _note_timeout()
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """Wraps every connection in a `_DeadlineStream`, and can cut them all when the target is down."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner
        self._streams: weakref.WeakSet[_DeadlineStream] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._cut = False

    def _track(self, inner: httpcore.NetworkStream) -> httpcore.NetworkStream:
        stream = _DeadlineStream(inner)
        with self._lock:
            self._streams.add(stream)
            cut = self._cut
        if cut:  # connected after the cut (it passed the breaker just before): it must not hang either
            _shut_down(stream)
        return stream

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        return self._track(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        return self._track(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

    def cut_all(self) -> None:
        """Shut down every connection, and any opened from now on: reads blocked in other threads return
        at once (the session is over: the target is down or the run was interrupted)."""
        with self._lock:
            self._cut = True
            streams = list(self._streams)
        for stream in streams:
            _shut_down(stream)


def _shut_down(stream: httpcore.NetworkStream) -> None:
    sock = stream.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.shutdown(socket.SHUT_RDWR)


def install_deadlines(client: httpx.Client) -> list[DeadlineBackend]:
    """Route every connection of `client` (proxies included) through the deadline-aware backend.

    httpx has no total timeout; its pools keep their backend in `_network_backend`. A transport
    without one (a test's MockTransport) still gets the deadline checked between body chunks.
    """
    backends = []
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, DeadlineBackend):
            backend = DeadlineBackend(backend)
            pool._network_backend = backend  # type: ignore[union-attr]
            backends.append(backend)
    return backends
