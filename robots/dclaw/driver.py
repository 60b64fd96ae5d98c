"""The D'Claw's hardware driver: nine Dynamixel X-series servos on one Protocol 2.0 bus.

Implements the runtime's :class:`~slac_runtime.robot.Robot` interface (DESIGN.md §5)::

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

The driver never prompts and never swallows an error: a servo that stays silent or reports a
hardware error raises an exception naming it. Leaving the ``with`` block -- normally, on an
exception or on Ctrl-C -- turns torque off (``on_exit="relax"``) or holds position (``"hold"``).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

from robots.dclaw.description import CONTROL_PERIOD_S, DCLAW, JOINT_NAMES, MOTOR_IDS
from robots.dynamixel import control_table as ct
from robots.dynamixel.bus import DynamixelBus, DynamixelError, ServoCommunicationError
from robots.dynamixel.calibration import JointCalibration, JointCalibrationEntry
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
    note="ROBEL's nominal D'Claw build: joint zero at tick 1024 (top joints) / 2048 (middle, bottom joints)",
)

# Default per-command step limit: the fastest a D'Claw task may move a joint in one control period.
DEFAULT_MAX_STEP_RAD = DCLAW.velocity_limit * CONTROL_PERIOD_S  # 0.105 rad


class CalibrationRangeWarning(UserWarning):
    """The calibrated joint ranges do not fit inside the servos' position limits."""


def load_calibration(calibration: None | str | os.PathLike | JointCalibration) -> JointCalibration:
    """The default calibration, a calibration file, or a JointCalibration; checked against the D'Claw."""
    if calibration is None:
        return DEFAULT_CALIBRATION
    if isinstance(calibration, JointCalibration):
        calibration.check_matches(DCLAW.name, DCLAW.joint_names, DCLAW.motor_ids)
        return calibration
    if isinstance(calibration, (str, os.PathLike)):
        return JointCalibration.load(
            Path(calibration), DCLAW.name, DCLAW.joint_names, DCLAW.motor_ids
        )
    raise TypeError(
        f"calibration must be None, a path or a JointCalibration, got {type(calibration).__name__}"
    )


class DClawDriver(Robot):
    """The real D'Claw over ``dynamixel_sdk``.

    Args:
        port: the serial device of the USB adapter (or of the virtual D'Claw's emulator).
        baudrate: the servos' bus speed.
        calibration: None (ROBEL's nominal offsets), a calibration file path, or a JointCalibration.
        max_step_rad: the largest change of any joint's goal per :meth:`command`, relative to the
            last goal sent; None means the D'Claw's velocity limit over one control period
            (2π/3 rad/s × 0.05 s ≈ 0.105 rad); ``float("inf")`` disables it.
        retries: extra attempts for a bus transaction whose replies are missing or corrupt.
        on_exit: what leaving the ``with`` block (or :meth:`disconnect`) leaves: "relax" (torque off)
            or "hold" (torque on, holding position).
    """

    description = DCLAW

    def __init__(
        self,
        port: str = "/dev/ttyUSB0",
        baudrate: int = 1_000_000,
        calibration: None | str | os.PathLike | JointCalibration = None,
        max_step_rad: float | None = None,
        retries: int = 3,
        on_exit: str = "relax",
    ):
        if on_exit not in ("relax", "hold"):
            raise ValueError(f'on_exit must be "relax" or "hold", got {on_exit!r}')
        if max_step_rad is not None and not max_step_rad > 0:
            raise ValueError(
                f"max_step_rad must be positive (or None for the default), got {max_step_rad}"
            )
        self.calibration = load_calibration(calibration)
        self.on_exit = on_exit
        self.max_step_rad = DEFAULT_MAX_STEP_RAD if max_step_rad is None else float(max_step_rad)
        self.bus = DynamixelBus(
            port,
            baudrate=baudrate,
            retries=retries,
            servo_names=dict(zip(DCLAW.motor_ids, DCLAW.joint_names)),
            adapter="the D'Claw's USB adapter",
        )
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
    def stats(self) -> dict[str, int]:
        """Bus counters: reads, writes (transactions), retries, failures."""
        return self.bus.stats

    @property
    def last_goal(self) -> np.ndarray | None:
        """The joint goals (rad) last sent to the servos, or None before connect()."""
        return None if self._last_goal is None else self._last_goal.copy()

    def connect(self) -> None:
        """Open the port, check the nine servos, configure position control and hold the current pose.

        Sequence: ping all IDs (and check their models) -> torque off -> Operating Mode 3 (position)
        and Return Delay Time 0 where they differ -> check the calibrated joint ranges fit the
        servos' position limits -> goal := present position -> torque on.
        """
        if self._connected:
            raise RuntimeError("the D'Claw driver is already connected")
        self.bus.open()
        try:
            self._check_models(self.bus.ping(self._ids))
            self._torque_requested = True  # we do not know the servos' torque state yet
            self.relax()
            self._configure()
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
        """
        self._require_connected()
        goal = np.asarray(goal_positions, dtype=np.float64).reshape(-1)
        if goal.shape != (DCLAW.num_joints,):
            raise ValueError(
                f"dclaw: expected {DCLAW.num_joints} joint goals, got shape {np.shape(goal_positions)}"
            )
        if not np.all(np.isfinite(goal)):
            raise ValueError(f"dclaw: joint goals contain NaN or inf: {goal}")
        target = np.clip(goal, self._low, self._high)
        step = np.clip(target - self._last_goal, -self.max_step_rad, self.max_step_rad)
        ticks = self.calibration.rad_to_ticks(self._last_goal + step)
        ticks = np.clip(ticks, *self._tick_limits).astype(np.int64)
        self.bus.sync_write(ct.GOAL_POSITION, dict(zip(self._ids, ticks.tolist())))
        self._last_goal = self.calibration.ticks_to_rad(ticks)
        return self._last_goal.copy()

    def hold(self) -> None:
        """Torque on, holding the present position (the goal is set to it before torque goes on)."""
        self._require_connected()
        position = self._read_raw_state()[2]
        ticks = np.clip(position, *self._tick_limits).astype(np.int64)
        self.bus.sync_write(ct.GOAL_POSITION, dict(zip(self._ids, ticks.tolist())))
        self._last_goal = self.calibration.ticks_to_rad(ticks)
        self._torque_requested = True
        self._write_all(ct.TORQUE_ENABLE, 1)

    def relax(self) -> None:
        """Torque off on every servo, each write confirmed; raises naming the servos that did not confirm."""
        if not self.bus.is_open:
            raise RuntimeError("the D'Claw driver is not connected")
        self._torque_requested = False
        # A servo that has shut down on a hardware error already has torque off: that counts.
        self._write_all(ct.TORQUE_ENABLE, 0, allow_alert=True)

    def disconnect(self) -> None:
        """Close the port; first turn torque off if ``on_exit`` is "relax" and it may still be on."""
        if not self.bus.is_open:
            return
        try:
            if self.on_exit == "relax" and self._torque_requested:
                self.relax()
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
            except DynamixelError as exc:
                failures.append((servo_id, exc))
        if len(failures) == 1:
            raise failures[0][1]
        if failures:
            ids = [i for i, _ in failures]
            message = "; ".join(str(exc) for _, exc in failures)
            raise ServoCommunicationError(
                f"{register.name} := {value} failed on {len(ids)} servos: {message}", ids
            )

    def _check_models(self, models: dict[int, int]) -> None:
        unsupported = {i: m for i, m in models.items() if m not in ct.MODELS}
        if unsupported:
            details = ", ".join(f"{self.bus.label(i)} is model {m}" for i, m in unsupported.items())
            known = ", ".join(f"{m.name} ({n})" for n, m in ct.MODELS.items())
            raise DynamixelError(
                f"unsupported servo model: {details}; the D'Claw driver supports {known}"
            )
        self.models = dict(models)
        self._current_ma_per_unit = np.array(
            [ct.MODELS[models[i]].current_ma_per_unit for i in self._ids]
        )

    def _configure(self) -> None:
        """Position control and no return delay (EEPROM: written only where different; torque is off)."""
        first, size = (
            ct.RETURN_DELAY_TIME.address,
            ct.OPERATING_MODE.end - ct.RETURN_DELAY_TIME.address,
        )
        settings = self.bus.sync_read(first, size, self._ids)
        for servo_id, data in settings.items():
            mode = data[ct.OPERATING_MODE.address - first]
            if mode != ct.OPERATING_MODE_POSITION:
                log.info(
                    "%s: Operating Mode %d -> %d (position)",
                    self.bus.label(servo_id),
                    mode,
                    ct.OPERATING_MODE_POSITION,
                )
                self.bus.write(servo_id, ct.OPERATING_MODE, ct.OPERATING_MODE_POSITION)
            if data[0] != 0:
                log.info("%s: Return Delay Time %d -> 0", self.bus.label(servo_id), data[0])
                self.bus.write(servo_id, ct.RETURN_DELAY_TIME, 0)
        first = ct.MAX_POSITION_LIMIT.address
        limits = self.bus.sync_read(first, ct.MIN_POSITION_LIMIT.end - first, self._ids)
        high = np.array(
            [ct.MAX_POSITION_LIMIT.decode(limits[i][0:4]) for i in self._ids], dtype=np.float64
        )
        low = np.array(
            [ct.MIN_POSITION_LIMIT.decode(limits[i][4:8]) for i in self._ids], dtype=np.float64
        )
        range_ticks = np.stack(
            [self.calibration.rad_to_ticks(self._low), self.calibration.rad_to_ticks(self._high)]
        )
        outside = [
            f"{name} [{r_low:+.2f}, {r_high:+.2f}] rad -> ticks [{t.min()}, {t.max()}] (limits {int(lo)}..{int(hi)})"
            for name, r_low, r_high, t, lo, hi in zip(
                DCLAW.joint_names, self._low, self._high, range_ticks.T, low, high
            )
            if t.min() < lo or t.max() > hi
        ]
        if outside:
            # Not an error: a raw calibration (offsets 0) is used while calibrating. Goals are kept
            # inside the limits anyway (the servos would silently ignore others).
            warnings.warn(
                "with this calibration some joint ranges fall outside the servos' position limits, so goals "
                "there will be clipped: "
                + "; ".join(outside)
                + ". Unless you are calibrating, check the "
                "calibration offsets (`slac-calibrate joints`) or the servos' Min/Max Position Limit registers",
                CalibrationRangeWarning,
                stacklevel=4,
            )
        self._tick_limits = (low, high)

    def _abort_connect(self) -> None:
        """After a failed connect: turn torque off if it may be on, close the port; log, never mask."""
        try:
            if self._torque_requested:
                self.relax()
        except Exception:
            log.exception("while aborting a failed connect, turning torque off failed too")
        finally:
            self.bus.close()
