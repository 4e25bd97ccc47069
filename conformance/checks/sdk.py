"""The official openai SDK as a client: what users hit is "the SDK cannot parse this server".

Each check drives the `openai` package against the target with the SDK's own parsing (default,
lenient, exactly what users get), `max_retries=0` and the run's timeouts. The SDK's HTTP goes
through `_RecordingTransport`, so each request is counted against the run's budget and appears,
redacted, in the check's transcript like any other exchange. A failure quotes the SDK's exception.
"""

from __future__ import annotations

import functools
import json
import re
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import httpx

from .._context import CheckContext, excerpt
from .._model import Depth, Feature, Level, documented, openai
from ..errors import BudgetExhausted, CheckFailed, CheckUnsupported
from ..http import Exchange, TransportError, fail_on_limit
from ._registry import check

T = TypeVar("T")
INSTALL_HINT = "the openai package is not installed: install openai-conformance[sdk]"
# A made-up key for the 401 part (transcripts show every key as $OPENAI_API_KEY, this one too).
INVALID_KEY = "sk-conformance-invalid-key-0000000000"
NO_KEY = "sk-conformance-no-key"
# Headers the SDK fills from the environment (OPENAI_ORG_ID, OPENAI_PROJECT_ID...): never sent to a target.
_ENV_HEADERS = ("openai-organization", "openai-project")
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TOOL_CHOICE = {"type": "function", "function": {"name": "get_weather"}}
TOOL_ASK = "Use get_weather to look up the weather in Paris."
# Tool arguments are JSON: a cut at 16 tokens would break them on a real model.
TOOL_MAX_TOKENS = 64
# The quick depth (PR CI on paid APIs, <= 40 requests) keeps the two SDK checks users hit first.
FULL_ONLY = (Depth.FULL,)


def load_in_background() -> None:
    """Called by the engine's warm-up thread before the sdk checks start (the other checks do not wait):
    the SDK and the resources it loads on first use are some 650 modules (0.9 s). Imported next to
    threads that draw with hypothesis, which is safe for it: it is no pytest plugin, so pytest never
    compiles it from a rewritten AST, and `_compat` gives hypothesis a copy of sys.modules to iterate."""
    try:
        import openai
    except ImportError:
        return
    client = openai.OpenAI(api_key="preload", base_url="http://127.0.0.1:9/v1")
    client.chat.completions  # noqa: B018 - the attribute imports the chat resources
    client.close()


def _sdk(ctx: CheckContext) -> ModuleType:
    if not ctx.on_openai_route:
        method, path = ctx.chat_route
        raise ctx.not_applicable(f"the target serves chat on {method} {path}; the SDK only posts to "
                                 f"/chat/completions")
    try:
        import openai as sdk
    except ImportError:
        raise ctx.skip(INSTALL_HINT) from None
    ctx.details["openai_sdk_version"] = sdk.__version__
    return sdk


# -- recording ------------------------------------------------------------------------------------
# Set by httpx for the wire; the run's own client sets them again.
_HOP_HEADERS = ("host", "content-length", "connection", "transfer-encoding", "authorization", *_ENV_HEADERS)


class _RecordingTransport(httpx.BaseTransport):
    """Sends each SDK request through the check's Recorder, then hands the SDK the recorded bytes.

    So the SDK's traffic has the run's bounds, retries, budget and breaker, and appears (redacted)
    in the transcript like any exchange; the SDK then parses exactly the bytes the report shows.
    """

    def __init__(self, ctx: CheckContext, api_key: str | None) -> None:
        self.ctx, self.api_key = ctx, api_key

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        ctx = self.ctx
        content = request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        base, url = ctx.session.target.base_url.rstrip("/"), str(request.url)
        path = url[len(base):] if url.startswith(base) else request.url.raw_path.decode()
        streamed = _is_stream(content)
        exchange = ctx.http.request(request.method, path, content=content or None, headers=headers,
                                    api_key=self.api_key, stream=streamed or None)
        if exchange.error is not None or exchange.status is None:
            # The SDK raises APIConnectionError; the check turns it into the run's verdict error.
            raise httpx.ConnectError(exchange.error or "no response", request=request)
        passed = [(k, v) for k, v in exchange.response_headers.items()
                  if k not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(exchange.status, headers=passed, content=exchange.body, request=request)


def _is_stream(content: bytes) -> bool:
    try:
        body = json.loads(content) if content else None
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("stream") is True


def _client(ctx: CheckContext, sdk: ModuleType, api_key: str | None = None) -> Any:
    """An openai.OpenAI client on the target: no retries, the run's timeouts, every request recorded."""
    key = ctx.session.target.api_key if api_key is None else api_key
    lim = ctx.session.limits
    timeout = httpx.Timeout(lim.read_timeout_s, connect=lim.connect_timeout_s)
    http_client = httpx.Client(transport=_RecordingTransport(ctx, key), timeout=timeout, follow_redirects=False)
    # The SDK insists on a key; a keyless run sends none (the transport drops the header).
    return sdk.OpenAI(api_key=key or NO_KEY, base_url=ctx.session.target.base_url, max_retries=0,
                      timeout=sdk.Timeout(lim.read_timeout_s, connect=lim.connect_timeout_s),
                      http_client=http_client)


# -- judging --------------------------------------------------------------------------------------
def _sdk_error(ctx: CheckContext, exc: BaseException) -> str:
    """The SDK's own exception, as a user would see it (the API key never appears)."""
    kind = type(exc)
    module = kind.__module__.split(".")[0]
    name = f"{module}.{kind.__qualname__}" if module == "openai" else kind.__qualname__
    text = f"{name}: {excerpt(str(exc), 400) or '(no message)'}"
    if module != "openai":
        # A bare TypeError or AssertionError means little without the SDK line that raised it.
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/openai/" in f.filename.replace("\\", "/")]
        if frames:
            where = frames[-1].filename.replace("\\", "/").split("/openai/", 1)[-1]
            text += f" (raised in openai/{where}:{frames[-1].lineno}: {frames[-1].line})"
    return ctx.session.redact(text) or name


def _last(ctx: CheckContext) -> Exchange | None:
    return ctx.http.exchanges[-1] if ctx.http.exchanges else None


def _where(ctx: CheckContext, call: str) -> str:
    last = _last(ctx)
    return f"{call} → " + (ctx.where(last) if last else "no request sent")


def _transport_or_limit(ctx: CheckContext, exc: BaseException | None = None) -> None:
    """A network failure or a stopped run is the run's problem (verdict error); a blown bound is a failure.

    The SDK wraps what our transport raised (BudgetExhausted, TargetDown...) in its own
    APIConnectionError: the original is re-raised so the engine sees it.
    """
    seen: list[BaseException] = []
    while exc is not None and all(exc is not e for e in seen):
        if isinstance(exc, (BudgetExhausted, TransportError)):
            raise exc
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    last = _last(ctx)
    if last is None:
        return
    last.require_response()
    if last.error is not None:
        raise TransportError(f"{last.method} {last.url}: {last.error}")
    fail_on_limit(ctx.http, last)


_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def _dataless_block(body: bytes) -> str | None:
    """The SSE block the SDK turns into an empty event, when it comes before any data that is not JSON:
    a block of `retry:`/`id:`/`event:` fields without `data:`, or any data-less block once an `id:`
    was seen (the SDK never forgets it). None when the stream's own bad data comes first."""
    lines = _LINE_BREAK.split(body)
    if lines and not lines[-1]:
        lines.pop()  # the split after a final line break is not a line
    block: list[bytes] = []
    seen_id = False
    for line in lines:
        if line:
            block.append(line)
            continue
        fields = [b.split(b":", 1)[0] for b in block if not b.startswith(b":")]
        if b"data" not in fields and (seen_id or {b"retry", b"id", b"event"} & set(fields)):
            return b"\n".join(block).decode("utf-8", errors="replace") or "(an empty line)"
        data = b"\n".join(b.split(b":", 1)[1].removeprefix(b" ") for b in block if b.startswith(b"data:"))
        if data.startswith(b"[DONE]"):
            return None
        if data and not _is_json(data):
            return None
        seen_id = seen_id or b"id" in fields
        block = []
    return None


def _offending_event(exchange: Exchange) -> tuple[int, int] | None:
    """Where in a stream the SDK most likely broke, for the report to mark: the whole body when no
    event parses, else the first event whose data is not JSON or whose tool-call delta has no index."""
    if exchange.sse is None:
        return None
    if not exchange.sse.events:
        return (0, len(exchange.body)) if exchange.body else None
    for event in exchange.sse.events:
        if event.data.startswith("[DONE]"):
            break
        try:
            payload = json.loads(event.data)
        except ValueError:
            return event.start, event.end
        if _tool_delta_without_index(payload):
            return event.start, event.end
    return None


def _tool_delta_without_index(payload: Any) -> bool:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    for choice in choices if isinstance(choices, list) else []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        calls = delta.get("tool_calls") if isinstance(delta, dict) else None
        if isinstance(calls, list) and any(isinstance(c, dict) and "index" not in c for c in calls):
            return True
    return False


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _call(ctx: CheckContext, sdk: ModuleType, call: str, expected: str, action: Callable[[], T], *,
          declined: str | None = None) -> T:
    """Run one SDK call; any exception it raises is the check's failure, quoted as the SDK said it.

    With `declined`, a 400/422 means the target turns down that optional feature: unsupported.
    """
    try:
        result = action()
    except Exception as exc:  # noqa: BLE001 - whatever the SDK raises is what its users would get
        _transport_or_limit(ctx, exc)
        last = _last(ctx)
        block = _dataless_block(last.body) if isinstance(exc, json.JSONDecodeError) and last else None
        if block is not None:
            raise ctx.skip(f"{_sdk_error(ctx, exc)}: the SDK cannot read this stream, which is legal SSE. It "
                           f"dispatches the data-less block {block!r} as an empty event and parses it as JSON "
                           f"(openai/openai-python#2722, an SDK bug, not the server's); clients on this SDK "
                           f"version break on it all the same") from None
        if declined and isinstance(exc, (sdk.BadRequestError, sdk.UnprocessableEntityError)):
            raise CheckUnsupported(f"the target rejected {declined}: {_sdk_error(ctx, exc)}") from None
        ctx.fail(expected, _sdk_error(ctx, exc), _where(ctx, call), exchange=last,
                 byte_range=_offending_event(last) if last is not None else None)
        raise CheckFailed(*ctx.failures) from None
    _transport_or_limit(ctx)
    return result


def _attr(ctx: CheckContext, path: str, read: Callable[[], T], expected: str, call: str) -> T:
    """Read a field of the SDK's parsed object; lenient parsing leaves missing fields unset."""
    try:
        return read()
    except (AttributeError, IndexError, TypeError, KeyError) as exc:
        raise ctx.stop(expected, f"reading {path} raised {_sdk_error(ctx, exc)}", _where(ctx, call),
                       exchange=_last(ctx)) from None


def _wrong_type(ctx: CheckContext, call: str, value: Any, expected: str) -> None:
    ctx.fail(expected, f"{type(value).__name__}: {excerpt(repr(value), 150)}", _where(ctx, call), exchange=_last(ctx))


def _delta_contents(chunk: Any) -> list[Any]:
    return [choice.delta.content for choice in chunk.choices]


def _tool_request(ctx: CheckContext) -> dict[str, Any]:
    return ctx.chat_request(messages=[{"role": "user", "content": TOOL_ASK}], tools=[WEATHER_TOOL],
                            tool_choice=TOOL_CHOICE, max_tokens=TOOL_MAX_TOKENS)


def _judge_tool_calls(ctx: CheckContext, completion: Any, call: str) -> None:
    """The parsed message carries tool_calls whose id, name and arguments are the str the SDK types promise."""
    calls = _attr(ctx, "choices[0].message.tool_calls", lambda: completion.choices[0].message.tool_calls,
                  "a parsed choices[0].message.tool_calls", call)
    if not calls:
        content = _attr(ctx, "choices[0].message.content", lambda: completion.choices[0].message.content,
                        "a parsed choices[0].message", call)
        raise ctx.stop("choices[0].message.tool_calls with the forced get_weather call",
                       f"tool_calls = {calls!r}, content = {excerpt(repr(content), 150)}", _where(ctx, call),
                       exchange=_last(ctx))
    first = calls[0]
    fields = {"id": lambda: first.id, "function.name": lambda: first.function.name,
              "function.arguments": lambda: first.function.arguments}
    for name, read in fields.items():
        value = _attr(ctx, f"tool_calls[0].{name}", read, f"tool_calls[0].{name}", call)
        if not isinstance(value, str):
            _wrong_type(ctx, call, value, f"tool_calls[0].{name} is a str, as the SDK's type says")


# -- checks ---------------------------------------------------------------------------------------
@check(
    "sdk.create",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=documented("2 Response Parameters", "content string The textual content of the message."),
    description="The official openai SDK's chat.completions.create() parses a non-stream completion and "
                "choices[0].message.content is a str.",
    accepts=("any response the SDK parses into a ChatCompletion with str content",),
)
def sdk_create(ctx: CheckContext) -> None:
    sdk = _sdk(ctx)
    call = "client.chat.completions.create()"
    with _client(ctx, sdk) as client:
        completion = _call(ctx, sdk, call, "a ChatCompletion", lambda: client.chat.completions.create(
            **ctx.chat_request()))
    content = _attr(ctx, "choices[0].message.content", lambda: completion.choices[0].message.content,
                    "a parsed choices[0].message.content", call)
    if not isinstance(content, str):
        _wrong_type(ctx, call, content, "choices[0].message.content is a str")


@check(
    "sdk.stream-usage",
    level=Level.SHOULD,
    feature=Feature.STREAMING,
    clause=openai("CreateChatCompletionStreamResponse", "an additional chunk will be streamed before the "
                  "`data: [DONE]` message"),
    description="The SDK's create(stream=True, stream_options include_usage) iterates to the end without an "
                "exception and yields the usage chunk.",
    accepts=("unsupported when the target rejects stream_options with 400/422",),
)
def sdk_stream_usage(ctx: CheckContext) -> None:
    sdk = _sdk(ctx)
    call = "client.chat.completions.create(stream=True, stream_options={'include_usage': True})"
    body = ctx.chat_request(stream=True, stream_options={"include_usage": True})
    with _client(ctx, sdk) as client:
        chunks = _call(ctx, sdk, call, "a stream of ChatCompletionChunk iterated to the end",
                       lambda: list(client.chat.completions.create(**body)),
                       declined="stream_options.include_usage")
    last = _last(ctx)
    if not chunks:
        ctx.fail("ChatCompletionChunk objects", "the SDK yielded no chunk at all", _where(ctx, call), exchange=last,
                 byte_range=_offending_event(last) if last is not None else None)
        raise CheckFailed(*ctx.failures)
    ctx.details["chunks"] = len(chunks)
    for i, chunk in enumerate(chunks):
        pieces = _attr(ctx, f"chunk {i}.choices[].delta.content", functools.partial(_delta_contents, chunk),
                       "chunk.choices[].delta.content", call)
        for piece in pieces:
            if piece is not None and not isinstance(piece, str):
                _wrong_type(ctx, call, piece, f"chunk {i}: delta.content is a str or None")
    usage = [chunk.usage for chunk in chunks if getattr(chunk, "usage", None) is not None]
    if not usage:
        ctx.fail("a chunk whose usage is set, since include_usage was requested",
                 f"{len(chunks)} chunks, none with usage", _where(ctx, call), exchange=_last(ctx))
        return
    total = _attr(ctx, "usage.total_tokens", lambda: usage[-1].total_tokens, "usage.total_tokens", call)
    if not isinstance(total, int):
        _wrong_type(ctx, call, total, "usage.total_tokens is an int")


@check(
    "sdk.tool-call",
    level=Level.SHOULD,
    feature=Feature.TOOLS,
    depths=FULL_ONLY,
    clause=documented("1.2 tool_choice", "Controls which (if any) function is called by the model."),
    description="With a forced tool_choice, the SDK's create() parses choices[0].message.tool_calls whose id, "
                "function.name and function.arguments are str.",
    accepts=("unsupported when the target rejects tools with 400/422",),
)
def sdk_tool_call(ctx: CheckContext) -> None:
    sdk = _sdk(ctx)
    call = "client.chat.completions.create(tools=[get_weather], tool_choice=get_weather)"
    with _client(ctx, sdk) as client:
        completion = _call(ctx, sdk, call, "a ChatCompletion", lambda: client.chat.completions.create(
            **_tool_request(ctx)), declined="tools with a named tool_choice")
    _judge_tool_calls(ctx, completion, call)


@check(
    "sdk.stream-tool-call",
    level=Level.SHOULD,
    feature=Feature.TOOLS,
    depths=FULL_ONLY,
    clause=openai("Tool-call streaming", "openai-python #2806 and PR #3246 (Gemini omits `tool_calls[].index`, "
                  "SDK raises TypeError)"),
    description="The SDK's chat.completions.stream() helper accumulates a streamed forced tool call; the final "
                "completion's tool_calls parse.",
    accepts=("unsupported when the target rejects a streamed tool request with 400/422",),
)
def sdk_stream_tool_call(ctx: CheckContext) -> None:
    sdk = _sdk(ctx)
    call = "client.chat.completions.stream(tools=[get_weather], tool_choice=get_weather).get_final_completion()"

    def accumulate(client: Any) -> Any:
        with client.chat.completions.stream(**_tool_request(ctx)) as stream:
            for _event in stream:
                pass
            return stream.get_final_completion()

    with _client(ctx, sdk) as client:
        completion = _call(ctx, sdk, call, "the stream helper's final ChatCompletion", lambda: accumulate(client),
                           declined="a streamed request with tools")
    _judge_tool_calls(ctx, completion, call)


def _error_part(ctx: CheckContext, sdk: ModuleType, client: Any, body: dict[str, Any], *,
                expected: dict[int, str], call: str) -> str:
    """Send a request the target must refuse; the SDK must raise the class its status maps to.

    Returns a one-line note for the report. A target that accepts the request instead has nothing
    for the SDK to raise (other checks judge that acceptance), unless it wrapped an error in a 2xx.
    """
    wanted = " or ".join(f"openai.{name} (HTTP {status})" for status, name in expected.items())
    try:
        client.chat.completions.create(**body)
    except sdk.APIStatusError as exc:
        _transport_or_limit(ctx, exc)
        name = expected.get(exc.status_code)
        if name is None or not isinstance(exc, getattr(sdk, name)):
            ctx.fail(f"the SDK raises {wanted}", _sdk_error(ctx, exc), _where(ctx, call), exchange=_last(ctx))
            return f"HTTP {exc.status_code}: failed"
        return f"HTTP {exc.status_code}: the SDK raised openai.{name}"
    except Exception as exc:  # noqa: BLE001 - whatever the SDK raises is what its users would get
        _transport_or_limit(ctx, exc)
        ctx.fail(f"the SDK raises {wanted}", _sdk_error(ctx, exc), _where(ctx, call), exchange=_last(ctx))
        return "failed"
    _transport_or_limit(ctx)
    last = _last(ctx)
    payload = last.json() if last is not None else None
    if isinstance(payload, dict) and "error" in payload:
        ctx.fail(f"the SDK raises {wanted}", f"no exception: HTTP {last.status if last else None} with an error "
                 f"body, which the SDK returned as a ChatCompletion: {excerpt(last.text if last else '', 200)}",
                 _where(ctx, call), exchange=last)
        return "failed"
    return f"not judged: the target accepted the request (HTTP {last.status if last else None})"


@check(
    "sdk.error-classes",
    level=Level.SHOULD,
    feature=Feature.CORE,
    clause=openai("Paths and errors", "No 400/401/404/422 is documented, so our spec must add them"),
    description="An invalid request makes the SDK raise openai.BadRequestError (or UnprocessableEntityError for "
                "a 422); with an API key, a wrong key makes it raise openai.AuthenticationError.",
    accepts=("400 BadRequestError", "422 UnprocessableEntityError", "401 AuthenticationError",
             "skipped when the target accepts both requests"),
    requests=2,
    depths=FULL_ONLY,
)
def sdk_error_classes(ctx: CheckContext) -> None:
    sdk = _sdk(ctx)
    # `messages` must be an array (documented 1.2); every validating server refuses a string.
    # extra_body overrides the SDK-typed argument, so the wrong type really goes on the wire.
    invalid = {**ctx.chat_request(), "extra_body": {"messages": "hello"}}
    parts: dict[str, str] = {}
    with _client(ctx, sdk) as client:
        parts["bad-request"] = _error_part(ctx, sdk, client, invalid,
                                           expected={400: "BadRequestError", 422: "UnprocessableEntityError"},
                                           call="client.chat.completions.create(messages='hello')")
    if ctx.has_api_key:
        with _client(ctx, sdk, api_key=INVALID_KEY) as client:
            parts["wrong-key"] = _error_part(ctx, sdk, client, ctx.chat_request(),
                                             expected={401: "AuthenticationError"},
                                             call="OpenAI(api_key=<a made-up key>).chat.completions.create()")
    else:
        parts["wrong-key"] = "not judged: no API key was given, so a 401 cannot be provoked"
    ctx.details["parts"] = parts
    if not ctx.failures and all(note.startswith("not judged") for note in parts.values()):
        raise ctx.skip("the target accepted both the invalid request and the made-up key: nothing for the SDK to "
                       "raise (" + "; ".join(f"{k}: {v}" for k, v in parts.items()) + ")")
