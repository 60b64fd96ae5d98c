"""Tick timing on this computer's clock: absolute deadlines, slept to
within a fraction of a millisecond.

:class:`RateTimer` paces a fixed-rate loop (``start + k * period``); :func:`sleep_until` waits for
one deadline (a replay's logged tick times). Both sleep most of the wait and spin the last
:data:`SPIN_S`, because ``time.sleep`` alone overshoots by up to a millisecond or more.

A tick's lateness is the time from its deadline to the moment its wait returned, measured after the
sleep, so a stall anywhere before the tick starts (a busy computer, a stopped process, the previous
tick's work) counts. A tick later than one whole period is an **overrun**: its missed deadlines are
dropped and the next tick is due at the first deadline after this one started, instead of bursting
to catch up. So a tick is an overrun exactly when its lateness exceeds the period.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SPIN_S = 0.0015  # the last part of each wait is spent spinning, for sub-millisecond tick timing


def sleep_until(
    deadline: float,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Sleep, then spin, until ``clock()`` reaches ``deadline``; return the lateness (s).

    ``sleep`` must let ``clock`` advance by (at least) the time it is given; the spin reads
    ``clock`` until it reaches the deadline."""
    remaining = deadline - clock()
    if remaining > SPIN_S:
        sleep(remaining - SPIN_S)
    while clock() < deadline:
        pass
    return clock() - deadline


class RateTimer:
    """Absolute deadlines ``start + k * period``; ``wait()`` returns the lateness of the tick and
    whether it was an overrun (later than one whole period)."""

    def __init__(
        self,
        period_s: float,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.period_s = period_s
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self._k = 0

    @property
    def next_deadline(self) -> float:
        return self._start + self._k * self.period_s

    def wait(self) -> tuple[float, bool]:
        """Sleep until the next deadline; return (lateness_s, overrun).

        ``overrun`` is ``lateness_s > period_s``; after one, the next deadline is the first one
        after this tick's start (the missed deadlines are skipped)."""
        lateness = sleep_until(self.next_deadline, self._clock, self._sleep)
        overrun = lateness > self.period_s
        self._k += 1
        if overrun:  # deadlines k+1 .. k+floor(lateness / period) have passed: skip them
            self._k += int(lateness // self.period_s)
        return lateness, overrun
