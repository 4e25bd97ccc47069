"""The API key never appears in any output: a real certification through the CLI with a canary key,
then every byte it wrote (results.json, report.html and its data URIs, junit.xml, matrix.html, the
baseline and the diffs, stdout, stderr) is searched for the canary."""

from __future__ import annotations

import base64
import binascii
import html
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.refserver import ServerConfig, ServerThread

CANARY = f"sk-canary-{secrets.token_hex(12)}"
ONLY = ("auth.missing-key", "auth.wrong-key", "errors.envelope", "stream.done-terminator", "params.temperature.bounds",
        "schema.chat-completion")
DATA_URI = re.compile(rb"data:[^;,\"'\s]*;base64,([A-Za-z0-9+/=\s]+)")


def leaks(blob: bytes, canary: str = CANARY) -> list[str]:
    """Where the canary shows up in `blob`: raw, HTML/URL-escaped, JSON-escaped, or base64 in a data URI."""
    found = []
    text = blob.decode("utf-8", errors="replace")
    views = {"raw": text, "html": html.unescape(html.unescape(text)), "url": urllib.parse.unquote(text)}
    views["json-escapes"] = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), views["html"])
    found += [name for name, view in views.items() if canary in view]
    for match in DATA_URI.finditer(blob):
        try:
            decoded = base64.b64decode(re.sub(rb"\s", b"", match.group(1)), validate=False)
        except (binascii.Error, ValueError):
            continue
        found += [f"data URI: {name}" for name in leaks(decoded, canary)]
    return found


def test_the_search_finds_a_hidden_canary() -> None:
    """The search is not vacuous: it finds the key in each form it claims to cover."""
    encoded = base64.b64encode(f"Authorization: Bearer {CANARY}".encode()).decode()
    escaped = "".join(f"\\u{ord(c):04x}" for c in CANARY)
    for blob in (CANARY, f'<img src="data:text/plain;base64,{encoded}">', html.escape(f"x{CANARY}y"),
                 urllib.parse.quote(CANARY, safe=""), f'"{escaped}"', "&#115;" + CANARY[1:]):
        assert leaks(blob.encode()), blob
    assert leaks(b"sk-canary-something-else") == []


def environment(key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    if key is not None:
        env["OPENAI_API_KEY"] = key
    return env


def conformance(*args: str, key: str | None, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "conformance", *args], cwd=cwd, env=environment(key),
                          capture_output=True, timeout=120, check=False)


def start(*args: str, key: str | None, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "conformance", *args], cwd=cwd, env=environment(key),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    config = ServerConfig(api_key=CANARY, faults=frozenset({"stream-no-done", "reject-temperature-2"}))
    with ServerThread(config) as thread:
        yield thread


@pytest.fixture(scope="module")
def outputs(server: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every artifact and every stream of a certification, a gated re-run, a matrix and two diffs."""
    root = tmp_path_factory.mktemp("canary")
    only = [arg for check_id in ONLY for arg in ("--only", check_id)]
    run = ["run", "--base-url", server.base_url, *only]
    # schemathesis keeps the real key in response.request.headers: its checks get their own run, in parallel.
    fuzz = start("run", "--base-url", server.base_url, "--only", "fuzz.*", "--report-dir", "fuzz", key=CANARY,
                 cwd=root)
    streams: dict[str, subprocess.CompletedProcess[bytes]] = {
        "certify": conformance(*run, "--report-dir", "first", "--update-baseline", "baseline.json", key=CANARY,
                               cwd=root),
    }
    baseline = json.loads((root / "baseline.json").read_text())
    for entry in baseline["known_failures"].values():
        entry["reason"] = "seeded fault"  # a person replaces the placeholder reasons before gating on it
    (root / "baseline.json").write_text(json.dumps(baseline))
    streams |= {
        "gate": conformance(*run, "--report-dir", "second", "--baseline", "baseline.json", key=CANARY, cwd=root),
        "matrix": conformance("report", "first/results.json", "second/results.json", "-o", ".",
                              key=CANARY, cwd=root),
        "diff": conformance("diff", "first/results.json", "second/results.json", key=CANARY, cwd=root),
        "diff-json": conformance("diff", "baseline.json", "second/results.json", "--json", key=CANARY, cwd=root),
        "no-key": conformance(*run, "--report-dir", "third", key=None, cwd=root),
    }
    out, err = fuzz.communicate(timeout=180)
    streams["fuzz"] = subprocess.CompletedProcess(fuzz.args, fuzz.returncode, out, err)
    return {"root": root, "streams": streams}


def test_the_run_used_the_key_and_wrote_every_artifact(outputs: dict[str, object]) -> None:
    root, streams = outputs["root"], outputs["streams"]
    assert isinstance(root, Path)
    assert isinstance(streams, dict)
    assert streams["certify"].returncode == 0, streams["certify"].stderr  # two seeded faults; baseline written
    assert streams["gate"].returncode == 0, streams["gate"].stdout  # the same failures, now known
    assert streams["matrix"].returncode == 0
    fuzzed = json.loads((root / "fuzz" / "results.json").read_text())
    assert fuzzed["executed"] >= 1
    assert fuzzed["requests"] > 10  # schemathesis really sent its cases, with the key
    results = json.loads((root / "first" / "results.json").read_text())
    verdicts = {c["id"]: c["outcome"] for c in results["checks"]}
    # The key was really sent and accepted: the auth checks ran (not skipped) and passed.
    assert verdicts["auth.wrong-key"] == verdicts["auth.missing-key"] == "passed"
    assert verdicts["stream.done-terminator"] == verdicts["params.temperature.bounds"] == "failed"
    page = (root / "first" / "report.html").read_text()
    assert "Bearer $OPENAI_API_KEY" in html.unescape(page)  # the failure transcripts and curls are rendered
    for name in ("first/report.html", "first/junit.xml", "second/diff.md", "second/diff.json", "matrix.html",
                 "baseline.json", "fuzz/report.html"):
        assert (root / name).stat().st_size > 0, name


def test_no_output_byte_holds_the_key(outputs: dict[str, object]) -> None:
    root, streams = outputs["root"], outputs["streams"]
    assert isinstance(root, Path)
    assert isinstance(streams, dict)
    files = [path for path in root.rglob("*") if path.is_file()]
    assert len(files) >= 10
    found = {str(path.relative_to(root)): leaks(path.read_bytes()) for path in files}
    for name, process in streams.items():
        found[f"{name} stdout"] = leaks(process.stdout)
        found[f"{name} stderr"] = leaks(process.stderr)
    assert {where: how for where, how in found.items() if how} == {}


def test_without_the_key_a_clear_exit_2_and_nothing_leaks(outputs: dict[str, object]) -> None:
    streams = outputs["streams"]
    assert isinstance(streams, dict)
    no_key = streams["no-key"]
    assert no_key.returncode in (1, 2)
    target, error, *more = no_key.stderr.decode().splitlines()
    assert target.startswith("conformance: target "), target
    assert "no API key" in target
    assert error.startswith("conformance: error:"), error
    assert more == []
    assert "401" in error
    assert "OPENAI_API_KEY" in error
    assert leaks(no_key.stdout + no_key.stderr) == []
