"""Tick timing on an injected clock: lateness measured when a tick's wait ends, and an overrun
counted exactly when a tick starts more than one whole period after its deadline (the watchdog
table of docs/runtime.md, docs/architecture.md §6)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from slac_runtime.control_loop import ControlLoop, LoopConfig, LoopStats, SafeStop
from slac_runtime.timing import SPIN_S, RateTimer, sleep_until

PERIOD_S = 0.05
MS = 1e-3
# Each read of a FakeClock moves it 10 us, and a wait reads it a handful of times after its sleep:
# lateness is known to within this.
LATENESS_TOLERANCE_S = 0.2 * MS


class FakeClock:
    """A clock that moves only when told: ``sleep(s)`` and ``work(s)`` advance it by ``s`` (a sleep
    by ``stall_s`` more, once, when a stall is planted: the process stopped while it slept), and
    each read by ``read_step_s``, since a real clock moves on while it is read (a spin on it ends).
    """

    def __init__(self, read_step_s: float = 1e-5):
        self.now = 0.0
        self.read_step_s = read_step_s
        self.sleeps: list[float] = []
        self.stall_s = 0.0

    def __call__(self) -> float:
        self.now += self.read_step_s
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds + self.stall_s
        self.stall_s = 0.0

    def work(self, seconds: float) -> None:
        self.now += seconds


# (work before the wait, a stall planted in the wait's sleep, expected lateness), in ms, on a 50 ms
# period (deadlines 0, 50, 100, ...). Each tick starts when its wait returns.
TICKS = [
    (0, 0, 0),  # deadline 0
    (30, 0, 0),  # deadline 50: reached at 30, sleeps, spins the last 1.5 ms
    (99, 0, 49),  # deadline 100, reached at 149: late, by less than a period
    (10, 0, 9),  # deadline 150, reached at 159
    (20, 88, 86.5),  # deadline 200: at 179 it sleeps 19.5 ms and is stopped 88 ms more: overrun
    (5, 0, 0),  # deadline 250 has passed (skipped); deadline 300
    (138, 0, 88),  # deadline 350, reached at 438: overrun (from the skipped 400 it would be 38)
    (10, 0, 0),  # deadline 450
    (160, 0, 110),  # deadline 500, reached at 610: overrun; 550 and 600 are skipped
    (10, 0, 0),  # deadline 650
    (151, 0, 101),  # deadline 700, reached at 801: overrun (from the skipped 800 it would be 1)
    (10, 0, 0),  # deadline 850
]
OVERRUN_TICKS = [4, 6, 8, 10]  # lateness over 50 ms


def run_ticks(clock: FakeClock, timer: RateTimer, on_wait) -> None:
    for tick, (work_ms, stall_ms, _) in enumerate(TICKS):
        clock.work(work_ms * MS)
        clock.stall_s = stall_ms * MS
        on_wait(tick)


def test_an_overrun_is_a_tick_later_than_one_period():
    clock = FakeClock()
    timer = RateTimer(PERIOD_S, clock=clock, sleep=clock.sleep)
    results = []

    def wait(tick):
        lateness, overrun = timer.wait()
        started = clock.now
        assert timer.next_deadline > started  # no burst to catch up: the next tick is ahead
        results.append((lateness, overrun))

    run_ticks(clock, timer, wait)
    lateness = [r[0] for r in results]
    assert lateness == pytest.approx([t[2] * MS for t in TICKS], abs=LATENESS_TOLERANCE_S)
    assert [k for k, (_, overrun) in enumerate(results) if overrun] == OVERRUN_TICKS
    assert all(overrun == (late > PERIOD_S) for late, overrun in results)


def test_the_control_loop_counts_and_logs_each_overrun():
    """``ControlLoop._wait_tick`` on the timer: the episode's overrun count and its overrun events
    are the ticks later than a period, and one more than the budget is a safe stop."""
    events = []
    log = SimpleNamespace(event=lambda kind, **details: events.append((kind, details)))
    clock = FakeClock()
    timer = RateTimer(PERIOD_S, clock=clock, sleep=clock.sleep)
    loop = SimpleNamespace(config=LoopConfig(control_period_s=PERIOD_S, action_repeat=1))
    ep = SimpleNamespace(stats=LoopStats(), log=log)
    run_ticks(clock, timer, lambda tick: ControlLoop._wait_tick(loop, ep, tick, timer))
    assert ep.stats.ticks == len(TICKS) and ep.stats.overruns == len(OVERRUN_TICKS)
    assert [d["tick"] for kind, d in events if kind == "overrun"] == OVERRUN_TICKS
    assert all(d["lateness_s"] > PERIOD_S for _, d in events)
    assert ep.stats.lateness_s[4] == pytest.approx(86.5 * MS, abs=LATENESS_TOLERANCE_S)

    strict = SimpleNamespace(
        config=LoopConfig(control_period_s=PERIOD_S, action_repeat=1, overrun_budget=3)
    )
    clock = FakeClock()
    timer = RateTimer(PERIOD_S, clock=clock, sleep=clock.sleep)
    ep = SimpleNamespace(stats=LoopStats(), log=log)
    with pytest.raises(SafeStop, match="more than 3 overruns"):
        run_ticks(clock, timer, lambda tick: ControlLoop._wait_tick(strict, ep, tick, timer))
    assert ep.stats.ticks == OVERRUN_TICKS[3] + 1  # the fourth overrun stops it


def test_a_wait_sleeps_then_spins_only_the_last_moments():
    clock = FakeClock()
    clock.now = 10.0
    assert sleep_until(10.02, clock, clock.sleep) == pytest.approx(0.0, abs=LATENESS_TOLERANCE_S)
    assert clock.sleeps == [pytest.approx(0.02 - SPIN_S, abs=LATENESS_TOLERANCE_S)]
    clock.sleeps.clear()
    assert sleep_until(clock.now + SPIN_S / 2, clock, clock.sleep) >= 0  # too close to sleep
    assert sleep_until(clock.now - 1.0, clock, clock.sleep) >= 1.0  # long passed: no wait at all
    assert clock.sleeps == []
