"""The reference server: a deterministic implementation of the documented Chat Completions API.

It serves `POST /v1/chat/completions`, the documented quirk `GET /v1/models` with a chat body,
and the plain model list. This module routes, authenticates and validates; responses.py and
streaming.py build the answers. The faults and variants chosen at start change all of it only
through the hooks each declares in faults.py.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..spec import load_spec, with_openai_structures
from . import generate, responses, streaming
from .faults import FAULTS, VARIANTS, Variant, active_hooks
from .hooks import (
    CHAT_PATH,
    MODELS_PATH,
    ApiError,
    Destination,
    Endpoint,
    HandlerCrash,
    Patches,
    Refusal,
    Reply,
    ReplyKind,
)

MAX_BODY_BYTES = 1_000_000
# Prompt tokens (by generate.prompt_tokens) the model holds; a longer prompt is refused, as OpenAI does.
CONTEXT_WINDOW = 4096
ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
DEFAULT_MODEL = "conformance-ref-1"


@dataclass(frozen=True)
class ServerConfig:
    api_key: str | None = None
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    faults: frozenset[str] = frozenset()
    variants: frozenset[str] = frozenset()
    latency_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [f for f in self.faults if f not in FAULTS] + [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown fault or variant: {', '.join(sorted(unknown))} (see `conformance serve "
                             f"--list-faults`)")

    def has(self, name: str) -> bool:
        """Whether fault or variant `name` is on; a name that is neither is a misspelling, so an error."""
        if name not in FAULTS and name not in VARIANTS:
            raise KeyError(f"{name!r} is not a declared fault or variant (refserver/faults.py)")
        return name in self.faults or name in self.variants


@functools.lru_cache(maxsize=64)
def request_validator(names: frozenset[str]) -> jsonschema.protocols.Validator:
    """A validator of the spec's request schema, loosened or tightened by these faults and variants."""
    items = [FAULTS[name] if name in FAULTS else VARIANTS[name] for name in sorted(names)]
    # Only the document's limits (lenient-params); the structures the generator reads stay OpenAI's.
    document = any(isinstance(item, Variant) and item.enforces == "document" for item in items)
    spec = with_openai_structures(load_spec("document")) if document else load_spec("openai")
    request_schema = spec["components"]["schemas"]["CreateChatCompletionRequest"]
    for item in items:
        if item.schema_patch is not None:
            item.schema_patch(request_schema)
    root = {**spec, "$ref": "#/components/schemas/CreateChatCompletionRequest"}
    return jsonschema.Draft202012Validator(root)


def route_of(method: str, path: str) -> Destination:
    if path == CHAT_PATH:
        return Endpoint.CHAT if method == "POST" else responses.method_not_allowed(method, path, "POST", "POST")
    if path == MODELS_PATH:
        if method in ("GET", "HEAD"):
            return Endpoint.MODELS_OR_CHAT
        return responses.method_not_allowed(method, path, "GET", "GET, HEAD")
    if path.startswith(MODELS_PATH + "/"):
        return Endpoint.MODEL
    return ApiError(404, f"Unknown route {method} {path}.", code="unknown_url")


def create_app(config: ServerConfig | None = None) -> Starlette:
    config = config or ServerConfig()
    server = _Server(config)
    return Starlette(routes=[Route("/{path:path}", server.dispatch, methods=ALL_METHODS)])


class _Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.validator = request_validator(config.faults | config.variants)
        self.patches = Patches(active_hooks(config.faults, config.variants))

    # -- routing --------------------------------------------------------------------------------
    async def dispatch(self, request: Request) -> Response:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        try:
            reply = await self._route(request)
        except ApiError as error:
            reply = responses.error_reply(error, self.patches)
        except HandlerCrash:
            # A framework's default 500 page (a reset connection would read as a transport error).
            return Response("Internal Server Error", status_code=500, media_type="text/plain")
        self.patches.reply(reply)
        if reply.stream is not None:
            return StreamingResponse(reply.stream, status_code=reply.status, headers=reply.headers)
        content = reply.text if reply.text is not None else json.dumps(reply.body)
        return Response(content, status_code=reply.status, media_type=None, headers=reply.headers)

    async def _route(self, request: Request) -> Reply:
        method, path = request.method, "/" + request.path_params.get("path", "")
        self._authenticate(request)
        route = self.patches.route(method, path, route_of(method, path))
        if isinstance(route, ApiError):
            raise route
        if route is Endpoint.CHAT:
            return await self._chat(request)
        if route is Endpoint.MODEL:
            model = path.removeprefix(MODELS_PATH + "/")
            if model in self.config.models:
                return responses.json_reply(ReplyKind.MODELS, responses.model_object(model))
            raise ApiError(404, f"The model '{model}' does not exist.", param="model", code="model_not_found")
        body = await self._read_body(request)
        if route is Endpoint.MODELS_OR_CHAT and body.strip():
            return await self._chat(request, body)
        return responses.json_reply(ReplyKind.MODELS, responses.model_list(self.config.models))

    def _refuse(self, reason: Refusal, error: ApiError) -> None:
        """Raise `error` as the active faults and variants patch it, unless they waive it."""
        patched = self.patches.refusal(reason, error)
        if patched is not None:
            raise patched

    def _authenticate(self, request: Request) -> None:
        if not self.config.api_key:
            return
        header = request.headers.get("authorization", "")
        if not header:
            self._refuse(Refusal.MISSING_KEY, ApiError(
                401, "You didn't provide an API key. Send `Authorization: Bearer YOUR_KEY`.", code="missing_api_key"))
            return
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.config.api_key:
            self._refuse(Refusal.WRONG_KEY, ApiError(401, "Incorrect API key provided.", code="invalid_api_key"))

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiError(413, f"Request body of {declared} bytes exceeds the limit of {MAX_BODY_BYTES}.",
                           code="request_too_large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise ApiError(413, f"Request body exceeds the limit of {MAX_BODY_BYTES} bytes.",
                               code="request_too_large")
        return bytes(body)

    # -- chat -----------------------------------------------------------------------------------
    async def _chat(self, request: Request, body: bytes | None = None) -> Reply:
        reply_patches = self.patches.chat()  # before the body is read: the request has arrived
        payload = self._parse(body if body is not None else await self._read_body(request))
        self._validate(payload)
        for name in ("n", "max_tokens", "seed"):  # JSON Schema counts 8.0 as an integer; range() does not
            if isinstance(payload.get(name), float):
                payload[name] = int(payload[name])
        self.patches.request(payload)
        if payload.get("stream"):
            reply = Reply(ReplyKind.STREAM, 200, {"Cache-Control": "no-cache",
                                                  "content-type": "text/event-stream; charset=utf-8"},
                          stream=streaming.sse(payload, self.patches))
        else:
            reply = responses.json_reply(ReplyKind.COMPLETION, responses.completion(payload, self.patches))
        for patch in reply_patches:
            patch(reply)
        return reply

    def _parse(self, raw: bytes) -> dict[str, Any]:
        # A body that is not JSON, or not an object, leaves nothing to serve: those refusals are not waived.
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            error = ApiError(400, f"We could not parse the JSON body of your request: {exc}.", code="invalid_json")
            raise self.patches.refusal(Refusal.NOT_JSON, error) or error from None
        self.patches.parsed(payload)
        if not isinstance(payload, dict):
            error = ApiError(400, f"The request body must be a JSON object, not {type(payload).__name__}.",
                             code="invalid_type")
            raise self.patches.refusal(Refusal.NOT_OBJECT, error) or error
        return payload

    def _validate(self, payload: dict[str, Any]) -> None:
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(payload))
        if error is not None:
            refusal = _schema_error(error)
            raise self.patches.refusal(Refusal.SCHEMA, refusal) or refusal  # an invalid request cannot be served
        if not payload["messages"]:
            # Refused under every view (there is nothing to answer); only OpenAI's spec requires it.
            self._refuse(Refusal.EMPTY_MESSAGES, ApiError(400, "'messages' must not be empty.", param="messages",
                                                          code="invalid_value"))
        if payload["model"] not in self.config.models:
            self._refuse(Refusal.UNKNOWN_MODEL, ApiError(
                404, f"The model '{payload['model']}' does not exist or you do not have access to it.",
                param="model", code="model_not_found"))
        tools = payload.get("tools") or []
        names = {t["function"]["name"] for t in tools}
        choice = payload.get("tool_choice")
        if choice == "required" and not tools:
            self._refuse(Refusal.REQUIRED_WITHOUT_TOOLS, ApiError(
                400, "tool_choice 'required' needs at least one tool in 'tools'.", param="tool_choice"))
        if isinstance(choice, dict) and choice["function"]["name"] not in names:
            self._refuse(Refusal.UNKNOWN_TOOL, ApiError(
                400, f"tool_choice names function '{choice['function']['name']}', which is not in 'tools'.",
                param="tool_choice"))
        if payload.get("stream_options") is not None and payload.get("stream") is not True:
            self._refuse(Refusal.STREAM_OPTIONS_WITHOUT_STREAM, ApiError(
                400, "stream_options is only allowed when stream is true.", param="stream_options"))
        prompt = generate.prompt_tokens(payload["messages"])
        if prompt > CONTEXT_WINDOW:
            self._refuse(Refusal.CONTEXT_OVERFLOW, ApiError(
                400, f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, your messages "
                     f"resulted in {prompt} tokens. Please reduce the length of the messages.",
                param="messages", code="context_length_exceeded"))


def _schema_error(error: jsonschema.ValidationError) -> ApiError:
    path = list(error.absolute_path)
    if error.validator == "required" and not path:
        missing = error.message.split("'")[1] if "'" in error.message else None
        return ApiError(400, f"Missing required parameter: '{missing}'.", param=missing,
                        code="missing_required_parameter")
    param = str(path[0]) if path else None
    where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path)
    message = error.message if len(error.message) < 300 else error.message[:300] + "…"
    return ApiError(400, f"{message} - '{where}'" if where else message, param=param, code="invalid_value")
