"""The layers of the package (README, Development): a module imports only from layers below its own.

    9  __main__                              `python -m conformance`
    8  cli, pytest_plugin                    thin consumers
    7  _pytest_impl, _diff                   the plugin's session; comparing results.json files
    6  report/, _selftest                    renderers of results.json; the selftest
    5  _engine, _cost, coverage/             the run session (runs checks, decides verdicts); cost bounds; the map
    4  checks/, _causes, _start              one small function per check; root causes from the evidence; reaching
                                             the target (the preflight)
    3  _context                              what a check sees
    2  http/                                 the bounded, redacting transport
    1  errors, refserver/                    the exceptions; the reference server (a tool of its own)
    0  _model, sse, spec/, _options, _compat, the package facade

Imports inside one package (checks/ → checks/) are free. Every import counts, also the lazy ones
inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "conformance"
LAYERS = {
    "conformance.__main__": 9, "conformance.cli": 8, "conformance.pytest_plugin": 8,
    "conformance._pytest_impl": 7, "conformance._diff": 7,
    "conformance.report": 6, "conformance._selftest": 6,
    "conformance._engine": 5, "conformance._cost": 5, "conformance.coverage": 5,
    "conformance.checks": 4, "conformance._causes": 4, "conformance._start": 4,
    "conformance._context": 3,
    "conformance.http": 2,
    "conformance.errors": 1, "conformance.refserver": 1,
    "conformance": 0, "conformance._model": 0, "conformance.sse": 0, "conformance.spec": 0,
    "conformance._options": 0, "conformance._compat": 0,
}


def unit(module: str) -> str:
    """The layer unit a module belongs to: `conformance.checks.usage` → `conformance.checks`."""
    parts = module.split(".")
    return ".".join(parts[:2])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every conformance module `path` imports, at the top or lazily."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {t for t in found if t == "conformance" or t.startswith("conformance.")}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    assert {unit(module_name(p)) for p in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_imports_go_down_the_layers(path: Path) -> None:
    own = unit(module_name(path))
    upward = [target for target in imports(path)
              if unit(target) != own and LAYERS[unit(target)] >= LAYERS[own]]
    assert not upward, f"{module_name(path)} (layer {LAYERS[own]}) imports {upward} from its own layer or above"


def test_renderers_never_import_the_engine_or_the_transport() -> None:
    """Reports are rendered from results.json alone (never recomputed from a live run); of the transport they
    use only the redaction's placeholders, to recognise them in transcripts."""
    for path in (PACKAGE / "report").glob("*.py"):
        used = imports(path) - {"conformance.http.redact"}
        forbidden = {"conformance._engine", "conformance.http", "conformance.checks"}
        assert not {unit(t) for t in used} & forbidden, path.name


def test_tests_import_helpers_from_support_not_from_conftest() -> None:
    """conftest.py is pytest's plugin (fixtures); importing it as a module loads it twice."""
    tests = Path(__file__).resolve().parent
    pattern = "from " + "conftest import"  # split, so this file does not match itself
    offenders = [p.name for p in tests.glob("*.py") if pattern in p.read_text(encoding="utf-8")]
    assert not offenders


def test_nothing_outside_the_engine_imports_its_private_names() -> None:
    """The CLI, the plugin and the start of a run use the engine's public functions only."""
    for path in MODULES:
        if module_name(path) == "conformance._engine":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_engine"):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{module_name(path)} imports {private} from the engine"


# conformance.http's modules, one job each, in the order of its docstring: each imports only those before it.
HTTP_MODULES = ("redact", "gate", "transport", "exchange", "budget", "session", "recorder", "preflight")


def test_the_http_modules_import_only_those_before_them() -> None:
    assert {p.stem for p in (PACKAGE / "http").glob("*.py")} == {*HTTP_MODULES, "__init__"}
    for position, name in enumerate(HTTP_MODULES):
        inside = {t.removeprefix("conformance.http.") for t in imports(PACKAGE / "http" / f"{name}.py")
                  if t.startswith("conformance.http.")}
        assert inside <= set(HTTP_MODULES[:position]), name


def test_nothing_outside_the_http_package_imports_its_private_names() -> None:
    for path in MODULES:
        if module_name(path).startswith("conformance.http"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and "http" in (node.module or "").split("."):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{module_name(path)} imports {private} from conformance.http"
