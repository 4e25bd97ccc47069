"""Certify OpenAI-compatible servers written by others: LiteLLM proxy and llmock.

Each server is installed, pinned, into its own virtualenv (their dependencies must never meet the
suite's), started on a free loopback port, waited for, certified with `conformance run --depth full`
into reports/interop/<server>/, and stopped. Then the matrix page (checks × servers) is rendered from
the results.json files, transcripts are trimmed so the committed reports stay small, and every report
is searched for the keys the run used (the LiteLLM master key must never appear).

    python interop/run_interop.py [--server litellm] [--venv-root DIR] [--reports DIR]

`tox -e interop` runs it; installs take minutes the first time, later runs reuse the venvs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import venv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
READY_TIMEOUT_S = 180.0
# Bodies of transcripts no failure cites are cut to this many bytes in the committed reports.
TRIM_BODY_BYTES = 1_000


@dataclass
class Server:
    name: str
    requirements: Path
    model: str
    # argv after the venv's bin dir; {port} and {config} are filled in.
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # The key the suite sends; for LiteLLM it is the master key, made up for each run.
    api_key: str = ""
    secrets: tuple[str, ...] = ()


def servers() -> dict[str, Server]:
    master_key = "sk-litellm-" + secrets.token_hex(16)
    return {
        "litellm": Server(
            name="litellm",
            requirements=HERE / "requirements-litellm.txt",
            model="mock-gpt",
            command=["litellm", "--config", str(HERE / "litellm-config.yaml"), "--host", "127.0.0.1",
                     "--port", "{port}", "--num_workers", "1"],
            # No network: the local model cost map, no telemetry.
            env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": master_key,
                 "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR", "NO_DOCS": "True"},
            api_key=master_key,
            secrets=(master_key,),
        ),
        "llmock": Server(
            name="llmock",
            requirements=HERE / "requirements-llmock.txt",
            model="gpt-4o-mini",
            command=["llmock", "serve", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"],
            # llmock takes any key; giving one lets the auth checks see that it serves keyless requests.
            api_key="sk-llmock-interop",
        ),
    }


def log(message: str) -> None:
    print(f"[interop] {message}", flush=True)


# -- installation ------------------------------------------------------------------------------------
def ensure_venv(server: Server, venv_root: Path) -> Path:
    """The server's own venv, (re)installed when its pinned requirements changed."""
    home = venv_root / server.name
    stamp = home / "requirements.sha256"
    wanted = hashlib.sha256(server.requirements.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return home
    log(f"{server.name}: installing {server.requirements.name} into {home} (takes minutes the first time)")
    venv.EnvBuilder(with_pip=True, clear=not stamp.is_file() and home.exists()).create(home)
    subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", str(server.requirements)], check=True)
    stamp.write_text(wanted + "\n")
    return home


# -- running a server --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base_url: str, api_key: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll GET /models until it answers 200; the server's log tells why when it never does."""
    request = urllib.request.Request(f"{base_url}/models", headers={"Authorization": f"Bearer {api_key}"})
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log_path}")
        with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(request, timeout=5) as answer:
            if answer.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{base_url}/models did not answer 200 within {READY_TIMEOUT_S:g}s; see {log_path}")


@contextlib.contextmanager
def running(server: Server, home: Path, port: int, log_path: Path) -> Iterator[str]:
    argv = [str(home / "bin" / server.command[0]), *(a.format(port=port) for a in server.command[1:])]
    env = {**os.environ, **server.env, "PATH": f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("OPENAI_API_KEY", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        # Its own process group, so stopping it also stops any worker it forked.
        process = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            wait_ready(base_url, server.api_key, process, log_path)
            yield base_url
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def certify(server: Server, base_url: str, report_dir: Path, depth: str) -> int:
    command = [sys.executable, "-m", "conformance", "run", "--base-url", base_url, "--model", server.model,
               "--depth", depth, "--report-dir", str(report_dir), "--quiet"]
    env = {**os.environ, "OPENAI_API_KEY": server.api_key}  # via the environment: never on a command line
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    for secret in server.secrets:
        output = output.replace(secret, "***REDACTED***")
    (report_dir / "summary.txt").write_text(output, encoding="utf-8")
    print(output, end="", flush=True)
    return done.returncode


# -- keeping the committed reports small and clean ----------------------------------------------------
def trim(results_path: Path) -> None:
    """Shrink the transcripts no failure points at (body cut, headers but Content-Type dropped).

    The exchanges a failure cites stay whole: they are the evidence in FINDINGS.md.
    """
    results = json.loads(results_path.read_text(encoding="utf-8"))
    for check in results.get("checks", []):
        cited = {f.get("exchange") for f in check.get("failures", [])}
        for index, exchange in enumerate(check.get("transcripts", [])):
            if index not in cited:
                _shrink(exchange)
    results_path.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")


def _shrink(exchange: dict[str, object]) -> None:
    request = exchange.get("request")
    if isinstance(request, dict) and isinstance(request.get("body"), str) and len(request["body"]) > TRIM_BODY_BYTES:
        request["body"] = request["body"][:TRIM_BODY_BYTES] + "… (trimmed for the committed report)"
    response = exchange.get("response")
    if isinstance(response, dict):
        body = response.get("body")
        if isinstance(body, str) and len(body.encode()) > TRIM_BODY_BYTES:
            response["body"] = body.encode()[:TRIM_BODY_BYTES].decode(errors="ignore")
            response["truncated"] = True
        headers = response.get("headers")
        if isinstance(headers, dict):
            response["headers"] = {k: v for k, v in headers.items() if k == "content-type"}
    sse = exchange.get("sse")
    if isinstance(sse, dict):
        sse["chunks"] = sse.get("chunks", [])[:20]
        sse["event_offsets"] = sse.get("event_offsets", [])[:50]


def render(report_dir: Path) -> None:
    """report.html from the trimmed results.json (junit.xml is left out: no CI reads these)."""
    subprocess.run([sys.executable, "-m", "conformance", "report", str(report_dir / "results.json"), "-o",
                    str(report_dir)], check=True, capture_output=True)
    (report_dir / "junit.xml").unlink(missing_ok=True)


def leaked(reports: Path, secret_values: list[str]) -> list[str]:
    hits = []
    for path in sorted(reports.rglob("*")):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            hits += [f"{path}: contains a key of this run" for s in secret_values if s and s in text]
    return hits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", action="append", choices=["litellm", "llmock"], default=[],
                        help="only this server (repeatable); default: all")
    parser.add_argument("--venv-root", type=Path, default=ROOT / ".tox" / "interop-servers")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports" / "interop")
    parser.add_argument("--depth", choices=["quick", "full"], default="full")
    args = parser.parse_args(argv)
    chosen = [s for name, s in servers().items() if not args.server or name in args.server]
    problems: list[str] = []
    for server in chosen:
        home = ensure_venv(server, args.venv_root)
        report_dir = args.reports / server.name
        log_path = args.venv_root / f"{server.name}.log"
        port = free_port()
        log(f"{server.name}: starting on 127.0.0.1:{port} (log: {log_path})")
        try:
            with running(server, home, port, log_path) as base_url:
                code = certify(server, base_url, report_dir, args.depth)
        except RuntimeError as exc:
            problems.append(f"{server.name}: {exc}")
            continue
        if not (report_dir / "results.json").is_file():
            problems.append(f"{server.name}: no results.json (conformance exited {code})")
            continue
        trim(report_dir / "results.json")
        render(report_dir)
    results = sorted(args.reports.glob("*/results.json"))
    if results:
        subprocess.run([sys.executable, "-m", "conformance", "report", *map(str, results), "-o",
                        str(args.reports)], check=True)  # -> reports/interop/matrix.html
        # FINDINGS.md: the triaged table; an untriaged failure is reported, not fatal (new checks land often).
        subprocess.run([sys.executable, str(HERE / "findings.py"), "--reports", str(args.reports)], check=False)
    problems += leaked(args.reports, [v for s in chosen for v in (s.api_key, *s.secrets)])
    for problem in problems:
        log(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
