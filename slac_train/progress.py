"""Progress of a training run, phase by phase, with an ETA measured on the phase in progress.

A run's phases go at very different speeds (random collection is fast, pre-training and training
are slow), so an ETA from the run's average rate is far off; :class:`PhaseClock` measures each phase
from its own start. :class:`ProgressLines` writes plain lines (no ``\\r``), one every ``every_s``
seconds, for logs and pipes where a progress bar would write a screenful of carriage returns.
:class:`TrainingProgress` shows a run's progress with one or the other.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def is_terminal() -> bool:
    """True when both stdout and stderr are terminals (a progress bar can redraw in place)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def format_duration(seconds: float | None) -> str:
    """``1h05m``, ``4m10s``, ``12s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class PhaseClock:
    """The rate and remaining time of the phase in progress, from that phase's own start."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self._start_time = 0.0
        self._start_done = 0
        self.done = 0
        self.total = 0

    def observe(self, phase: str, done: int, total: int) -> None:
        """Record ``done`` of ``total`` units of ``phase``; a new phase restarts the clock."""
        if phase != self.phase:
            self.phase, self._start_time, self._start_done = phase, time.perf_counter(), done
        self.done, self.total = done, total

    def rate(self) -> float | None:
        """Units per second since the phase began (None until some progress was made)."""
        elapsed = time.perf_counter() - self._start_time
        progressed = self.done - self._start_done
        return progressed / elapsed if progressed > 0 and elapsed > 0 else None

    def eta_s(self) -> float | None:
        rate = self.rate()
        return max(0, self.total - self.done) / rate if rate else None


class ProgressLines:
    """One plain progress line every ``every_s`` seconds (and at each phase change)."""

    def __init__(self, every_s: float = 30.0, stream: TextIO | None = None) -> None:
        self.every_s = every_s
        self.stream = stream
        self._last = -float("inf")
        self._phase: str | None = None

    def maybe_write(self, clock: PhaseClock, unit: str, run_text: str) -> None:
        now = time.perf_counter()
        if now - self._last < self.every_s and clock.phase == self._phase:
            return
        self._last, self._phase = now, clock.phase
        rate = clock.rate()
        speed = f", {rate:,.1f} {unit}/s" if rate else ""
        print(
            f"progress: {clock.phase} {clock.done:,}/{clock.total:,} {unit}{speed}, "
            f"phase ETA {format_duration(clock.eta_s())} | {run_text}",
            file=self.stream or sys.stdout,
            flush=True,
        )


class TrainingProgress:
    """A training run's progress over ``total_env_steps``: a bar on a terminal; elsewhere (a log, a
    pipe) plain lines every 30 s. Either shows the phase in progress and its own ETA. ``enabled``
    False: the bar is not shown and no lines are written.

    A context manager that closes the bar.
    """

    def __init__(self, total_env_steps: int, env_step: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.enabled = enabled
        self.bar_shown = enabled and is_terminal()
        self._clock = PhaseClock()
        self._lines = ProgressLines(every_s=30.0)
        self._bar = tqdm(
            total=total_env_steps,
            initial=env_step,
            unit="env step",
            disable=not self.bar_shown,
            dynamic_ncols=True,
            smoothing=0.05,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]",
        )

    def update(
        self,
        env_steps: int,
        phase: str,
        phase_progress: tuple[int, int, str],
        run_text: str,
        eval_text: str,
    ) -> None:
        """``env_steps`` more simulator steps; ``phase_progress`` is ``(done, total, unit)`` of
        the phase in progress, ``run_text`` where the run stands, ``eval_text`` the latest
        evaluation's return."""
        self._bar.update(env_steps)
        if not self.enabled:
            return
        done, total, unit = phase_progress
        self._clock.observe(phase, done, total)
        if self.bar_shown:
            eta = format_duration(self._clock.eta_s())
            self._bar.set_postfix_str(f"{phase} ETA {eta} eval={eval_text}", refresh=False)
        else:
            self._lines.maybe_write(self._clock, unit, f"{run_text}, eval {eval_text}")

    def inner_bar(self, total: int, done: int, unit: str):
        """A bar of its own for a long step within the run (shown where the run's bar is);
        use it as a context manager."""
        from tqdm import tqdm

        return tqdm(
            total=total,
            initial=done,
            unit=unit,
            disable=not self.bar_shown,
            dynamic_ncols=True,
            leave=False,
        )

    def write(self, text: str) -> None:
        """A line of output that leaves the bar intact."""
        self._bar.write(text)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
