"""Shared fixtures: reference servers on free loopback ports. Helpers to import are in support.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import settings
from support import ServerFactory

from conformance.refserver import ServerConfig, ServerThread

settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def reference_server() -> Iterator[ServerThread]:
    """One clean reference server for the whole session."""
    with ServerThread(ServerConfig()) as server:
        yield server


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
