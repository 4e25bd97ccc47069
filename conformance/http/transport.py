"""The network under every request: a deadline enforced inside each socket operation, and a way to cut
every connection at once.

httpx has no total timeout, so a server dripping one byte at a time would outlive any read timeout; the
deadline-aware network backend bounds the status line, the headers and the body by one deadline. httpx's
transport takes no network backend, so `DeadlineTransport` hands it to httpcore's pool (its public
`network_backend`) and does the little else httpx's own transport does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from .._compat import environment_proxies


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


# Each httpcore exception as the httpx one that httpx's own transport raises for it (most specific first).
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        mapped = next((to for source, to in _ERRORS if isinstance(exc, source)), None)
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        if hasattr(self._stream, "close"):
            self._stream.close()


def _core_url(url: httpx.URL) -> httpcore.URL:
    return httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)


class DeadlineTransport(httpx.BaseTransport):
    """httpx's HTTPTransport as httpx.Client builds it by default (HTTP/1.1, no connection retries, an
    environment proxy when given one), on a pool whose connections go through `backend`."""

    def __init__(self, backend: httpcore.NetworkBackend, limits: httpx.Limits, ssl_context: ssl.SSLContext,
                 proxy: httpx.Proxy | None = None) -> None:
        pool: dict[str, Any] = {
            "ssl_context": ssl_context, "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry, "http1": True, "http2": False, "network_backend": backend,
        }
        self._pool: httpcore.ConnectionPool
        if proxy is None:
            self._pool = httpcore.ConnectionPool(retries=0, **pool)
        elif proxy.url.scheme in ("http", "https"):
            self._pool = httpcore.HTTPProxy(proxy_url=_core_url(proxy.url), proxy_auth=proxy.raw_auth,
                                            proxy_headers=proxy.headers.raw, proxy_ssl_context=proxy.ssl_context,
                                            **pool)
        elif proxy.url.scheme in ("socks5", "socks5h"):
            if importlib.util.find_spec("socksio") is None:
                raise ImportError("Using SOCKS proxy, but the 'socksio' package is not installed. "
                                  "Make sure to install httpx using `pip install httpx[socks]`.")
            self._pool = httpcore.SOCKSProxy(proxy_url=_core_url(proxy.url), proxy_auth=proxy.raw_auth, **pool)
        else:
            raise ValueError("Proxy protocol must be either 'http', 'https', 'socks5', or 'socks5h',"
                             f" but got {proxy.url.scheme!r}.")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(method=request.method, url=_core_url(request.url),
                                        headers=request.headers.raw, content=request.stream,
                                        extensions=request.extensions)
        with _as_httpx_errors():
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_ResponseStream(response.stream), extensions=response.extensions)

    def close(self) -> None:
        self._pool.close()


def deadline_client(*, timeout: httpx.Timeout, limits: httpx.Limits, headers: dict[str, str],
                    transport: httpx.BaseTransport | None = None) -> tuple[httpx.Client, DeadlineBackend | None]:
    """An httpx client whose every connection, through an environment proxy too, goes through one
    `DeadlineBackend` (returned with it). A given `transport` (a test's MockTransport) is used as it is,
    without environment proxies, as httpx does."""
    backend, mounts = None, None
    if transport is None:
        backend = DeadlineBackend(httpcore.SyncBackend())
        ssl_context = httpx.create_ssl_context()
        transport = DeadlineTransport(backend, limits, ssl_context)
        mounts = {pattern: None if url is None else DeadlineTransport(backend, limits, ssl_context, httpx.Proxy(url))
                  for pattern, url in environment_proxies().items()}
    client = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport, mounts=mounts,
                          headers=headers)
    return client, backend
