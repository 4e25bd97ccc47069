"""Where faults and variants change the reference server: the hook kinds and the values they patch.

The server builds each value the correct way, then hands it to the hooks of the active faults and
variants, which faults.py declares next to each one's description. A hook patches the value in place,
or returns its replacement where its kind says so. Adding a fault touches faults.py only; a new kind
of change needs a new hook point here and one call in the correct code.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class ApiError(Exception):
    """A refusal with the OpenAI error envelope."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}


class HandlerCrash(Exception):
    """An unexpected exception in a handler (only under the 500-on-* faults): a plain-text 500."""


class Refusal(enum.Enum):
    """The check of a request that refuses it, as a refusal hook recognises it."""

    MISSING_KEY = "missing-key"
    WRONG_KEY = "wrong-key"
    NOT_JSON = "not-json"
    NOT_OBJECT = "not-object"
    SCHEMA = "schema"
    EMPTY_MESSAGES = "empty-messages"
    UNKNOWN_MODEL = "unknown-model"
    REQUIRED_WITHOUT_TOOLS = "required-without-tools"
    UNKNOWN_TOOL = "unknown-tool"
    STREAM_OPTIONS_WITHOUT_STREAM = "stream-options-without-stream"
    CONTEXT_OVERFLOW = "context-overflow"


CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"


class Endpoint(enum.Enum):
    CHAT = "chat"
    # GET /v1/models: the model list, or a chat completion when a chat body comes with it (the documented quirk).
    MODELS_OR_CHAT = "models-or-chat"
    MODELS = "models"  # the model list, whatever the body
    MODEL = "model"


Destination = Endpoint | ApiError  # where a request goes, or how the router refuses it


class ReplyKind(enum.Enum):
    COMPLETION = "completion"
    STREAM = "stream"
    ERROR = "error"
    MODELS = "models"


@dataclass
class Reply:
    """An HTTP answer before it is written: JSON (`body`), text as written (`text`), or a `stream`."""

    kind: ReplyKind
    status: int
    headers: dict[str, str]
    body: Any = None
    text: str | None = None
    stream: AsyncIterator[bytes] | None = None


@dataclass
class Draft:
    """The text of one choice before stop sequences and max_tokens cut it."""

    payload: dict[str, Any]
    index: int
    text: str
    prose: bool  # False: JSON, as response_format asks


@dataclass
class Choice:
    """One generated choice, before it is rendered as a message or as stream deltas."""

    index: int  # as reported
    tokens: list[str]  # the text's tokens, or the function name and the argument tokens
    finish_reason: str
    truncated: bool  # cut at max_tokens
    tool_call: dict[str, Any] | None = None

    @property
    def content(self) -> str | None:
        return None if self.tool_call is not None else "".join(self.tokens)


@dataclass
class Stream:
    """One stream's chunks in the making: what a chunks hook may read, and how it makes more."""

    payload: dict[str, Any]
    choices: list[Choice]
    usage_requested: bool
    chunk: Callable[[list[dict[str, Any]]], dict[str, Any]]  # a chunk around these choice entries
    usage: Callable[[list[Choice]], dict[str, int]]  # the usage of these choices


@dataclass
class SsePlan:
    """The SSE events of one stream and how they are framed; the defaults are the correct framing."""

    events: list[str]  # the data of each chunk's event
    closing: list[str] = field(default_factory=lambda: ["[DONE]"])  # the data of the events after the chunks
    data_field: str = "data: "
    newline: str = "\n"
    blank_line: bool = True  # an event ends with a blank line
    preamble: list[str] = field(default_factory=list)  # lines sent before the first event, each a block
    comment: str | None = None  # a comment line sent as a block before each chunk's event


SchemaPatch = Callable[[dict[str, Any]], None]  # the request schema the server validates with
ParsedHook = Callable[[Any], None]  # the parsed body before validation: may coerce it, or crash
RefusalHook = Callable[[Refusal, ApiError], ApiError | None]  # a refusal as patched; None waives it
RouteHook = Callable[[str, str, Destination], Destination]  # method, path, and where the request goes (or its refusal)
RequestHook = Callable[[dict[str, Any]], None]  # the accepted request, as the server reads it from then on
TextHook = Callable[[Draft], None]
ChoiceHook = Callable[[Choice, bool], None]  # a choice, and whether it is streamed
UsageHook = Callable[[dict[str, int], dict[str, Any], list[Choice]], None]  # usage, the request, the choices
EnvelopeHook = Callable[[dict[str, Any]], None]  # id, object, created, model of a completion or a chunk
CompletionHook = Callable[[dict[str, Any]], None]  # the body of a non-stream completion
ChunksHook = Callable[[list[dict[str, Any]], Stream], None]  # every chunk of a stream, in order
SseHook = Callable[[SsePlan], None]
ErrorHook = Callable[[dict[str, Any], int], dict[str, Any]]  # an error body and its status: the body sent
ReplyHook = Callable[[Reply], None]  # status, headers, and how the content is written
ChatHook = Callable[[], ReplyHook]  # as a chat request arrives: what to do to its reply


@dataclass(frozen=True, slots=True)
class Hooks:
    """Where one fault or variant changes the server; None: not at this point."""

    parsed: ParsedHook | None = None
    refusal: RefusalHook | None = None
    route: RouteHook | None = None
    request: RequestHook | None = None
    text: TextHook | None = None
    choice: ChoiceHook | None = None
    usage: UsageHook | None = None
    envelope: EnvelopeHook | None = None
    completion: CompletionHook | None = None
    chunks: ChunksHook | None = None
    sse: SseHook | None = None
    error: ErrorHook | None = None
    reply: ReplyHook | None = None
    chat: ChatHook | None = None


NO_HOOKS = Hooks()


class Patches:
    """The hooks of the active faults and variants, applied one after the other in the order given
    (faults.active_hooks decides it)."""

    def __init__(self, hooks: Sequence[Hooks] = ()) -> None:
        self._hooks = tuple(hooks)

    def parsed(self, body: Any) -> None:
        for hooks in self._hooks:
            if hooks.parsed is not None:
                hooks.parsed(body)

    def refusal(self, reason: Refusal, error: ApiError) -> ApiError | None:
        """The refusal to send, or None when a hook waives it (the request is served)."""
        patched: ApiError | None = error
        for hooks in self._hooks:
            if hooks.refusal is not None and patched is not None:
                patched = hooks.refusal(reason, patched)
        return patched

    def route(self, method: str, path: str, route: Destination) -> Destination:
        for hooks in self._hooks:
            if hooks.route is not None:
                route = hooks.route(method, path, route)
        return route

    def request(self, payload: dict[str, Any]) -> None:
        for hooks in self._hooks:
            if hooks.request is not None:
                hooks.request(payload)

    def text(self, draft: Draft) -> None:
        for hooks in self._hooks:
            if hooks.text is not None:
                hooks.text(draft)

    def choice(self, choice: Choice, streamed: bool) -> None:
        for hooks in self._hooks:
            if hooks.choice is not None:
                hooks.choice(choice, streamed)

    def usage(self, usage: dict[str, int], payload: dict[str, Any], choices: list[Choice]) -> None:
        for hooks in self._hooks:
            if hooks.usage is not None:
                hooks.usage(usage, payload, choices)

    def envelope(self, envelope: dict[str, Any]) -> None:
        for hooks in self._hooks:
            if hooks.envelope is not None:
                hooks.envelope(envelope)

    def completion(self, body: dict[str, Any]) -> None:
        for hooks in self._hooks:
            if hooks.completion is not None:
                hooks.completion(body)

    def chunks(self, chunks: list[dict[str, Any]], stream: Stream) -> None:
        for hooks in self._hooks:
            if hooks.chunks is not None:
                hooks.chunks(chunks, stream)

    def sse(self, plan: SsePlan) -> None:
        for hooks in self._hooks:
            if hooks.sse is not None:
                hooks.sse(plan)

    def error(self, body: dict[str, Any], status: int) -> dict[str, Any]:
        for hooks in self._hooks:
            if hooks.error is not None:
                body = hooks.error(body, status)
        return body

    def reply(self, reply: Reply) -> None:
        for hooks in self._hooks:
            if hooks.reply is not None:
                hooks.reply(reply)

    def chat(self) -> list[ReplyHook]:
        """Called as a chat request arrives: the patches of its reply."""
        return [hooks.chat() for hooks in self._hooks if hooks.chat is not None]
