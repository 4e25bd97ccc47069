"""A load check runs beside the run's last checks: its requests take their slots together
(`Gate.together`), and when it does not pass there it runs again alone, which decides."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conformance import Depth, Profile, RunConfig, Target, Verdict, run
from conformance._context import CheckContext
from conformance._engine import schedule
from conformance._model import CheckFinished, CheckSpec, Feature, Level, documented
from conformance.checks import RegisteredCheck
from conformance.http.gate import Gate, TooFewSlots
from conformance.refserver import DEFAULT_MODEL


def _check(check_id: str, requests: int, func: Any, *, load: bool = False) -> RegisteredCheck:
    spec = CheckSpec(check_id, Level.INFO, Feature.CORE, documented("test", "test"), "a test probe",
                     requests=requests, load=load)
    return RegisteredCheck(spec, func)


def _noop(ctx: CheckContext) -> None:
    ctx.chat()


def test_a_load_check_goes_before_as_many_checks_as_there_are_slots_beside_its_streams() -> None:
    checks = [_check(f"test.c{n:02d}", n, _noop) for n in range(1, 11)]
    checks.append(_check("test.load", 10, _noop, load=True))
    order = [c.spec.id for c in schedule(checks, 12)]  # 12 slots: 8 streams, 4 beside them
    assert order[-5:] == ["test.load", "test.c04", "test.c03", "test.c02", "test.c01"]
    assert order[0] == "test.c10"  # the rest longest first
    assert [c.spec.id for c in schedule(checks, 8)][-1] == "test.load"  # no slot beside: last
    assert next(c.spec.id for c in schedule(checks, 30)) == "test.load"  # fewer checks than slots beside


def test_together_takes_its_slots_at_once_and_the_requests_behind_it_wait() -> None:
    gate = Gate(3)
    order: list[str] = []
    release = threading.Event()

    def one(name: str, priority: int) -> None:
        with gate.slot(priority):
            order.append(name)
            release.wait(5)

    def together() -> None:
        with gate.together(3, priority=5):
            order.append("together")

    busy = [threading.Thread(target=one, args=(f"busy{i}", 0)) for i in range(2)]
    for thread in busy:
        thread.start()
    time.sleep(0.05)  # two of three slots taken: the three cannot go yet
    waiting = threading.Thread(target=together)
    waiting.start()
    time.sleep(0.05)
    # A higher value: it waits behind the three although a slot is free, then until they are done.
    behind = threading.Thread(target=one, args=("behind", 9))
    behind.start()
    time.sleep(0.05)
    assert sorted(order) == ["busy0", "busy1"]
    release.set()
    for thread in [*busy, waiting, behind]:
        thread.join(5)
    assert order[2:] == ["together", "behind"]


def test_together_refuses_more_slots_than_the_gate_holds() -> None:
    gate = Gate(2)
    with pytest.raises(TooFewSlots), gate.together(3, priority=0):
        pass
    with gate.slot(0), gate.together(1, priority=0):  # nothing was taken: one slot is still free
        pass


def test_a_load_check_that_fails_beside_the_others_is_judged_alone(reference_server: Any) -> None:
    attempts: list[int] = []

    def load(ctx: CheckContext) -> None:
        attempts.append(ctx.session.concurrency)
        ctx.chat()
        if len(attempts) == 1:
            raise ctx.stop("whole streams", "a stream cut beside the other checks", "test")

    checks = [_check(f"test.c{n}", 1, _noop) for n in range(6)] + [_check("test.load", 4, load, load=True)]
    finished: list[str] = []
    config = RunConfig(target=Target(reference_server.base_url, DEFAULT_MODEL), depth=Depth.FULL,
                       profile=Profile.OPENAI, concurrency=3)
    result = run(config, checks=checks, on_event=lambda e: finished.append(e.result.spec.id)
                 if isinstance(e, CheckFinished) else None)
    [judged] = [r for r in result.results if r.spec.id == "test.load"]
    assert len(attempts) == 2
    assert judged.verdict is Verdict.PASSED  # the run alone decides
    assert judged.details["beside_other_checks"]["verdict"] == "failed"
    assert judged.requests == 2  # both runs count
    assert finished.count("test.load") == 1  # reported once, with its deciding verdict
