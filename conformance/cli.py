"""`conformance`: a thin command line over the engine and the report writers.

Anything the user can fix (bad flags, unreachable target, wrong key) ends as one line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from ._options import (
    DEPTH_HELP,
    DEPTHS,
    PROFILE_HELP,
    PROFILES,
    REPEAT_HELP,
    add_limit_options,
    limit_values,
    positive_int,
)
from .errors import BaselineError, ConformanceError, UsageError

if TYPE_CHECKING:
    from ._diff import Side
    from ._engine import RunSession
    from .report import Results

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="conformance", description="Conformance suite for OpenAI-compatible Chat Completions APIs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="certify a target (default: the built-in reference server)")
    run.add_argument("--base-url", default=None,
                     help="target base URL including /v1 (env OPENAI_BASE_URL); omitted: the built-in server")
    run.add_argument("--api-key", default=None, help="API key (env OPENAI_API_KEY)")
    run.add_argument("--model", default=None,
                     help="model (env CONFORMANCE_MODEL); default: the first id from GET /models")
    run.add_argument("--report-dir", type=Path, default=Path("reports"), help="where reports go (default: reports/)")
    run.add_argument("--depth", choices=DEPTHS, default="full", help=DEPTH_HELP)
    run.add_argument("--profile", choices=PROFILES, default="openai", help=PROFILE_HELP)
    run.add_argument("--strict", action="store_true",
                     help="every SHOULD counts as MUST: exact OpenAI parity (default: the document and real clients)")
    run.add_argument("--chat-path", nargs=2, metavar=("METHOD", "PATH"), type=str, default=None,
                     help="where the target serves chat, e.g. `POST /chat/completions` or `GET /models` (relative to "
                          "the base URL); default: found at the start of the run")
    run.add_argument("--only", action="append", default=[], metavar="ID_OR_GLOB",
                     help="run only these checks (a partial run: never CERTIFIED)")
    run.add_argument("--skip", action="append", default=[], metavar="ID_OR_GLOB", help="skip these checks")
    run.add_argument("--concurrency", type=positive_int, default=4,
                     help="requests in flight at once (default 4: well within paid APIs' lowest rate-limit "
                          "tiers and what a small self-hosted server serves in parallel; 429s are retried)")
    run.add_argument("--repeat", type=positive_int, default=1, metavar="K", help=REPEAT_HELP)
    add_limit_options(run.add_argument)
    run.add_argument("--dry-run", action="store_true",
                     help="send nothing: list the selected checks with their request bounds, and the totals")
    run.add_argument("--no-html", action="store_true", help="write results.json and junit.xml only")
    run.add_argument("--quiet", "-q", action="store_true", help="no target line, no progress")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(argv)
        handler = {"run": cmd_run, "serve": cmd_serve, "checks": cmd_checks, "report": cmd_report,
                   "selftest": cmd_selftest, "diff": cmd_diff, "coverage": cmd_coverage}[args.command]
        return handler(args)
    except ConformanceError as exc:
        print(f"conformance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("conformance: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `conformance checks | head`: the reader is gone, so is the rest of the output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE


def _parse(argv: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except ConformanceError as exc:
        failed = exc
    if argv[:1] == ["run"] and "--dry-run" not in argv:  # even bad flags leave a truthful record
        _record_failed_start(_loose_run_args(argv[1:]), None, str(failed), "arguments")
    raise failed


# -- run ----------------------------------------------------------------------------------------------
class _Stage:
    """How far the start of a run got: a failure is recorded at this stage."""

    name = "arguments"


@dataclass(frozen=True, slots=True)
class _Plan:
    run: RunSession  # open: the target reached, the model chosen
    baseline: Side | None


def cmd_run(args: argparse.Namespace) -> int:
    """Start (arguments, target, baseline), then certify. Every exit 2 of the start leaves a record."""
    from ._start import Origin

    origin = Origin.resolve(args.base_url, args.model, args.api_key, os.environ)
    if not args.quiet:  # the first line says what is certified, and where that came from
        print(origin.describe(), file=sys.stderr, flush=True)
    stage = _Stage()
    with contextlib.ExitStack() as stack:
        try:
            plan = _start(args, origin, stack, stage)
        except ConformanceError as exc:
            failed: ConformanceError = exc
        else:
            return 0 if plan is None else _certify(args, plan)
    # Recorded outside the `except` block: the record's renderer must not see this exception as context.
    message = origin.annotate(str(failed)) if stage.name == "target" else str(failed)
    if not args.dry_run:  # a dry run never touches the report dir: the last run's reports stay true
        _record_failed_start(args, origin, message, stage.name)
    raise type(failed)(message)


def _start(args: argparse.Namespace, origin: Any, stack: contextlib.ExitStack, stage: _Stage) -> _Plan | None:
    """Everything before the first check; raises ConformanceError (one line) for what the user can fix.
    None after a dry run (checked as far as it can be without a request, and the cost printed)."""
    from ._diff import load_reference
    from ._start import CLI_FLAGS, check_base_url
    from .checks import all_checks
    from .checks._registry import unknown_patterns

    if args.only or args.skip:  # else the catalogue loads in the run's warm-up, while the target is reached
        all_checks()
        unknown = unknown_patterns([*args.only, *args.skip])
        if unknown:
            raise UsageError(f"no check matches {', '.join(map(repr, unknown))} (see `conformance checks`)")
    base_url = check_base_url(origin.base_url, CLI_FLAGS) if origin.base_url is not None else None
    stage.name = "baseline"
    # Before spending anything: a baseline file or a complete run's results.json.
    baseline = load_reference(args.baseline, complete=True) if args.baseline is not None else None
    if args.dry_run:
        _dry_run(args, origin)
        return None
    stage.name = "target"
    marked = _marking_in_progress(_config_of(args, origin), args.report_dir)
    try:
        return _open(args, origin, stack, stage, target=(base_url, baseline))
    finally:  # the placeholder is written before anything else is (a failed start's record replaces it)
        marked.result()


def _open(args: argparse.Namespace, origin: Any, stack: contextlib.ExitStack, stage: _Stage, *,
          target: tuple[str | None, Side | None]) -> _Plan:
    """The target reached (or the built-in one started) and the baseline matched against it."""
    from ._diff import check_matches
    from ._engine import RunConfig, RunSession
    from ._start import CLI_FLAGS
    from .http import Target

    base_url, baseline = target
    api_key = origin.api_key
    if base_url is None:
        import secrets

        from .refserver import ServerConfig, ServerThread

        # A throwaway key, so the built-in certification exercises the auth checks too.
        api_key = "sk-builtin-" + secrets.token_urlsafe(16)
        server = ServerThread(ServerConfig(api_key=api_key)).start()
        stack.callback(server.stop)
        base_url = server.base_url
    config = RunConfig(target=Target(base_url, origin.model or "", api_key), builtin_target=origin.builtin,
                       **_run_settings(args))
    run = RunSession.open(config, flags=CLI_FLAGS, api_key_from=origin.api_key_from)
    stack.callback(run.close)
    config = run.config
    if baseline is not None:
        stage.name = "baseline"
        check_matches(baseline, model=config.target.model, profile=config.profile.value, depth=config.depth.value,
                      path=args.baseline)
        _warn_unknown_checks(baseline, args.baseline)
    return _Plan(run, baseline)


def _dry_run(args: argparse.Namespace, origin: Any) -> None:
    from ._cost import cost, dry_run
    from ._model import Depth, Profile
    from ._start import BUILTIN_LABEL
    from .http import redact_url

    bound = cost(Depth(args.depth), Profile(args.profile), only=args.only, skip=args.skip)
    target = redact_url(origin.base_url) if origin.base_url is not None else BUILTIN_LABEL
    print(dry_run(bound, target, retries=args.retries, max_requests=args.max_requests, max_tokens=args.max_tokens,
                  concurrency=args.concurrency),
          end="")
    repeated = [spec for spec in bound.checks if spec.model_dependent]
    if args.repeat > 1 and repeated:
        more = (args.repeat - 1) * sum(spec.requests for spec in repeated)
        print(f"  Repeat    --repeat {args.repeat}: the {len(repeated)} model-dependent checks run {args.repeat} "
              f"times, at most {more} more requests")


def _limits(args: argparse.Namespace) -> Any:
    from .http import Limits

    return Limits(**limit_values(lambda dest: getattr(args, dest, None)))


def _run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """RunConfig's keyword arguments from the flags (target aside)."""
    from ._model import Depth, Profile

    return {"limits": _limits(args), "depth": Depth(args.depth), "profile": Profile(args.profile),
            "only": tuple(args.only), "skip": tuple(args.skip), "concurrency": args.concurrency,
            "strict": args.strict, "chat_route": _chat_route(args.chat_path), "repeat": args.repeat}


def _chat_route(given: list[str] | None) -> tuple[str, str] | None:
    if given is None:
        return None
    method, path = given[0].upper(), given[1]
    if method not in ("GET", "POST"):
        raise UsageError(f"--chat-path {given[0]} {given[1]}: the method must be GET or POST")
    if not path.startswith("/") or "://" in path:
        raise UsageError(f"--chat-path {given[0]} {given[1]}: the path is relative to --base-url and starts with /, "
                         f"e.g. /chat/completions or /models")
    return method, path



def _config_of(args: argparse.Namespace, origin: Any) -> Any:
    """The RunConfig as far as it is known before the target answered (for the records written then)."""
    from ._engine import RunConfig
    from ._start import BUILTIN_LABEL
    from .http import Target

    target = Target(origin.base_url or BUILTIN_LABEL, origin.model or "", origin.api_key)
    return RunConfig(target=target, builtin_target=origin.builtin, **_run_settings(args))


def _loose_run_args(argv: Sequence[str]) -> argparse.Namespace:
    """What can be read from `run` flags that did not parse: each unreadable one gets its default."""
    args = build_parser().parse_args(["run"])
    loose = _Parser(add_help=False)
    for flag in ("--report-dir", "--base-url", "--api-key", "--model", "--depth", "--profile"):
        loose.add_argument(flag)
    loose.add_argument("--no-html", action="store_true")
    try:
        known, _ = loose.parse_known_args(argv)
    except ConformanceError:
        return args
    args.report_dir = Path(known.report_dir) if known.report_dir else args.report_dir
    args.base_url, args.api_key, args.model, args.no_html = known.base_url, known.api_key, known.model, known.no_html
    args.depth = known.depth if known.depth in DEPTHS else args.depth
    args.profile = known.profile if known.profile in PROFILES else args.profile
    return args


def _record_failed_start(args: argparse.Namespace, origin: Any, message: str, stage: str) -> None:
    """results.json (invalid, run_complete false, the reason) and junit.xml with one erroring test, in place
    of whatever the previous run left: CI reads red, never a stale pass."""
    from ._engine import start_failure
    from ._start import Origin
    from .checks import all_checks, select
    from .report import render_reports, write_results

    try:
        if origin is None:
            origin = Origin.resolve(args.base_url, args.model, args.api_key, os.environ)
        config = _config_of(args, origin)
        planned = select(all_checks(), depth=config.depth, profile=config.profile, only=config.only,
                         skip=config.skip)
        _remove_reports(args.report_dir)
        results_path = write_results(start_failure(config, len(planned), message, stage), args.report_dir)
        render_reports(results_path, args.report_dir, html=not args.no_html)
    except Exception:  # noqa: BLE001 - the start error is what the user must see; a failed record must not hide it
        return


def _certify(args: argparse.Namespace, plan: _Plan) -> int:
    from .report import Results, _terminal, render_reports, write_results

    tty = sys.stderr.isatty()
    progress = _terminal.Progress(sys.stderr, enabled=not args.quiet and tty, plain=not args.quiet and not tty)
    with progress.ticking(), _hypothesis_home(), _heap_frozen():
        result = plan.run.run_planned(progress)
    document = result.to_json()
    results_path = write_results(document, args.report_dir)
    results = Results.from_json(document)
    paths = render_reports(results_path, args.report_dir, html=not args.no_html)
    exit_code = result.exit_code
    notes: list[str] = []
    if plan.baseline is not None:
        exit_code, notes = _gate(args, plan.baseline, results, paths)
    refused = None
    if args.update_baseline is not None:
        try:
            notes.append(_update_baseline(args.update_baseline, results))
            exit_code = 0  # the baseline was asked for and written: `... --update-baseline F && git add F`
        except BaselineError as exc:
            refused, exit_code = exc, EXIT_USAGE
    print(_terminal.summary(results, paths, colour=_terminal.use_colour(sys.stdout), baseline=notes), end="")
    if refused is not None:
        print(f"conformance: error: {refused}", file=sys.stderr)
    return exit_code


@contextlib.contextmanager
def _heap_frozen() -> Iterator[None]:
    """What is loaded by now (the checks, hypothesis, schemathesis: millions of objects) is left out of
    the garbage collector's full passes during the run: each took about 0.1 s with every thread
    stopped, some 1 s of a run in all. Given back to the collector afterwards (`main` may run again in
    one process)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _hypothesis_home() -> Iterator[None]:
    """hypothesis keeps its caches in ./.hypothesis by default: a run must not leave that folder in the
    user's working directory. A throwaway home instead, unless HYPOTHESIS_STORAGE_DIRECTORY says where."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield
        return
    import tempfile

    # Through the environment, which hypothesis reads when it first needs storage: importing hypothesis
    # here would race the run's warm-up thread, which imports it at the same time.
    with tempfile.TemporaryDirectory(prefix="conformance-hypothesis-") as home:
        os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = home
        try:
            yield
        finally:
            del os.environ["HYPOTHESIS_STORAGE_DIRECTORY"]
            configuration = sys.modules.get("hypothesis.configuration")
            if configuration is not None:  # forget this home: the next run in this process gets its own
                configuration.set_hypothesis_home_dir(None)


STALE_REPORTS = ("report.html", "junit.xml", "diff.md", "diff.json")


def _remove_reports(report_dir: Path) -> None:
    for name in STALE_REPORTS:
        (report_dir / name).unlink(missing_ok=True)


def _marking_in_progress(config: Any, report_dir: Path) -> concurrent.futures.Future[None]:
    """`_mark_in_progress` in a thread: it loads the catalogue (0.2 s), which need not delay the target's
    first request. The report writers load there too (pytest: 0.15 s that would otherwise come after the
    last answer), before any check draws with hypothesis: the start waits for this thread."""
    marked: concurrent.futures.Future[None] = concurrent.futures.Future()

    def mark() -> None:
        try:
            _mark_in_progress(config, report_dir)
            if os.environ.get("REPORTPRE", "1") == "1":
                importlib.import_module("conformance.report._replay")
        except BaseException as exc:  # noqa: BLE001 - raised where the start waits for it
            marked.set_exception(exc)
        else:
            marked.set_result(None)

    threading.Thread(target=mark, name="mark-in-progress", daemon=True).start()
    return marked


def _mark_in_progress(config: Any, report_dir: Path) -> None:
    """Until the run ends, results.json says "incomplete" and the previous run's reports are gone.

    An interrupted or killed run then never leaves a stale passing report behind for CI to read.
    """
    import datetime as dt

    from ._engine import RunResult
    from ._model import RunVerdict
    from .checks import all_checks, select
    from .report import write_results

    planned = select(all_checks(), depth=config.depth, profile=config.profile, only=config.only, skip=config.skip)
    placeholder = RunResult(config=config, results=[], planned=len(planned), started_at=dt.datetime.now(dt.UTC),
                            duration_s=0.0, requests=0, tokens=0, verdict=RunVerdict.INCOMPLETE,
                            reason="the run did not finish (still running, interrupted or killed)", status_counts={})
    _remove_reports(report_dir)
    write_results(placeholder.to_json(), report_dir)


# -- baseline gate ---------------------------------------------------------------------------------------
def _warn_unknown_checks(reference: Side, path: Path) -> None:
    """A check the suite no longer has is not an error (a newer suite renamed it), but say so once."""
    from ._diff import unknown_checks
    from .checks import all_checks

    unknown = unknown_checks(reference, (c.spec.id for c in all_checks()))
    if unknown:
        shown = ", ".join(unknown[:12]) + (f" and {len(unknown) - 12} more" if len(unknown) > 12 else "")
        print(f"conformance: warning: baseline {path} names {len(unknown)} check{'s' if len(unknown) != 1 else ''} "
              f"that this suite does not have: {shown} (renamed or removed; ignored)", file=sys.stderr)


def _gate(args: argparse.Namespace, reference: Side, results: Results,
          paths: dict[str, Path]) -> tuple[int, list[str]]:
    """Exit 1 only on regressions against the baseline; the diff goes next to the reports."""
    from ._diff import compare, side_of_results

    diff = compare(reference, side_of_results(results, "this run"))
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


def _update_baseline(path: Path, results: Results) -> str:
    from ._diff import baseline_problem, is_placeholder, make_baseline, write_baseline

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
    known = baseline["known_failures"]
    todo = sum(is_placeholder(entry["reason"]) for entry in known.values())
    text = f"wrote {path} ({len(known)} known failure(s)"
    if todo:
        text += f", {todo} with the placeholder reason: replace it with why, or --baseline refuses the file"
    return text + ")"


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
    from ._cost import table, totals_line
    from .checks import all_checks

    specs = [c.spec for c in all_checks()]
    if args.json:
        print(json.dumps([s.to_json() for s in specs], indent=1))
        return 0
    print("\n".join(table(specs, clause=True)))
    print(f"\n{totals_line(len(specs))}")
    return 0


# -- coverage of the documented API ------------------------------------------------------------------
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
    selftest.add_argument("--jobs", type=positive_int, default=None,
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

    def __call__(self, event: Any) -> None:
        from ._selftest import SubjectFinished

        if not self.enabled or not isinstance(event, SubjectFinished):
            return
        subject = event.outcome.subject
        sys.stderr.write(f"\r[{event.done}/{event.planned}] {subject.kind.value} "
                         f"{subject.name[:40]:<40} {time.monotonic() - self.started:5.1f}s")
        if event.done == event.planned:
            sys.stderr.write("\n")
        sys.stderr.flush()


# -- report, matrix and diff -------------------------------------------------------------------------
def _add_report_parsers(sub: Any) -> None:
    report = sub.add_parser("report", help="re-render reports from results.json; several: a matrix page")
    report.add_argument("results", type=Path, nargs="+", help="results.json file(s)")
    report.add_argument("-o", "--output", "--output-dir", dest="output", type=Path, default=None, metavar="DIR",
                        help="the directory to write into: report.html + junit.xml for one RESULTS (default: "
                             "next to it), matrix.html for several (required)")
    diff = sub.add_parser("diff", help="compare two runs (or a baseline and a run) check by check")
    diff.add_argument("old", type=Path, help="the old results.json, or a baseline file")
    diff.add_argument("new", type=Path, nargs="+",
                      help="the new results.json; more files are repeated runs of it (verdicts that differ: flaky)")
    diff.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    diff.add_argument("-o", "--output", type=Path, default=None, help="write to FILE instead of stdout")


def cmd_report(args: argparse.Namespace) -> int:
    """One results.json: report.html + junit.xml into -o DIR (default: next to it). Several: DIR/matrix.html."""
    from .report import load_results, render_matrix, render_reports

    output: Path | None = args.output
    if output is not None and (output.is_file() or (output.suffix.lower() in (".html", ".htm", ".xml")
                                                    and not output.is_dir())):
        raise UsageError(f"-o is a directory: the matrix goes to DIR/matrix.html, one run's reports to "
                         f"DIR/report.html and DIR/junit.xml; {str(output)!r} names a file (try -o "
                         f"{output.parent})")
    if len(args.results) > 1:
        if output is None:
            raise UsageError("several results files make a matrix: pass -o DIR (it goes to DIR/matrix.html)")
        path = render_matrix(list(args.results), output / "matrix.html")
        print(f"matrix: {path}")
        return 0
    load_results(args.results[0])  # one clear line for a missing, malformed or foreign file
    paths = render_reports(args.results[0], output)
    print("reports: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Markdown (or JSON) for a PR comment; exit 1 on a regression, 2 when the new run is incomplete."""
    from ._diff import check_matches, combine, compare, load_reference, side_of_results
    from .report import load_results

    news = [load_results(path) for path in args.new]
    try:
        new = combine(news, [str(path) for path in args.new])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    old = load_reference(args.old, complete=False)
    if old.kind == "baseline":
        check_matches(old, model=new.target.model, profile=new.profile.value, depth=new.depth.value, path=args.old)
        _warn_unknown_checks(old, args.old)
    diff = compare(old, side_of_results(new, str(args.new[0])))
    text = json.dumps(diff.to_json(), indent=1) + "\n" if args.json else diff.to_markdown()
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return diff.exit_code


def entry() -> None:
    """The console script: like `sys.exit(main())`, but the process leaves at once.

    Every report is written and closed by then. A normal exit would tear down some 3,000 modules
    (0.3 s after a run), and after Ctrl-C join worker threads that may still sit in a request that
    connected just after the cut (a read timeout; results.json already says "incomplete").
    """
    from ._compat import count_as_suite

    started_by = getattr(sys.modules.get("__main__"), "__file__", None)
    if started_by:  # the console script: hypothesis must not draw constants from it either
        count_as_suite(started_by)
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that left (`| head`), a closed stream
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
