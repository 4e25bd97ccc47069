"""Know the cost before spending: `conformance run --dry-run`, the catalogue's columns and the README's
figures all come from one function over the registry's per-check request bounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile_servers import HostileServer, never_answers
from support import certify

from conformance._cost import cost, depth_label, readme_depth_row
from conformance._model import Depth, Profile
from conformance.checks import all_checks
from conformance.cli import main
from conformance.refserver import ServerThread

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_the_bound_is_the_sum_of_the_selected_checks_bounds() -> None:
    full = cost(Depth.FULL, Profile.OPENAI)
    assert full.requests == sum(c.spec.requests for c in all_checks() if Depth.FULL in c.spec.depths
                                and Profile.OPENAI in c.spec.profiles)
    quick = cost(Depth.QUICK, Profile.OPENAI)
    assert 0 < quick.requests < full.requests
    assert len(quick.checks) < len(full.checks)
    streams = cost(Depth.FULL, Profile.OPENAI, only=("stream.*",), skip=("stream.stop",))
    assert {c.id for c in streams.checks} == {c.spec.id for c in all_checks()
                                              if c.spec.id.startswith("stream.") and c.spec.id != "stream.stop"}


def test_a_real_run_stays_within_the_bound(reference_server: ServerThread) -> None:
    result = certify(reference_server.base_url, depth="quick", api_key=None)
    assert result.verdict == "passed"
    assert 0 < result.requests <= cost(Depth.QUICK, Profile.OPENAI).requests


def test_the_readme_states_the_bounds_of_the_catalogue() -> None:
    """If this fails, the catalogue changed: paste `python -m conformance._cost` into the README's flags table."""
    assert readme_depth_row() in README


def test_the_help_states_no_figure_of_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    depth_help = capsys.readouterr().out.split("\n  --depth", 1)[1].split("\n  --profile", 1)[0]
    assert "--dry-run" in depth_help
    assert not any(ch.isdigit() for ch in depth_help)


def test_dry_run_sends_nothing_and_states_the_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(never_answers) as server:
        code = main(["run", "--base-url", server.base_url, "--depth", "quick", "--only", "stream.*", "--dry-run",
                     "--report-dir", str(tmp_path / "reports"), "--max-tokens", "500"])
        sent = sum(server.requests.values())
    out, err = capsys.readouterr()
    assert code == 0, err
    assert sent == 0
    assert not (tmp_path / "reports").exists()  # a dry run leaves the last run's reports alone
    bound = cost(Depth.QUICK, Profile.OPENAI, only=("stream.*",))
    lines = out.splitlines()
    assert lines[0] == (f"DRY RUN: nothing sent. {len(bound.checks)} checks, depth quick, profile openai, "
                        f"against {server.base_url}")
    for spec in bound.checks:
        row = next(line for line in lines if line.split()[:1] == [spec.id])
        assert row.split()[1:4] == [spec.level.value, spec.feature.value, depth_label(spec)]
        assert row.split()[4] == str(spec.requests)
    assert f"Requests  at most {bound.requests} " in out
    assert "Tokens    at most 500 (--max-tokens" in out


def test_dry_run_of_the_builtin_target_starts_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--dry-run", "-q"]) == 0
    out = capsys.readouterr().out
    full = cost(Depth.FULL, Profile.OPENAI)
    assert out.startswith(f"DRY RUN: nothing sent. {len(full.checks)} checks, depth full, profile openai, "
                          f"against the built-in reference server")
    assert f"Requests  at most {full.requests} " in out
    assert "Tokens    not bounded before the run" in out


@pytest.mark.parametrize(("flags", "says"), [(["--only", "no.such.check"], "no check matches"),
                                             (["--depth", "deep"], "invalid choice")])
def test_dry_run_still_rejects_bad_flags_and_writes_nothing(flags: list[str], says: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--dry-run", *flags, "--report-dir", str(tmp_path / "reports")]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


def test_checks_lists_depth_and_request_columns(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "LEVEL", "FEATURE", "DEPTH", "REQUESTS", "BASIS", "CLAUSE"]
    for registered in all_checks():
        spec = registered.spec
        row = next(line for line in lines if line.split()[:1] == [spec.id])
        assert row.split()[1:6] == [spec.level.value, spec.feature.value, depth_label(spec), str(spec.requests),
                                    spec.basis.value]
    quick, full = cost(Depth.QUICK, Profile.OPENAI), cost(Depth.FULL, Profile.OPENAI)
    assert lines[-1] == (f"{len(all_checks())} checks; at most {quick.requests} requests at depth quick "
                         f"({len(quick.checks)} checks), {full.requests} at full ({len(full.checks)} checks), "
                         f"profile openai")


def test_checks_json_keeps_the_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checks", "--json"]) == 0
    catalogue = json.loads(capsys.readouterr().out)
    assert sum(c["requests"] for c in catalogue if "quick" in c["depths"] and "openai" in c["profiles"]) == (
        cost(Depth.QUICK, Profile.OPENAI).requests)
