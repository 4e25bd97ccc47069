"""The `pytest11` entry point: `pytest --conformance-base-url URL` runs the check catalogue as tests.

This module is imported by every pytest run in every environment where the package is installed,
so it only declares options and imports nothing heavy. The engine, the checks and their
dependencies load from `conformance._pytest_impl` once `--conformance-base-url` is given; without
it the plugin adds no items and costs nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    from ._options import DEPTH_HELP, DEPTHS, PROFILE_HELP, PROFILES, REPEAT_HELP, add_limit_options, positive_int

    group = parser.getgroup("conformance", "OpenAI-compatible Chat Completions conformance (openai-conformance)")
    group.addoption("--conformance-base-url", default=None, metavar="URL",
                    help="run the conformance checks against this base URL (including /v1); off when absent")
    group.addoption("--conformance-model", default=None, metavar="MODEL",
                    help="model to test; default: the first id from GET /models")
    group.addoption("--conformance-api-key", default=None, metavar="KEY",
                    help="API key (default: env OPENAI_API_KEY); never written to any report")
    group.addoption("--conformance-depth", choices=DEPTHS, default="full", help=DEPTH_HELP)
    group.addoption("--conformance-profile", choices=PROFILES, default="openai", help=PROFILE_HELP)
    group.addoption("--conformance-strict", action="store_true", default=False,
                    help="every SHOULD counts as MUST: exact OpenAI parity (as `conformance run --strict`)")
    group.addoption("--conformance-report-dir", default="reports", metavar="DIR",
                    help="where results.json, report.html and junit.xml go (default: reports)")
    group.addoption("--conformance-repeat", type=positive_int, default=1, metavar="K", help=REPEAT_HELP)
    # The bounds and spending caps of `conformance run`, declared once for both (conformance._options).
    add_limit_options(group.addoption, prefix="conformance-")


def pytest_configure(config: pytest.Config) -> None:
    base_url = config.getoption("conformance_base_url", default=None)
    if not base_url:
        return
    from ._pytest_impl import ConformancePlugin

    api_key = config.getoption("conformance_api_key") or os.environ.get("OPENAI_API_KEY") or None
    config.pluginmanager.register(ConformancePlugin(config, base_url, api_key), "conformance-session")
