"""Small hostile targets for the robustness tests: each misbehaves in one way a real provider has.

`HostileServer(behaviour)` is a raw asyncio HTTP/1.1 server on a free 127.0.0.1 port, run in a
background thread. It answers `GET /models` properly (so the CLI's preflight passes and the run
itself meets the misbehaviour) unless `models_ok=False`, and hands every other request to the
behaviour. Nothing large is ever materialised: huge bodies are generated on the fly and every
behaviour stops as soon as the client goes away.

`ASGIServer(app)` runs an ASGI app (the reference server wrapped in `RejectFirst` or `InFlight`)
the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import uvicorn

MODEL = "hostile-1"
FOREVER = 3600.0


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def wants_stream(self) -> bool:
        payload = self.json
        return isinstance(payload, dict) and payload.get("stream") is True


class Connection:
    """One accepted socket: the behaviour writes to it and learns when the client has gone."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @property
    def gone(self) -> bool:
        return self.writer.is_closing() or self.reader.at_eof()

    async def send(self, data: bytes) -> bool:
        """Write and flush; False once the client has gone (the behaviour should stop)."""
        if self.gone:
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def wait_until_gone(self, limit: float = FOREVER) -> None:
        """Hold the connection open, never answering, until the client gives up."""
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(self.reader.read(), limit)

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), like a crashed proxy."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Behaviour = Callable[[Request, Connection], Awaitable[bool]]
"""Handles one request; returns True to keep the connection open for the next one."""


# -- well-formed pieces ---------------------------------------------------------------------------------
def response_head(status: int = 200, content_type: str = "application/json", length: int | None = None,
                  extra: dict[str, str] | None = None) -> bytes:
    reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
    lines = [f"HTTP/1.1 {status} {reason.get(status, 'Status')}", f"Content-Type: {content_type}"]
    lines.append(f"Content-Length: {length}" if length is not None else "Connection: close")
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_response(payload: Any, status: int = 200) -> bytes:
    body = json.dumps(payload).encode()
    return response_head(status, length=len(body)) + body


def completion(content: str = "Hello there friend, how are you?") -> dict[str, Any]:
    return {"id": "chatcmpl-hostile", "object": "chat.completion", "created": 1700000000, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}


def chunk_event(content: str, *, role: bool = False) -> bytes:
    delta: dict[str, Any] = {"role": "assistant", "content": content} if role else {"content": content}
    chunk = {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 1700000000, "model": MODEL,
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


MODELS = {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "test"}]}


# -- the behaviours -------------------------------------------------------------------------------------
async def never_answers(request: Request, conn: Connection) -> bool:
    """Accepts the connection, reads the request, and never answers."""
    await conn.wait_until_gone()
    return False


def drips(interval: float = 0.5) -> Behaviour:
    """A valid response, status line included, one byte every `interval` seconds."""

    async def behaviour(request: Request, conn: Connection) -> bool:
        for byte in json_response(completion()):
            if not await conn.send(bytes([byte])):
                return False
            await asyncio.sleep(interval)
        return False

    return behaviour


def streams_forever(interval: float = 0.01, batch: int = 50) -> Behaviour:
    """Streaming requests get valid chunks forever (no [DONE]), `batch` per write; others a normal completion."""
    events = chunk_event("more ") * batch

    async def behaviour(request: Request, conn: Connection) -> bool:
        if not request.wants_stream:
            return await conn.send(json_response(completion()))
        if not await conn.send(response_head(content_type="text/event-stream") + chunk_event("", role=True)):
            return False
        while await conn.send(events):
            await asyncio.sleep(interval)
        return False

    return behaviour


def huge_body(size: int = 5 * 1024**3, block: int = 65_536) -> Behaviour:
    """A 5 GiB JSON body with an honest Content-Length, generated on the fly from one reused block."""
    prefix = json.dumps(completion("")).encode().split(b'"content": ""')[0] + b'"content": "'
    filler = b"a" * block

    async def behaviour(request: Request, conn: Connection) -> bool:
        if not await conn.send(response_head(length=size) + prefix):
            return False
        sent = len(prefix)
        while sent < size and await conn.send(filler[: size - sent]):
            sent += block
        return False

    return behaviour


async def resets_mid_stream(request: Request, conn: Connection) -> bool:
    """Starts a valid answer, then aborts the connection with a TCP RST."""
    if request.wants_stream:
        await conn.send(response_head(content_type="text/event-stream") + chunk_event("", role=True)
                        + chunk_event("Hello "))
    else:
        body = json.dumps(completion()).encode()
        await conn.send(response_head(length=len(body)) + body[: len(body) // 3])
    await asyncio.sleep(0.05)
    conn.reset()
    return False


async def not_http(request: Request, conn: Connection) -> bool:
    """Bytes that are not HTTP at all (an SSH banner and binary), then close."""
    await conn.send(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe\x17\x03\x03 garbage \xc3\x28\r\n\r\n")
    return False


def drops_reused_connections() -> Behaviour:
    """Answers the first request of each connection (keep-alive), then drops the connection without a
    word when the next request arrives on it, as uvicorn does after an unhandled error (LiteLLM)."""
    answered: set[int] = set()

    async def behaviour(request: Request, conn: Connection) -> bool:
        if id(conn) in answered:
            conn.reset()
            return False
        answered.add(id(conn))
        payload = completion()
        if request.wants_stream:
            events = chunk_event("", role=True) + chunk_event("Hello there.") + b"data: [DONE]\n\n"
            head = response_head(content_type="text/event-stream", length=len(events))
            return await conn.send(head + events)
        return await conn.send(json_response(payload))

    return behaviour


BAD_UTF8_CONTENT = b"caf\xc3 \xff\xfe broken \xed\xa0\x80 surrogate \\ud800 escape"


async def invalid_utf8(request: Request, conn: Connection) -> bool:
    """JSON (and SSE) whose strings hold invalid UTF-8 bytes and a lone-surrogate escape."""
    if request.wants_stream:
        good = chunk_event("", role=True)
        bad = chunk_event("XCONTENTX").replace(b"XCONTENTX", BAD_UTF8_CONTENT)
        await conn.send(response_head(content_type="text/event-stream") + good + bad + b"data: [DONE]\n\n")
        return False  # `Connection: close` ends the stream: close it, or the client waits for more
    body = json.dumps(completion("XCONTENTX")).encode().replace(b"XCONTENTX", BAD_UTF8_CONTENT)
    body = body.replace(b'"chatcmpl-hostile"', b'"chatcmpl-\\udc80\xff"')
    return await conn.send(json_response_raw(body))


def json_response_raw(body: bytes) -> bytes:
    return response_head(length=len(body)) + body


# -- the server -----------------------------------------------------------------------------------------
class HostileServer:
    """`with HostileServer(behaviour) as server: server.base_url` on a free 127.0.0.1 port."""

    def __init__(self, behaviour: Behaviour, *, models_ok: bool = True, refuse_after_models: bool = False) -> None:
        self.behaviour = behaviour
        self.models_ok = models_ok
        self.refuse_after_models = refuse_after_models
        self.requests: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet_on_cancel)
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="hostile-server")
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop)
        self._server = future.result(timeout=5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        conn = Connection(reader, writer)
        try:
            while (request := await _read_request(reader)) is not None:
                self.requests[f"{request.method} {request.path}"] += 1
                if not await self._answer(request, conn):
                    break
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.transport.abort()

    async def _answer(self, request: Request, conn: Connection) -> bool:
        if self.models_ok and request.method == "GET" and request.path.endswith("/models"):
            ok = await conn.send(json_response(MODELS))
            if self.refuse_after_models and self._server is not None:
                self._server.close()  # from now on every new connection is refused
                return False
            return ok
        return await self.behaviour(request, conn)


def _quiet_on_cancel(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Python 3.11's stream callback re-raises the CancelledError of handlers cancelled at shutdown."""
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, *_ = [*lines[0].split(" "), "", ""]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method, path, headers, body)


def free_port() -> int:
    """A port with nothing listening on it (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- ASGI wrappers around the reference server ----------------------------------------------------------
ASGIApp = Callable[..., Awaitable[None]]


class RejectFirst:
    """Answers the first `first` requests of each kind (method, path, stream) with `status` and then
    lets the reference server answer; `first=None` never lets anything through."""

    def __init__(self, app: ASGIApp, *, first: int | None = 2, status: int = 429,
                 retry_after: str | None = "0.1") -> None:
        self.app, self.first, self.status, self.retry_after = app, first, status, retry_after
        self.seen: Counter[str] = Counter()
        self.rejected = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        streamed = b'"stream": true' in body or b'"stream":true' in body
        kind = f"{scope['method']} {scope['path']} stream={streamed}"
        with self._lock:
            self.seen[kind] += 1
            reject = self.first is None or self.seen[kind] <= self.first
            self.rejected += reject
        if reject:
            await self._reject(send)
            return
        await self.app(scope, _replay(body), send)

    async def _reject(self, send: Any) -> None:
        payload = json.dumps({"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                                        "code": "rate_limit_exceeded"}}).encode()
        headers = [(b"content-type", b"application/json")]
        if self.retry_after is not None:
            headers.append((b"retry-after", self.retry_after.encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class InFlight:
    """Counts requests in flight at the server, to prove what --concurrency does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.now = 0
        self.peak = 0
        self.total = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.now += 1  # one event loop: no lock needed
        self.total += 1
        self.peak = max(self.peak, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


def _replay(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(FOREVER)  # the app waits for a disconnect that never comes
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class ASGIServer:
    """`with ASGIServer(app) as server: server.base_url` — uvicorn on a free 127.0.0.1 port."""

    def __init__(self, app: ASGIApp) -> None:
        # IPPROTO_TCP: asyncio then sets TCP_NODELAY on each connection (no 40 ms delayed-ACK stalls).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                                     timeout_graceful_shutdown=1))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ASGIServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("ASGI server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()
