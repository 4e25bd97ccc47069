"""What a certification run costs and how fast it goes, measured side by side in one run.

Run: ``tox -e bench`` or ``python benchmarks/bench_run.py [--quick] [--latency-only] [--repeat K]
[--baseline DIR]``. A plain script (not collected by pytest). Every target is the reference server
in its own process (so the harness and the server do not share a GIL), wrapped to count the
requests it receives and time them; every run is the real CLI in a subprocess, as a user runs it.

1. The full default run (latency 0): wall time, requests, tokens.
2. The latency-bound ratio: the full run against a server that delays every answer by 1 s, at
   --concurrency 8 and 16, with the model from GET /models (the default) and given by --model, printed
   as one table. floor = the larger of the run's own CPU time (its wall time at the same N against the
   latency-0 server) and requests × 1 s / N, where requests is what the server received (the preflight
   included). ratio = wall / floor. `--baseline DIR` times another source tree of the suite (a checkout
   of main) in the same table, run for run alternating with this one, so a before/after comparison
   shares the machine's load. Two more columns say where the rest of the wall time goes: before the
   checks' first request (start-up, then the preflight and the route discovery: one after the other
   when the model comes from GET /models, at once when --model gives it) and after the last answer
   (reports).
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "conformance" / "spec" / "chat-completions.openapi.yaml"
LATENCY_MS = 1000
RATIO_CONCURRENCY = (8, 16)
SCHEMATHESIS_EXAMPLES = 100

# The reference server in a child process, counting what it receives (GET /__bench/count) and when
# each request came and was answered (GET /__bench/times?since=N: [[start, end], ...] on the wall clock).
SERVER = """
import json, socket, sys, time, uvicorn
from conformance.refserver import ServerConfig
from conformance.refserver.app import create_app

app = create_app(ServerConfig(latency_ms=int(sys.argv[1])))
times = []

async def counting(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith("/__bench/"):
        since = int(scope["query_string"].decode().partition("since=")[2] or 0)
        body = (str(len(times)) if scope["path"] == "/__bench/count" else json.dumps(times[since:])).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] != "http":
        await app(scope, receive, send)
        return
    timing = [time.time(), None]
    times.append(timing)
    try:
        await app(scope, receive, send)
    finally:
        timing[1] = time.time()

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

    def times(self, since: int) -> list[tuple[float, float]]:
        """(came, answered) of every request from the `since`-th on, on the wall clock."""
        return [tuple(t) for t in httpx.get(f"{self.root}/__bench/times", params={"since": since}, timeout=10).json()]


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
    # Seconds from the start to the third request (the preflight and the route discovery come first, one
    # after the other: one request each on the reference server), and from the last answer to the end.
    lead: float = 0.0
    tail: float = 0.0


def certify(target: Server, *args: str, tree: Path = ROOT) -> Run:
    """`conformance run` against `target`, as a subprocess; the wall time includes start-up.

    `tree`: the source tree whose `conformance` runs (`python -m` puts its working directory first
    on sys.path, ahead of the installed package)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as reports:
        before = target.count()
        started, started_at = time.monotonic(), time.time()
        done = subprocess.run([sys.executable, "-m", "conformance", "run", "--base-url", target.base_url,
                               "--report-dir", reports, "--no-html", "--quiet", *args],
                              capture_output=True, text=True, cwd=tree, check=False)
        wall, ended_at = time.monotonic() - started, time.time()
        results = json.loads((Path(reports) / "results.json").read_text(encoding="utf-8"))
    if done.returncode not in (0, 1):
        print(done.stdout, done.stderr, file=sys.stderr)
    times = target.times(before)
    lead = times[2][0] - started_at if len(times) > 2 else wall
    tail = ended_at - max(end for _, end in times) if times else 0.0
    return Run(wall, len(times), results["requests"], results["tokens"], results["verdict"], done.returncode,
               lead, tail)


def schemathesis(target: Server, examples: int) -> tuple[float, int, int]:
    """schemathesis's own CLI over the same spec: wall time, requests received, exit code."""
    before = target.count()
    started = time.monotonic()
    # The CLI installed beside this interpreter (a venv's python run without activating the venv).
    beside = Path(sys.executable).with_name("schemathesis")
    command = str(beside) if beside.exists() else "schemathesis"
    done = subprocess.run([command, "run", str(SPEC), "--url", target.root, "--max-examples", str(examples),
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


@dataclass
class Ratio:
    tree: str
    start: str  # how the model was chosen: "GET /models" (the default) or "--model" (given)
    concurrency: int
    requests: int  # as the server received them, the preflight included
    wall: float
    cpu: float  # the same run against the latency-0 server
    verdict: str
    # Before the checks' first request: start-up, then the preflight and the route discovery (in a row when the
    # model comes from GET /models, at once when --model gives it).
    lead: float
    tail: float  # after the last answer: results, reports, exit

    @property
    def floor(self) -> float:
        return max(self.cpu, self.requests * LATENCY_MS / 1000 / self.concurrency)

    @property
    def ratio(self) -> float:
        return self.wall / self.floor

    def row(self, with_tree: bool) -> str:
        tree = f"{self.tree} | " if with_tree else ""
        return (f"| {tree}{self.start} | {self.concurrency} | {self.requests} | {self.wall:.1f} s | {self.floor:.1f} s "
                f"(CPU {self.cpu:.1f} s) | **{self.ratio:.2f}** | {self.lead:.1f} s | {self.tail:.1f} s |")


# How the run learns its model: from GET /models (the default), or given (a CI gate names the model it certifies).
STARTS = {"GET /models": (), "--model": ("--model", "conformance-ref-1")}


def latency_ratios(trees: dict[str, Path], concurrencies: tuple[int, ...], repeat: int) -> list[Ratio]:
    """The latency table: for each tree, start, N and repeat, a run at latency 0 and one at LATENCY_MS."""
    rows: list[Ratio] = []
    with server(0) as instant, server(LATENCY_MS) as slow:
        for _ in range(repeat):
            for concurrency in concurrencies:
                for start, model in STARTS.items():
                    for name, tree in trees.items():  # alternating, so the machine's load hits every tree alike
                        flags = ("--concurrency", str(concurrency), *model)
                        cpu = certify(instant, *flags, tree=tree)
                        timed = certify(slow, *flags, tree=tree)
                        rows.append(Ratio(name, start, concurrency, timed.requests, timed.wall, cpu.wall,
                                          timed.verdict, timed.lead, timed.tail))
                        print(f"  {name} {start} N={concurrency}: {timed.wall:.1f} s wall, "
                              f"{timed.requests} requests, CPU {cpu.wall:.1f} s, ratio {rows[-1].ratio:.2f}, "
                              f"lead {timed.lead:.1f} s, tail {timed.tail:.1f} s ({timed.verdict})", flush=True)
    return rows


def ratio_table(rows: list[Ratio]) -> str:
    with_tree = len({r.tree for r in rows}) > 1
    head = ("| tree " if with_tree else "") + ("| model | N | requests | wall | floor | ratio | before the first check "
                                               "| after the last answer |")
    rule = ("|---" if with_tree else "") + "|---|---:|---:|---:|---:|---:|---:|---:|"
    return "\n".join([head, rule, *(r.row(with_tree) for r in rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only N=16 for the latency ratio (faster)")
    parser.add_argument("--latency-only", action="store_true", help="only the latency-bound ratio table")
    parser.add_argument("--repeat", type=int, default=1, metavar="K", help="run the latency table K times")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also time the suite in this source tree (e.g. a checkout of main), alternating")
    args = parser.parse_args()
    rows: list[str] = []

    def show(line: str) -> None:
        rows.append(line)
        print(line, flush=True)

    if not args.latency_only:
        cost(show)
    trees = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    print(f"latency {LATENCY_MS} ms, full default run:", flush=True)
    ratios = latency_ratios(trees, (16,) if args.quick else RATIO_CONCURRENCY, max(1, args.repeat))
    show(f"latency-bound ratio (latency {LATENCY_MS} ms; floor = max(CPU, requests x {LATENCY_MS / 1000:g} s / N)):\n"
         + ratio_table(ratios))
    print("\nsummary\n" + "\n".join(rows))
    return 0 if all(r.verdict == "passed" for r in ratios) else 1


def cost(show: Callable[[str], None]) -> None:
    """The full and quick runs' cost, start-up, and the overhead per request (latency 0)."""
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


if __name__ == "__main__":
    sys.exit(main())
