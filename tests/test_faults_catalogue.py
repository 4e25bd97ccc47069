"""The seeded-fault catalogue and the legal variants, judged statically (no server): enough of them,
well named, described, tied to existing checks, covering every feature, and each declared as hooks
into the server (whose own code names none of them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance import Feature
from conformance.checks import all_checks
from conformance.cli import main
from conformance.refserver import FAULTS, VARIANTS
from conformance.refserver.faults import Fault, Variant, active_hooks
from conformance.refserver.hooks import Hooks

# kebab-case words; a word may be a number with a decimal part, and a negative bound reads `--2.5`.
NAME = re.compile(r"^[a-z0-9]+(?:\.[0-9]+)?(?:--?[a-z0-9]+(?:\.[0-9]+)?)*$")
REFSERVER = Path(__file__).resolve().parent.parent / "conformance" / "refserver"


@pytest.fixture(scope="module")
def catalogue() -> dict[str, Feature]:
    return {c.spec.id: c.spec.feature for c in all_checks()}


@pytest.fixture(scope="module")
def server_source() -> str:
    """The reference server's code, without faults.py (where each fault and variant declares its hooks)."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(REFSERVER.glob("*.py")) if p.name != "faults.py")


def test_there_are_enough_faults_and_variants() -> None:
    assert len(FAULTS) >= 30, sorted(FAULTS)
    assert len(VARIANTS) >= 10, sorted(VARIANTS)


def test_names_are_unique_kebab_case_and_keyed_by_name() -> None:
    assert all(key == fault.name for key, fault in FAULTS.items())
    assert all(key == variant.name for key, variant in VARIANTS.items())
    assert not set(FAULTS) & set(VARIANTS), "a name is both a fault and a variant"
    bad = [name for name in [*FAULTS, *VARIANTS] if not NAME.match(name)]
    assert not bad, f"not kebab-case: {bad}"


def test_each_fault_and_variant_has_a_one_line_description() -> None:
    for item in [*FAULTS.values(), *VARIANTS.values()]:
        assert item.description.strip(), item.name
        assert "\n" not in item.description, item.name
        assert len(item.description) <= 200, f"{item.name}: keep the description to one line"


def test_each_fault_declares_existing_checks(catalogue: dict[str, Feature]) -> None:
    for fault in FAULTS.values():
        assert fault.killed_by, f"{fault.name} declares no check that catches it"
        assert len(set(fault.killed_by)) == len(fault.killed_by), f"{fault.name} names a check twice"
    unknown = {f.name: [c for c in f.killed_by if c not in catalogue] for f in FAULTS.values()}
    assert {name: ids for name, ids in unknown.items() if ids} == {}, "killed_by names unknown checks"


def test_faults_cover_every_feature(catalogue: dict[str, Feature]) -> None:
    covered = {catalogue[c] for fault in FAULTS.values() for c in fault.killed_by if c in catalogue}
    assert covered == set(Feature), f"no fault exercises: {sorted(f.value for f in set(Feature) - covered)}"


def changes_the_server(item: Fault | Variant) -> bool:
    """Whether it declares a hook into the server's code, or patches the request schema it enforces."""
    per_server = isinstance(item, Fault) and item.hooks_per_server is not None
    lenient = isinstance(item, Variant) and item.enforces != "openai"
    return item.hooks != Hooks() or item.schema_patch is not None or per_server or lenient


def test_faults_and_variants_declare_what_they_change() -> None:
    assert [f.name for f in FAULTS.values() if not changes_the_server(f)] == [], "faults that change nothing"
    assert [v.name for v in VARIANTS.values() if not changes_the_server(v)] == [], "variants that change nothing"


def test_the_server_code_names_no_fault_or_variant(server_source: str) -> None:
    """Adding a fault touches faults.py only: the correct code calls hooks, it never asks for a name."""
    named = [name for name in [*FAULTS, *VARIANTS] if f'"{name}"' in server_source]
    assert named == []
    assert ".has(" not in server_source


def test_hooks_apply_variants_first_then_faults_each_from_the_last_declared() -> None:
    order = ["stream-no-done", "usage-total-off-by-one", "sse-crlf", "json-charset"]
    hooks = active_hooks(faults=order[:2], variants=order[2:])
    assert hooks == [VARIANTS["sse-crlf"].hooks, VARIANTS["json-charset"].hooks, FAULTS["stream-no-done"].hooks,
                     FAULTS["usage-total-off-by-one"].hooks]


def test_a_fault_that_keeps_state_gets_fresh_hooks_per_server() -> None:
    [first], [second] = active_hooks(["single-slot-cuts-streams"], []), active_hooks(["single-slot-cuts-streams"], [])
    assert first.chat is not None
    assert first.chat != second.chat  # each server its own slot


def test_serve_lists_every_fault_with_its_description_and_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--list-faults"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for fault in FAULTS.values():
        line = next(line for line in lines if line.split()[:1] == [fault.name])
        assert fault.description in line
        assert all(check_id in line for check_id in fault.killed_by), line
    for variant in VARIANTS.values():
        assert any(line.split()[:1] == [variant.name] and variant.description in line for line in lines)


def test_a_misspelt_fault_name_in_the_server_is_an_error_not_silently_off() -> None:
    from conformance.refserver import ServerConfig

    config = ServerConfig(faults=frozenset({"stream-no-done"}))
    assert config.has("stream-no-done")
    assert not config.has("stream-no-role")
    with pytest.raises(KeyError, match="not a declared fault or variant"):
        config.has("stream-no-dnoe")
    with pytest.raises(KeyError, match="not a declared fault or variant: stream-no-dnoe"):
        active_hooks(["stream-no-dnoe"], [])
