"""Shared fixtures: reference servers on free loopback ports, and in-process certifications."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from hypothesis import settings

from conformance import Depth, Limits, Profile, RunConfig, RunResult, Target, run
from conformance.refserver import DEFAULT_MODEL, VARIANTS, ServerConfig, ServerThread

# Variants every check accepts under every profile; the lenient ones (legal by the document, flagged by
# SHOULD checks) and the profile-bound one are proven in test_verdicts.py and by the selftest.
PLAIN_VARIANTS = [name for name, v in VARIANTS.items() if not v.flags and set(v.profiles) == {"openai", "documented"}]

settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def reference_server() -> Iterator[ServerThread]:
    """One clean reference server for the whole session."""
    with ServerThread(ServerConfig()) as server:
        yield server


ServerFactory = Callable[..., AbstractContextManager[ServerThread]]


@pytest.fixture
def start_server() -> ServerFactory:
    """`with start_server(faults=[...], variants=[...], api_key=...) as server:` a fresh server."""

    @contextmanager
    def factory(*, faults: tuple[str, ...] | list[str] = (), variants: tuple[str, ...] | list[str] = (),
                api_key: str | None = None, latency_ms: int = 0) -> Iterator[ServerThread]:
        config = ServerConfig(api_key=api_key, faults=frozenset(faults), variants=frozenset(variants),
                              latency_ms=latency_ms)
        with ServerThread(config) as server:
            yield server

    return factory


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
