"""What a certification run costs and how fast it goes, measured side by side in one run.

Run: ``tox -e bench`` or ``python benchmarks/bench_run.py [--quick]``. A plain script (not collected by
pytest). Every target is the reference server in its own process (so the harness and the server do
not share a GIL), wrapped to count the requests it receives; every run is the real CLI in a
subprocess, as a user runs it.

1. The full default run (latency 0): wall time, requests, tokens.
2. The latency-bound ratio: the full run against a server that delays every answer by 250 ms, at
   --concurrency 1, 4 and 8. ideal = requests × 0.25 s / N + start-up, where start-up is the wall
   time of a one-check run (interpreter, imports, preflight, reports). ratio = wall / ideal.
3. The quick depth's cost (latency 0): requests, tokens, wall time.
4. Harness overhead per request, against schemathesis's own CLI over the same spec and server
   (latency 0, one worker each): total wall / requests received by the server. And the transport
   alone: one check sending 200 sequential requests through the engine vs a bare httpx loop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "conformance" / "spec" / "chat-completions.openapi.yaml"
LATENCY_MS = 250
SCHEMATHESIS_EXAMPLES = 100

# The reference server in a child process, counting what it receives (GET /__bench/count).
SERVER = """
import socket, sys, uvicorn
from conformance.refserver import ServerConfig
from conformance.refserver.app import create_app

app = create_app(ServerConfig(latency_ms=int(sys.argv[1])))
count = 0

async def counting(scope, receive, send):
    global count
    if scope["type"] == "http" and scope["path"] == "/__bench/count":
        body = str(count).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] == "http":
        count += 1
    await app(scope, receive, send)

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY per connection
sock.bind(("127.0.0.1", 0))
sock.listen(256)
print("PORT", sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(counting, log_level="error", access_log=False, lifespan="off")).run(sockets=[sock])
"""


@dataclass
class Server:
    root: str

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def count(self) -> int:
        return int(httpx.get(f"{self.root}/__bench/count", timeout=10).text)


@contextmanager
def server(latency_ms: int) -> Iterator[Server]:
    child = subprocess.Popen([sys.executable, "-c", SERVER, str(latency_ms)], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        port = re.search(r"PORT (\d+)", line)
        if port is None:
            raise RuntimeError(f"the reference server did not start: {line!r}")
        yield Server(f"http://127.0.0.1:{port.group(1)}")
    finally:
        child.terminate()
        child.wait(10)


@dataclass
class Run:
    wall: float
    requests: int  # as counted by the server: every request, preflight included
    reported_requests: int  # as the run reports them (results.json)
    tokens: int
    verdict: str
    exit_code: int


def certify(target: Server, *args: str) -> Run:
    """`conformance run` against `target`, as a subprocess; the wall time includes start-up."""
    with tempfile.TemporaryDirectory(prefix="bench-") as reports:
        before = target.count()
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "conformance", "run", "--base-url", target.base_url,
                               "--report-dir", reports, "--no-html", "--quiet", *args],
                              capture_output=True, text=True, cwd=ROOT, check=False)
        wall = time.monotonic() - started
        results = json.loads((Path(reports) / "results.json").read_text(encoding="utf-8"))
    if done.returncode not in (0, 1):
        print(done.stdout, done.stderr, file=sys.stderr)
    return Run(wall, target.count() - before, results["requests"], results["tokens"], results["verdict"],
               done.returncode)


def schemathesis(target: Server, examples: int) -> tuple[float, int, int]:
    """schemathesis's own CLI over the same spec: wall time, requests received, exit code."""
    before = target.count()
    started = time.monotonic()
    done = subprocess.run(["schemathesis", "run", str(SPEC), "--url", target.root, "--max-examples", str(examples),
                           "--workers", "1", "--phases", "fuzzing", "--checks", "all", "--no-color",
                           "--generation-deterministic"],
                          capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    return time.monotonic() - started, target.count() - before, done.returncode


def transport_overhead(target: Server, requests: int = 200) -> tuple[float, float]:
    """ms per request: one check sending `requests` sequential chat requests through the engine's
    recorder (bounds, gate, breaker, transcript, token count), against the same loop on a bare
    httpx.Client. In-process; the difference is what the harness adds to each request."""
    from conformance import Depth, Profile, RunConfig, Target, run
    from conformance._model import CheckSpec, Feature, Level, documented
    from conformance.checks import RegisteredCheck

    body = {"model": "conformance-ref-1", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1}

    def probe(ctx: Any) -> None:
        for _ in range(requests):
            ctx.chat(body)

    spec = CheckSpec("bench.sequential", Level.INFO, Feature.CORE, documented("bench", "bench"), "bench",
                     requests=requests)
    config = RunConfig(target=Target(target.base_url, "conformance-ref-1"), depth=Depth.FULL,
                       profile=Profile.OPENAI, concurrency=1)
    started = time.monotonic()
    run(config, checks=[RegisteredCheck(spec, probe)])
    ours = time.monotonic() - started
    with httpx.Client() as client:
        started = time.monotonic()
        for _ in range(requests):
            client.post(f"{target.base_url}/chat/completions", json=body).json()
        bare = time.monotonic() - started
    return 1000 * ours / requests, 1000 * bare / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only N=4 for the latency ratio (faster)")
    args = parser.parse_args()
    rows: list[str] = []

    def show(line: str) -> None:
        rows.append(line)
        print(line, flush=True)

    with server(0) as instant:
        full = certify(instant)
        show(f"full default run (latency 0): {full.wall:.1f} s wall, {full.reported_requests} requests, "
             f"{full.tokens} tokens, verdict {full.verdict}")
        quick = certify(instant, "--depth", "quick")
        show(f"quick depth (latency 0):      {quick.wall:.1f} s wall, {quick.reported_requests} requests, "
             f"{quick.tokens} tokens, verdict {quick.verdict}")
        start_up = min(certify(instant, "--only", "usage.total-is-sum").wall for _ in range(3))
        show(f"start-up (a one-check run):   {start_up:.2f} s")
        ours = certify(instant, "--concurrency", "1")
        sch_wall, sch_requests, _ = schemathesis(instant, SCHEMATHESIS_EXAMPLES)
        show(f"overhead per request, 1 worker, latency 0: ours {1000 * ours.wall / ours.requests:.1f} ms "
             f"({ours.requests} requests in {ours.wall:.1f} s), schemathesis CLI "
             f"{1000 * sch_wall / max(sch_requests, 1):.1f} ms ({sch_requests} requests in {sch_wall:.1f} s, "
             f"--max-examples {SCHEMATHESIS_EXAMPLES})")
        ours_ms, bare_ms = transport_overhead(instant)
        show(f"transport per request, in-process, latency 0: engine {ours_ms:.2f} ms, bare httpx {bare_ms:.2f} ms "
             f"(harness adds {ours_ms - bare_ms:.2f} ms)")
    with server(LATENCY_MS) as slow:
        for concurrency in (4,) if args.quick else (1, 4, 8):
            run = certify(slow, "--concurrency", str(concurrency))
            ideal = run.reported_requests * LATENCY_MS / 1000 / concurrency + start_up
            show(f"latency {LATENCY_MS} ms, N={concurrency}: {run.wall:.1f} s wall, {run.reported_requests} "
                 f"requests, ideal {ideal:.1f} s, ratio {run.wall / ideal:.2f}")
    print("\nsummary\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
