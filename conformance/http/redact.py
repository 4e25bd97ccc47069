"""What leaves the process never carries a secret: the one place the API key and URL passwords are
replaced, for every writer (transcripts, results.json, the terminal, the repro curl)."""

from __future__ import annotations

import functools
import json
import urllib.parse
from typing import Any

import httpx

REDACTED = "***REDACTED***"
# How a transcript shows the run's key in an Authorization header; the repro curl reads it at run time.
BEARER_PLACEHOLDER = "Bearer $OPENAI_API_KEY"
# The prefix of the random keys the auth checks make up: never derived from the real key, so they stay
# in the transcript and the repro curl re-sends the wrong key, not the user's.
MADE_UP_KEY_PREFIX = "sk-wrong-"


def redact_headers(headers: dict[str, str], real_key: str | None) -> dict[str, str]:
    redacted = {}
    for name, value in headers.items():
        token = value.split(" ", 1)[-1].strip()
        if name.lower() in ("authorization", "api-key", "x-api-key"):
            if token.startswith(MADE_UP_KEY_PREFIX) and token != real_key and (not real_key or real_key not in token):
                redacted[name] = value
            else:
                redacted[name] = BEARER_PLACEHOLDER if value.lower().startswith("bearer ") else REDACTED
        else:
            redacted[name] = value
    return redacted


def redact_key(text: str | None, key: str | None, *, url_password: str | None = None) -> str | None:
    """`text` with the raw API key replaced, and the base URL's password wherever a URL carries it
    (`user:secret@host`: a short password is replaced only there, never in the rest of the text)."""
    if text is None:
        return None
    if key and key in text:
        text = text.replace(key, REDACTED)
    if url_password and f":{url_password}@" in text:
        text = text.replace(f":{url_password}@", f":{REDACTED}@")
    return text


@functools.lru_cache(maxsize=16)  # asked for every text a run writes
def url_password(url: str) -> str | None:
    """The password in a URL's userinfo, as the URL spells it (percent-encoded), or None."""
    try:
        userinfo = httpx.URL(url).userinfo
    except Exception:  # noqa: BLE001 - httpx raises several types for a malformed URL
        return None
    _, colon, password = userinfo.partition(b":")
    return password.decode("ascii", errors="replace") if colon and password else None


def redact_url(url: str, *, keep_user: bool = True) -> str:
    """`url` with a password in its userinfo redacted (https://user:***REDACTED***@host/v1); an unparsable
    URL as given (the key scrub still applies to it). results.json has always written such a base URL
    without the user name as well (`keep_user=False`)."""
    try:
        parsed = httpx.URL(url)
    except Exception:  # noqa: BLE001 - httpx raises several types for a malformed URL
        return url
    if not parsed.password:
        return url
    if not keep_user:
        return str(parsed.copy_with(password=REDACTED))
    user = parsed.userinfo.split(b":", 1)[0]  # copy_with(password=…) would drop the user name
    return str(parsed.copy_with(userinfo=user + b":" + REDACTED.encode()))


def _secret_forms(key: str | None) -> tuple[str, ...]:
    """The key as it could appear in text: raw, JSON-escaped and URL-encoded (longest first)."""
    if not key:
        return ()
    forms = {key, json.dumps(key)[1:-1], urllib.parse.quote(key, safe=""), urllib.parse.quote_plus(key)}
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def scrub_key(document: Any, api_key: str | None) -> Any:
    """`document` with the API key replaced wherever it appears (raw, JSON-escaped, URL-encoded)."""
    return _scrub(document, _secret_forms(api_key))


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """Replace the key anywhere in a document: failures, details and messages included (defence in depth)."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value
