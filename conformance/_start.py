"""Starting a run: where the target came from, whether it can be certified at all, and the record
a run leaves when it cannot start.

    Origin.resolve(...)    the base URL, model and key, each with where it came from (flag, env, built-in)
    check_base_url(url)    a usable http(s) base URL, or UsageError (nothing sent)
    preflight(...)         GET /models once, and one tiny chat request only when it is needed (a model
                           the list does not name, or a list that is not JSON): the model to test, or
                           one ConformanceError line naming what to fix

`conformance run` and the pytest plugin both start through here; every piece of advice names the
caller's own options (`Flags`), so the plugin says `--conformance-api-key`, not `--api-key`.

What stops a run before it spends anything, and what does not:

    refused, reset, not HTTP, silent, too big ........... stop (TargetUnreachable)
    401/403 on GET /models .............................. stop: pass a key, or the key was refused
    404 on GET /models, but {base}/v1/models answers .... stop: did you mean …/v1
    neither GET /models nor the chat route answer JSON .. stop: not an OpenAI-compatible API
    --model refused as unknown (404/400 naming it) ...... stop, naming the models the target lists
    no --model and no readable model list ............... stop: pass --model
    a model not listed but accepted, a 404/405 on the
    POST route, a probe without a clear answer .......... go on: the checks judge the target
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import TargetUnreachable, UsageError
from .http import Exchange, Limits, RateLimited, is_usable, redact_url
from .http import preflight as send_preflight

BUILTIN_LABEL = "the built-in reference server"
PROBE_MESSAGES = [{"role": "user", "content": "Say hi."}]
# A stand-in model for the is-this-an-API probe when no model is known yet (any JSON answer will do).
PROBE_MODEL = "conformance-probe"
# Codes and phrases by which real servers refuse an unknown model (OpenAI and vLLM: model_not_found or
# "The model `x` does not exist"; Ollama: 'model "x" not found'; LiteLLM: "Invalid model name").
MODEL_CODES = ("model_not_found", "model_not_available", "invalid_model")
MODEL_REFUSALS = (
    re.compile(r"\b(?:unknown|invalid|unsupported|no such)\s+model\b", re.IGNORECASE),
    re.compile(r"\bmodel\b.{0,120}?(?:not found|does not exist|doesn't exist|not exist|is not (?:available|served|"
               r"loaded))", re.IGNORECASE | re.DOTALL),
)


@dataclass(frozen=True, slots=True)
class Flags:
    """How the caller spells its options, so that advice names options the user can actually pass."""

    base_url: str = "--base-url"
    api_key: str = "--api-key"
    model: str = "--model"


CLI_FLAGS = Flags()
PYTEST_FLAGS = Flags("--conformance-base-url", "--conformance-api-key", "--conformance-model")


@dataclass(frozen=True, slots=True)
class Origin:
    """The target of a run, and where each part came from."""

    base_url: str | None  # None: the built-in reference server
    base_url_from: str
    model: str | None  # None: the first id from GET /models
    model_from: str | None
    api_key: str | None
    api_key_from: str | None

    @classmethod
    def resolve(cls, base_url: str | None, model: str | None, api_key: str | None, environ: Mapping[str, str],
                flags: Flags = CLI_FLAGS) -> Origin:
        """Flags win over the environment (OPENAI_BASE_URL, CONFORMANCE_MODEL, OPENAI_API_KEY)."""

        def pick(value: str | None, flag: str, env: str) -> tuple[str | None, str | None]:
            if value:
                return value, flag
            if environ.get(env):
                return environ[env], f"env {env}"
            return None, None

        url, url_from = pick(base_url, flags.base_url, "OPENAI_BASE_URL")
        chosen_model, model_from = pick(model, flags.model, "CONFORMANCE_MODEL")
        key, key_from = pick(api_key, flags.api_key, "OPENAI_API_KEY")
        return cls(url, url_from or "built-in", chosen_model, model_from, key, key_from)

    @property
    def builtin(self) -> bool:
        return self.base_url is None

    def describe(self) -> str:
        """The first line of a run: what is certified, and where that came from."""
        if self.base_url is None:
            target = f"target {BUILTIN_LABEL} (no --base-url, no OPENAI_BASE_URL)"
        else:
            target = f"target {redact_url(self.base_url)} (from {self.base_url_from})"
        model = f"model {self.model} (from {self.model_from})" if self.model else "model: the first of GET /models"
        if self.base_url is None:
            key = "a throwaway API key"
        else:
            key = f"API key from {self.api_key_from}" if self.api_key_from else "no API key"
        return f"conformance: {target} · {model} · {key}"

    def annotate(self, message: str) -> str:
        """A target problem's message, saying so when the target came from the environment (a surprise)."""
        if self.base_url_from.startswith("env "):
            return f"{message} (the target came from {self.base_url_from}; unset it to certify {BUILTIN_LABEL})"
        return message


def check_base_url(url: str, flags: Flags = CLI_FLAGS) -> str:
    """A usable base URL (no trailing slash), or one UsageError line. Sends nothing."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except Exception:  # noqa: BLE001 - httpx raises several types for a malformed URL
        raise UsageError(f"{flags.base_url} {redact_url(url)!r} is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"{flags.base_url} {redact_url(url)!r} must be an http(s) URL such as "
                         f"https://api.example.com/v1")
    url = url.rstrip("/")
    for suffix in ("/chat/completions", "/models"):
        if url.endswith(suffix):
            raise UsageError(f"{flags.base_url} is the API's base URL, without {suffix}: did you mean "
                             f"{flags.base_url} {redact_url(url.removesuffix(suffix))} ?")
    return url


@dataclass(frozen=True, slots=True)
class Reached:
    """What the preflight learnt: the model to test and the models the target lists."""

    model: str
    listed: tuple[str, ...]


def preflight(base_url: str, api_key: str | None, model: str | None, limits: Limits, *,
              flags: Flags = CLI_FLAGS, api_key_from: str | None = None) -> Reached:
    """Reach the target before spending anything; pick the model from GET /models if none is given.

    Every request is bounded like a run's (timeouts, total deadline, size), so a target that hangs
    or floods ends here as one line. At most three requests, usually one.
    """
    url = redact_url(base_url)
    models = _send(base_url, api_key, limits, "GET", "/models")
    _require_answer(models, url, flags)
    if models.status in (401, 403):
        hint = (f"the API key (from {api_key_from or flags.api_key}) was refused" if api_key
                else f"pass {flags.api_key} or set OPENAI_API_KEY")
        raise TargetUnreachable(f"{url}/models answered {models.status}: {hint}")
    if models.status == 404 and not base_url.endswith("/v1"):
        versioned = _send_quietly(base_url + "/v1", api_key, limits, "GET", "/models")
        if versioned is not None and versioned.status is not None and versioned.status not in (404, 405) \
                and versioned.status < 500:
            raise UsageError(f"{url}/models answered 404 but {url}/v1/models answered {versioned.status}: "
                             f"did you mean {flags.base_url} {url}/v1 ?")
    listed = model_ids(models)
    probe: Exchange | None = None
    if models.json() is None:
        # Not JSON at all: a web page, a file server, a proxy's error page? The chat route decides.
        probe = _probe_chat(base_url, api_key, limits, model or PROBE_MODEL)
        if probe is None or probe.json() is None:
            chat = _describe(probe) if probe is not None else "no usable answer"
            raise UsageError(f"{url} is not an OpenAI-compatible API (GET /models answered {_describe(models)}; "
                             f"POST /chat/completions answered {chat}); check {flags.base_url}")
    if model is None:
        if listed:
            return Reached(listed[0], listed)
        raise UsageError(f"could not read a model id from GET {url}/models ({_describe(models)}); "
                         f"pass {flags.model}")
    if model in listed:
        return Reached(model, listed)
    # A model the list does not name: servers may serve unlisted models, or list none. One tiny
    # request tells a clear refusal apart from everything else, which the checks judge.
    if probe is None:
        probe = _probe_chat(base_url, api_key, limits, model)
    refusal = model_refusal(probe, model) if probe is not None else None
    if refusal is not None:
        offer = (f"GET /models lists {', '.join(listed[:10])}{' …' if len(listed) > 10 else ''}" if listed
                 else "GET /models lists no model")
        raise UsageError(f"{flags.model} {model!r} is refused by {url} (HTTP {probe.status if probe else '?'}: "
                         f"{_first_line(refusal)}); {offer}")
    return Reached(model, listed)


def model_ids(exchange: Exchange) -> tuple[str, ...]:
    """The ids of a `{"data": [{"id": …}, …]}` model list, or () for anything else."""
    payload = exchange.json()
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or exchange.status is None or not 200 <= exchange.status < 300:
        return ()
    return tuple(str(item["id"]) for item in data if isinstance(item, dict) and isinstance(item.get("id"), str))


def model_refusal(exchange: Exchange, model: str) -> str | None:
    """The target's message when it refuses `model` as unknown (404 or 400 saying so), else None.

    A 404 or 405 of the route itself (the target takes chat on another method), a 400 about
    anything else, or an answer without a clear message is no refusal: the run goes on.
    """
    if exchange.status not in (400, 404):
        return None
    payload = exchange.json()
    error = payload.get("error") if isinstance(payload, dict) else None
    code: Any = None
    if isinstance(error, dict):
        message, code = str(error.get("message") or ""), error.get("code")
    elif isinstance(error, str):
        message = error
    elif isinstance(payload, dict):
        message = str(payload.get("detail") or payload.get("message") or "")
    else:
        return None
    if code in MODEL_CODES:
        return message or str(code)
    if any(pattern.search(message) for pattern in MODEL_REFUSALS):
        return message
    if model in message and re.search(r"not found|does not exist|doesn't exist", message, re.IGNORECASE):
        return message
    return None


def _send(base_url: str, api_key: str | None, limits: Limits, method: str, path: str, *,
          json_body: Any = None) -> Exchange:
    try:
        return send_preflight(base_url, api_key, limits, method=method, path=path, json_body=json_body)
    except RateLimited:
        raise TargetUnreachable(f"{redact_url(base_url)}{path} kept answering 429/503 (rate limited or "
                                f"overloaded); retry later") from None


def _send_quietly(base_url: str, api_key: str | None, limits: Limits, method: str, path: str, *,
                  json_body: Any = None) -> Exchange | None:
    """A diagnostic request: None when it gives no usable answer (the run goes on regardless)."""
    try:
        exchange = send_preflight(base_url, api_key, limits, method=method, path=path, json_body=json_body)
    except RateLimited:
        return None
    return exchange if is_usable(exchange) else None


def _probe_chat(base_url: str, api_key: str | None, limits: Limits, model: str) -> Exchange | None:
    body = {"model": model, "messages": PROBE_MESSAGES, "max_tokens": 1}
    return _send_quietly(base_url, api_key, limits, "POST", "/chat/completions", json_body=body)


def _require_answer(exchange: Exchange, url: str, flags: Flags) -> None:
    if exchange.error_kind == "connect":
        raise TargetUnreachable(f"cannot connect to {url}: {_reason(exchange.error)}. Is the server running, "
                                f"and is {flags.base_url} right?")
    if exchange.error_kind == "timeout":
        raise TargetUnreachable(f"{url}/models did not answer: {exchange.error}")
    if exchange.error is not None:
        raise TargetUnreachable(f"cannot talk to {url}: {exchange.error}")
    if exchange.limit_exceeded:
        raise TargetUnreachable(f"{url}/models did not give a usable answer: {exchange.limit_exceeded}")


def _describe(exchange: Exchange) -> str:
    """'HTTP 404 text/html: "<!DOCTYPE HTML>…"' for a message."""
    kind = exchange.content_type.split(";")[0].strip() or "no Content-Type"
    text = " ".join(exchange.text.split())
    excerpt = f': "{text[:60]}{"…" if len(text) > 60 else ""}"' if text else ", empty body"
    return f"HTTP {exchange.status} {kind}{excerpt}"


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _reason(error: str | None) -> str:
    """'ConnectError: Connection refused' -> 'Connection refused'."""
    return (error or "no answer").split(": ", 1)[-1]


# Where a run can stop before its first check (results.json's start_error.stage).
STAGES = ("arguments", "target", "baseline")

