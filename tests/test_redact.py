"""conformance.http.redact: the one place secrets are replaced, for every writer."""

from __future__ import annotations

from conformance.http.redact import REDACTED, redact_headers, redact_key, redact_url, scrub_key

KEY = 'sk-live/se"cret+key'


def test_a_url_password_is_redacted_and_the_user_name_kept_where_shown() -> None:
    assert redact_url("https://user:secret@api.example/v1") == f"https://user:{REDACTED}@api.example/v1"
    assert redact_url("https://user:secret@api.example/v1", keep_user=False) == f"https://:{REDACTED}@api.example/v1"
    assert redact_url("https://user@api.example/v1") == "https://user@api.example/v1"
    assert redact_url("http://[::1") == "http://[::1"  # unparsable: as given


def test_the_key_is_scrubbed_in_every_form_it_can_take_in_a_document() -> None:
    document = {"raw": KEY, "url": "https://h/?k=sk-live%2Fse%22cret%2Bkey", "json": ['"sk-live/se\\"cret+key"'],
                KEY: 1}
    assert scrub_key(document, KEY) == {"raw": REDACTED, "url": f"https://h/?k={REDACTED}", "json": [f'"{REDACTED}"'],
                                        REDACTED: 1}
    assert scrub_key(document, None) is document
    assert redact_key(f"key {KEY}", KEY) == f"key {REDACTED}"


def test_headers_show_the_run_key_as_a_placeholder_and_a_made_up_key_as_sent() -> None:
    sent = {"Authorization": f"Bearer {KEY}", "api-key": KEY, "Accept": "application/json"}
    assert redact_headers(sent, KEY) == {"Authorization": "Bearer $OPENAI_API_KEY", "api-key": REDACTED,
                                         "Accept": "application/json"}
    assert redact_headers({"Authorization": "Bearer sk-wrong-123"}, KEY) == {"Authorization": "Bearer sk-wrong-123"}


def test_a_password_in_the_base_url_never_reaches_a_transcript() -> None:
    """A base URL with userinfo (a proxy's basic auth) puts its password in every request URL: the
    transcripts, their repro curls and the whole results.json carry it redacted."""
    import json

    import httpx

    from conformance import RunConfig, Target, run
    from conformance.refserver import DEFAULT_MODEL

    password = "pw-canary-7f3a"
    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": DEFAULT_MODEL,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    config = RunConfig(target=Target(f"http://user:{password}@127.0.0.1:9/v1", DEFAULT_MODEL),
                       only=("schema.chat-completion",))
    result = run(config, transport=transport)
    document = json.dumps(result.to_json())
    assert result.results[0].exchanges, "the check sent a request"
    assert password not in document
    assert f"user:{REDACTED}@127.0.0.1:9" in document
    assert redact_key("no password here: a:b", None, url_password="b") == "no password here: a:b"

