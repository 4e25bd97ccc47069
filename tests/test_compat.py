"""Smoke tests of every private API of a dependency the suite uses (conformance/_compat.py).

Each names the version it was written against; a failure here after an upgrade says which internal
moved, instead of a harness error deep inside a check.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import sys
import threading
import types
from pathlib import Path
from typing import Any

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


def test_hypothesis_lambda_sources_still_reads_sys_as_a_module_global() -> None:
    # hypothesis 6.170: conformance._compat.copy_sys_modules_for_hypothesis_lambdas replaces the `sys` that
    # `_mimic_lambda_from_node` reads (its module map of `sys.modules`).
    from conformance._compat import HYPOTHESIS_LAMBDA_SOURCES

    lambda_sources = importlib.import_module(HYPOTHESIS_LAMBDA_SOURCES)
    assert hasattr(lambda_sources, "sys")
    assert isinstance(lambda_sources._module_map, dict)
    assert "sys" in lambda_sources._mimic_lambda_from_node.__code__.co_names


def _describe_while_importing(lambda_sources: Any, rounds: int, stop_at_first_error: bool) -> list[str]:
    """hypothesis describing a lambda that names a module, while another thread imports modules."""
    described = lambda value: json.dumps(value, sort_keys=True)  # noqa: E731 - hypothesis describes a lambda
    description = "lambda value: json.dumps(value, sort_keys=True)"
    errors: list[str] = []
    names = [f"_conformance_import_probe_{i}" for i in range(200)]
    done = threading.Event()

    def imports() -> None:  # sys.modules grows by up to 200 modules, then shrinks back, again and again
        while not done.is_set():
            for name in names:
                sys.modules[name] = types.ModuleType(name)
            for name in names:
                del sys.modules[name]

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch in the middle of the module map's comprehension
    importer = threading.Thread(target=imports, daemon=True)
    importer.start()
    try:
        for _ in range(rounds):
            lambda_sources._module_map = {}  # rebuilt on each description, as after any new import
            try:
                assert lambda_sources._lambda_description(described) == description
            except RuntimeError as exc:
                errors.append(str(exc))
                if stop_at_first_error:
                    break
    finally:
        done.set()
        importer.join()
        sys.setswitchinterval(switch)
        for name in names:
            sys.modules.pop(name, None)
    return errors


def test_hypothesis_describes_lambdas_while_another_thread_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    # hypothesis 6.170 iterates sys.modules uncopied: "dictionary changed size during iteration" in
    # fuzz.schemathesis.negative while the sdk checks imported openai (conformance._compat).
    from conformance._compat import HYPOTHESIS_LAMBDA_SOURCES, copy_sys_modules_for_hypothesis_lambdas

    lambda_sources = importlib.import_module(HYPOTHESIS_LAMBDA_SOURCES)
    monkeypatch.setattr(lambda_sources, "_module_map", {})
    copy_sys_modules_for_hypothesis_lambdas()
    patched = lambda_sources.sys
    copy_sys_modules_for_hypothesis_lambdas()
    assert lambda_sources.sys is patched
    assert patched.modules is not sys.modules
    assert patched.version_info == sys.version_info
    assert _describe_while_importing(lambda_sources, 200, stop_at_first_error=False) == []
    # The same interleaving without the workaround fails: the test does force the race.
    monkeypatch.setattr(lambda_sources, "sys", sys)
    assert _describe_while_importing(lambda_sources, 2000, stop_at_first_error=True) == [
        "dictionary changed size during iteration"]


def test_the_suite_s_own_modules_feed_no_constants_to_hypothesis(tmp_path: Path) -> None:
    # hypothesis 6.170 reads `is_local_module_file` by name in its providers module (conformance._compat).
    from conformance import cli
    from conformance._compat import HYPOTHESIS_PROVIDERS, keep_suite_constants_out_of_hypothesis

    keep_suite_constants_out_of_hypothesis()
    keep_suite_constants_out_of_hypothesis()  # idempotent
    providers = importlib.import_module(HYPOTHESIS_PROVIDERS)
    assert providers.is_local_module_file(cli.__file__) is False
    mine = tmp_path / "my_module.py"  # a user's own module still counts as local
    mine.write_text("X = 1\n")
    from hypothesis.internal.constants_ast import is_local_module_file

    assert providers.is_local_module_file(str(mine)) == is_local_module_file(str(mine))
    script = tmp_path / "conformance"  # a console script outside the package, counted as the suite's
    script.write_text("Y = 2\n")
    from conformance._compat import count_as_suite

    count_as_suite(str(script))
    assert providers.is_local_module_file(str(script)) is False
