"""The README is the front door: keep what it states about the catalogue true."""

from __future__ import annotations

import re
from pathlib import Path

from conformance.checks import all_checks
from conformance.refserver import FAULTS, VARIANTS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_check_is_in_the_catalogue_table() -> None:
    row = r"^\| `([a-z0-9_-]+\.[a-z0-9_.-]+)` \| (?:MUST|SHOULD|INFO) \|"
    listed = set(re.findall(row, README, flags=re.MULTILINE))
    assert listed == {c.spec.id for c in all_checks()}


def test_fault_and_variant_counts_are_current() -> None:
    assert f"**{len(FAULTS)} seeded faults**" in README
    assert f"**{len(VARIANTS)} legal variants**" in README
    assert f"faults caught: {len(FAULTS)}/{len(FAULTS)} (100%" in README


def test_the_two_commands_are_there() -> None:
    assert "pip install -e '.[sdk]' && conformance run" in README
    assert "pip install -e '.[test]' && pytest" in README
