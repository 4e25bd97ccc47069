"""schemathesis over the spec: generated requests, judged by schemathesis's own checks and ours.

schemathesis only *generates* here. Every case is sent through `ctx.http` (so it is budgeted,
retried on 429 and recorded with the API key redacted), then the answer is handed back to
schemathesis (`case.validate_response`) with its six checks — not_a_server_error,
status_code_conformance, content_type_conformance, response_schema_conformance,
negative_data_rejection, positive_data_acceptance — plus two of ours registered with
`@schemathesis.check`: the error envelope on every 4xx, usage arithmetic on every 200.

Generation uses a copy of the spec (`generation_spec`) with smaller message and tool structures.
Positive cases are further narrowed: what OpenAI itself rejects although our spec allows it (unknown
fields, arbitrary JSON schemas in tools, a tool message without a tool call) and what costs money
(max_tokens, n, long prompts); `stream` is never generated (SSE is judged by the stream checks).
Every body is re-validated against the real spec before it is sent: a "negative" body that is legal
is dropped, never judged by its generation-time label. Only the fuzzing phase runs (hypothesis
`@given`, derandomized, no shrinking), so schemathesis's coverage phase and its ~200 cases per
operation never start; BUDGET caps the requests of each mode.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jsonschema
from hypothesis import HealthCheck, Phase, given, settings

from .._compat import preload_fuzz_imports
from .._context import CheckContext, excerpt
from .._model import Depth, Feature, Level, Profile, documented
from ..http import Exchange
from ..spec import load_spec, with_openai_structures
from ._judge import schema_errors, usage_problems
from ._registry import check

if TYPE_CHECKING:
    import schemathesis

REQUEST = "CreateChatCompletionRequest"
# Requests per mode at full depth; the cases drawn that are not sent (legal "negative" bodies) are free.
BUDGET = {"positive": 30, "negative": 40}
# Hypothesis draws per mode, split over the operations: more than the budget, since some are dropped (in the
# document view most negative drafts break only OpenAI's extras, which are legal there: 56 draws sent 19 cases).
DRAWS = {"positive": 30, "negative": 140}
MAX_MESSAGES = 3  # per generated conversation: prompt tokens cost money
# Failing cases reported in full; the rest are counted (one bug often fails every case).
REPORTED_CASES = 3
SCHEMATHESIS_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
                       "response_schema_conformance", "negative_data_rejection", "positive_data_acceptance")
# Only the fields whose names carry real secrets are masked in schemathesis's curl; its default
# markers include `token`, which would mask `max_tokens`.
SENSITIVE_MARKERS = ["authorization", "api-key", "api_key", "secret", "password", "cookie"]


def preload() -> None:
    """Called by the engine before any check starts (why: `_compat.FUZZ_LAZY_IMPORTS`)."""
    preload_fuzz_imports()


# --- the spec schemathesis generates from -----------------------------------------------------------
def generation_spec(model: str, base_url: str, mode: str) -> dict[str, Any]:
    """The spec schemathesis draws `mode` cases from (responses untouched; each narrowing says why)."""
    # Negative cases break only what the document states (OpenAI's extra limits are the SHOULD params.*
    # checks' business); positive cases stay inside OpenAI's limits too, so every server must accept them.
    spec = with_servers(with_openai_structures(load_spec("document")), base_url)
    if mode == "positive":
        spec["components"]["schemas"][REQUEST] = load_spec("openai")["components"]["schemas"][REQUEST]
    simplify(spec["components"]["schemas"])
    if mode == "positive":
        narrow_for_acceptance(spec["components"]["schemas"], model)
    return spec


def simplify(schemas: dict[str, Any]) -> None:
    """Smaller structures, for both modes: drawing the full message and tool schemas costs seconds per case."""
    props = schemas[REQUEST]["properties"]
    props["messages"].update(maxItems=MAX_MESSAGES, items={"$ref": "#/components/schemas/FuzzMessage"})
    schemas["FuzzMessage"] = {"type": "object", "required": ["role"], "properties": {
        "role": schemas["Message"]["properties"]["role"], "content": {"type": "string", "maxLength": 120}}}
    schemas["Tool"]["properties"]["function"] = {
        # A function's `parameters` must be a valid JSON Schema, which arbitrary objects are not.
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                       "description": {"type": "string", "maxLength": 80}},
    }
    json_schema = props["response_format"]["oneOf"][2]["properties"]["json_schema"]
    json_schema["properties"]["schema"] = {"const": {"type": "object"}}


def narrow_for_acceptance(schemas: dict[str, Any], model: str) -> None:
    """Positive cases only: what OpenAI rejects although our spec allows it, and what costs money."""
    request = schemas[REQUEST]
    props = request["properties"]
    # Unknown keys, at the top and in every nested object: OpenAI answers "Unrecognized request argument".
    props["model"] = {"type": "string", "enum": [model]}  # an unknown model only proves a 404
    for name in ("stream", "stream_options"):
        props.pop(name)  # SSE is the stream checks' business; stream_options needs stream
    props["max_tokens"].update(maximum=16)  # cost
    props["n"].update(maximum=2)  # cost
    message = schemas["FuzzMessage"]
    message["required"] = ["role", "content"]
    # Roles without cross-message rules (a tool message needs a preceding tool call).
    message["properties"] = {"role": {"enum": ["system", "user", "assistant"]},
                             "content": {"type": "string", "minLength": 1, "maxLength": 120}}
    # OpenAI's schema types logit_bias values as integers; keys must be real token IDs.
    props["logit_bias"].update(maxProperties=3, propertyNames={"pattern": "^[1-9][0-9]{0,3}$"},
                               additionalProperties={"type": "integer", "minimum": -100, "maximum": 100})
    props["seed"].update(minimum=-(2**31), maximum=2**31 - 1)
    props["user"].update(maxLength=64)
    props["stop"]["oneOf"][1].update(minLength=1, maxLength=16)
    props["stop"]["oneOf"][2]["items"].update(minLength=1, maxLength=16)
    props["tools"].update(minItems=1, maxItems=3)  # OpenAI rejects `tools: []`
    json_schema = props["response_format"]["oneOf"][2]["properties"]["json_schema"]
    json_schema["properties"].pop("strict")  # strict needs additionalProperties: false in the schema
    for name in (REQUEST, "FuzzMessage", "Tool", "NamedToolChoice"):
        closed(schemas[name])


def closed(schema: Any) -> None:
    """No unknown keys in any object of the request, however deep (OpenAI rejects them)."""
    if isinstance(schema, dict):
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            closed(value)
    elif isinstance(schema, list):
        for item in schema:
            closed(item)


def with_servers(spec: dict[str, Any], base_url: str) -> dict[str, Any]:
    # The spec's paths start with /v1 and the target's base URL ends with it: the server is the root.
    spec["servers"] = [{"url": base_url.rstrip("/").removesuffix("/v1") or base_url}]
    return spec


def operations(schema: schemathesis.BaseSchema, profile: Profile, chat_route: tuple[str, str]) -> list[Any]:
    """The run's chat route; under the documented profile also the GET /v1/models quirk."""
    from schemathesis.core.result import Err

    ops = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the spec shipped with the suite is broken: a harness error
        ops.append(result.ok())
    method, path = chat_route
    wanted = {f"{method} /v1{path}"} | ({"GET /v1/models"} if profile is Profile.DOCUMENTED else set())
    return [op for op in ops if f"{op.method.upper()} {op.path}" in wanted]


def load_schema(spec: dict[str, Any]) -> schemathesis.BaseSchema:
    import schemathesis

    register_our_checks()
    config = schemathesis.Config.from_dict({
        "output": {"sanitization": {"sensitive-markers": SENSITIVE_MARKERS}},
        "generation": {"allow-x00": False, "codec": "utf-8"},
        "checks": {
            # Only the statuses that say something about the data: no 5xx, no 401/403/429.
            "negative_data_rejection": {"expected-statuses": ["400", "404", "413", "422"]},
            "positive_data_acceptance": {"expected-statuses": ["2xx"]},
        },
    })
    return schemathesis.openapi.from_dict(copy.deepcopy(spec), config=config)


# --- our checks, registered with schemathesis -------------------------------------------------------
_registered: dict[str, Callable[..., Any]] = {}
_register_lock = threading.Lock()


def register_our_checks() -> None:
    """Register once per process (schemathesis's registry is global)."""
    import schemathesis

    with _register_lock:
        if _registered:
            return

        @schemathesis.check
        def conformance_error_envelope(ctx: Any, response: Any, case: Any) -> None:
            """Every 4xx body is the OpenAI error envelope."""
            if 400 <= response.status_code < 500:
                problems = schema_errors("ErrorResponse", _json_or_none(response.content))
                if problems:
                    raise AssertionError(f"HTTP {response.status_code} body is not the error envelope: "
                                         f"{problems[0]}")

        @schemathesis.check
        def conformance_usage_arithmetic(ctx: Any, response: Any, case: Any) -> None:
            """A 200 completion's usage adds up: total = prompt + completion, all integers >= 0."""
            body = _json_or_none(response.content)
            if response.status_code == 200 and isinstance(body, dict) and "usage" in body:
                problems = usage_problems(body["usage"])
                if problems:
                    raise AssertionError(f"usage does not add up: {problems[0]}")

        _registered.update(error_envelope=conformance_error_envelope, usage=conformance_usage_arithmetic)


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def all_checks() -> list[Callable[..., Any]]:
    from schemathesis.checks import CHECKS

    return [CHECKS.get_one(name) for name in SCHEMATHESIS_CHECKS] + list(_registered.values())


# --- one case: tame, re-validate, send, judge ----------------------------------------------------------
def tame_positive(body: dict[str, Any]) -> dict[str, Any]:
    """Cross-field rules the schema cannot state, so a positive case is one OpenAI would accept."""
    body = copy.deepcopy(body)
    names = [tool["function"]["name"] for tool in body.get("tools", [])]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice["function"]["name"] not in names:
        if names:
            choice["function"]["name"] = names[0]
        else:
            body.pop("tool_choice")
    if choice == "required" and not names:
        body.pop("tool_choice")
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        # JSON mode needs an instruction to answer in JSON (documented FAQ); the last message gives it,
        # so the case stays within the narrowed spec (schemathesis re-checks edited cases against it).
        body["messages"] = [*body["messages"][:MAX_MESSAGES - 1], {"role": "user", "content": "Reply in JSON."}]
    for name in ("n", "max_tokens", "seed"):
        # 8.0 is an integer to JSON Schema, but no SDK sends it and strictly typed servers refuse it.
        if isinstance(body.get(name), float):
            body[name] = int(body[name])
    return body


def not_legal_json(raw: bytes) -> bool:
    """Random bytes are a negative case unless they happen to be a legal request."""
    try:
        return bool(schema_errors(REQUEST, json.loads(raw)))
    except ValueError:
        return True


def tame_negative(body: Any, model: str) -> Any:
    """Point a negative case at the real model and keep it cheap, without making it legal."""
    if not isinstance(body, dict):
        return body
    tamed = copy.deepcopy(body)
    for key, value in (("model", model), ("stream", False), ("max_tokens", 1), ("n", 1)):
        if key in tamed:
            candidate = {**tamed, key: value}
            if schema_errors(REQUEST, candidate):  # still invalid: the mutation was elsewhere
                tamed = candidate
    return tamed


class FuzzRun:
    """One mode (positive or negative) over the selected operations, within a request budget."""

    def __init__(self, ctx: CheckContext, mode: str, spec: dict[str, Any]) -> None:
        self.ctx, self.mode = ctx, mode
        # schemathesis re-labels an edited case by the spec it drew from: tamed cases must stay inside it.
        self.generation_validator = jsonschema.Draft202012Validator({**spec, "$ref": f"#/components/schemas/{REQUEST}"})
        self.sent = 0
        self.dropped = 0  # generated "negative" bodies that the real spec allows
        self.failed_cases = 0
        self.rate_limited = 0
        self.pending: list[tuple[Any, Any, Any]] = []

    def body_to_send(self, case: Any) -> Any:
        from schemathesis.core import NOT_SET

        if case.body is NOT_SET:
            # No body is legal only where the spec makes it optional (GET /v1/models).
            return NOT_SET if (self.mode == "negative") == (case.method == "POST") else None
        if self.mode == "positive":
            body = tame_positive(case.body) if isinstance(case.body, dict) else case.body
            problems = schema_errors(REQUEST, body) + [e.message for e in self.generation_validator.iter_errors(body)]
            if problems:
                raise RuntimeError(f"harness bug: a tamed positive case is invalid: {excerpt(problems[0], 200)}")
            return body
        if isinstance(case.body, bytes):  # "invalid syntax: random bytes", sent as they are
            if not case.body.strip():  # whitespace is no body at all: legal where the body is optional
                return case.body if case.method == "POST" else None
            return case.body if not_legal_json(case.body) else None
        body = tame_negative(case.body, self.ctx.model)
        return body if schema_errors(REQUEST, body) else None  # None: legal after all, not judged

    def one_case(self, case: Any) -> None:
        from schemathesis.core import NOT_SET

        self.ctx.session.raise_if_stopped()  # drawing the remaining cases would only delay the stop (Ctrl-C)
        if self.sent >= BUDGET[self.mode]:
            return
        body = self.body_to_send(case)
        if body is None:
            self.dropped += 1
            return
        path = case.path.removeprefix("/v1")
        content = None if body is NOT_SET else body if isinstance(body, bytes) else json.dumps(body)
        # Sent without waiting (within the run's concurrency); judged in order once generation ends.
        self.pending.append((case, body, self.ctx.http.submit(case.method, path, content=content)))
        self.sent += 1

    def settle(self) -> None:
        """Wait for every case already sent: a check must not end while its transcripts are being written."""
        concurrent.futures.wait([future for _, _, future in self.pending])

    def judge_all(self) -> None:
        for case, body, future in self.pending:
            self.judge_answer(case, body, future.result())

    def judge_answer(self, case: Any, body: Any, exchange: Exchange) -> None:
        exchange.require_response()
        if exchange.status == 429:  # still rate limited after the recorder's retries: says nothing about the case
            self.rate_limited += 1
            return
        # Edits make schemathesis re-label the case against its spec; it wrongly calls a missing optional
        # body invalid, so only what really changed is written back.
        if body is not case.body:
            case.body = body
        sent = {"Accept": exchange.request_headers.get("Accept", "application/json")}
        if case.headers != sent:
            # The generated Accept header was not sent, ours was; the spec requires one, so a case
            # judged without it would be re-labelled negative.
            case.headers = sent
        self.judge(case, exchange, body)

    def judge(self, case: Any, exchange: Exchange, body: Any) -> None:
        from schemathesis.core.failures import FailureGroup

        try:
            case.validate_response(as_schemathesis_response(exchange), checks=all_checks())
        except FailureGroup as group:
            self.failed_cases += 1
            if self.failed_cases > REPORTED_CASES:
                return
            where = f"{self.ctx.where(exchange)} with the {self.mode} case body {shown_body(body)}"
            for failure in group.exceptions:
                name, wanted = check_of(failure)
                self.ctx.fail(f"schemathesis {name}: {wanted}",
                              f"HTTP {exchange.status}: {failure.title}. {excerpt(failure.message, 300)}", where,
                              exchange=exchange)

    def report_the_rest(self) -> None:
        hidden = self.failed_cases - REPORTED_CASES
        if hidden > 0:
            self.ctx.fail(f"every {self.mode} case passes", f"{hidden} more failing cases (the first "
                          f"{REPORTED_CASES} are shown)", f"{self.sent} {self.mode} cases sent")


def shown_body(body: Any) -> str:
    from schemathesis.core import NOT_SET

    if body is NOT_SET:
        return "(no body)"
    if isinstance(body, bytes):
        return f"(raw bytes) {body[:200]!r}"
    return excerpt(json.dumps(body), 600)


WANTS = {
    "not_a_server_error": "no 5xx",
    "status_code_conformance": "a status the spec documents",
    "content_type_conformance": "a Content-Type the spec documents",
    "response_schema_conformance": "a body valid against the spec's response schema",
    "negative_data_rejection": "a request the spec forbids rejected with 400/404/413/422",
    "positive_data_acceptance": "a request the spec allows accepted with 2xx",
    "conformance_error_envelope": "every 4xx body is the error envelope",
    "conformance_usage_arithmetic": "usage adds up on every 200",
}


def check_of(failure: Any) -> tuple[str, str]:
    """(the schemathesis check that failed, what it wanted in our words)."""
    names = list(getattr(failure, "checks", ()) or ()) or [n for n in WANTS if f"`{n}`" in failure.title]
    name = names[0] if names else type(failure).__name__
    return name, WANTS.get(name, failure.title)


def as_schemathesis_response(exchange: Exchange) -> Any:
    """Our (already redacted) exchange as schemathesis's Response: the real key never reaches it."""
    import requests
    from schemathesis.core.transport import Response

    request = requests.Request(exchange.method, exchange.url, headers=exchange.request_headers,
                               data=(exchange.request_body or "").encode()).prepare()
    return Response(status_code=exchange.status or 0,
                    headers={name: [value] for name, value in exchange.response_headers.items()},
                    content=exchange.body, request=request, elapsed=exchange.elapsed_s, verify=True,
                    encoding="utf-8")


# One fuzz run at a time: generation is CPU-bound (nothing to gain from threads), and hypothesis's
# source introspection has tripped CPython 3.11's AST recursion check when two ran at once.
_FUZZ_LOCK = threading.Lock()


def fuzz(ctx: CheckContext, mode: str) -> None:
    with _FUZZ_LOCK:  # generation only: the answers are awaited and judged outside the lock
        ctx.session.raise_if_stopped()  # the run stopped while this check waited for the lock
        run, ops = generate_and_send(ctx, mode)
    judge(ctx, mode, run, ops)


def generate_and_send(ctx: CheckContext, mode: str) -> tuple[FuzzRun, list[Any]]:
    from schemathesis import GenerationMode

    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    spec = generation_spec(ctx.model, ctx.session.target.base_url, mode)
    ops = operations(load_schema(spec), ctx.profile, ctx.chat_route)
    run = FuzzRun(ctx, mode, spec)
    try:
        for op in ops:
            @settings(max_examples=DRAWS[mode] // len(ops), derandomize=True, database=None, deadline=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=generation))
            def prop(case: Any) -> None:
                run.one_case(case)

            prop()
    except Exception:
        run.settle()  # the run stopped (or generation broke): the cases already sent still finish their transcripts
        raise
    return run, ops


def judge(ctx: CheckContext, mode: str, run: FuzzRun, ops: list[Any]) -> None:
    run.judge_all()
    run.report_the_rest()
    ctx.details["fuzz"] = {"mode": mode, "operations": [f"{op.method.upper()} {op.path}" for op in ops],
                           "sent": run.sent, "dropped_as_legal": run.dropped, "failing_cases": run.failed_cases,
                           "rate_limited": run.rate_limited}
    if run.sent == run.rate_limited:
        raise ctx.skip(f"no {mode} case could be judged: {run.sent} sent, {run.rate_limited} rate limited (429)")


FUZZ_CLAUSE = documented("1.2 Body Parameters", "the following parameters are usually passed via the JSON Body.")


@check(
    "fuzz.schemathesis.positive",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=FUZZ_CLAUSE,
    description="schemathesis-generated valid requests get 2xx, a documented status and Content-Type, a body "
                "valid against the response schema, and usage that adds up.",
    accepts=("2xx with a schema-valid body",),
    requests=BUDGET["positive"],
    depths=(Depth.FULL,),
)
def fuzz_positive(ctx: CheckContext) -> None:
    fuzz(ctx, "positive")


@check(
    "fuzz.schemathesis.negative",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 Body Parameters", "temperature number No 1 Sampling temperature, between 0 and 2."),
    client_break="openai-python retries a 5xx and then raises InternalServerError (openai/_base_client.py "
                 "_should_retry); without error.message its APIStatusError shows the raw body",
    description="schemathesis-generated requests that break the document's constraints (re-validated against "
                "the spec's document view) get 400/404/413/422 with error.message, never 5xx.",
    accepts=("400", "404", "413", "422"),
    requests=BUDGET["negative"],
    depths=(Depth.FULL,),
)
def fuzz_negative(ctx: CheckContext) -> None:
    fuzz(ctx, "negative")
