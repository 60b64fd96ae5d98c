"""Joint calibration: the servo tick at each joint's zero, and each joint's reachable range.

The procedure (``slac-calibrate joints``):

1. With torque off, the user puts the claw in its documented zero pose (every finger straight
   down); the tick each servo reads there becomes its offset.
2. With the new offsets, each joint in turn is moved slowly (a fraction of the velocity limit)
   from the zero pose to both ends of its control range and back; the positions reached are
   recorded as the measured range, so a joint that is blocked or mis-assembled shows up.
3. The calibration file is written (robot, motor IDs, offsets, signs, measured ranges, date).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from robots.dynamixel import control_table as ct
from robots.dynamixel.calibration import JointCalibration, JointCalibrationEntry
from slac_runtime.robot import RobotDescription, find_robot

RANGE_SHORTFALL_WARNING_RAD = 0.1  # a joint that falls this far short of its range end is reported
ZERO_POSE_INSTRUCTIONS = (
    "Put the claw in its zero pose: every finger hanging straight down, in line with its base "
    "(torque is off, the joints move freely)."
)
RANGE_CHECK_INSTRUCTIONS = (
    "The claw will now move each joint, one at a time, slowly to both ends of its range and back. "
    "Keep hands and objects clear of the fingers (remove the valve)."
)


def _raw_calibration(description: RobotDescription, signs: np.ndarray) -> JointCalibration:
    """Offsets 0: the driver then reports sign · ticks · 2π/4096, from which ticks follow."""
    return JointCalibration(
        robot=description.name,
        joints=tuple(
            JointCalibrationEntry(name=n, motor_id=i, offset_ticks=0, sign=int(s))
            for n, i, s in zip(description.joint_names, description.motor_ids, signs)
        ),
        note="raw (offsets 0): used while calibrating",
    )


def _settle(robot, timeout_s: float = 1.0, still_rad: float = 0.003, window_s: float = 0.1) -> np.ndarray:
    """Wait until no joint moved more than ``still_rad`` over ``window_s`` (or ``timeout_s`` passed);
    return the positions read then. (A velocity threshold alone would stop at an overshoot's peak.)"""
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


def _move(robot, start: np.ndarray, target: np.ndarray, speed_rad_s: float, period_s: float) -> np.ndarray:
    """Send goals along a straight line at ``speed_rad_s``; return the positions reached at the end."""
    n = max(1, math.ceil(float(np.max(np.abs(target - start))) / (speed_rad_s * period_s)))
    next_time = time.monotonic()
    for k in range(1, n + 1):
        robot.command(start + (target - start) * k / n)
        next_time += period_s
        time.sleep(max(0.0, next_time - time.monotonic()))
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
) -> JointCalibration:
    """Calibrate the robot on ``port``.

    ``ready(message)`` returns when the user has done what the message says (called before reading
    the zero pose and before the range check moves the robot); ``None`` assumes the robot is
    already in its zero pose with nothing in the way. ``range_speed``: the range check's speed as
    a fraction of the robot's velocity limit. ``log`` receives progress lines.
    """
    entry = find_robot(robot)
    d = entry.description
    signs = np.ones(d.num_joints, dtype=int) if signs is None else np.asarray(signs, dtype=int)
    if signs.shape != (d.num_joints,) or not np.all(np.isin(signs, (-1, 1))):
        raise ValueError(f"signs must be {d.num_joints} values of +1 or -1, got {signs.tolist()}")
    if not (range_speed > 0 and math.isfinite(range_speed)):
        raise ValueError(f"range_speed must be a positive fraction of the velocity limit, got {range_speed}")
    period = 0.05

    # 1. offsets, torque off. The raw calibration (offsets 0) says nothing about the joint ranges,
    #    so the driver skips the checks that need a valid calibration (``calibrating=True``).
    with entry.make_driver(port=port, calibration=_raw_calibration(d, signs), calibrating=True) as r:
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
    if not check_ranges:
        return calibration

    # 2. ranges: one joint at a time, from the zero pose to each end of its control range and
    #    back, slowly. (Moving a joint type on all fingers at once makes the fingertips collide.)
    if ready is not None:
        ready(RANGE_CHECK_INSTRUCTIONS)
    speed = d.velocity_limit * range_speed
    low, high = d.low, d.high
    measured_low, measured_high = np.zeros(d.num_joints), np.zeros(d.num_joints)
    zero = np.zeros(d.num_joints)
    # The driver's step limit sits a little above the range check's own speed, so it never clips it.
    max_step = 1.1 * speed * period
    with entry.make_driver(port=port, calibration=calibration, max_step_rad=max_step) as r:
        _move(r, r.read_state().positions, zero, speed, period)
        for j, name in enumerate(d.joint_names):
            goal = zero
            for bound, store in ((low, measured_low), (high, measured_high)):
                target = zero.copy()
                target[j] = bound[j]
                store[j] = _move(r, goal, target, speed, period)[j]
                goal = target
            _move(r, goal, zero, speed, period)
            log(f"{name}: control range [{low[j]:+.2f}, {high[j]:+.2f}] rad, "
                f"reached [{measured_low[j]:+.2f}, {measured_high[j]:+.2f}]")
        r.relax()
    entries = []
    for j, e in enumerate(calibration.joints):
        reached = (float(min(measured_low[j], measured_high[j])), float(max(measured_low[j], measured_high[j])))
        entries.append(JointCalibrationEntry(name=e.name, motor_id=e.motor_id, offset_ticks=e.offset_ticks,
                                             sign=e.sign, measured_range_rad=reached))
        shortfall = max(measured_low[j] - low[j], high[j] - measured_high[j])
        if shortfall > RANGE_SHORTFALL_WARNING_RAD:
            log(f"warning: {e.name} reached only [{measured_low[j]:.2f}, {measured_high[j]:.2f}] rad of "
                f"[{low[j]:.2f}, {high[j]:.2f}]: is it blocked, or is its offset wrong?")
    return JointCalibration(robot=d.name, joints=tuple(entries))


def save_calibration(calibration: JointCalibration, out: Path | None) -> Path:
    """Write to ``out`` or to the robot's default calibration location."""
    from slac_runtime.robot import default_calibration_path

    return calibration.save(out or default_calibration_path(calibration.robot))
