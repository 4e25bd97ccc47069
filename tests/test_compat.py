"""Smoke tests of every private API of a dependency the suite uses (conformance/_compat.py).

Each names the version it was written against; a failure here after an upgrade says which internal
moved, instead of a harness error deep inside a check.
"""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest

from conformance._compat import FUZZ_LAZY_IMPORTS, WRITTEN_AGAINST


@pytest.mark.parametrize("module", FUZZ_LAZY_IMPORTS)
def test_each_lazily_imported_fuzz_module_still_exists(module: str) -> None:
    # schemathesis 4.32.5 / hypothesis 6.170: moved or renamed modules make the preload fail loudly.
    importlib.import_module(module)


def test_pytest_junitxml_keeps_its_stash_key_and_node_reporter() -> None:
    # pytest 9.1: conformance._compat.junit_reporter reads `xml_key` and calls `node_reporter(nodeid)`.
    from _pytest.junitxml import LogXML, xml_key

    assert xml_key is not None
    assert callable(LogXML.node_reporter)


def test_httpcore_pools_take_a_network_backend() -> None:
    # httpcore 1.0: the deadline backend is passed through ConnectionPool's public `network_backend`.
    import inspect

    import httpcore

    assert "network_backend" in inspect.signature(httpcore.ConnectionPool).parameters


def test_httpx_still_reads_the_environment_proxies_as_mounts(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx 0.28.1: conformance._compat.environment_proxies calls `httpx._utils.get_environment_proxies`.
    from conformance._compat import environment_proxies

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    assert environment_proxies() == {"https://": "http://proxy.example:3128", "all://localhost": None}


@pytest.mark.parametrize(("distribution", "version"), sorted(WRITTEN_AGAINST.items()))
def test_installed_versions_are_the_ones_written_against_or_newer(distribution: str, version: str) -> None:
    installed = importlib.metadata.version(distribution)
    assert tuple(map(int, installed.split(".")[:2])) >= tuple(map(int, version.split(".")[:2])), installed


def test_ast_parse_is_serialised_once_and_still_parses() -> None:
    # CPython 3.11 (python/cpython#106905): concurrent ast.parse calls share one recursion counter.
    import ast
    import concurrent.futures

    from conformance._compat import serialise_ast_parse

    serialise_ast_parse()
    wrapped = ast.parse
    serialise_ast_parse()
    assert ast.parse is wrapped
    assert getattr(ast.parse, "serialised", False)
    source = "x = " + "(" * 80 + "1" + ")" * 80
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        trees = list(pool.map(lambda _: ast.parse(source), range(200)))
    assert all(isinstance(tree, ast.Module) for tree in trees)


def test_pytest_formats_setup_errors_with_the_method_the_replay_overrides() -> None:
    # pytest 9.1: `_repr_failure_py` formats setup errors (conformance/report/_replay.py overrides it).
    from conformance._compat import PYTEST_SETUP_ERROR_FORMATTER
    from conformance.report._replay import CheckItem

    assert callable(getattr(pytest.Item, PYTEST_SETUP_ERROR_FORMATTER))
    assert PYTEST_SETUP_ERROR_FORMATTER in vars(CheckItem)
