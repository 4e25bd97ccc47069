"""What a run may cost, known before it sends anything.

Every check declares an upper bound of the requests it makes (`@check(requests=…)`, kept honest by
the checks' tests). The bound of a run is their sum over the checks a depth, a profile and
--only/--skip select: a run sends fewer, because checks share responses (one basic completion
serves several), and more only by retrying a 429/503 (at most --retries times each), by the
preflight (at most 3 requests before the run, usually 1) and by finding the chat route (at most 3,
usually 1: `CHAT_ROUTES` in the engine); on a target that does not serve chat on POST /chat/completions,
also by the chat requests sent there before the route was known (at most --concurrency:
`_context.PendingRoute`), each sent again on the route found.

Tokens have no such bound before the run: prompt tokens depend on the target's tokenizer, a
target may ignore max_tokens, and schemathesis' valid requests may leave max_tokens out. Only
--max-tokens caps them.

This is the one source of every cost figure the suite states: `conformance run --dry-run`,
`conformance checks` and the README's flags table (`python -m conformance._cost` prints its row;
a test fails when they drift).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._model import CheckSpec, Depth, Profile

PREFLIGHT_REQUESTS = 3
# Finding where chat is served: one request per candidate route, stopping at the first that answers.
CHAT_ROUTE_REQUESTS = 3


@dataclass(frozen=True, slots=True)
class Cost:
    depth: Depth
    profile: Profile
    checks: tuple[CheckSpec, ...]

    @property
    def requests(self) -> int:
        """Upper bound of the checks' requests (before retries of 429/503, without the preflight)."""
        return sum(spec.requests for spec in self.checks)

    def requests_of(self, prefix: str) -> int:
        return sum(spec.requests for spec in self.checks if spec.id.startswith(prefix))


def cost(depth: Depth, profile: Profile, only: Iterable[str] = (), skip: Iterable[str] = ()) -> Cost:
    """The checks a run selects, with their request bounds."""
    from .checks import all_checks, select

    chosen = select(all_checks(), depth=depth, profile=profile, only=only, skip=skip)
    return Cost(depth, profile, tuple(sorted((c.spec for c in chosen), key=lambda spec: spec.id)))


def depth_label(spec: CheckSpec) -> str:
    """`quick+full`, `full`; `quick+full(documented)` for a check of one profile only."""
    label = "+".join(d.value for d in Depth if d in spec.depths)
    if len(spec.profiles) == 1:
        label += f"({spec.profiles[0].value})"
    return label


def table(specs: Iterable[CheckSpec], *, clause: bool = False) -> list[str]:
    """ID, LEVEL, FEATURE, DEPTH, REQUESTS (and CLAUSE) columns, one check per line."""
    specs = list(specs)
    width = max((len(s.id) for s in specs), default=2)
    depth = max((len(depth_label(s)) for s in specs), default=5)
    head = f"{'ID':<{width}}  {'LEVEL':<6}  {'FEATURE':<9}  {'DEPTH':<{depth}}  REQUESTS"
    lines = [head + ("  BASIS         CLAUSE" if clause else "")]
    for spec in specs:
        row = (f"{spec.id:<{width}}  {spec.level.value:<6}  {spec.feature.value:<9}  {depth_label(spec):<{depth}}  "
               f"{spec.requests:>8}")
        lines.append(row + (f"  {spec.basis.value:<12}  {spec.clause.source} § {spec.clause.section}" if clause
                            else ""))
    return lines


def totals_line(checks: int) -> str:
    """The catalogue's closing line: the bound of each depth at the default profile."""
    quick, full = cost(Depth.QUICK, Profile.OPENAI), cost(Depth.FULL, Profile.OPENAI)
    return (f"{checks} checks; at most {quick.requests} requests at depth quick ({len(quick.checks)} checks), "
            f"{full.requests} at full ({len(full.checks)} checks), profile openai")


def dry_run(bound: Cost, target: str, *, retries: int, max_requests: int | None,
            max_tokens: int | None, concurrency: int) -> str:
    """What `conformance run --dry-run` prints: the selected checks, their bounds, and the totals."""
    lines = [f"DRY RUN: nothing sent. {len(bound.checks)} checks, depth {bound.depth.value}, "
             f"profile {bound.profile.value}, against {target}", ""]
    lines += ["  " + line for line in table(bound.checks)]
    requests = (f"at most {bound.requests} (each check's declared bound; checks that share a response send "
                f"fewer), plus at most {PREFLIGHT_REQUESTS} before the run and {CHAT_ROUTE_REQUESTS} to find the chat "
                f"route (and {concurrency} more when chat is not on POST /chat/completions: sent there before the "
                f"route is known, then again on the route found); each 429/503 may be retried "
                f"{retries} time{'s' if retries != 1 else ''} (--retries)")
    if max_requests is not None and max_requests < bound.requests:
        requests += f"; --max-requests {max_requests} ends the run INCOMPLETE if it needs more"
    if max_tokens is not None:
        tokens = (f"at most {max_tokens} (--max-tokens; the run ends INCOMPLETE when reached, answers in flight "
                  f"still count)")
    else:
        tokens = ("not bounded before the run (prompt tokens depend on the target's tokenizer, and a target may "
                  "ignore max_tokens): cap them with --max-tokens N")
    lines += ["", f"  Requests  {requests}", f"  Tokens    {tokens}"]
    return "\n".join(lines) + "\n"


def readme_depth_row() -> str:
    """The `--depth` row of the README's flags table, from the catalogue."""
    quick, full = cost(Depth.QUICK, Profile.OPENAI), cost(Depth.FULL, Profile.OPENAI)
    return (f"| `--depth quick\\|full` | `quick`: {len(quick.checks)} checks, at most {quick.requests} requests, "
            f"for PR CI against a paid API. `full` (default): {len(full.checks)} checks, at most {full.requests} "
            f"requests ({full.requests_of('fuzz.')} of them schemathesis fuzzing). Upper bounds from the catalogue "
            f"(`conformance run --dry-run`); a run sends fewer, since checks share responses. |")


if __name__ == "__main__":
    print(readme_depth_row())
