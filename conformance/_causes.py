"""Root causes: failures that share one cause, grouped from the evidence itself.

One defect fails many checks (errors served as FastAPI's `{"detail": ...}` fail a dozen, a server that
ignores `stream: true` fails every stream check). Each failure is traced to the answer it points at
(its transcript; the check's last one when it names none) and gets the key of the first rule that
matches that answer:

    rule               matches                                                   key
    bound              the answer broke a bound of the run (too large, too       the bound
                       slow, too many events)
    status-for-input   HTTP 5xx; an invalid request (against the spec's request  the status (class) and the
                       schema) answered 2xx without an error body; and, once     input class: invalid input,
                       error-shape did not match, a chat request (POST, or GET   or the route
                       with a body) refused by its route (404, 405) or a valid
                       one refused with another 4xx than 401/403
    error-shape        an error answer (4xx, or `error` in a 2xx body) that is   status class, media type, top-
                       not 4xx JSON {error: {message, type, param, code}}        level and `error` keys
    framing            a 2xx answer not framed as its request asks: JSON for a   what is wrong with the framing
                       stream, SSE for a non-stream request, a content type
                       that is not the body's, SSE events that are not JSON or
                       that follow `data: [DONE]`
    ignored-parameter  the request set tool_choice (forcing a call), n,          the parameter
                       max_tokens, stop or response_format and the 2xx answer
                       shows no effect of it
    usage-sum          the 2xx answer's usage has total_tokens != prompt_tokens  -
                       + completion_tokens, and the failure names a count
    schema-key         the 2xx answer (or a chunk) breaks its response schema    the key's path
                       at a key (missing, wrong type, out of range), and the
                       failure names that key

A check's failures that match no rule go with the root cause of its other failures; a check none of
whose failures matches a rule is a root cause of its own. A check may share several root causes.

`root_causes(results)` is called by the engine; results.json carries what it returns, and every
report reads it from there.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ._model import CheckResult, Failure, Level, Verdict

RULES = ("bound", "status-for-input", "error-shape", "framing", "ignored-parameter", "usage-sum", "schema-key",
         "check")
ENVELOPE_KEYS = frozenset({"message", "type", "param", "code"})
LEVEL_ORDER = {Level.MUST: 0, Level.SHOULD: 1, Level.INFO: 2}

Key = tuple[str, ...]


class CauseExample(NamedTuple):
    """The exchange that shows a root cause: transcript `transcript` of check `check`."""

    check: str
    transcript: int


@dataclass(frozen=True, slots=True)
class RootCause:
    """One cause and the checks it fails (MUST first), with one exchange that shows it (and reproduces
    it); as the engine decides it and as results.json's `root_causes[]` reads back."""

    id: str
    rule: str
    title: str
    checks: tuple[str, ...]
    failures: int
    example: CauseExample | None  # None when no transcript shows it

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "rule": self.rule, "title": self.title, "checks": list(self.checks),
                "failures": self.failures,
                "example": self.example._asdict() if self.example else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RootCause:
        example = data["example"]
        return cls(str(data["id"]), str(data["rule"]), str(data["title"]), tuple(data["checks"]),
                   int(data["failures"]),
                   CauseExample(str(example["check"]), int(example["transcript"])) if example else None)


@dataclass
class _Group:
    key: Key
    title: str
    members: dict[str, CheckResult] = field(default_factory=dict)
    failures: int = 0
    examples: list[tuple[CheckResult, int]] = field(default_factory=list)

    def add(self, result: CheckResult, index: int | None) -> None:
        self.members.setdefault(result.spec.id, result)
        self.failures += 1
        if index is not None:
            self.examples.append((result, index))


def root_causes(results: Sequence[CheckResult], model: str | None = None) -> list[RootCause]:
    """The failed checks grouped by cause, the cause failing most checks first. `model` is the run's: a
    request for another one is not valid input (the target may refuse it)."""
    groups: dict[Key, _Group] = {}

    def group(key: Key, title: str) -> _Group:
        return groups.setdefault(key, _Group(key, title))

    for result in results:
        if result.verdict is not Verdict.FAILED:
            continue
        matched: list[Key] = []
        unmatched: list[Failure] = []
        for failure in result.failures:
            index, transcript = _offending(result, failure)
            found = classify(failure, transcript, model) if transcript is not None else None
            if found is None:
                unmatched.append(failure)
                continue
            key, title = found
            group(key, title).add(result, index)
            matched.append(key)
        if not matched:
            own = group(("check", result.spec.id), _own_title(result, result.failures[:1]))
            for failure in result.failures:
                own.add(result, _offending(result, failure)[0])
            if not result.failures:
                own.add(result, _offending(result, None)[0])
        elif unmatched:  # the check's other failures: most likely the same cause
            dominant = Counter(matched).most_common(1)[0][0]
            groups[dominant].failures += len(unmatched)
    ordered = sorted(groups.values(), key=lambda g: (-len(g.members), min(_rank(r) for r in g.members.values())))
    out: list[RootCause] = []
    used: set[str] = set()
    for g in ordered:
        members = sorted(g.members.values(), key=lambda r: (_rank(r), r.spec.id))
        example = min(g.examples, key=lambda e: _rank(e[0]), default=None)
        out.append(RootCause(_unique(_slug(g.key), used), g.key[0], g.title, tuple(r.spec.id for r in members),
                             g.failures, CauseExample(example[0].spec.id, example[1]) if example else None))
    return out


def _rank(result: CheckResult) -> int:
    return LEVEL_ORDER.get(result.spec.level, 3)


def _offending(result: CheckResult, failure: Failure | None) -> tuple[int | None, dict[str, Any] | None]:
    """The transcript a failure points at; the check's last one when it names none."""
    exchanges = result.exchanges
    index = failure.exchange if failure is not None else None
    if index is None or not 0 <= index < len(exchanges):
        index = len(exchanges) - 1 if exchanges else None
    return index, (exchanges[index] if index is not None else None)


def _own_title(result: CheckResult, first: Sequence[Failure]) -> str:
    what = _first_line(first[0].expected if first else result.message)
    return f"{result.spec.id}: expected {what}" if what else result.spec.id


def _slug(key: Key) -> str:
    text = ".".join(key).lower().replace("[]", "")
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-.") or "cause"


def _unique(slug: str, used: set[str]) -> str:
    candidate, n = slug, 2
    while candidate in used:
        candidate, n = f"{slug}-{n}", n + 1
    used.add(candidate)
    return candidate


def _first_line(text: str, limit: int = 140) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- the rules --------------------------------------------------------------------------------------
def classify(failure: Failure, transcript: dict[str, Any], model: str | None = None) -> tuple[Key, str] | None:
    """The root-cause key and title of one failure, from the answer it points at; None: no rule matches."""
    answer = _Answer(transcript, model)
    for rule in _RULES:
        found = rule(answer, failure)
        if found is not None:
            return found
    return None


class _Answer:
    """One transcript, read the way the rules need it (parsed lazily, once)."""

    def __init__(self, transcript: dict[str, Any], model: str | None = None) -> None:
        self.transcript = transcript
        self.model = model
        request, response = transcript.get("request") or {}, transcript.get("response") or {}
        self.method = str(request.get("method", ""))
        self.path = urllib.parse.urlsplit(str(request.get("url", ""))).path
        self.request_body: str | None = request.get("body")
        self.status: int | None = response.get("status")
        headers = {str(k).lower(): str(v) for k, v in (response.get("headers") or {}).items()}
        self.media = headers.get("content-type", "").split(";")[0].strip().lower()
        self.body = str(response.get("body") or "")
        self.limit = transcript.get("limit_exceeded")
        self.error = transcript.get("error")

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and not self.error

    def request_json(self) -> Any:
        try:
            return json.loads(self.request_body) if self.request_body is not None else None
        except ValueError:
            return _NOT_JSON

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return _NOT_JSON

    @property
    def sse(self) -> bool:
        """The body is (meant as) an event stream: so labelled, or starting with a `data:` line."""
        return "event-stream" in self.media or self.body.lstrip().startswith("data:")

    def events(self) -> list[str]:
        """The data of each SSE event (empty when the body is not SSE)."""
        if not self.sse:
            return []
        from .sse import SSEParser

        parser = SSEParser()
        try:
            parser.feed(self.body.encode("utf-8", errors="replace"))
            parser.close()
        except Exception:  # noqa: BLE001 - a body the parser refuses has no events to read
            return []
        return [event.data for event in parser.events]

    def chunks(self) -> list[dict[str, Any]]:
        """The JSON object events of an SSE body (empty when the body is not SSE)."""
        out = []
        for data in self.events():
            try:
                value = json.loads(data)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    def choices(self) -> dict[int, dict[str, Any]]:
        """Per choice index: content (str), tool_calls (bool) of a JSON completion or an SSE stream."""
        found: dict[int, dict[str, Any]] = {}
        body = self.json()
        if isinstance(body, dict) and isinstance(body.get("choices"), list):
            for position, choice in enumerate(body["choices"]):
                message = _object(_object(choice).get("message"))
                index = choice.get("index") if isinstance(_object(choice).get("index"), int) else position
                content = message.get("content")
                found[index] = {"content": content if isinstance(content, str) else "",
                                "tool_calls": bool(message.get("tool_calls"))}
            return found
        for chunk in self.chunks():
            for choice in chunk.get("choices") or []:
                index = _object(choice).get("index")
                if not isinstance(index, int):
                    continue
                entry = found.setdefault(index, {"content": "", "tool_calls": False})
                delta = _object(choice.get("delta"))
                if isinstance(delta.get("content"), str):
                    entry["content"] += delta["content"]
                entry["tool_calls"] = entry["tool_calls"] or bool(delta.get("tool_calls"))
        return found

    def usage(self) -> dict[str, Any] | None:
        body = self.json()
        candidates = [body] if isinstance(body, dict) else self.chunks()
        usages = [c["usage"] for c in candidates if isinstance(c.get("usage"), dict)]
        return usages[-1] if usages else None


_NOT_JSON = object()


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _bound(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:
    if not answer.limit:
        return None
    kind = str(answer.limit).split(":")[0].strip()  # "too large", "too slow", "too many events"
    return ("bound", kind), f"Responses broke the run's bounds ({kind}): a client would hang or run out of memory"


def _invalid_request(answer: _Answer) -> bool:
    """The request body is not a chat request the target must serve: not a JSON object, against the spec's
    request schema (OpenAI's view), or inconsistent where the schema cannot say (another model than the
    run's, a tool_choice naming no tool it sends, stream_options without a stream)."""
    body = answer.request_json()
    if answer.request_body is None:
        return False
    if body is _NOT_JSON or not isinstance(body, dict):
        return True
    from .spec import schema_validator

    if next(iter(schema_validator("CreateChatCompletionRequest", "openai").iter_errors(body)), None) is not None:
        return True
    names = {_object(_object(tool).get("function")).get("name") for tool in body.get("tools") or []}
    choice = body.get("tool_choice")
    return bool((answer.model and body.get("model") != answer.model)
                or (choice == "required" and not names)
                or (isinstance(choice, dict) and _object(choice.get("function")).get("name") not in names)
                or (body.get("stream_options") is not None and body.get("stream") is not True))


def _status_for_input(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:
    """HTTP 5xx for any input; 2xx (no error body) for invalid input."""
    status = answer.status
    if status is None:
        return None
    if status >= 500:
        if _invalid_request(answer):
            return (("status-for-input", "5xx", "invalid input"),
                    "Invalid requests answered HTTP 5xx instead of a 4xx (a client retries them, then raises)")
        route = f"{answer.method} {answer.path}"
        return ("status-for-input", "5xx", route), f"HTTP 5xx on {route} for valid requests"
    body = answer.json()
    if answer.ok and not (isinstance(body, dict) and "error" in body) and _invalid_request(answer):
        return (("status-for-input", "2xx", "invalid input"),
                "Invalid requests accepted (HTTP 2xx) instead of rejected with a 4xx")
    return None


def _refused_chat(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:
    """status-for-input, once error-shape did not match: a chat request (POST, or GET with a body) for the
    run's model refused by its route (404, 405), or a valid one refused with another 4xx than 401/403."""
    status, request = answer.status, answer.request_json()
    chat = answer.method == "POST" or (answer.method == "GET" and answer.request_body is not None)
    if (status is None or not 400 <= status < 500 or status in (401, 403) or not chat
            or (isinstance(request, dict) and answer.model and request.get("model") != answer.model)):
        return None
    route = f"{answer.method} {answer.path}"
    if status in (404, 405):
        return ("status-for-input", str(status), route), f"Chat requests refused with HTTP {status} on {route}"
    if not _invalid_request(answer):
        return ("status-for-input", str(status), route), f"Valid requests refused with HTTP {status} on {route}"
    return None


def _error_shape(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:
    status, body = answer.status, answer.json()
    if status is None or answer.error:
        return None
    is_error = 400 <= status < 500 or (200 <= status < 300 and isinstance(body, dict) and "error" in body)
    if not is_error:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    conformant = (400 <= status < 500 and answer.media == "application/json" and isinstance(error, dict)
                  and error.keys() >= ENVELOPE_KEYS and isinstance(error.get("message"), str))
    if conformant:
        return None
    klass = f"{status // 100}xx"
    media = answer.media or "no content type"
    if isinstance(body, dict):
        top, inner = tuple(sorted(body)), tuple(sorted(error)) if isinstance(error, dict) else ()
        shape = "{" + ", ".join(f"{k}: {{{', '.join(inner)}}}" if k == "error" and inner else k for k in top) + "}"
    else:
        shape = "not JSON" if body is _NOT_JSON else f"JSON {type(body).__name__}"
        top, inner = (shape,), ()
    title = (f"Error answers are HTTP {klass} {media} {shape}, not a 4xx with "
             f"{{error: {{message, type, param, code}}}}")
    return ("error-shape", klass, media, ",".join(top), ",".join(inner)), title


def _framing(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:  # noqa: PLR0911 - one per framing
    request = answer.request_json()
    if not answer.ok or not isinstance(request, dict):
        return None
    streamed = request.get("stream") is True
    if streamed and not answer.sse and isinstance(answer.json(), dict):
        return ("framing", "stream as json"), "`stream: true` ignored: streams are answered with one JSON body"
    if not streamed and answer.sse:
        return (("framing", "json as sse"),
                "Requests without `stream: true` are answered with an SSE stream, not one JSON completion")
    if streamed and answer.sse:
        events = answer.events()
        done = [i for i, data in enumerate(events) if data == "[DONE]"]
        if not any(_json_object(data) for data in events):
            return (("framing", "sse without json"),
                    "Streams carry no readable `data: {json}` event (SSE framing broken)")
        if any(data != "[DONE]" and not _json_object(data) for data in events):
            return ("framing", "sse event not json"), "Stream events that are neither JSON nor `[DONE]`"
        if done and done[0] < len(events) - 1:
            return ("framing", "events after done"), "Stream events after `data: [DONE]`"
        if "event-stream" not in answer.media:
            return (("framing", "sse labelled", answer.media),
                    f"Streams labelled `Content-Type: {answer.media or 'none'}`, not text/event-stream")
    if not streamed and isinstance(answer.json(), dict) and answer.media != "application/json":
        return (("framing", "json labelled", answer.media),
                f"JSON completions labelled `Content-Type: {answer.media or 'none'}`, not application/json")
    return None


def _json_object(data: str) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False


def _ignored_parameter(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:
    request = answer.request_json()
    if not answer.ok or not isinstance(request, dict):
        return None
    for name, ignored, title in _IGNORED:
        if name in request and ignored(request, answer):
            return ("ignored-parameter", name), title
    return None


def _tool_choice_ignored(request: dict[str, Any], answer: _Answer) -> bool:
    choice = request.get("tool_choice")
    forced = choice == "required" or (isinstance(choice, dict) and choice.get("type") == "function")
    choices = answer.choices()
    return bool(forced and request.get("tools") and choices and not any(c["tool_calls"] for c in choices.values()))


def _n_ignored(request: dict[str, Any], answer: _Answer) -> bool:
    n = request.get("n")
    choices = answer.choices()
    return isinstance(n, int) and not isinstance(n, bool) and n > 1 and 0 < len(choices) < n


def _max_tokens_ignored(request: dict[str, Any], answer: _Answer) -> bool:
    cap = request.get("max_completion_tokens") or request.get("max_tokens")
    n = request["n"] if isinstance(request.get("n"), int) else 1
    usage = answer.usage()
    used = usage.get("completion_tokens") if usage else None
    return (isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1 and isinstance(used, int)
            and used > cap * max(1, n))


def _stop_ignored(request: dict[str, Any], answer: _Answer) -> bool:
    stop = request.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)] if isinstance(stop, list) \
        else []
    contents = [c["content"] for c in answer.choices().values()]
    return any(s and s in text for s in stops for text in contents)


def _response_format_ignored(request: dict[str, Any], answer: _Answer) -> bool:
    fmt = request.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
        return False
    contents = [c["content"] for c in answer.choices().values() if c["content"].strip()]
    return bool(contents) and not any(_parses(text) for text in contents)


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


_IGNORED: tuple[tuple[str, Callable[[dict[str, Any], _Answer], bool], str], ...] = (
    ("tool_choice", _tool_choice_ignored, "`tool_choice` ignored: no tool call where the request forces one"),
    ("n", _n_ignored, "`n` ignored: fewer choices than requested"),
    ("max_tokens", _max_tokens_ignored, "`max_tokens` not honoured: completion_tokens above the cap"),
    ("stop", _stop_ignored, "`stop` ignored: the content runs through a stop sequence"),
    ("response_format", _response_format_ignored, "`response_format` ignored: the content is not JSON"),
)


def _mentions(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def _text(failure: Failure) -> str:
    return f"{failure.expected}\n{failure.received}\n{failure.where}"


def _usage_sum(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:
    if not answer.ok or not any(_mentions(n, _text(failure)) for n in _COUNTS):
        return None
    body = answer.json()
    candidates = [body] if isinstance(body, dict) else answer.chunks()
    for usage in (c["usage"] for c in candidates if isinstance(c.get("usage"), dict)):
        counts = [usage.get(n) for n in _COUNTS]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in counts) and counts[2] != counts[0] + counts[1]:
            return ("usage-sum",), "usage.total_tokens is not prompt_tokens + completion_tokens"
    return None


_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _schema_key(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:
    if not answer.ok:
        return None
    text = _text(failure)
    # The most specific key first: `usage.prompt_tokens` explains a failure better than `usage`.
    for path, problem in sorted(_violations(answer).items(), key=lambda item: -item[0].count(".")):
        if _mentions(path.rsplit(".", 1)[-1].removesuffix("[]"), text):
            return ("schema-key", path), f"Responses break the response schema at `{path}`: {problem}"
    return None


def _violations(answer: _Answer) -> dict[str, str]:
    """Where a 2xx completion or its chunks break the response schema (OpenAI's view), as paths like
    `choices[].message.role`, each with the first problem found there ("missing", or jsonschema's message)."""
    from .spec import schema_validator

    body = answer.json()
    if isinstance(body, dict) and "choices" in body:
        pairs = [(schema_validator("CreateChatCompletionResponse", "openai"), body)]
    else:
        validator = schema_validator("CreateChatCompletionStreamResponse", "openai")
        pairs = [(validator, chunk) for chunk in answer.chunks()]
    found: dict[str, str] = {}
    for validator, instance in pairs:
        for error in _leaves(list(validator.iter_errors(instance))):
            prefix = "".join("[]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
            if error.validator == "required" and isinstance(error.instance, dict):
                for name in error.validator_value:
                    if name not in error.instance:
                        found.setdefault(f"{prefix}.{name}" if prefix else str(name), "missing")
            elif prefix:
                found.setdefault(prefix, _first_line(error.message, 100))
    return found


def _leaves(errors: list[Any]) -> list[Any]:
    """jsonschema errors, with those of oneOf/anyOf replaced by their branches' own."""
    out = []
    for error in errors:
        out += _leaves(list(error.context)) if error.context else [error]
    return out


_RULES: tuple[Callable[[_Answer, Failure], tuple[Key, str] | None], ...] = (
    _bound, _status_for_input, _error_shape, _refused_chat, _framing, _ignored_parameter, _usage_sum, _schema_key,
)
