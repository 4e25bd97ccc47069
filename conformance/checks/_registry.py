"""The check registry: `@check(...)` registers one small function under a stable ID."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._model import Basis, CheckSpec, Clause, Depth, Feature, Level, Profile

if TYPE_CHECKING:
    from .._context import CheckContext

CheckFunction = Callable[["CheckContext"], None]


@dataclass(frozen=True, slots=True)
class RegisteredCheck:
    spec: CheckSpec
    run: CheckFunction


_REGISTRY: dict[str, RegisteredCheck] = {}


def check(
    id: str,
    *,
    level: Level,
    feature: Feature,
    clause: Clause,
    description: str,
    accepts: tuple[str, ...] = (),
    requests: int = 1,
    depths: tuple[Depth, ...] = (Depth.QUICK, Depth.FULL),
    profiles: tuple[Profile, ...] = (Profile.OPENAI, Profile.DOCUMENTED),
    client_break: str | None = None,
    model_dependent: bool = False,
    load: bool = False,
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check; IDs are stable and never reused.

    The basis follows from the clause: documented-api is `document`; otherwise `client_break` (the
    client that breaks and the evidence link) makes it `client-break`, else it is `openai`, which may
    be SHOULD at most. `model_dependent`: the verdict depends on what the model generates, so
    `--repeat K` runs it K times. `load`: a load check (see CheckSpec.load): its failures are its
    evidence, and it is judged alone when it does not pass beside the other checks.
    """
    basis, evidence = basis_of(clause, client_break)
    if level is Level.MUST and basis is Basis.OPENAI:
        raise ValueError(f"check {id!r}: MUST needs the document or a client that breaks, not only {clause}")

    def register(func: CheckFunction) -> CheckFunction:
        if id in _REGISTRY and _REGISTRY[id].run is not func:
            raise ValueError(f"check ID {id!r} is registered twice")
        spec = CheckSpec(id, level, feature, clause, description, accepts, requests, depths, profiles, basis,
                         evidence, model_dependent, load)
        _REGISTRY[id] = RegisteredCheck(spec, func)
        return func

    return register


def basis_of(clause: Clause, client_break: str | None) -> tuple[Basis, str]:
    if clause.source == "documented-api":
        return Basis.DOCUMENT, clause.quote
    if client_break:
        return Basis.CLIENT_BREAK, client_break
    return Basis.OPENAI, f"{clause.source} § {clause.section}"


def all_checks() -> list[RegisteredCheck]:
    from . import load_all

    load_all()
    return sorted(_REGISTRY.values(), key=lambda c: c.spec.id)


def select(
    checks: Iterable[RegisteredCheck],
    *,
    depth: Depth,
    profile: Profile,
    only: Iterable[str] = (),
    skip: Iterable[str] = (),
) -> list[RegisteredCheck]:
    """Filter by depth, profile and --only/--skip globs (an ID or a glob like `stream.*`)."""
    only, skip = list(only), list(skip)
    chosen = []
    for registered in checks:
        spec = registered.spec
        if depth not in spec.depths or profile not in spec.profiles:
            continue
        if only and not any(fnmatch.fnmatchcase(spec.id, pattern) for pattern in only):
            continue
        if any(fnmatch.fnmatchcase(spec.id, pattern) for pattern in skip):
            continue
        chosen.append(registered)
    return chosen


def unknown_patterns(patterns: Iterable[str]) -> list[str]:
    ids = [c.spec.id for c in all_checks()]
    return [p for p in patterns if not any(fnmatch.fnmatchcase(i, p) for i in ids)]
