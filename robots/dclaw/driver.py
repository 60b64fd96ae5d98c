"""The D'Claw's hardware driver: nine Dynamixel X-series servos on one Protocol 2.0 bus.

Implements the runtime's :class:`~slac_runtime.robot.Robot` interface (docs/architecture.md §5)::

    from robots.dclaw.driver import DClawDriver

    with DClawDriver(port="/dev/ttyUSB0", calibration="calibration/dclaw_joints.json") as claw:
        state = claw.read_state()        # rad, rad/s, A, monotonic timestamp
        sent = claw.command(goal_rad)    # clipped to the joint ranges and the step limit

Per control tick the driver does one sync write of the nine goal positions and one sync read of
Present Current, Velocity and Position (addresses 126..135) -- two bus transactions. Joint angles
come from ticks through a :class:`~robots.dynamixel.calibration.JointCalibration`:
angle = sign · (ticks − offset) · 2π/4096. Without a calibration file the driver uses ROBEL's
nominal build (:data:`DEFAULT_CALIBRATION`: joint zero at tick 1024 for the top joints, 2048 for the
middle and bottom joints, sign +1).

A calibration is checked when the driver is made, before the port is opened: a file that is
missing, malformed or made for another robot, and a calibration with a joint turning the other way
than the nominal build or with its zero more than :data:`MAX_ZERO_ERROR_RAD` from the nominal tick,
raise :class:`~robots.dynamixel.calibration.CalibrationError` naming the file and the joint (joints
accepted with ``slac-calibrate joints --force`` are recorded in the file and pass).

Before torque goes on, :meth:`DClawDriver.connect` checks what the servos report against what the
driver needs, and refuses with :class:`~robots.dynamixel.bus.ServoConfigurationError` (naming the
servos, what their registers say and the fix) when:

- a servo is a model the driver does not know (its current unit comes from the model);
- a servo is not in position mode after configuring it (Operating Mode is read back), or its Drive
  Mode reverses it or lets a goal write turn torque on (the calibration's sign sets directions);
- a calibrated joint range does not fit inside the servo's Min/Max Position Limit registers (the
  servo would refuse or clamp goals there: limits reading 0/0 would pin every goal to tick 0);
- a joint's present position, through the calibration, lies more than
  :data:`START_POSE_MARGIN_RAD` outside its range: the calibration is wrong, or the joint must be
  moved into range by hand.

These checks live in :mod:`robots.dclaw.servo_setup`.

While goals stream, the servos' **Bus Watchdog** (control table address 98, 20 ms units) is armed:
the first :meth:`~DClawDriver.command` after connect or :meth:`~DClawDriver.hold` sets a window of
``watchdog_s`` (default :data:`DEFAULT_WATCHDOG_S`), and :meth:`~DClawDriver.hold`,
:meth:`~DClawDriver.relax` and :meth:`~DClawDriver.disconnect` clear it. If the process stops
sending (killed, or stalled) for longer than the window, each servo stops where it is on its own.
A silence on the bus longer than half the window makes the next command read the register; servos
found stopped raise :class:`~robots.dynamixel.bus.BusWatchdogError`, and no goal is sent until
:meth:`~DClawDriver.hold` clears it and holds the present pose
(:class:`~robots.dclaw.watchdog.ServoWatchdog`).

The driver never prompts and never swallows an error: a servo that stays silent or reports a
hardware error raises an exception naming it; an I/O error of the port raises
:class:`~robots.dynamixel.bus.BusDisconnectedError` naming the port. Leaving the ``with`` block --
normally, on an exception or on Ctrl-C -- turns torque off (``on_exit="relax"``) or holds position
(``"hold"``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from robots.dclaw import servo_setup
from robots.dclaw.description import CONTROL_PERIOD_S, DCLAW, JOINT_NAMES, MOTOR_IDS
from robots.dclaw.servo_setup import START_POSE_MARGIN_RAD
from robots.dclaw.watchdog import WATCHDOG_RANGE_S, ServoWatchdog
from robots.dynamixel import control_table as ct
from robots.dynamixel.bus import (
    BusDisconnectedError,
    BusWatchdogError,
    DynamixelBus,
    DynamixelError,
    ServoCommunicationError,
    ServoConfigurationError,
)
from robots.dynamixel.calibration import (
    CalibrationError,
    JointCalibration,
    JointCalibrationEntry,
)
from slac_runtime.robot import Robot, RobotState

log = logging.getLogger(__name__)

TOP_JOINT_ZERO_TICKS = 1024  # FF10, MF20, TH30 (ROBEL's build)
FLEXION_JOINT_ZERO_TICKS = 2048  # the middle and bottom joints

DEFAULT_CALIBRATION = JointCalibration(
    robot=DCLAW.name,
    joints=tuple(
        JointCalibrationEntry(
            name=name,
            motor_id=motor_id,
            # joint 0 of each finger (FF10, MF20, TH30) is the top joint
            offset_ticks=TOP_JOINT_ZERO_TICKS if name.endswith("0") else FLEXION_JOINT_ZERO_TICKS,
            sign=1,
        )
        for name, motor_id in zip(JOINT_NAMES, MOTOR_IDS)
    ),
    date="",
    note=(
        "ROBEL's nominal D'Claw build: joint zero at tick 1024 (top joints) / 2048 "
        "(middle, bottom joints)"
    ),
)

# How far a calibrated joint's zero may lie from the nominal tick. A correctly calibrated D'Claw
# reads its zero pose within a few degrees of ROBEL's nominal ticks: the servo horns go on at their
# alignment mark and the brackets are screwed on square, so what varies is the play of the brackets
# and how straight a hand holds the fingers while calibrating (tens of ticks). 0.25 rad (163 ticks,
# 14°) allows all of that with room to spare, and refuses what the check is for: a claw calibrated
# in another pose (the reset pose puts the middle and bottom joints 1.05 rad from zero), a bracket
# or horn mounted a notch off, a hand-edited file. A zero 0.25 rad off already moves the joint
# 0.25 rad from where the policy means it to be: half the top joints' ±0.48 rad range.
MAX_ZERO_ERROR_RAD = 0.25
MAX_ZERO_ERROR_TICKS = round(MAX_ZERO_ERROR_RAD / ct.RAD_PER_TICK)  # 163
RECALIBRATE_IN_ZERO_POSE = (
    "recalibrate with `slac-calibrate joints`, the claw in its zero pose (every finger hanging "
    "straight down, in line with its base); a claw built differently on purpose is calibrated "
    "with `slac-calibrate joints --force`"
)

# Default per-command step limit: the fastest a D'Claw task may move a joint in one control period.
DEFAULT_MAX_STEP_RAD = DCLAW.max_step_rad(CONTROL_PERIOD_S)  # 0.105 rad

# The Bus Watchdog window while goals stream: four control periods of 0.05 s. A killed process
# leaves the servos moving for at most this long.
DEFAULT_WATCHDOG_S = 0.2

__all__ = [
    "DEFAULT_CALIBRATION",
    "DEFAULT_MAX_STEP_RAD",
    "DEFAULT_WATCHDOG_S",
    "MAX_ZERO_ERROR_RAD",
    "START_POSE_MARGIN_RAD",
    "BusDisconnectedError",
    "BusWatchdogError",
    "CalibrationError",
    "DClawDriver",
    "ServoConfigurationError",
    "load_calibration",
]


def load_calibration(
    calibration: None | str | os.PathLike | JointCalibration, check_zero: bool = True
) -> JointCalibration:
    """The default calibration, a calibration file, or a JointCalibration, checked against the
    D'Claw: its joints and motor IDs, every joint's direction, and (``check_zero``) every joint's
    zero within :data:`MAX_ZERO_ERROR_RAD` of the nominal tick. Every problem raises
    :class:`CalibrationError` (a refusal: nothing has touched the servos)."""
    if calibration is None:
        return DEFAULT_CALIBRATION
    if isinstance(calibration, JointCalibration):
        source = "the joint calibration"
        calibration.check_matches(DCLAW.name, DCLAW.joint_names, DCLAW.motor_ids, source=source)
    elif isinstance(calibration, (str, os.PathLike)):
        source = f"calibration file {calibration}"
        calibration = JointCalibration.load(
            Path(calibration), DCLAW.name, DCLAW.joint_names, DCLAW.motor_ids
        )
    else:
        raise TypeError(
            "calibration must be None, a path or a JointCalibration, got "
            f"{type(calibration).__name__}"
        )
    check_calibration_sanity(calibration, source, check_zero=check_zero)
    return calibration


def check_calibration_sanity(
    calibration: JointCalibration, source: str = "the joint calibration", check_zero: bool = True
) -> None:
    """Raise :class:`~robots.dynamixel.calibration.CalibrationSanityError` naming each joint (not
    forced) that turns the other way than ROBEL's build or (``check_zero``) whose zero lies more
    than :data:`MAX_ZERO_ERROR_RAD` from the nominal tick."""
    calibration.check_near(
        DEFAULT_CALIBRATION,
        MAX_ZERO_ERROR_TICKS if check_zero else math.inf,
        source=source,
        fix=RECALIBRATE_IN_ZERO_POSE,
    )


class DClawDriver(Robot):
    """The real D'Claw over ``dynamixel_sdk``.

    Args:
        port: the serial device of the USB adapter (or of the virtual D'Claw's emulator).
        baudrate: the servos' bus speed.
        calibration: None (ROBEL's nominal offsets), a calibration file path, or a JointCalibration.
        max_step_rad: the largest change of any joint's goal per :meth:`command`, relative to the
            last goal sent (a positive, finite number); None means the D'Claw's velocity limit over
            one control period (2π/3 rad/s × 0.05 s ≈ 0.105 rad).
        retries: extra attempts (0..20) for a bus transaction whose replies are missing or corrupt.
        on_exit: what leaving the ``with`` block (or :meth:`disconnect`) leaves: "relax"
            (torque off) or "hold" (torque on, holding position).
        watchdog_s: the servos' Bus Watchdog window while goals stream (0.02..2.54 s, rounded to
            20 ms): a process that sends nothing for this long leaves the servos stopped. Default
            0.2 s; None or 0 leaves the watchdog off.
        calibrating: only for ``slac-calibrate joints`` while it measures the offsets with a raw
            calibration: skips the checks that need valid offsets (each zero near the nominal
            tick, joint ranges against the servos' position limits, start pose inside the ranges).
            Every other check stays.

    Raises :class:`CalibrationError` for a calibration that does not fit the D'Claw (before the
    port is opened).
    """

    description = DCLAW
    # What slac-calibrate measures against: ROBEL's build, and how far a joint's zero may be off.
    nominal_calibration = DEFAULT_CALIBRATION
    max_zero_error_ticks = MAX_ZERO_ERROR_TICKS

    def __init__(
        self,
        port: str = "/dev/ttyUSB0",
        baudrate: int = 1_000_000,
        calibration: None | str | os.PathLike | JointCalibration = None,
        max_step_rad: float | None = None,
        retries: int = 3,
        on_exit: str = "relax",
        watchdog_s: float | None = DEFAULT_WATCHDOG_S,
        calibrating: bool = False,
    ):
        if on_exit not in ("relax", "hold"):
            raise ValueError(f'on_exit must be "relax" or "hold", got {on_exit!r}')
        if max_step_rad is not None and not (
            _is_number(max_step_rad) and math.isfinite(max_step_rad) and max_step_rad > 0
        ):
            raise ValueError(
                f"max_step_rad must be a positive, finite number of radians (or None for "
                f"{DEFAULT_MAX_STEP_RAD:.3f} rad), got {max_step_rad!r}"
            )
        self.calibration = load_calibration(calibration, check_zero=not calibrating)
        self.on_exit = on_exit
        self.max_step_rad = DEFAULT_MAX_STEP_RAD if max_step_rad is None else float(max_step_rad)
        watchdog_units = _watchdog_units(watchdog_s)
        self.calibrating = bool(calibrating)
        self.bus = DynamixelBus(
            port,
            baudrate=baudrate,
            retries=retries,
            servo_names=dict(zip(DCLAW.motor_ids, DCLAW.joint_names)),
            adapter="the D'Claw's USB adapter",
        )
        self._watchdog = ServoWatchdog(self.bus, DCLAW.motor_ids, watchdog_units)
        self.watchdog_s = self._watchdog.window_s
        self.models: dict[int, int] = {}  # motor ID -> model number, known after connect()
        self._ids = list(DCLAW.motor_ids)
        self._low, self._high = DCLAW.low, DCLAW.high
        self._current_ma_per_unit = np.full(DCLAW.num_joints, np.nan)
        self._tick_limits = (
            np.zeros(DCLAW.num_joints),
            np.full(DCLAW.num_joints, ct.TICKS_PER_TURN - 1.0),
        )
        self._last_goal: np.ndarray | None = None  # rad, the goal last sent
        self._torque_requested = False  # torque may be on: a relax is due before disconnecting
        self._connected = False

    # --- Robot interface ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stats(self) -> dict[str, int | float | None]:
        """Bus counters (reads, writes (transactions), retries, failures) and the servos' reply
        latency as the driver sees it (sync read request sent to last reply received, ms)."""
        return {**self.bus.stats, **self.bus.read_latency_ms()}

    @property
    def last_goal(self) -> np.ndarray | None:
        """The joint goals (rad) last sent to the servos, or None before connect()."""
        return None if self._last_goal is None else self._last_goal.copy()

    def connect(self) -> None:
        """Open the port, check the nine servos, configure position control and hold the
        current pose.

        Sequence: ping all IDs (and check their models) -> torque off, Bus Watchdog off -> check
        Drive Mode -> Operating Mode 3 (position) and Return Delay Time 0 where they differ,
        Operating Mode read back -> the calibrated joint ranges inside the servos' position limits
        and the present pose inside the ranges -> goal := present position -> torque on. Every check
        comes before torque goes on; a failed one raises :class:`ServoConfigurationError` and leaves
        torque off.
        """
        if self._connected:
            raise RuntimeError("the D'Claw driver is already connected")
        self.bus.open()
        try:
            models = self.bus.ping(self._ids)
            self._current_ma_per_unit = servo_setup.check_models(self.bus, self._ids, models)
            self.models = dict(models)
            self._torque_requested = True  # we do not know the servos' torque state yet
            self._watchdog.armed = True  # nor whether another program left the Bus Watchdog set
            self._watchdog.report_left_stopped()
            self.relax()
            self._tick_limits = servo_setup.configure(self.bus, self._ids)
            if not self.calibrating:
                servo_setup.check_calibration_against_servos(
                    self.bus,
                    self._ids,
                    self.calibration,
                    self._read_raw_state()[2],
                    self._tick_limits,
                )
            self._connected = True
            self.hold()
        except BaseException:
            self._connected = False
            self._abort_connect()
            raise

    def read_state(self) -> RobotState:
        """One sync read of current, velocity and position of the nine servos, in joint units."""
        self._require_connected()
        current, velocity, position, timestamp = self._read_raw_state()
        cal = self.calibration
        return RobotState(
            positions=cal.ticks_to_rad(position),
            velocities=ct.velocity_units_to_rad_s(velocity, cal.signs),
            currents=ct.current_units_to_amps(current, self._current_ma_per_unit, cal.signs),
            timestamp=timestamp,
        )

    def command(self, goal_positions: np.ndarray) -> np.ndarray:
        """Send joint goals (rad) in one sync write; return the goals actually sent (rad).

        The goals are clipped to the joint ranges, then each joint's change from the last goal sent
        is limited to ``max_step_rad``, then rounded to whole ticks (and kept inside the servos'
        position limits). Torque is not changed: after :meth:`relax`, call :meth:`hold` first.

        The first command after connect or :meth:`hold` arms the Bus Watchdog (one sync write and
        one sync read to confirm it). Later commands cost nothing extra unless the bus was silent
        for more than half the window; then the register is read, and servos the watchdog stopped
        raise :class:`BusWatchdogError` (no goal is sent until :meth:`hold`).
        """
        self._require_connected()
        goal = np.asarray(goal_positions, dtype=np.float64).reshape(-1)
        if goal.shape != (DCLAW.num_joints,):
            raise ValueError(
                f"dclaw: expected {DCLAW.num_joints} joint goals, got shape "
                f"{np.shape(goal_positions)}"
            )
        if not np.all(np.isfinite(goal)):
            raise ValueError(f"dclaw: joint goals contain NaN or inf: {goal}")
        self._watchdog.before_goals()
        target = np.clip(goal, self._low, self._high)
        step = np.clip(target - self._last_goal, -self.max_step_rad, self.max_step_rad)
        ticks = self.calibration.rad_to_ticks(self._last_goal + step)
        ticks = np.clip(ticks, *self._tick_limits).astype(np.int64)
        self.bus.sync_write(ct.GOAL_POSITION, dict(zip(self._ids, ticks.tolist())))
        self._last_goal = self.calibration.ticks_to_rad(ticks)
        return self._last_goal.copy()

    def hold(self) -> None:
        """Torque on, holding the present position (the goal is set to it before torque goes on).

        Clears the Bus Watchdog first (also a Bus Watchdog Error: the servos then hold where they
        stopped). Raises :class:`ServoConfigurationError`, torque unchanged, if a servo reads a
        position outside its position limits, where it could not hold without jumping.
        """
        self._require_connected()
        stopped = self._watchdog.clear()
        if stopped:
            log.warning(
                "%s had stopped on the Bus Watchdog (no instruction for more than %.2f s); "
                "holding the present pose",
                self.bus.labels(stopped),
                self.watchdog_s or 0.0,
            )
        position = self._read_raw_state()[2]
        low, high = self._tick_limits
        outside = [
            (i, int(t), int(lo), int(hi))
            for i, t, lo, hi in zip(self._ids, position, low, high)
            if not lo <= t <= hi
        ]
        if outside:
            details = "; ".join(
                f"{self.bus.label(i)} is at tick {t}, outside its position limits {lo}..{hi}"
                for i, t, lo, hi in outside
            )
            raise ServoConfigurationError(
                f"cannot hold the present pose: {details}; a goal there would be refused. With "
                "torque off, move the joint by hand inside its limits, or widen Min/Max Position "
                "Limit (52/48) with the servo's tool",
                [i for i, *_ in outside],
            )
        ticks = position.astype(np.int64)
        self.bus.sync_write(ct.GOAL_POSITION, dict(zip(self._ids, ticks.tolist())))
        self._last_goal = self.calibration.ticks_to_rad(ticks)
        self._torque_requested = True
        self._write_all(ct.TORQUE_ENABLE, 1)

    def relax(self) -> None:
        """Torque off on every servo, each write confirmed; raises naming the
        servos that did not confirm."""
        if not self.bus.is_open:
            raise RuntimeError("the D'Claw driver is not connected")
        self._torque_requested = False
        # A servo that has shut down on a hardware error already has torque off: that counts.
        self._write_all(ct.TORQUE_ENABLE, 0, allow_alert=True)
        self._watchdog.disarm()  # with torque off it watches nothing; leave it cleared too

    def disconnect(self) -> None:
        """Close the port; first turn torque off if ``on_exit`` is "relax" and it may still be on,
        or (``"hold"``) clear the Bus Watchdog so that the servos keep holding after the port
        closes."""
        if not self.bus.is_open:
            return
        try:
            # After an I/O error on the port nothing can be sent: just close it.
            if not self.bus.link_failed:
                if self.on_exit == "relax" and self._torque_requested:
                    self.relax()
                elif self._watchdog.armed:
                    self._watchdog.clear()
        finally:
            self._connected = False
            self.bus.close()

    # --- helpers ----------------------------------------------------------------------------------
    def _require_connected(self) -> None:
        if not self._connected:
            raise RuntimeError(
                "the D'Claw driver is not connected: call connect() or use it in a `with` block"
            )

    def _read_raw_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(current units, velocity units, position ticks, timestamp), arrays in joint order."""
        start = time.monotonic()
        replies = self.bus.sync_read(ct.STATE_ADDRESS, ct.STATE_SIZE, self._ids)
        timestamp = 0.5 * (start + time.monotonic())  # the middle of the transaction
        raw = np.frombuffer(b"".join(replies[i] for i in self._ids), dtype=np.uint8).reshape(
            len(self._ids), ct.STATE_SIZE
        )
        current = raw[:, 0:2].copy().view("<i2")[:, 0].astype(np.int64)
        velocity = raw[:, 2:6].copy().view("<i4")[:, 0].astype(np.int64)
        position = raw[:, 6:10].copy().view("<i4")[:, 0].astype(np.int64)
        return current, velocity, position, timestamp

    def _write_all(self, register: ct.Register, value: int, allow_alert: bool = False) -> None:
        """Confirmed write to every servo; try them all, then raise for those that failed."""
        failures: list[tuple[int, DynamixelError]] = []
        for servo_id in self._ids:
            try:
                self.bus.write(servo_id, register, value, allow_alert=allow_alert)
            except BusDisconnectedError:
                raise  # the link is down: no other servo can be reached either
            except DynamixelError as exc:
                failures.append((servo_id, exc))
        if len(failures) == 1:
            raise failures[0][1]
        if failures:
            ids = [i for i, _ in failures]
            if len(ids) == len(self._ids) and all(
                isinstance(exc, ServoCommunicationError) for _, exc in failures
            ):
                raise ServoCommunicationError(
                    f"no servo answered a write of {register.name} on {self.bus.port}: "
                    f"{self.bus.none_answered_advice}",
                    ids,
                )
            message = "; ".join(str(exc) for _, exc in failures)
            raise ServoCommunicationError(
                f"{register.name} := {value} failed on {len(ids)} servos: {message}", ids
            )

    def _abort_connect(self) -> None:
        """After a failed connect: turn torque off if it may be on,
        close the port; log, never mask."""
        try:
            if self._torque_requested:
                self.relax()
        except Exception:
            log.exception("while aborting a failed connect, turning torque off failed too")
        finally:
            self.bus.close()


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _watchdog_units(watchdog_s: float | None) -> int:
    """The Bus Watchdog register value for a window in seconds (0: off)."""
    if watchdog_s is None or (_is_number(watchdog_s) and watchdog_s == 0):
        return 0
    low, high = WATCHDOG_RANGE_S
    if not (_is_number(watchdog_s) and low <= watchdog_s <= high):
        raise ValueError(
            f"watchdog_s must be within {low:.2f}..{high:.2f} s (the Bus Watchdog counts 20 ms "
            f"units 1..127), or None / 0 for no watchdog, got {watchdog_s!r}"
        )
    return max(1, min(ct.BUS_WATCHDOG_MAX_UNITS, round(watchdog_s / ct.BUS_WATCHDOG_UNIT_S)))
