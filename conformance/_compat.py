"""Every use of another library's internals, in one place, each with the version it was written against.

These are why some dependencies are pinned exactly. `tests/test_compat.py` checks that each still
exists (a smoke test per item), and `tox -e newest` runs the tests against the newest versions the
pins allow, so a private API that moved fails there, named, rather than deep inside a check.
"""

from __future__ import annotations

import ast
import functools
import importlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

# schemathesis 4.32.5 and hypothesis 6.1xx import these lazily while loading a spec, drawing cases and
# judging answers (found by logging the imports made in the check threads). CPython 3.11 keeps the AST
# constructor's recursion counter per interpreter, not per thread: a module compiled in one check
# thread while hypothesis parses source in another fails with "AST constructor recursion depth
# mismatch". The engine imports these before the check threads start (`preload_fuzz_imports`).
FUZZ_LAZY_IMPORTS = (
    "schemathesis", "schemathesis.specs.openapi.schemas", "schemathesis.generation._hooks",
    "schemathesis.python._constants.orchestrator", "schemathesis.generation.dictionaries",
    "schemathesis.generation.body_overrides", "schemathesis.transport.asgi", "schemathesis.transport.wsgi",
    "hypothesis.strategies._internal.flatmapped", "hypothesis.strategies._internal.random",
    "hypothesis.strategies._internal.regex", "requests",
)
WRITTEN_AGAINST = {"schemathesis": "4.32.5", "hypothesis": "6.170", "pytest": "9.1", "httpx": "0.28.1",
                   "httpcore": "1.0"}


def preload_fuzz_imports() -> None:
    for name in FUZZ_LAZY_IMPORTS:
        importlib.import_module(name)


_AST_PARSE_LOCK = threading.RLock()


def serialise_ast_parse() -> None:
    """Let one thread at a time run `ast.parse` (process-wide, idempotent).

    CPython 3.11 counts the AST constructor's recursion depth per interpreter, not per thread
    (python/cpython#106905): two threads in `ast.parse` at once fail with "SystemError: AST
    constructor recursion depth mismatch". hypothesis parses lambda sources with `ast.parse` while it
    draws, and the checks draw in several threads (the fuzzers, the bound properties).
    """
    if getattr(ast.parse, "serialised", False):
        return
    original: Callable[..., Any] = ast.parse

    @functools.wraps(original)
    def parse(*args: Any, **kwargs: Any) -> Any:
        with _AST_PARSE_LOCK:
            return original(*args, **kwargs)

    parse.serialised = True  # type: ignore[attr-defined]
    ast.parse = parse


class _SysWithModulesCopied:
    """`sys` for one module of a library: `modules` is a copy, taken at once (dict.copy holds the GIL)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(sys, name)

    @property
    def modules(self) -> dict[str, Any]:
        return sys.modules.copy()


# hypothesis 6.170: `_mimic_lambda_from_node` rebuilds its module map from `sys.modules.items()`, uncopied.
HYPOTHESIS_LAMBDA_SOURCES = "hypothesis.internal.lambda_sources"


def copy_sys_modules_for_hypothesis_lambdas() -> None:
    """Let hypothesis describe a lambda while another thread imports (process-wide, idempotent).

    hypothesis 6.170 describes a lambda that names a module (schemathesis's `lambda children:
    st.lists(children) | st.dictionaries(...)`, in the repr of a recursive strategy, drawn by the negative
    fuzzer) by rebuilding a map from `sys.modules.items()` in a comprehension. A module imported in another
    check's thread meanwhile (the sdk checks import openai: some 650 modules) ends it with "RuntimeError:
    dictionary changed size during iteration", a harness error of fuzz.schemathesis.negative. hypothesis
    copies sys.modules before iterating it elsewhere (HypothesisWorks/hypothesis#4363); here its module
    sees a `sys` whose `modules` is such a copy.
    """
    lambda_sources: Any = importlib.import_module(HYPOTHESIS_LAMBDA_SOURCES)
    if isinstance(lambda_sources.sys, _SysWithModulesCopied):
        return
    lambda_sources.sys = _SysWithModulesCopied()


# pytest 9.1 formats an error raised in an item's setup with `Item._repr_failure_py`, not through the public
# `repr_failure`; report/_replay.py's CheckItem overrides it so a replayed error is its one-line verdict
# (a full traceback of the replay cost 0.16 s per error: 14 s of rendering for a target that is down).
PYTEST_SETUP_ERROR_FORMATTER = "_repr_failure_py"


# hypothesis 6.170 draws, now and then, constants found in "local" modules (not under site-packages) and
# reads each module's path through this name in its providers module.
HYPOTHESIS_PROVIDERS = "hypothesis.internal.conjecture.providers"
_SUITE_DIR = str(Path(__file__).resolve().parent)
# Files outside the package that are the suite too: the console script that started the process.
_SUITE_FILES: set[str] = set()


def count_as_suite(path: str) -> None:
    """`path` is the suite's, for `keep_suite_constants_out_of_hypothesis` (the console script)."""
    _SUITE_FILES.add(str(path))


def keep_suite_constants_out_of_hypothesis() -> None:
    """hypothesis's draws do not depend on which of this suite's modules are imported (process-wide,
    idempotent).

    hypothesis mixes into its draws constants read from the source of every "local" module loaded, which
    with an editable install (the README's) includes this suite's own modules. The fuzzers' cases then
    depended on import order: loading the report writers before the run changed the negative cases
    drawn (34 sent instead of 40), and `conformance run` drew other cases than `python -m conformance
    run` (the console script is a local module). The suite's modules and its console script
    (`count_as_suite`) count as installed ones here; a user's own modules still count as local."""
    providers: Any = importlib.import_module(HYPOTHESIS_PROVIDERS)
    original = providers.is_local_module_file
    if getattr(original, "suite_excluded", False):
        return

    def is_local_module_file(path: str) -> bool:
        return not (str(path).startswith(_SUITE_DIR) or str(path) in _SUITE_FILES) and original(path)

    is_local_module_file.suite_excluded = True  # type: ignore[attr-defined]
    providers.is_local_module_file = is_local_module_file


def junit_reporter(config: Any, nodeid: str) -> Any | None:
    """pytest's JUnit reporter of one test (pytest 9.1: `_pytest.junitxml.xml_key` in the config stash),
    or None when no junit.xml is written. pytest has no public API to set a test case's classname."""
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    return xml.node_reporter(nodeid) if xml is not None else None


def environment_proxies() -> dict[str, str | None]:
    """The proxies of the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) as httpx 0.28 mounts
    them: {URL pattern: proxy URL, or None for a host that bypasses the proxy}.

    httpx reads them only for a transport it builds itself; the suite builds its own (to hand httpcore
    the deadline backend), and mounts the same proxies with `httpx._utils.get_environment_proxies`.
    """
    from httpx._utils import get_environment_proxies

    return get_environment_proxies()
