"""Joint calibration: the servo tick at each joint's zero, and each joint's reachable range.

The procedure (``slac-calibrate joints``):

1. With torque off, the user puts the claw in its documented zero pose (every finger hanging
   straight down, in line with its base -- not the reset pose, whose middle and bottom joints
   are bent ±1.05 rad); the tick each servo reads there becomes its offset.
2. The offsets and directions are checked against the robot's nominal build (the driver's
   ``nominal_calibration``): a direction other than the nominal one, or a zero further than the
   driver's ``max_zero_error_ticks`` from the nominal tick, is refused -- the robot was not in its
   zero pose, or is built differently -- unless ``force``; forced joints are recorded in the file
   (``forced_joints``) so that the driver accepts them.
3. With the new offsets, each joint in turn is moved slowly (a fraction of the velocity limit)
   from the zero pose to both ends of its control range and back; the positions reached are
   recorded as the measured range, so a joint that is blocked or mis-assembled shows up.
4. The calibration file is written (robot, motor IDs, offsets, signs, measured ranges, forced
   joints, date).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from robots.dynamixel import control_table as ct
from robots.dynamixel.calibration import (
    CalibrationSanityError,
    JointCalibration,
    JointCalibrationEntry,
    nominal_build_rule,
)
from slac_runtime.ease_in import ease_in
from slac_runtime.robot import RobotDescription, find_robot

CONTROL_PERIOD_S = 0.05  # goals during the range check come this often (s)
RANGE_SHORTFALL_WARNING_RAD = 0.1  # a joint that falls this far short of its range end is reported
ZERO_POSE = "every finger hanging straight down, in line with its base"
ZERO_POSE_INSTRUCTIONS = (
    f"Put the claw in its zero pose: {ZERO_POSE}; not the reset pose, whose fingers are bent "
    "(torque is off, the joints move freely)."
)
RANGE_CHECK_INSTRUCTIONS = (
    "The claw will now move each joint, one at a time, slowly to both ends of its range and back. "
    "Keep hands and objects clear of the fingers (remove the valve)."
)


def _raw_calibration(
    description: RobotDescription, signs: np.ndarray, force: bool
) -> JointCalibration:
    """Offsets 0: the driver then reports sign · ticks · 2π/4096, from which ticks follow. With
    ``force`` every joint is marked forced, so that the driver takes the signs as given."""
    return JointCalibration(
        robot=description.name,
        joints=tuple(
            JointCalibrationEntry(name=n, motor_id=i, offset_ticks=0, sign=int(s))
            for n, i, s in zip(description.joint_names, description.motor_ids, signs)
        ),
        note="raw (offsets 0): used while calibrating",
        forced_joints=description.joint_names if force else (),
    )


def _settle(
    robot, timeout_s: float = 1.0, still_rad: float = 0.003, window_s: float = 0.1
) -> np.ndarray:
    """Wait until no joint moved more than ``still_rad`` over ``window_s`` (or ``timeout_s``
    passed); return the positions read then. (A velocity threshold alone would stop at an
    overshoot's peak.)"""
    step_s = window_s / 2
    readings = [robot.read_state().positions]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(step_s)
        readings.append(robot.read_state().positions)
        window = np.array(readings[-3:])
        if len(window) == 3 and np.max(window.max(axis=0) - window.min(axis=0)) <= still_rad:
            break
    return readings[-1]


def _move(
    robot, start: np.ndarray, target: np.ndarray, speed_rad_s: float, period_s: float
) -> np.ndarray:
    """Send goals along a straight line at ``speed_rad_s``; return the
    positions reached at the end."""
    ease_in(robot, target, speed_rad_s=speed_rad_s, period_s=period_s, start=start)
    return _settle(robot)


def calibrate_joints(
    port: str,
    robot: str = "dclaw",
    signs: np.ndarray | None = None,
    check_ranges: bool = True,
    range_speed: float = 0.3,
    ready: Callable[[str], None] | None = None,
    log: Callable[[str], None] = print,
    samples: int = 10,
    force: bool = False,
) -> JointCalibration:
    """Calibrate the robot on ``port``.

    ``ready(message)`` returns when the user has done what the message says (called before reading
    the zero pose and before the range check moves the robot); ``None`` assumes the robot is
    already in its zero pose with nothing in the way. ``range_speed``: the range check's speed as
    a fraction of the robot's velocity limit. ``log`` receives progress lines.

    Raises :class:`CalibrationSanityError` (before the port is opened for ``signs``, before the
    robot moves for the offsets) when a joint's direction or zero departs from the robot's
    nominal build, unless ``force``: then those joints are recorded as forced.
    """
    entry = find_robot(robot)
    d = entry.description
    signs = np.ones(d.num_joints, dtype=int) if signs is None else np.asarray(signs, dtype=int)
    if signs.shape != (d.num_joints,) or not np.all(np.isin(signs, (-1, 1))):
        raise ValueError(f"signs must be {d.num_joints} values of +1 or -1, got {signs.tolist()}")
    if not (range_speed > 0 and math.isfinite(range_speed)):
        raise ValueError(
            f"range_speed must be a positive fraction of the velocity limit, got {range_speed}"
        )
    calibration = _measure_offsets(entry, port, signs, ready, log, samples, force)
    if not check_ranges:
        return calibration
    if ready is not None:
        ready(RANGE_CHECK_INSTRUCTIONS)
    measured_low, measured_high = _measure_ranges(
        entry, port, calibration, d.velocity_limit * range_speed, log
    )
    return _with_ranges(calibration, d, measured_low, measured_high, log)


def _measure_offsets(
    entry,
    port: str,
    signs: np.ndarray,
    ready: Callable[[str], None] | None,
    log: Callable[[str], None],
    samples: int,
    force: bool,
) -> JointCalibration:
    """Steps 1 and 2, torque off: the tick each servo reads at the zero pose becomes its offset,
    checked against the nominal build.

    The raw calibration (offsets 0) says nothing about the joint ranges, so the driver skips the
    checks that need valid offsets (``calibrating=True``); it checks the signs before it opens the
    port."""
    d = entry.description
    try:
        driver = entry.make_driver(
            port=port, calibration=_raw_calibration(d, signs, force), calibrating=True
        )
    except CalibrationSanityError as exc:
        raise CalibrationSanityError(_signs_refusal(exc, d), exc.deviations) from None
    with driver as r:
        r.relax()
        if ready is not None:
            ready(ZERO_POSE_INSTRUCTIONS)
        readings = []
        for _ in range(samples):
            readings.append(r.read_state().positions)
            time.sleep(0.01)
        raw_rad = np.median(np.array(readings), axis=0)
    ticks = raw_rad * signs * ct.TICKS_PER_TURN / (2 * math.pi)
    offsets = np.round(ticks).astype(int)
    log("offsets (ticks): " + ", ".join(f"{n}={o}" for n, o in zip(d.joint_names, offsets)))
    calibration = JointCalibration(
        robot=d.name,
        joints=tuple(
            JointCalibrationEntry(name=n, motor_id=i, offset_ticks=int(o), sign=int(s))
            for n, i, o, s in zip(d.joint_names, d.motor_ids, offsets, signs)
        ),
    )
    nominal, max_error = driver.nominal_calibration, driver.max_zero_error_ticks
    deviations = calibration.deviations_from(nominal, max_error)
    if not deviations:
        return calibration
    if not force:
        raise CalibrationSanityError(
            _offsets_refusal(calibration, nominal, max_error, d), deviations
        )
    forced = tuple(dev.name for dev in deviations)
    log(
        "warning: --force: accepting "
        + "; ".join(dev.describe() for dev in deviations)
        + f" (recorded in the file as forced_joints {list(forced)})"
    )
    return dataclasses.replace(calibration, forced_joints=forced)


def _signs_refusal(exc: CalibrationSanityError, d: RobotDescription) -> str:
    """--signs that differ from the robot's nominal build, in the command line's words."""
    given = ", ".join(f"{dev.name} {dev.sign:+d}" for dev in exc.deviations)
    nominal = ", ".join(f"{dev.name} {dev.nominal_sign:+d}" for dev in exc.deviations)
    return (
        f"--signs gives {given}, but the {d.name}'s nominal build turns {nominal}: leave these "
        "joints +1 in --signs (or leave --signs out), or, if this robot is built with those "
        "servos reversed, pass --force"
    )


def _offsets_refusal(
    calibration: JointCalibration, nominal: JointCalibration, max_error: float, d: RobotDescription
) -> str:
    """Offsets far from the nominal build: which joints, and whether the robot looks as if it stood
    in its reset pose instead of its zero pose."""
    details = "; ".join(dev.describe() for dev in calibration.deviations_from(nominal, max_error))
    # The pose the robot was in while the offsets were read, as the nominal build reads it.
    pose = nominal.ticks_to_rad(calibration.offsets_ticks)
    reset = np.asarray(d.reset_pose, dtype=np.float64)
    if np.any(reset != 0) and np.linalg.norm(pose - reset) < np.linalg.norm(pose):
        why = "the robot stood in or near its reset pose, not its zero pose"
    else:
        why = "the robot was not in its zero pose, or a servo horn or bracket is mounted off"
    return (
        f"the offsets just read are far from the {d.name}'s nominal build "
        f"({nominal_build_rule(max_error)}): {details}. Most likely {why}. Put it in its zero "
        f"pose ({ZERO_POSE}) and run `slac-calibrate joints` again; if this robot is built "
        "differently on purpose, pass --force"
    )


def _measure_ranges(
    entry, port: str, calibration: JointCalibration, speed: float, log: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: one joint at a time, from the zero pose to each end of its control range and back,
    slowly (moving a joint type on all fingers at once makes the fingertips collide). Returns the
    positions reached at the low and the high ends (rad)."""
    d = entry.description
    period = CONTROL_PERIOD_S
    low, high = d.low, d.high
    measured_low, measured_high = np.zeros(d.num_joints), np.zeros(d.num_joints)
    zero = np.zeros(d.num_joints)
    # The driver's step limit sits a little above the range check's own speed, so it never clips it.
    with entry.make_driver(
        port=port, calibration=calibration, max_step_rad=1.1 * speed * period
    ) as r:
        _move(r, r.read_state().positions, zero, speed, period)
        for j, name in enumerate(d.joint_names):
            goal = zero
            for bound, store in ((low, measured_low), (high, measured_high)):
                target = zero.copy()
                target[j] = bound[j]
                store[j] = _move(r, goal, target, speed, period)[j]
                goal = target
            _move(r, goal, zero, speed, period)
            log(
                f"{name}: control range [{low[j]:+.2f}, {high[j]:+.2f}] rad, "
                f"reached [{measured_low[j]:+.2f}, {measured_high[j]:+.2f}]"
            )
        r.relax()
    return measured_low, measured_high


def _with_ranges(
    calibration: JointCalibration,
    d: RobotDescription,
    measured_low: np.ndarray,
    measured_high: np.ndarray,
    log: Callable[[str], None],
) -> JointCalibration:
    """Step 3: the calibration with the measured ranges, warning of joints that fell short."""
    low, high = d.low, d.high
    entries = []
    for j, e in enumerate(calibration.joints):
        reached = (
            float(min(measured_low[j], measured_high[j])),
            float(max(measured_low[j], measured_high[j])),
        )
        entries.append(
            JointCalibrationEntry(
                name=e.name,
                motor_id=e.motor_id,
                offset_ticks=e.offset_ticks,
                sign=e.sign,
                measured_range_rad=reached,
            )
        )
        shortfall = max(measured_low[j] - low[j], high[j] - measured_high[j])
        if shortfall > RANGE_SHORTFALL_WARNING_RAD:
            log(
                f"warning: {e.name} reached only [{measured_low[j]:.2f}, {measured_high[j]:.2f}] "
                f"rad of [{low[j]:.2f}, {high[j]:.2f}]: is it blocked, or is its offset wrong?"
            )
    return JointCalibration(robot=d.name, joints=tuple(entries))


def save_calibration(calibration: JointCalibration, out: Path | None) -> Path:
    """Write to ``out`` or to the robot's default calibration location."""
    from slac_runtime.robot import default_calibration_path

    return calibration.save(out or default_calibration_path(calibration.robot))
