"""``slac-calibrate joints``: each servo's tick at the robot's zero pose, and the range each joint
reaches."""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration import check_file_to_write
from calibration.text_table import text_table
from slac_runtime.options import (
    Check,
    UsageError,
    check_options,
    comma_integers,
    option,
)
from slac_runtime.robot import (
    DEFAULT_ROBOT,
    RobotDescription,
    default_calibration_path,
    find_robot,
)

MAX_RANGE_SPEED = 5.0  # x the velocity limit; above 1 only makes sense for the virtual robot


def _parse_signs(text: str) -> tuple[int, ...]:
    signs = comma_integers(text, "signs must look like +1,-1,+1,... (one per joint)")
    if not all(s in (-1, 1) for s in signs):
        raise argparse.ArgumentTypeError(f"every sign must be +1 or -1, got {text!r}")
    return signs


@dataclass(frozen=True)
class JointsConfig:
    """``slac-calibrate joints``: measure each servo's tick at the robot's zero pose (and, unless
    --no-range-check, the range each joint reaches) and write the joint calibration."""

    port: str = option(
        "",
        "serial device of the servo bus, e.g. /dev/ttyUSB0 (or the virtual robot's pty)",
        required=True,
    )
    robot: str = option(DEFAULT_ROBOT, "robot name in the slac.robots registry")
    out: Path | None = option(
        None,
        "calibration file to write (default: the robot's default location, where slac-run looks)",
    )
    signs: tuple[int, ...] | None = option(
        None,
        "direction per joint, e.g. +1,+1,-1,... (joint angle = sign * (ticks - offset) * "
        "2 pi/4096; default: all +1, the D'Claw's nominal build; other directions need --force)",
        parse=_parse_signs,
    )
    check_ranges: bool = option(
        True,
        "move each joint to both ends of its range and record what it "
        "reached (--no-range-check: only measure the offsets; do not move "
        "the robot)",
        flag="range-check",
    )
    range_speed: float = option(
        0.3,
        "range-check speed as a fraction of the joint velocity limit",
        parse=Check(
            float,
            lambda v: 0 < v <= MAX_RANGE_SPEED,
            f"a fraction of the velocity limit in (0, {MAX_RANGE_SPEED:g}]",
        ),
    )
    yes: bool = option(
        False, "no questions: the robot is already in its zero pose and free to move"
    )
    force: bool = option(
        False,
        "write the calibration even where a joint's direction or zero departs from the robot's "
        "nominal build (a robot built differently on purpose); those joints are recorded in the "
        "file, and slac-run accepts them",
    )

    def __post_init__(self) -> None:
        check_options(self)
        check_file_to_write(self.out, "--out")
        if not self.port:
            raise UsageError(
                "--port is empty: give the servo bus's serial device, e.g. /dev/ttyUSB0"
            )


def _prompt(message: str) -> None:
    print()
    print(textwrap.fill(message, width=100))
    try:
        input("Press Enter when ready (Ctrl-C to abort) ")
    except EOFError:
        raise UsageError(
            "no answer on stdin (not a terminal?): use --yes to calibrate without questions"
        ) from None


def joints_table(calibration, description: RobotDescription) -> str:
    """The offsets and measured ranges, one row per joint."""
    rows = [
        ("joint", "motor", "offset (ticks)", "sign", "control range (rad)", "measured range (rad)")
    ]
    forced = set(calibration.forced_joints)
    for j, low, high in zip(calibration.joints, description.low, description.high):
        measured = (
            "-"
            if j.measured_range_rad is None
            else f"[{j.measured_range_rad[0]:+.3f}, {j.measured_range_rad[1]:+.3f}]"
        )
        rows.append(
            (
                j.name + (" (forced)" if j.name in forced else ""),
                str(j.motor_id),
                f"{j.offset_ticks:g}",
                f"{j.sign:+d}",
                f"[{low:+.3f}, {high:+.3f}]",
                measured,
            )
        )
    return text_table(rows)


def run_joints(config: JointsConfig) -> int:
    from calibration.joints import ZERO_POSE, calibrate_joints, save_calibration

    entry = find_robot(config.robot)
    d = entry.description
    out = config.out or default_calibration_path(d.name)
    print(f"Joint calibration of the {d.name} on {config.port}:")
    print(
        f"  1. torque off; you put the robot in its zero pose ({ZERO_POSE}); each servo's "
        "tick there becomes its offset, checked against the robot's nominal build"
        + (" (--force: departures are accepted and recorded)" if config.force else "")
    )
    if config.check_ranges:
        print(
            f"  2. range check: each joint moves at {config.range_speed:g} x "
            f"{d.velocity_limit:.2f} rad/s to both ends of its range and back, and what it "
            "reached is recorded"
        )
    print(f"  {3 if config.check_ranges else 2}. the calibration is written to {out}")
    if config.yes:
        print(f"--yes: the robot must already be in its zero pose ({ZERO_POSE})")
    if config.range_speed > 1:
        print(f"note: --range-speed {config.range_speed:g} is faster than the joint velocity limit")
    calibration = calibrate_joints(
        config.port,
        robot=d.name,
        signs=None if config.signs is None else np.array(config.signs),
        check_ranges=config.check_ranges,
        range_speed=config.range_speed,
        ready=None if config.yes else _prompt,
        log=lambda line: print(f"  {line}", flush=True),
        force=config.force,
    )
    path = save_calibration(calibration, out)
    print()
    print(joints_table(calibration, d))
    print(f"\nwrote {path}")
    if path.resolve() == default_calibration_path(d.name).resolve():
        print(f"slac-run --robot {d.name} uses it from there")
    else:
        print(f"use it with: slac-run --robot {d.name} --joint-calibration {path}")
    return 0
