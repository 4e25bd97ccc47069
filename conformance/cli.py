"""`conformance`: a thin command line over the engine and the report writers.

Anything the user can fix (bad flags, unreachable target, wrong key) ends as one line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .errors import ConformanceError, TargetUnreachable, UsageError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="conformance", description="Conformance suite for OpenAI-compatible Chat Completions APIs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="certify a target (default: the built-in reference server)")
    run.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"),
                     help="target base URL including /v1 (env OPENAI_BASE_URL); omitted: the built-in server")
    run.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="API key (env OPENAI_API_KEY)")
    run.add_argument("--model", default=os.environ.get("CONFORMANCE_MODEL"),
                     help="model (env CONFORMANCE_MODEL); default: the first id from GET /models")
    run.add_argument("--report-dir", type=Path, default=Path("reports"), help="where reports go (default: reports/)")
    run.add_argument("--depth", choices=["quick", "full"], default="full",
                     help="quick: <= 40 requests, for PR CI on paid APIs; full (default)")
    run.add_argument("--profile", choices=["openai", "documented"], default="openai",
                     help="openai (default): POST must work; documented: the GET /v1/models quirk must work too")
    run.add_argument("--only", action="append", default=[], metavar="ID_OR_GLOB", help="run only these checks")
    run.add_argument("--skip", action="append", default=[], metavar="ID_OR_GLOB", help="skip these checks")
    run.add_argument("--concurrency", type=_positive_int, default=4,
                     help="requests in flight at once (default 4: well within paid APIs' lowest rate-limit "
                          "tiers and what a small self-hosted server serves in parallel; 429s are retried)")
    run.add_argument("--max-requests", type=_positive_int, help="stop (INCOMPLETE) after this many requests")
    run.add_argument("--max-tokens", type=_positive_int,
                     help="stop (INCOMPLETE) after this many tokens (reported usage; an upper-bound estimate "
                          "where a response reports none)")
    run.add_argument("--timeout", type=_positive_float, default=20.0, help="read timeout per chunk, s (default 20)")
    run.add_argument("--connect-timeout", type=_positive_float, default=5.0, help="connect timeout, s (default 5)")
    run.add_argument("--request-deadline", type=_positive_float, default=45.0,
                     help="total time per request incl. streams, s (default 45)")
    run.add_argument("--run-deadline", type=_positive_float, default=900.0, help="whole-run deadline, s (default 900)")
    run.add_argument("--max-response-bytes", type=_positive_int, default=4_000_000,
                     help="a larger response is a failure of the checks judging it (default 4000000)")
    run.add_argument("--max-sse-events", type=_positive_int, default=5_000,
                     help="a longer stream is a failure of the checks judging it (default 5000)")
    run.add_argument("--retries", type=int, choices=range(11), default=3, metavar="N",
                     help="retries of a 429/503, honouring Retry-After, each wait <= 10 s (default 3)")
    run.add_argument("--no-html", action="store_true", help="write results.json and junit.xml only")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    run.add_argument("--baseline", type=Path, metavar="FILE",
                     help="CI gate: exit 1 only on regressions against FILE's known failures (diff in the report dir)")
    run.add_argument("--update-baseline", type=Path, metavar="FILE",
                     help="write FILE: this run's failures become known failures (keep or edit their reasons)")

    serve = sub.add_parser("serve", help="run the reference server in the foreground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port and prints it")
    serve.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY`")
    serve.add_argument("--model", action="append", default=[], help="served model id (repeatable)")
    serve.add_argument("--fault", action="append", default=[], help="seed one named defect (repeatable)")
    serve.add_argument("--variant", action="append", default=[], help="enable a legal variant (repeatable)")
    serve.add_argument("--latency", type=int, default=0, metavar="MS", help="delay every response by MS ms")
    serve.add_argument("--list-faults", action="store_true", help="list faults and variants and exit")

    checks = sub.add_parser("checks", help="list the check catalogue")
    checks.add_argument("--json", action="store_true", help="as JSON")

    _add_selftest_parser(sub)

    _add_report_parsers(sub)

    coverage = sub.add_parser("coverage", help="the coverage map: each statement of the documented API and the "
                                               "checks (or the reason) that answer for it")
    coverage.add_argument("--json", action="store_true", help="as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler = {"run": cmd_run, "serve": cmd_serve, "checks": cmd_checks, "report": cmd_report,
                   "selftest": cmd_selftest, "diff": cmd_diff, "coverage": cmd_coverage}[args.command]
        return handler(args)
    except ConformanceError as exc:
        print(f"conformance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("conformance: interrupted", file=sys.stderr)
        return 130


# -- run ----------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from ._http import Limits, Target
    from ._model import Depth, Profile
    from .checks import all_checks
    from .checks._registry import unknown_patterns

    all_checks()
    unknown = unknown_patterns([*args.only, *args.skip])
    if unknown:
        raise UsageError(f"no check matches {', '.join(map(repr, unknown))} (see `conformance checks`)")
    limits = Limits(
        connect_timeout_s=args.connect_timeout,
        read_timeout_s=args.timeout,
        request_deadline_s=args.request_deadline,
        run_deadline_s=args.run_deadline,
        max_requests=args.max_requests,
        max_tokens=args.max_tokens,
        max_response_bytes=args.max_response_bytes,
        max_sse_events=args.max_sse_events,
        retries=args.retries,
    )
    common: dict[str, Any] = {"limits": limits, "depth": Depth(args.depth), "profile": Profile(args.profile),
                              "only": tuple(args.only), "skip": tuple(args.skip), "concurrency": args.concurrency}
    if args.base_url is None:
        import secrets

        from .refserver import ServerConfig, ServerThread

        # A throwaway key, so the built-in certification exercises the auth checks too.
        builtin_key = "sk-builtin-" + secrets.token_urlsafe(16)
        with ServerThread(ServerConfig(api_key=builtin_key)) as server:
            target = Target(server.base_url, args.model or ServerConfig().models[0], builtin_key)
            return _certify(args, target, common, builtin=True)
    base_url = _check_base_url(args.base_url)
    model = _preflight(base_url, args.api_key, args.model, limits)
    return _certify(args, Target(base_url, model, args.api_key or None), common, builtin=False)


def _check_base_url(url: str) -> str:
    import httpx

    try:
        parsed = httpx.URL(url)
    except Exception:  # noqa: BLE001 - httpx raises several types for a malformed URL
        raise UsageError(f"--base-url {url!r} is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"--base-url {url!r} must be an http(s) URL such as https://api.example.com/v1")
    return url.rstrip("/")


def _preflight(base_url: str, api_key: str | None, model: str | None, limits: Any) -> str:
    """Reach the target once before spending anything; pick the model from GET /models if needed.

    Bounded like every request of a run (timeouts, total deadline, size), so a target that hangs or
    drips bytes ends here as one line and exit 2.
    """
    from ._http import RateLimited, preflight

    try:
        exchange = preflight(base_url, api_key, limits)
    except RateLimited:
        raise TargetUnreachable(f"{base_url}/models kept answering 429/503 (rate limited or overloaded); "
                                f"retry later") from None
    if exchange.error_kind == "connect":
        raise TargetUnreachable(f"cannot connect to {base_url}: {_reason(exchange.error)}. Is the server running, "
                                f"and is --base-url right?")
    if exchange.error_kind == "timeout":
        raise TargetUnreachable(f"{base_url}/models did not answer: {exchange.error}")
    if exchange.error is not None:
        raise TargetUnreachable(f"cannot talk to {base_url}: {exchange.error}")
    if exchange.limit_exceeded:
        raise TargetUnreachable(f"{base_url}/models did not give a usable answer: {exchange.limit_exceeded}")
    if exchange.status in (401, 403):
        hint = "pass --api-key or set OPENAI_API_KEY" if not api_key else "the API key was refused"
        raise TargetUnreachable(f"{base_url}/models answered {exchange.status}: {hint}")
    if model:
        return model
    try:
        data = exchange.json()["data"]
        return str(data[0]["id"])
    except Exception:  # noqa: BLE001 - any shape problem means the same advice
        raise UsageError(f"could not read a model id from GET {base_url}/models (HTTP {exchange.status}); "
                         f"pass --model") from None


def _reason(error: str | None) -> str:
    """'ConnectError: Connection refused' -> 'Connection refused'."""
    return (error or "no answer").split(": ", 1)[-1]


def _certify(args: argparse.Namespace, target: Any, common: dict[str, Any], *, builtin: bool) -> int:
    from ._engine import RunConfig, run
    from .report import _terminal, render_reports, write_results

    config = RunConfig(target=target, builtin_target=builtin, **common)
    baseline = _load_baseline(args, config)  # before spending anything: a bad baseline is exit 2 at once
    _mark_in_progress(config, args.report_dir)
    progress = _terminal.Progress(sys.stderr, enabled=not args.quiet and sys.stderr.isatty())
    result = run(config, on_event=progress)
    results = result.to_json()
    results_path = write_results(results, args.report_dir)
    paths = {"results": results_path}
    if not args.no_html:
        paths = render_reports(results_path, args.report_dir)
    exit_code = result.exit_code
    notes: list[str] = []
    if baseline is not None:
        exit_code, notes = _gate(args, baseline, results, paths)
    if args.update_baseline is not None:
        notes.append(_update_baseline(args.update_baseline, results))
    print(_terminal.summary(results, paths, colour=_terminal.use_colour(sys.stdout), baseline=notes), end="")
    return exit_code


def _mark_in_progress(config: Any, report_dir: Path) -> None:
    """Until the run ends, results.json says "incomplete" and the previous run's reports are gone.

    An interrupted or killed run then never leaves a stale passing report behind for CI to read.
    """
    import datetime as dt

    from ._engine import RunResult, RunVerdict
    from .checks import all_checks, select
    from .report import write_results

    planned = select(all_checks(), depth=config.depth, profile=config.profile, only=config.only, skip=config.skip)
    placeholder = RunResult(config=config, results=[], planned=len(planned), started_at=dt.datetime.now(dt.UTC),
                            duration_s=0.0, requests=0, tokens=0, verdict=RunVerdict.INCOMPLETE,
                            reason="the run did not finish (still running, interrupted or killed)", status_counts={})
    for name in ("report.html", "junit.xml", "diff.md", "diff.json"):
        (report_dir / name).unlink(missing_ok=True)
    write_results(placeholder.to_json(), report_dir)


# -- baseline gate (issue 5) ------------------------------------------------------------------------------
def _load_baseline(args: argparse.Namespace, config: Any) -> dict[str, Any] | None:
    from ._diff import check_baseline_matches, load_baseline

    if args.baseline is None:
        return None
    baseline = load_baseline(args.baseline)
    check_baseline_matches(baseline, config.target.model, config.profile.value, args.baseline)
    return baseline


def _gate(args: argparse.Namespace, baseline: dict[str, Any], results: dict[str, Any],
          paths: dict[str, Path]) -> tuple[int, list[str]]:
    """Exit 1 only on regressions against the baseline; the diff goes next to the reports."""
    from ._diff import gate

    diff = gate(baseline, results, baseline_label=str(args.baseline))
    paths["diff"] = args.report_dir / "diff.md"
    paths["diff"].write_text(diff.to_markdown(), encoding="utf-8")
    (args.report_dir / "diff.json").write_text(json.dumps(diff.to_json(), indent=1), encoding="utf-8")
    notes = [f"{len(diff.regressions)} regression(s) against {args.baseline}"
             + "".join(f"\n              {c.category}: {c.id}" for c in diff.regressions[:20])]
    fixed = diff.of("fixed")
    if fixed:
        notes.append(f"{len(fixed)} known failure(s) now pass, remove them from the baseline: "
                     + ", ".join(c.id for c in fixed))
    notes.append(f"{len(diff.of('still-failing'))} known failure(s) still failing (expected)")
    return diff.exit_code, notes


def _update_baseline(path: Path, results: dict[str, Any]) -> str:
    from ._diff import baseline_problem, make_baseline, write_baseline

    previous = None
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
        if baseline_problem(previous):
            previous = None  # an unreadable old baseline is replaced, its reasons cannot be kept
    baseline = make_baseline(results, previous)
    write_baseline(path, baseline)
    return f"wrote {path} ({len(baseline['known_failures'])} known failure(s); edit their reasons)"


# -- serve --------------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from .refserver import DEFAULT_MODEL, FAULTS, VARIANTS, ServerConfig, serve_forever

    if args.list_faults:
        print("Faults (each is a protocol defect; the named checks must catch it):")
        for fault in FAULTS.values():
            print(f"  {fault.name:<34} {fault.description}  [caught by: {', '.join(fault.killed_by)}]")
        print("\nVariants (legal behaviour every check must accept):")
        for variant in VARIANTS.values():
            print(f"  {variant.name:<34} {variant.description}")
        return 0
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port")
    try:
        config = ServerConfig(api_key=args.api_key, models=tuple(args.model) or (DEFAULT_MODEL,),
                              faults=frozenset(args.fault), variants=frozenset(args.variant),
                              latency_ms=max(0, args.latency))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        serve_forever(config, args.host, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


# -- checks -------------------------------------------------------------------------------------------
def cmd_checks(args: argparse.Namespace) -> int:
    from .checks import all_checks

    specs = [c.spec for c in all_checks()]
    if args.json:
        print(json.dumps([s.to_json() for s in specs], indent=1))
        return 0
    width = max(len(s.id) for s in specs)
    print(f"{'ID':<{width}}  {'LEVEL':<6}  {'FEATURE':<9}  CLAUSE")
    for spec in specs:
        print(f"{spec.id:<{width}}  {spec.level.value:<6}  {spec.feature.value:<9}  "
              f"{spec.clause.source} § {spec.clause.section}")
    print(f"\n{len(specs)} checks")
    return 0


# -- coverage (issue 15) ------------------------------------------------------------------------------
def cmd_coverage(args: argparse.Namespace) -> int:
    """The map of documented-api.txt: key, quote, checks and their faults, or why a row has no check."""
    import shutil

    from . import coverage

    if args.json:
        print(json.dumps(coverage.to_json(), indent=1, ensure_ascii=False))
    else:
        print(coverage.table(width=shutil.get_terminal_size((120, 24)).columns), end="")
    return 0


# -- selftest -----------------------------------------------------------------------------------------
def _add_selftest_parser(sub: Any) -> None:
    selftest = sub.add_parser("selftest", help="prove the suite: certify the reference server clean, with every "
                                               "legal variant and with every seeded fault")
    selftest.add_argument("--depth", choices=["auto", "quick", "full"], default="auto",
                          help="auto (default): clean at both depths, variants at full, each fault quick first "
                               "and full only if quick did not catch it")
    selftest.add_argument("--only-fault", action="extend", nargs="+", default=None, metavar="NAME",
                          help="run only these faults (and no variants unless --only-variant)")
    selftest.add_argument("--only-variant", action="extend", nargs="+", default=None, metavar="NAME",
                          help="run only these variants (and no faults unless --only-fault)")
    selftest.add_argument("--only-check", action="append", default=[], metavar="ID_OR_GLOB",
                          help="run only these checks, and only the faults that declare one of them")
    selftest.add_argument("--jobs", type=_positive_int, default=None,
                          help="servers certified in parallel, each in a worker process (default: 2 per CPU, "
                               "at most 8; 1 runs everything in this process)")
    selftest.add_argument("--wide", action="store_true",
                          help="run the whole catalogue against every fault (shows collateral kills; slower)")
    selftest.add_argument("--thorough", action="store_true",
                          help="run the expensive checks (fuzz.*) against each variant too, not once against "
                               "all variants combined (slower)")
    selftest.add_argument("--json", action="store_true", help="print the report as JSON")
    selftest.add_argument("--quiet", "-q", action="store_true", help="no progress line")


def cmd_selftest(args: argparse.Namespace) -> int:
    """Exit 0 when every fault is killed, every variant passes and every MUST/SHOULD check is proven."""
    from ._selftest import DepthMode, SelftestConfig, default_jobs, fault_table, kill_table, selftest, variant_table

    config = SelftestConfig(depth=DepthMode(args.depth), jobs=args.jobs or default_jobs(), wide=args.wide,
                            thorough=args.thorough, only_checks=tuple(args.only_check),
                            only_faults=tuple(args.only_fault) if args.only_fault is not None else None,
                            only_variants=tuple(args.only_variant) if args.only_variant is not None else None)
    progress = _SelftestProgress(enabled=not args.quiet and sys.stderr.isatty())
    try:
        report = selftest(config, on_event=progress)
    except ValueError as exc:  # an unknown --only-fault/--only-variant name or --only-check pattern
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
        return 0 if report.ok else 1
    print(f"Clean server and legal variants:\n{variant_table(report)}\n")
    print(f"Seeded faults:\n{fault_table(report)}\n")
    print(f"Which checks killed which faults:\n{kill_table(report)}\n")
    for problem in report.problems():
        print(f"PROBLEM: {problem}")
    print(f"selftest {'passed' if report.ok else 'FAILED'} in {report.duration_s:.1f}s, "
          f"{report.requests} requests")
    print(report.score_line())
    return 0 if report.ok else 1


class _SelftestProgress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if kind == "subject-finished":
            subject = payload["outcome"].subject
            sys.stderr.write(f"\r[{payload['done']}/{payload['planned']}] {subject.kind.value} "
                             f"{subject.name[:40]:<40} {time.monotonic() - self.started:5.1f}s")
            if payload["done"] == payload["planned"]:
                sys.stderr.write("\n")
            sys.stderr.flush()


# -- report, matrix and diff (issue 5) ---------------------------------------------------------------
def _add_report_parsers(sub: Any) -> None:
    report = sub.add_parser("report", help="re-render reports from results.json; several: a matrix page")
    report.add_argument("results", type=Path, nargs="+", help="results.json file(s)")
    report.add_argument("-o", "--output", "--output-dir", dest="output", type=Path, default=None,
                        help="a directory for report.html + junit.xml, or FILE.html for the matrix of all RESULTS")
    diff = sub.add_parser("diff", help="compare two runs (or a baseline and a run) check by check")
    diff.add_argument("old", type=Path, help="the old results.json, or a baseline file")
    diff.add_argument("new", type=Path, nargs="+",
                      help="the new results.json; more files are repeated runs of it (verdicts that differ: flaky)")
    diff.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    diff.add_argument("-o", "--output", type=Path, default=None, help="write to FILE instead of stdout")


def cmd_report(args: argparse.Namespace) -> int:
    from .report import load_results, render_matrix, render_reports

    output: Path | None = args.output
    if output is not None and output.suffix.lower() == ".html":
        path = render_matrix(list(args.results), output)
        print(f"matrix: {path}")
        return 0
    if len(args.results) > 1:
        raise UsageError("several results files make a matrix: pass -o matrix.html")
    load_results(args.results[0])  # one clear line for a missing, malformed or foreign file
    paths = render_reports(args.results[0], output)
    print("reports: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Markdown (or JSON) for a PR comment; exit 1 on a regression, 2 when the new run is incomplete."""
    from ._diff import check_baseline_matches, combine, compare, load_baseline, side_of_baseline, side_of_results
    from .report import load_results

    news = [load_results(path) for path in args.new]
    try:
        new = combine(news)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if _is_baseline(args.old):
        baseline = load_baseline(args.old)
        check_baseline_matches(baseline, new["target"]["model"], new["profile"], args.old)
        old = side_of_baseline(baseline, str(args.old))
    else:
        old = side_of_results(load_results(args.old), str(args.old))
    diff = compare(old, side_of_results(new, str(args.new[0])))
    text = json.dumps(diff.to_json(), indent=1) + "\n" if args.json else diff.to_markdown()
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return diff.exit_code


def _is_baseline(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "known_failures" in data


def entry() -> None:
    """The console script: like `sys.exit(main())`, but Ctrl-C leaves at once.

    Worker threads may still sit in a request that connected just after the cut; a normal exit would
    join them (a read timeout). results.json already says "incomplete" (written when the run started).
    """
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    entry()
