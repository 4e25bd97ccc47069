"""Root causes: failures that share one cause, grouped from the evidence itself.

One defect fails many checks (errors served as FastAPI's `{"detail": ...}` fail a dozen, a server that
ignores `stream: true` fails every stream check). Each failure is traced to the answer it points at
(its transcript; the check's last one when it names none) and gets the key of the first rule that
matches that answer:

    rule               matches                                                   key
    bound              the answer broke a bound of the run (too large, too       the bound
                       slow, too many events)
    status-for-input   HTTP 5xx; or an invalid request (against the spec's       status class and input class:
                       request schema) answered 2xx without an error body         invalid input, or the route
    error-shape        an error answer (4xx, or `error` in a 2xx body) that is   status class, media type, top-
                       not 4xx JSON {error: {message, type, param, code}}        level and `error` keys
    ignored-parameter  the request set stream, tool_choice (forcing a call), n,  the parameter
                       max_tokens, stop or response_format, and the 2xx answer
                       shows no effect of it
    missing-key        the 2xx answer lacks a key its response schema requires,  the key's path
                       and the failure names that key

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._model import CheckResult, Failure, Level, Verdict

RULES = ("bound", "status-for-input", "error-shape", "ignored-parameter", "missing-key", "check")
ENVELOPE_KEYS = frozenset({"message", "type", "param", "code"})
LEVEL_ORDER = {Level.MUST: 0, Level.SHOULD: 1, Level.INFO: 2}

Key = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RootCause:
    """One cause and the checks it fails, with one exchange that shows it (and reproduces it)."""

    id: str
    rule: str
    title: str
    checks: tuple[str, ...]
    failures: int
    # (check ID, index into that check's transcripts); None when no transcript shows it.
    example: tuple[str, int] | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "rule": self.rule, "title": self.title, "checks": list(self.checks),
                "failures": self.failures,
                "example": {"check": self.example[0], "transcript": self.example[1]} if self.example else None}


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


def root_causes(results: Sequence[CheckResult]) -> list[RootCause]:
    """The failed checks grouped by cause, the cause failing most checks first."""
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
            found = classify(failure, transcript) if transcript is not None else None
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
                             g.failures, (example[0].spec.id, example[1]) if example else None))
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
def classify(failure: Failure, transcript: dict[str, Any]) -> tuple[Key, str] | None:
    """The root-cause key and title of one failure, from the answer it points at; None: no rule matches."""
    answer = _Answer(transcript)
    for rule in _RULES:
        found = rule(answer, failure)
        if found is not None:
            return found
    return None


class _Answer:
    """One transcript, read the way the rules need it (parsed lazily, once)."""

    def __init__(self, transcript: dict[str, Any]) -> None:
        self.transcript = transcript
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

    def chunks(self) -> list[dict[str, Any]]:
        """The JSON object events of an SSE body (empty when the body is not SSE)."""
        if "event-stream" not in self.media and not self.body.lstrip().startswith("data:"):
            return []
        from .sse import SSEParser

        parser = SSEParser()
        try:
            parser.feed(self.body.encode("utf-8", errors="replace"))
            parser.close()
        except Exception:  # noqa: BLE001 - a body the parser refuses has no chunks to read
            return []
        out = []
        for event in parser.events:
            try:
                value = json.loads(event.data)
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
    """The request body is not a chat request the spec (OpenAI's view) allows."""
    body = answer.request_json()
    if answer.request_body is None:
        return False
    if body is _NOT_JSON or not isinstance(body, dict):
        return True
    from .spec import schema_validator

    return next(iter(schema_validator("CreateChatCompletionRequest", "openai").iter_errors(body)), None) is not None


def _status_for_input(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:
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


def _ignored_parameter(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:
    request = answer.request_json()
    if not answer.ok or not isinstance(request, dict):
        return None
    for name, ignored, title in _IGNORED:
        if name in request and ignored(request, answer):
            return ("ignored-parameter", name), title
    return None


def _stream_ignored(request: dict[str, Any], answer: _Answer) -> bool:
    body = answer.json()
    return request.get("stream") is True and "event-stream" not in answer.media and isinstance(body, dict)


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
    ("stream", _stream_ignored, "`stream: true` ignored: streams are answered with one JSON completion"),
    ("tool_choice", _tool_choice_ignored, "`tool_choice` ignored: no tool call where the request forces one"),
    ("n", _n_ignored, "`n` ignored: fewer choices than requested"),
    ("max_tokens", _max_tokens_ignored, "`max_tokens` not honoured: completion_tokens above the cap"),
    ("stop", _stop_ignored, "`stop` ignored: the content runs through a stop sequence"),
    ("response_format", _response_format_ignored, "`response_format` ignored: the content is not JSON"),
)


def _missing_key(answer: _Answer, failure: Failure) -> tuple[Key, str] | None:
    if not answer.ok:
        return None
    text = f"{failure.expected}\n{failure.received}\n{failure.where}"
    for path in _missing(answer):
        name = path.rsplit(".", 1)[-1]
        if re.search(rf"(['\"`]){re.escape(name)}\1|\.{re.escape(name)}(?!\w)", text):
            return ("missing-key", path), f"Responses lack `{path}`, which the response schema requires"
    return None


def _missing(answer: _Answer) -> list[str]:
    """Required keys absent from a 2xx completion or its chunks, as paths like `choices[].message.role`."""
    from .spec import schema_validator

    body = answer.json()
    if isinstance(body, dict) and "choices" in body:
        pairs = [(schema_validator("CreateChatCompletionResponse", "openai"), body)]
    else:
        validator = schema_validator("CreateChatCompletionStreamResponse", "openai")
        pairs = [(validator, chunk) for chunk in answer.chunks()]
    found: dict[str, None] = {}
    for validator, instance in pairs:
        for error in validator.iter_errors(instance):
            if error.validator != "required" or not isinstance(error.instance, dict):
                continue
            prefix = "".join("[]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
            for name in error.validator_value:
                if name not in error.instance:
                    found[f"{prefix}.{name}" if prefix else str(name)] = None
    return list(found)


_RULES: tuple[Callable[[_Answer, Failure], tuple[Key, str] | None], ...] = (
    _bound, _status_for_input, _error_shape, _ignored_parameter, _missing_key,
)
