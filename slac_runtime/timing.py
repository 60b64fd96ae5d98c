"""Tick timing on this computer's clock: absolute deadlines, slept to
within a fraction of a millisecond.

:class:`RateTimer` paces a fixed-rate loop (``start + k * period``); :func:`sleep_until` waits for
one deadline (a replay's logged tick times). Both sleep most of the wait and spin the last
:data:`SPIN_S`, because ``time.sleep`` alone overshoots by up to a millisecond or more.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SPIN_S = 0.0015  # the last part of each wait is spent spinning, for sub-millisecond tick timing


def sleep_until(deadline: float, clock: Callable[[], float] = time.perf_counter) -> float:
    """Sleep, then spin, until ``clock()`` reaches ``deadline``; return the lateness (s)."""
    remaining = deadline - clock()
    if remaining > SPIN_S:
        time.sleep(remaining - SPIN_S)
    while clock() < deadline:
        pass
    return clock() - deadline


class RateTimer:
    """Absolute deadlines ``start + k * period``; ``wait()`` returns the lateness of the tick."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.perf_counter):
        self.period_s = period_s
        self._clock = clock
        self._start = clock()
        self._k = 0

    @property
    def next_deadline(self) -> float:
        return self._start + self._k * self.period_s

    def wait(self) -> tuple[float, bool]:
        """Sleep until the next deadline; return (lateness_s, overrun).
        Missed deadlines are skipped."""
        deadline = self.next_deadline
        now = self._clock()
        overrun = now > deadline + self.period_s
        if overrun:  # skip the deadlines we missed instead of bursting to catch up
            self._k += int((now - deadline) // self.period_s)
            deadline = self.next_deadline
        self._k += 1
        return sleep_until(deadline, self._clock), overrun
