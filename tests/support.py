"""Helpers the tests import (`from support import certify, verdicts`): in-process certifications
against a base URL, and the variants every check accepts. Fixtures live in conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from conformance import Depth, Limits, Profile, RunConfig, RunResult, Target, run
from conformance.refserver import DEFAULT_MODEL, VARIANTS, ServerThread

# Variants every check accepts under every profile; the lenient ones (legal by the document, flagged by
# SHOULD checks) and the profile-bound one are proven in test_verdicts.py and by the selftest.
PLAIN_VARIANTS = [name for name, v in VARIANTS.items() if not v.flags and set(v.profiles) == {"openai", "documented"}]

# What the `start_server` fixture returns: `with start_server(faults=[...]) as server:`.
ServerFactory = Callable[..., AbstractContextManager[ServerThread]]


def certify(base_url: str, *, only: tuple[str, ...] = (), skip: tuple[str, ...] = (), depth: str = "full",
            profile: str = "openai", api_key: str | None = None, model: str = DEFAULT_MODEL,
            concurrency: int = 4, chat_route: tuple[str, str] | None = ("POST", "/chat/completions"),
            **limits: Any) -> RunResult:
    """Run the engine in-process against `base_url` (no reports written).

    The chat route is OpenAI's unless `chat_route=None` lets the run find it, so a test of one check
    counts only that check's requests.
    """
    config = RunConfig(
        target=Target(base_url, model, api_key),
        limits=Limits(**limits),
        depth=Depth(depth),
        profile=Profile(profile),
        only=only,
        skip=skip,
        concurrency=concurrency,
        chat_route=chat_route,
    )
    return run(config)


def verdicts(result: RunResult) -> dict[str, str]:
    return {r.spec.id: r.verdict.value for r in result.results}
