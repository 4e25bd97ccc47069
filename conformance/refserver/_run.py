"""Run the reference server on loopback: in a background thread (tests, the embedded default
target) or in the foreground (`conformance serve`)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from .app import ServerConfig, create_app


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the proto is
    # IPPROTO_TCP, and with Nagle on, every response waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _server(config: ServerConfig) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(create_app(config), log_level="warning", access_log=False, lifespan="off",
                       timeout_graceful_shutdown=1)
    )


class ServerThread:
    """`with ServerThread(config) as server: server.base_url` — a free port on 127.0.0.1."""

    def __init__(self, config: ServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or ServerConfig()
        self._sock = _bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._server = _server(self.config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name=f"refserver:{self.port}")

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the reference server did not start within 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()


def serve_forever(config: ServerConfig, host: str, port: int, on_ready: object = None) -> None:
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    print(f"reference server listening on http://{bound_host}:{bound_port}/v1 "
          f"(model {', '.join(config.models)}; Ctrl-C stops)", flush=True)
    _server(config).run(sockets=[sock])
