"""A stop request: Ctrl-C or SIGTERM asking a command to stop at its next safe point.

Every command that can stop part-way uses one :class:`StopRequest`: ``slac-run`` and
``slac-replay`` stop after the tick in progress, ``slac-camera`` after the frame it is publishing,
``slac-train`` and ``slac-imitate`` after the update in progress (writing a checkpoint),
``slac-sweep`` once its trials have written theirs. A signal sets :attr:`StopRequest.requested`;
the command looks at it at its safe points, or calls :meth:`StopRequest.check` there, which raises
:class:`StopRequested`. The command exits with :attr:`StopRequest.exit_code`, 128 + the first
signal (130 for Ctrl-C, 143 for SIGTERM), as shells report it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from slac_runtime.options import signal_handlers

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """A stop was requested and the code reached a safe point (:meth:`StopRequest.check`): the
    step or update in progress is whole, so a checkpoint may be written.

    A KeyboardInterrupt, so that code that stops on Ctrl-C stops on it too; a run tells it apart
    from a second signal's KeyboardInterrupt, which may come in the middle of an update.
    """


class StopRequest:
    """Signals (Ctrl-C, SIGTERM) as a request to stop at the next safe point.

    ``message`` is printed when a stop is first requested (``{signal}`` in it is replaced by the
    signal's name; empty: nothing printed); ``on_request`` is called then too (to wake what waits,
    or to raise KeyboardInterrupt where there is nothing to finish yet). A second signal stops at
    once (KeyboardInterrupt) unless ``second_signal_stops_at_once`` is false, as on a robot, whose
    safe point is never more than a control period away: there a second signal asks again.

    The same signal again within ``REPEAT_WINDOW_S`` is the same request delivered twice (to a
    process group and forwarded by a parent, as Slurm and wrapper scripts do), not a second one.
    """

    REPEAT_WINDOW_S = 1.0

    def __init__(
        self,
        message: str = "",
        on_request: Callable[[], None] | None = None,
        second_signal_stops_at_once: bool = True,
    ) -> None:
        self.message = message
        self.on_request = on_request
        self.second_signal_stops_at_once = second_signal_stops_at_once
        self.requested = False
        self.signum: int | None = None  # the first signal received
        self._requested_at = 0.0

    def check(self) -> None:
        """Raise :class:`StopRequested` if a stop was requested (call it at a safe point)."""
        if self.requested:
            raise StopRequested

    @property
    def exit_code(self) -> int:
        """128 + the signal that asked to stop (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + int(self.signum if self.signum is not None else signal.SIGINT)

    @property
    def signal_name(self) -> str:
        """The first signal's name (``SIGINT``, ``SIGTERM``); ``SIGINT`` before any came."""
        return signal.Signals(self.exit_code - 128).name

    def request(self, signum: int) -> None:
        """Handle ``signum`` as the signal handler does: the first asks to stop, a second stops at
        once (or asks again)."""
        if self.requested:
            self._again(signum)
            return
        self.requested = True
        self.signum = signum
        self._requested_at = time.monotonic()
        if self.message:
            print(self.message.replace("{signal}", self.signal_name), flush=True)
        if self.on_request is not None:
            self.on_request()

    def _again(self, signum: int) -> None:
        repeated = time.monotonic() - self._requested_at < self.REPEAT_WINDOW_S
        if signum == self.signum and repeated:
            return  # the first request, delivered twice
        if self.second_signal_stops_at_once:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopRequest]:
        """Handle ``signals`` this way in the block (in the main thread only: Python delivers
        signals there; elsewhere the handlers stay as they are)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        with signal_handlers(signals, lambda signum, _frame: self.request(signum)):
            yield self


__all__ = ["STOP_SIGNALS", "StopRequest", "StopRequested"]
