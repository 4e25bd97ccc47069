"""What leaves the process never carries the API key: the one place secrets are replaced."""

from __future__ import annotations

REDACTED = "***REDACTED***"
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
                redacted[name] = "Bearer $OPENAI_API_KEY" if value.lower().startswith("bearer ") else REDACTED
        else:
            redacted[name] = value
    return redacted
