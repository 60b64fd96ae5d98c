"""What :meth:`DClawDriver.connect <robots.dclaw.driver.DClawDriver.connect>` checks and sets on
the D'Claw's servos before torque goes on.

- :func:`check_models`: every servo is a model the driver knows (its current unit comes from it);
- :func:`configure`: Drive Mode neither reverses a servo nor lets a goal write turn torque on,
  Operating Mode is position control and Return Delay Time 0 (written where they differ, Operating
  Mode read back), and the servos' Min/Max Position Limit registers are read;
- :func:`check_calibration_against_servos`: the calibrated joint ranges fit inside those limits,
  and the present pose lies within :data:`START_POSE_MARGIN_RAD` of the ranges.

A servo that fails a check raises :class:`~robots.dynamixel.bus.ServoConfigurationError` naming
it, what its registers say and the fix; torque is still off then.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from robots.dclaw.description import DCLAW
from robots.dynamixel import control_table as ct
from robots.dynamixel.bus import DynamixelBus, ServoConfigurationError
from robots.dynamixel.calibration import JointCalibration

log = logging.getLogger(__name__)

# At connect a joint may rest this far outside its control range (a finger sagging or resting on
# the object) before its reading is taken for a wrong calibration.
START_POSE_MARGIN_RAD = 0.2


def check_models(
    bus: DynamixelBus, servo_ids: Sequence[int], models: Mapping[int, int]
) -> np.ndarray:
    """Refuse servo models the driver does not know; return each servo's current unit (mA), in
    the order of ``servo_ids``."""
    unsupported = {i: m for i, m in models.items() if m not in ct.MODELS}
    if unsupported:
        details = ", ".join(f"{bus.label(i)} is model {m}" for i, m in unsupported.items())
        known = ", ".join(f"{m.name} ({n})" for n, m in ct.MODELS.items())
        raise ServoConfigurationError(
            f"refusing to turn torque on: unsupported servo model: {details}; the D'Claw driver "
            f"supports {known}",
            list(unsupported),
        )
    return np.array([ct.MODELS[models[i]].current_ma_per_unit for i in servo_ids])


def configure(bus: DynamixelBus, servo_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Check Drive Mode; set position control and no return delay (EEPROM, torque off: written
    only where different) and read Operating Mode back; return the position limits (low, high
    ticks, in the order of ``servo_ids``)."""
    # 9 Return Delay Time, 10 Drive Mode, 11 Operating Mode
    first = ct.RETURN_DELAY_TIME.address
    settings = bus.sync_read(first, ct.OPERATING_MODE.end - first, servo_ids)
    drive_problems = {}
    for servo_id in servo_ids:
        drive = settings[servo_id][ct.DRIVE_MODE.address - first]
        reasons = []
        if drive & ct.DRIVE_MODE_REVERSE:
            reasons.append("bit 0 reverses the servo's direction behind the calibration's sign")
        if drive & ct.DRIVE_MODE_TORQUE_ON_BY_GOAL:
            reasons.append("bit 3 lets a goal write turn torque on")
        if reasons:
            drive_problems[servo_id] = (
                f"{bus.label(servo_id)}: Drive Mode {drive} ({'; '.join(reasons)})"
            )
    if drive_problems:
        raise ServoConfigurationError(
            f"refusing to turn torque on: {', '.join(drive_problems.values())}. Clear these "
            "bits of Drive Mode (address 10) with the servo's tool (e.g. Dynamixel Wizard, "
            "torque off), then recalibrate with `slac-calibrate joints`",
            list(drive_problems),
        )
    for servo_id in servo_ids:
        data = settings[servo_id]
        mode = data[ct.OPERATING_MODE.address - first]
        if mode != ct.OPERATING_MODE_POSITION:
            log.info(
                "%s: Operating Mode %d -> %d (position)",
                bus.label(servo_id),
                mode,
                ct.OPERATING_MODE_POSITION,
            )
            bus.write(servo_id, ct.OPERATING_MODE, ct.OPERATING_MODE_POSITION)
        if data[0] != 0:
            log.info("%s: Return Delay Time %d -> 0", bus.label(servo_id), data[0])
            bus.write(servo_id, ct.RETURN_DELAY_TIME, 0)
    modes = bus.sync_read(ct.OPERATING_MODE.address, 1, servo_ids)
    wrong = {i: data[0] for i, data in modes.items() if data[0] != ct.OPERATING_MODE_POSITION}
    if wrong:
        details = ", ".join(
            f"{bus.label(i)} reads {m} ({ct.OPERATING_MODES.get(m, 'unknown mode')})"
            for i, m in wrong.items()
        )
        raise ServoConfigurationError(
            "refusing to turn torque on: Operating Mode (address 11) is not position control "
            f"(3) after writing it: {details}. Set it with the servo's tool (e.g. Dynamixel "
            "Wizard, torque off) and check nothing else on the bus rewrites it",
            list(wrong),
        )
    first = ct.MAX_POSITION_LIMIT.address
    limits = bus.sync_read(first, ct.MIN_POSITION_LIMIT.end - first, servo_ids)
    high = np.array(
        [ct.MAX_POSITION_LIMIT.decode(limits[i][0:4]) for i in servo_ids], dtype=np.float64
    )
    low = np.array(
        [ct.MIN_POSITION_LIMIT.decode(limits[i][4:8]) for i in servo_ids], dtype=np.float64
    )
    return low, high


def check_calibration_against_servos(
    bus: DynamixelBus,
    servo_ids: Sequence[int],
    calibration: JointCalibration,
    position_ticks: np.ndarray,
    tick_limits: tuple[np.ndarray, np.ndarray],
) -> None:
    """Refuse (before torque on) a start pose (``position_ticks``, in the order of ``servo_ids``)
    outside the calibrated ranges, or calibrated ranges that do not fit inside the servos' position
    limits (``tick_limits``: low, high)."""
    cal = calibration
    positions = cal.ticks_to_rad(position_ticks)
    sections, refused_ids = [], []
    far = [
        (i, name, q, lo, hi)
        for i, name, q, lo, hi in zip(
            servo_ids, DCLAW.joint_names, positions, DCLAW.low, DCLAW.high
        )
        if not lo - START_POSE_MARGIN_RAD <= q <= hi + START_POSE_MARGIN_RAD
    ]
    if far:
        details = ", ".join(
            f"{name} reads {q:+.2f} rad (range [{lo:+.2f}, {hi:+.2f}])"
            for _, name, q, lo, hi in far
        )
        sections.append(
            "the start pose is outside the calibrated joint ranges by more than "
            f"{START_POSE_MARGIN_RAD} rad: {details}. The joint calibration is probably wrong "
            "(run `slac-calibrate joints`), or the joint must be moved into its range by hand "
            "(torque is off)"
        )
        refused_ids += [i for i, *_ in far]
    ends = np.stack([cal.rad_to_ticks(DCLAW.low), cal.rad_to_ticks(DCLAW.high)])
    need_low, need_high = ends.min(axis=0), ends.max(axis=0)
    low, high = tick_limits
    tight = [
        (i, name, int(lo), int(hi), int(t_lo), int(t_hi), r_lo, r_hi)
        for i, name, lo, hi, t_lo, t_hi, r_lo, r_hi in zip(
            servo_ids, DCLAW.joint_names, low, high, need_low, need_high, DCLAW.low, DCLAW.high
        )
        if t_lo < lo or t_hi > hi
    ]
    if tight:
        details = ", ".join(
            f"{bus.label(i)} limits read {lo}..{hi} but {name}'s range [{r_lo:+.2f}, "
            f"{r_hi:+.2f}] rad needs ticks {t_lo}..{t_hi}"
            for i, name, lo, hi, t_lo, t_hi, r_lo, r_hi in tight
        )
        sections.append(
            "the servos' Min/Max Position Limit registers (52/48) contradict the calibration: "
            f"{details}. Write limits that contain those ticks with the servo's tool (e.g. "
            "Dynamixel Wizard, torque off), or recalibrate with `slac-calibrate joints` if the "
            "offsets are wrong"
        )
        refused_ids += [i for i, *_ in tight if i not in refused_ids]
    if sections:
        raise ServoConfigurationError(
            f"refusing to turn torque on: {'; and '.join(sections)}", refused_ids
        )
