"""The D'Claw servos' Bus Watchdog while the driver streams goals.

Each servo's **Bus Watchdog** register (control table address 98) counts a window in 20 ms units:
0 is off, 1..127 arms it, and a servo that receives no instruction within the window stops where it
is and reads 0xFF (Bus Watchdog Error) until the register is cleared; meanwhile it ignores goals.
:class:`ServoWatchdog` arms, checks and clears the register on the servos of one bus for
:class:`~robots.dclaw.driver.DClawDriver`, and raises
:class:`~robots.dynamixel.bus.BusWatchdogError` naming the servos it finds stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from robots.dynamixel import control_table as ct
from robots.dynamixel.bus import BusWatchdogError, DynamixelBus, ServoConfigurationError

log = logging.getLogger(__name__)

WATCHDOG_RANGE_S = (
    ct.BUS_WATCHDOG_UNIT_S,
    ct.BUS_WATCHDOG_UNIT_S * ct.BUS_WATCHDOG_MAX_UNITS,
)  # 0.02 .. 2.54 s


class ServoWatchdog:
    """The Bus Watchdog of the servos ``servo_ids`` on ``bus``, with a window of ``units`` × 20 ms
    (0: the watchdog stays off while goals stream).

    ``armed`` says the register may be set on some servo (a relax or a clear is due before the
    servos are left alone); ``stopped`` lists the servos found in Bus Watchdog Error, which refuse
    goals until :meth:`clear`.
    """

    def __init__(self, bus: DynamixelBus, servo_ids: Sequence[int], units: int):
        self.bus = bus
        self.servo_ids = list(servo_ids)
        self.units = units
        self.window_s = units * ct.BUS_WATCHDOG_UNIT_S if units else None
        self.armed = False
        self.stopped: list[int] = []

    def read(self, servo_ids: list[int] | None = None) -> dict[int, int]:
        """Bus Watchdog (98) of each servo: 0 off, 1..127 armed (20 ms units), 0xFF error."""
        replies = self.bus.sync_read(ct.BUS_WATCHDOG.address, 1, servo_ids or self.servo_ids)
        return {i: data[0] for i, data in replies.items()}

    def report_left_stopped(self) -> None:
        """Warn about servos another program's watchdog left stopped (they are cleared later)."""
        stopped = _stopped(self.read())
        if stopped:
            log.warning(
                "%s were stopped by their Bus Watchdog: the last program streaming goals stopped "
                "without releasing them (killed?); clearing it",
                self.bus.labels(stopped),
            )

    def before_goals(self) -> None:
        """What a goal write needs first: no servo stopped, and the window armed (the first goal
        after connect or a clear) or, after a bus silence longer than half the window, the register
        read again."""
        if self.stopped:
            raise self.error(self.stopped)
        if self.units:
            if self.armed:
                self._check_silence()
            else:
                self._arm()

    def clear(self) -> list[int]:
        """Write 0 to the Bus Watchdog where it is not 0 and confirm; return the servos that were in
        Bus Watchdog Error."""
        values = self.read()
        set_ids = [i for i, v in values.items() if v != 0]
        if set_ids:
            self.bus.sync_write(ct.BUS_WATCHDOG, dict.fromkeys(set_ids, 0))
            stuck = {i: v for i, v in self.read(set_ids).items() if v != 0}
            if stuck:
                details = ", ".join(
                    f"{self.bus.label(i)} still reads {v}" for i, v in stuck.items()
                )
                raise BusWatchdogError(
                    f"the Bus Watchdog (address 98) did not clear after writing 0: {details}; "
                    f"power-cycle the servos",
                    list(stuck),
                )
        self.armed = False
        self.stopped = []
        return _stopped(values)  # a servo in error reads 0xFF, so it was among those cleared

    def disarm(self) -> None:
        """With torque off the watchdog watches nothing: write 0 to every servo (one sync write,
        unconfirmed) if it may be armed, and forget the servos it stopped."""
        if self.armed:
            self.bus.sync_write(ct.BUS_WATCHDOG, dict.fromkeys(self.servo_ids, 0))
            self.armed = False
        self.stopped = []

    def error(self, servo_ids: list[int], silence_s: float | None = None) -> BusWatchdogError:
        """The error for servos found stopped (after a bus silence of ``silence_s``, if known)."""
        silent = f" (the bus was silent for {silence_s:.2f} s)" if silence_s is not None else ""
        return BusWatchdogError(
            f"{self.bus.labels(servo_ids)} stopped on the Bus Watchdog: no instruction reached "
            f"them within {self.window_s:.2f} s{silent}, so they hold where they stopped and "
            "ignore new goals. The control loop stalled (an overloaded machine, or a pause between "
            "goals): run again; if it recurs, find what stalls the machine, or give a longer "
            f"window with slac-run --bus-watchdog SECONDS (now {self.window_s:.2f} s, at most "
            f"{WATCHDOG_RANGE_S[1]:.2f})",
            servo_ids,
        )

    def _arm(self) -> None:
        """Set the window on every servo (one sync write) and confirm it (one sync read)."""
        units = self.units
        self.bus.sync_write(ct.BUS_WATCHDOG, dict.fromkeys(self.servo_ids, units))
        self.armed = True
        values = self.read()
        stopped = _stopped(values)
        if stopped:
            self.stopped = stopped
            raise self.error(stopped)
        wrong = {i: v for i, v in values.items() if v != units}
        if wrong:
            details = ", ".join(f"{self.bus.label(i)} reads {v}" for i, v in wrong.items())
            raise ServoConfigurationError(
                f"the Bus Watchdog (address 98) did not take {units} ({self.window_s:.2f} s): "
                f"{details}; check the servos' firmware supports the Bus Watchdog (Dynamixel "
                "X series)",
                list(wrong),
            )
        self.bus.take_longest_silence_s()  # measure silences from here on

    def _check_silence(self) -> None:
        """After a bus silence longer than half the window, read the register: a servo the watchdog
        stopped ignores goals, which must not go out as if followed."""
        silence = self.bus.take_longest_silence_s()
        if silence <= 0.5 * self.window_s:
            return
        stopped = _stopped(self.read())
        if stopped:
            self.stopped = stopped
            raise self.error(stopped, silence)


def _stopped(values: dict[int, int]) -> list[int]:
    """The servos whose Bus Watchdog register reads 0xFF (Bus Watchdog Error)."""
    return [i for i, v in values.items() if v == ct.BUS_WATCHDOG_ERROR]
