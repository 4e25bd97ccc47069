"""The GET-vs-POST matrix: what the target answers on each route and method.

The documented API names `GET /v1/models` with a chat body; OpenAI-compatible servers serve
`POST /v1/chat/completions`. Six probes are fetched once per run (shared) and judged by several
checks, each sending the ones it needs at once; methods.answer-shapes records the matrix that the
HTML report renders.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .._context import CHAT_PATH, MODELS_PATH, CheckContext, excerpt
from .._model import Clause, Feature, Level, Profile, documented, openai
from ..http import Exchange
from ._judge import envelope_problems, schema_errors
from ._parallel import Batch
from ._registry import check

CHAT_COMPLETION = "chat.completion"
MODEL_LIST = "model list"
COMPLETION_LIST = "list"  # OpenAI's listChatCompletions on GET /chat/completions (stored completions)
ERROR_STATUSES = (400, 404, 405)


@dataclass(frozen=True, slots=True)
class Probe:
    label: str
    method: str
    path: str
    chat_body: bool
    # The shapes that count as a valid answer (an enveloped 400/404/405 is always one).
    shapes: tuple[str, ...]


PROBES = (
    Probe("POST /v1/chat/completions", "POST", CHAT_PATH, True, (CHAT_COMPLETION,)),
    Probe("GET /v1/models", "GET", MODELS_PATH, False, (MODEL_LIST,)),
    Probe("GET /v1/models + chat body", "GET", MODELS_PATH, True, (CHAT_COMPLETION, MODEL_LIST)),
    # The FAQ's fallback on the documented URL: "If GET does not work, try using POST."
    Probe("POST /v1/models + chat body", "POST", MODELS_PATH, True, (CHAT_COMPLETION,)),
    Probe("GET /v1/chat/completions", "GET", CHAT_PATH, False, (COMPLETION_LIST, CHAT_COMPLETION)),
    Probe("PUT /v1/chat/completions", "PUT", CHAT_PATH, True, ()),
    Probe("DELETE /v1/chat/completions", "DELETE", CHAT_PATH, False, ()),
)
POST_CHAT, MODELS, GET_QUIRK, POST_MODELS = PROBES[0], PROBES[1], PROBES[2], PROBES[3]


def answer(ctx: CheckContext, probe: Probe) -> Exchange:
    """The probe's exchange, fetched once per run; POST reuses the run's basic completion."""
    if ctx.chat_route == (probe.method, probe.path) and probe.chat_body:
        exchange = ctx.shared_completion()  # the run's chat route: its basic completion is this probe
    else:
        body = ctx.chat_request() if probe.chat_body else None
        exchange = ctx.shared(f"method:{probe.label}",
                              lambda c: c.http.request(probe.method, probe.path, json_body=body))
    exchange.require_response()
    return exchange


def answered(ctx: CheckContext, probes: Sequence[Probe]) -> Iterator[tuple[Probe, Exchange]]:
    """Each probe with its exchange, in this order, every probe sent at once (`answer` for each)."""
    batch = Batch(ctx)
    for probe in probes:
        if ctx.chat_route == (probe.method, probe.path) and probe.chat_body:
            batch.fetch(ctx.shared_completion)
        else:
            submit_probe(batch, probe)
    for probe, exchange in zip(probes, batch.results(), strict=True):
        exchange.require_response()
        yield probe, exchange


def submit_probe(batch: Batch, probe: Probe) -> None:
    """The probe's shared exchange (as `answer` fetches it), without waiting."""
    body = batch.ctx.chat_request() if probe.chat_body else None
    batch.shared(f"method:{probe.label}", lambda c: c.http.submit(probe.method, probe.path, json_body=body))


def shape_of(exchange: Exchange) -> str:
    """What the answer is: a chat.completion, a model list, a list, an enveloped error, or what is wrong."""
    status = exchange.status or 0
    if 200 <= status < 300:
        return success_shape(exchange)
    if 400 <= status < 500:
        problems = envelope_problems(exchange)
        return f"error envelope {status}" if not problems else f"{status} without the envelope ({problems[0]})"
    return f"server error {status}" if status >= 500 else f"unexpected status {status}"


def success_shape(exchange: Exchange) -> str:
    body = exchange.json()
    if not isinstance(body, dict):
        return "2xx body that is not a JSON object"
    if body.get("object") == CHAT_COMPLETION:
        problems = schema_errors("CreateChatCompletionResponse", body, limit=1)
        return CHAT_COMPLETION if not problems else f"invalid chat.completion ({problems[0]})"
    paginated = any(key in body for key in ("has_more", "first_id", "last_id"))
    if not schema_errors("ModelList", body) and (body["data"] or not paginated):
        return MODEL_LIST
    if body.get("object") == "list" and isinstance(body.get("data"), list):
        # OpenAI's GET /chat/completions: {object: list, data: [stored completions], has_more, ...}
        return COMPLETION_LIST
    return f"unrecognised 2xx body: {excerpt(exchange.text, 80)}"


def is_valid_answer(probe: Probe, exchange: Exchange) -> bool:
    shape = shape_of(exchange)
    return shape in probe.shapes or (exchange.status in ERROR_STATUSES and shape.startswith("error envelope"))


@check(
    "methods.post-chat",
    level=Level.MUST,
    feature=Feature.METHODS,
    clause=documented("4 FAQ", "In standard OpenAI specifications, creating completions generally uses the POST "
                      "method. ... If GET does not work, try using POST."),
    description="POST /v1/chat/completions answers 200 with a chat.completion (the OpenAI profile; under "
                "--profile documented the documented URL is enough, see methods.get-quirk).",
    accepts=("200 chat.completion",),
    profiles=(Profile.OPENAI,),
)
def post_chat(ctx: CheckContext) -> None:
    exchange = answer(ctx, POST_CHAT)
    shape = shape_of(exchange)
    ctx.expect(exchange.status == 200 and shape == CHAT_COMPLETION, "HTTP 200 with a chat.completion",
               f"HTTP {exchange.status}, {shape}", ctx.where(exchange), exchange=exchange)


@check(
    "methods.no-server-error",
    level=Level.MUST,
    feature=Feature.METHODS,
    clause=openai("Paths and errors", "POST /chat/completions documents only 200 and 429"),
    client_break="openai-python retries a 5xx and then raises InternalServerError (openai/_base_client.py "
                 "_should_retry): https://github.com/openai/openai-python#retries",
    description="No probe of the method matrix (POST/GET/PUT/DELETE on the chat and models routes) gets a 5xx.",
    accepts=("any status below 500",),
    requests=len(PROBES),
)
def no_server_error(ctx: CheckContext) -> None:
    for probe, exchange in answered(ctx, PROBES):
        ctx.expect((exchange.status or 0) < 500, f"{probe.label}: an answer below 500",
                   f"HTTP {exchange.status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)


@check(
    "methods.answer-shapes",
    level=Level.SHOULD,
    feature=Feature.METHODS,
    clause=openai("GET on the chat endpoint (openai-python#2703)", "405 {'error':{'message':'Only POST requests "
                  "are accepted.','type':'invalid_request_error','param':None,'code':'method_not_supported'}}"),
    description="Each matrix probe answers one valid shape: a chat.completion, a model list, or 400/404/405 with "
                "the envelope; the matrix goes into the report.",
    accepts=("chat.completion", "model list", "list (GET /chat/completions)", "400/404/405 with the envelope"),
    requests=len(PROBES),
)
def answer_shapes(ctx: CheckContext) -> None:
    rows: list[dict[str, Any]] = []
    for probe, exchange in answered(ctx, PROBES):
        shape, valid = shape_of(exchange), is_valid_answer(probe, exchange)
        rows.append({"request": probe.label, "status": exchange.status, "shape": shape,
                     "allow": exchange.response_headers.get("allow"), "judgement": "ok" if valid else "invalid"})
        if not valid:
            wanted = ", ".join([*probe.shapes, "400/404/405 with the envelope"])
            ctx.fail(f"{probe.label}: one of {wanted}", f"HTTP {exchange.status}: {shape}", ctx.where(exchange),
                     exchange=exchange)
    ctx.details["method_matrix"] = rows


@check(
    "methods.allow-header",
    level=Level.SHOULD,
    feature=Feature.METHODS,
    # HTTP itself, which the documented API and OpenAI's spec both leave to the protocol.
    clause=Clause("rfc9110", "15.5.6 405 Method Not Allowed", "The origin server MUST generate an Allow header "
                  "field in a 405 response containing a list of the target resource's currently supported methods."),
    description="Every 405 of the method matrix carries an Allow header naming the methods the route takes.",
    accepts=("Allow: POST", "any non-empty Allow"),
    requests=len(PROBES),
)
def allow_header(ctx: CheckContext) -> None:
    answered_405 = [(p, e) for p, e in answered(ctx, PROBES) if e.status == 405]
    if not answered_405:
        raise ctx.not_applicable("no probe of the method matrix was answered with 405")
    for probe, exchange in answered_405:
        allow = exchange.response_headers.get("allow", "").strip()
        ctx.expect(bool(allow), f"{probe.label}: the 405 carries `Allow`", "no Allow header",
                   ctx.where(exchange), exchange=exchange)


@check(
    "methods.models-list",
    level=Level.SHOULD,
    feature=Feature.METHODS,
    clause=documented("Endpoint", "Endpoint Name: List Models / Chat Completions; HTTP Method: GET"),
    description="GET /v1/models without a body answers 200 with a model list {object: list, data: [model...]}.",
    accepts=("200 model list",),
)
def models_list(ctx: CheckContext) -> None:
    exchange = answer(ctx, MODELS)
    shape = shape_of(exchange)
    if exchange.status != 200 or shape != MODEL_LIST:
        problems = schema_errors("ModelList", exchange.json()) if exchange.status == 200 else []
        ctx.fail("HTTP 200 with {object: \"list\", data: [{id, object: \"model\"}...]}",
                 f"HTTP {exchange.status}, {shape}" + (f": {problems[0]}" if problems else ""),
                 ctx.where(exchange), exchange=exchange)


@check(
    "methods.get-quirk",
    level=Level.MUST,
    feature=Feature.METHODS,
    clause=documented("Endpoint", "HTTP Method: GET ... Endpoint URL: https://api.codingplanx.ai/v1/models ... "
                      "If GET does not work, try using POST."),
    description="The documented URL serves chat: GET /v1/models with a chat JSON body, or (the FAQ's fallback) "
                "POST /v1/models, answers 200 with a chat.completion.",
    accepts=("200 chat.completion on GET /v1/models + body", "200 chat.completion on POST /v1/models"),
    requests=2,
    profiles=(Profile.DOCUMENTED,),
)
def get_quirk(ctx: CheckContext) -> None:
    answers = {probe.label: exchange for probe, exchange in answered(ctx, (GET_QUIRK, POST_MODELS))}
    shapes = {label: shape_of(exchange) for label, exchange in answers.items()}
    ctx.details["get_quirk"] = {label: {"status": answers[label].status, "shape": shape}
                                for label, shape in shapes.items()}
    if any(answers[label].status == 200 and shape == CHAT_COMPLETION for label, shape in shapes.items()):
        return
    for label, exchange in answers.items():
        ctx.fail(f"{label}: HTTP 200 with a chat.completion (either documented method will do)",
                 f"HTTP {exchange.status}, {shapes[label]}", ctx.where(exchange), exchange=exchange)


@check(
    "methods.get-quirk-info",
    level=Level.INFO,
    feature=Feature.METHODS,
    clause=documented("4 FAQ", "Please verify the actual server-side configuration when making API calls."),
    description="Records what GET /v1/models with a chat body answers; fails only when that is not a valid shape "
                "(chat.completion, model list, or 400/404/405 with the envelope).",
    accepts=("chat.completion", "model list", "400/404/405 with the envelope"),
    profiles=(Profile.OPENAI,),
)
def get_quirk_info(ctx: CheckContext) -> None:
    exchange = answer(ctx, GET_QUIRK)
    shape = shape_of(exchange)
    ctx.details["get_quirk"] = {"status": exchange.status, "shape": shape,
                                "documented_call_works": exchange.status == 200 and shape == CHAT_COMPLETION}
    ctx.expect(is_valid_answer(GET_QUIRK, exchange), "a chat.completion, a model list, or 400/404/405 with the "
               "envelope", f"HTTP {exchange.status}: {shape}", ctx.where(exchange), exchange=exchange)
