"""``slac-calibrate``: a robot's joint offsets, and the camera crop that matches the simulator's view.

::

    slac-calibrate joints --robot dclaw --port /dev/ttyUSB0            # interactive, writes the default file
    slac-calibrate joints --robot dclaw --port PORT --yes --out F.json  # no questions (scripts, tests)
    slac-calibrate camera --robot dclaw --camera 0 --port /dev/ttyUSB0 --auto
    slac-calibrate camera --robot dclaw --camera tcp://127.0.0.1:5555 --joint-positions reset --auto

Files go to ``--out`` or to the robot's default location (``$SLAC_CALIBRATION_DIR`` or
``~/.config/slac``: ``dclaw-joints.json``, ``dclaw-camera.json``), where ``slac-run`` finds the joint
calibration by itself. docs/calibration.md walks through both steps with a real D'Claw.

Errors are one line on stderr and exit code 2 (``--traceback`` shows the traceback); Ctrl-C exits
with 130 and leaves the servos' torque off.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slac_runtime.preprocessing import DEFAULT_OUTPUT_SIZE, CameraCalibration
from slac_runtime.robot import RobotDescription, default_calibration_path, find_robot

PROG = "slac-calibrate"
MAX_RANGE_SPEED = 5.0  # x the velocity limit; above 1 only makes sense for the virtual robot


class UsageError(ValueError):
    """A problem the user fixes by changing the command line or the setup."""


# ---- configurations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JointsConfig:
    """``slac-calibrate joints``."""

    robot: str = "dclaw"
    """Robot name in the ``slac.robots`` registry."""
    port: str = "/dev/ttyUSB0"
    """Serial device of the servo bus (or the virtual robot's pty)."""
    out: Path | None = None
    """Calibration file to write; None: the robot's default location."""
    signs: tuple[int, ...] | None = None
    """+1/-1 per joint (joint angle = sign · (ticks − offset) · 2π/4096); None: all +1."""
    check_ranges: bool = True
    """Move each joint to both ends of its range and record what it reached."""
    range_speed: float = 0.3
    """Speed of the range check, as a fraction of the joint velocity limit."""
    yes: bool = False
    """Do not wait for Enter: the robot is already in its zero pose with nothing in the way."""

    def __post_init__(self) -> None:
        if not self.port:
            raise UsageError(
                "--port is empty: give the servo bus's serial device, e.g. /dev/ttyUSB0"
            )
        if not 0 < self.range_speed <= MAX_RANGE_SPEED:
            raise UsageError(
                f"--range-speed must be in (0, {MAX_RANGE_SPEED:g}] (a fraction of the velocity "
                f"limit), got {self.range_speed:g}"
            )


@dataclass(frozen=True)
class CameraConfig:
    """``slac-calibrate camera``."""

    camera: str
    """OpenCV camera index, device or video file, or a ZeroMQ endpoint of full-size frames."""
    robot: str = "dclaw"
    port: str | None = None
    """Read the joint state from the robot on this serial device ..."""
    joint_positions: str | None = None
    """... or take this pose: "reset", "zero" or one angle (rad) per joint, comma-separated."""
    joint_calibration: Path | None = None
    """Joint calibration for reading the robot; None: the default file if there is one."""
    auto: bool = False
    """Search the crop/rotation/flip that best matches the render and write it."""
    out: Path | None = None
    """Camera calibration file to write (with --auto); None: the robot's default location."""
    calibration_in: Path | None = None
    """Camera calibration to show (and compare with); None: the default file if there is one."""
    save_overlay: Path | None = None
    """Overlay PNG (simulator | calibrated camera | blend); None: ./<robot>-camera-overlay.png."""
    scene: str = "valve"
    """The simulator scene to render ("valve" or "pose")."""
    valve_angle: float = 0.0
    """The valve's angle in the render (rad)."""
    size: int = DEFAULT_OUTPUT_SIZE
    """Side of the policy's image (pixels)."""
    max_rotation_deg: float = 10.0
    """The search tries rotations in [-x, x] degrees."""
    try_flips: bool = True
    """The search also tries mirrored images."""
    timeout_s: float = 10.0
    """Longest wait for a camera frame."""
    warmup_s: float = 1.0
    """A live camera runs this long before the frame is taken (exposure settles)."""

    def __post_init__(self) -> None:
        if (self.port is None) == (self.joint_positions is None):
            raise UsageError(
                "give either --port (read the robot's joint state) or --joint-positions "
                "reset|zero|q1,...,qN (the pose the robot is in), not both or neither"
            )
        if not 8 <= self.size <= 1024:
            raise UsageError(f"--size must be 8..1024 pixels, got {self.size}")
        if not 0 <= self.max_rotation_deg <= 45:
            raise UsageError(f"--max-rotation must be 0..45 degrees, got {self.max_rotation_deg:g}")
        if not self.timeout_s > 0 or self.warmup_s < 0:
            raise UsageError("--timeout must be positive and --warmup not negative")


# ---- joints -------------------------------------------------------------------------------------


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
    for j, low, high in zip(calibration.joints, description.low, description.high):
        measured = (
            "-"
            if j.measured_range_rad is None
            else f"[{j.measured_range_rad[0]:+.3f}, {j.measured_range_rad[1]:+.3f}]"
        )
        rows.append(
            (
                j.name,
                str(j.motor_id),
                f"{j.offset_ticks:g}",
                f"{j.sign:+d}",
                f"[{low:+.3f}, {high:+.3f}]",
                measured,
            )
        )
    return _table(rows)


def run_joints(config: JointsConfig) -> int:
    from calibration.joints import calibrate_joints, save_calibration

    entry = find_robot(config.robot)
    d = entry.description
    out = config.out or default_calibration_path(d.name)
    print(f"Joint calibration of the {d.name} on {config.port}:")
    print(
        "  1. torque off; you put the robot in its zero pose; each servo's tick there becomes its offset"
    )
    if config.check_ranges:
        print(
            f"  2. range check: each joint moves at {config.range_speed:g} x {d.velocity_limit:.2f} rad/s "
            "to both ends of its range and back, and what it reached is recorded"
        )
    print(f"  {3 if config.check_ranges else 2}. the calibration is written to {out}")
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
    )
    path = save_calibration(calibration, out)
    print()
    print(joints_table(calibration, d))
    print(f"\nwrote {path}")
    if path.resolve() == default_calibration_path(d.name).resolve():
        print(f"slac-run --robot {d.name} uses it from there")
    else:
        print(f"use it with: slac-run --robot {d.name} --calibration {path}")
    return 0


def _parse_signs(text: str) -> tuple[int, ...]:
    try:
        signs = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"signs must look like +1,-1,+1,... (one per joint), got {text!r}"
        ) from None
    if not all(s in (-1, 1) for s in signs):
        raise argparse.ArgumentTypeError(f"every sign must be +1 or -1, got {text!r}")
    return signs


# ---- camera -------------------------------------------------------------------------------------


def pose_from_text(text: str, description: RobotDescription) -> np.ndarray:
    """ "reset", "zero" or comma-separated angles (rad) -> joint positions, checked against the ranges."""
    if text == "reset":
        return np.array(description.reset_pose, dtype=np.float64)
    if text == "zero":
        return np.zeros(description.num_joints)
    try:
        q = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise UsageError(
            f"--joint-positions must be reset, zero or {description.num_joints} numbers "
            f"(rad) separated by commas, got {text!r}"
        ) from None
    if q.shape != (description.num_joints,):
        raise UsageError(
            f"--joint-positions has {q.size} values; the {description.name} has "
            f"{description.num_joints} joints ({', '.join(description.joint_names)})"
        )
    outside = [
        n
        for n, v, lo, hi in zip(description.joint_names, q, description.low, description.high)
        if not lo - 1e-9 <= v <= hi + 1e-9
    ]
    if outside:
        raise UsageError(f"--joint-positions outside the joint ranges: {', '.join(outside)}")
    return q


STILL_RAD = 0.01  # the joints may move this much while a frame is taken
SETTLE_S = 0.5  # connecting switches torque off for a moment: let the robot settle after it


def _still_frame(robot, grab, attempts: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A camera frame and the joint state it shows: the state is read before and after the frame,
    and the frame is kept only when the robot did not move in between."""
    time.sleep(SETTLE_S)
    for _ in range(attempts):
        before = robot.read_state().positions
        frame = grab()
        after = robot.read_state().positions
        moved = float(np.max(np.abs(after - before)))
        if moved <= STILL_RAD:
            return frame, 0.5 * (before + after)
        time.sleep(SETTLE_S)
    raise UsageError(
        f"the robot kept moving while the camera frame was taken ({moved:.3f} rad): "
        "is something pushing it? Try again once it is still"
    )


def _previous_camera_calibration(
    config: CameraConfig, robot: str
) -> tuple[CameraCalibration | None, Path | None]:
    path = config.calibration_in
    if path is None:
        default = default_calibration_path(robot, "camera")
        path = default if default.is_file() else None
    if path is None:
        return None, None
    if not path.is_file():
        raise UsageError(f"camera calibration file {path} not found")
    calibration = CameraCalibration.load(path)
    if calibration.output_size != config.size:
        calibration = dataclasses.replace(calibration, output_size=config.size)
    return calibration, path


def _joint_calibration_path(config: CameraConfig, robot: str) -> Path | None:
    if config.joint_calibration is not None:
        return config.joint_calibration
    default = default_calibration_path(robot)
    return default if default.is_file() else None


def run_camera(config: CameraConfig) -> int:
    import cv2

    from calibration.camera_alignment import align_camera, colour_statistics, image_error, overlay
    from calibration.frame_grab import grab_frame, is_endpoint
    from calibration.sim_view import render_task_view
    from slac_runtime.preprocessing import preprocess_frame

    entry = find_robot(config.robot)
    d = entry.description
    previous, previous_path = _previous_camera_calibration(config, d.name)

    # The frame and the joint state it shows, taken together.
    if config.port is not None:
        joint_file = _joint_calibration_path(config, d.name)
        if joint_file is None:
            print(
                f"note: no joint calibration for the {d.name} (run `{PROG} joints` first); reading the joints "
                "with the driver's nominal offsets"
            )
        with entry.make_driver(port=config.port, calibration=joint_file) as robot:
            frame, q = _still_frame(
                robot, lambda: grab_frame(config.camera, config.timeout_s, config.warmup_s)
            )
        source = f"robot on {config.port}" + (
            f" (joint calibration {joint_file})" if joint_file else ""
        )
    else:
        q = pose_from_text(config.joint_positions, d)
        frame = grab_frame(config.camera, config.timeout_s, config.warmup_s)
        source = f"--joint-positions {config.joint_positions}"
    h, w = frame.shape[:2]
    print(f"camera {config.camera}: {w}x{h} frame")
    if min(h, w) < 2 * config.size:
        print(
            f"warning: the frames are only {w}x{h}: calibrate from the camera itself or a publisher of "
            "full-size frames, not from a stream that is already cropped (slac-camera)"
        )
    print(
        f"joint state from {source}: "
        + ", ".join(f"{n}={v:+.3f}" for n, v in zip(d.joint_names, q))
    )

    sim = render_task_view(
        d.name, q, size=config.size, scene=config.scene, valve_angle=config.valve_angle
    )
    identity = CameraCalibration(output_size=config.size)
    error_before = image_error(frame, sim, identity)
    errors = [("uncalibrated (centre square)", error_before)]
    if previous is not None:
        errors.append((f"{previous_path}", image_error(frame, sim, previous)))

    calibration = previous or identity
    result = None
    if config.auto:
        print(
            f"searching crop, rotation (±{config.max_rotation_deg:g}°)"
            + (" and flips" if config.try_flips else "")
            + " ...",
            flush=True,
        )
        result = align_camera(
            frame, sim, max_rotation_deg=config.max_rotation_deg, try_flips=config.try_flips
        )
        calibration = result.calibration
        errors.append(("found", result.error_after))

    overlay_path = config.save_overlay or Path(f"{d.name}-camera-overlay.png")
    overlay_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(
        str(overlay_path), cv2.cvtColor(overlay(frame, sim, calibration), cv2.COLOR_RGB2BGR)
    ):
        raise UsageError(f"could not write the overlay image {overlay_path}")

    print()
    print(_camera_table(calibration))
    print()
    print(
        _table(
            [("image error (mean |real - sim|, 0..255)", "")] + [(k, f"{v:.2f}") for k, v in errors]
        )
    )
    print()
    stats = colour_statistics(preprocess_frame(frame, calibration, bgr=False), sim)
    print(
        _table(
            [("colour (R, G, B)", "mean", "std")]
            + [
                (who, _triple(stats[f"{key}_mean_rgb"]), _triple(stats[f"{key}_std_rgb"]))
                for who, key in (("camera (calibrated)", "real"), ("simulator", "sim"))
            ]
        )
    )
    print(f"\noverlay (simulator | camera | blend): {overlay_path}")

    if result is not None:
        out = config.out or default_calibration_path(d.name, "camera")
        out.parent.mkdir(parents=True, exist_ok=True)
        calibration.save(out)
        print(f"match score {result.score:.3f} (1 = perfect)")
        if result.error_after >= result.error_before or result.score < 0.5:
            print(
                "warning: the match is poor: is the whole robot in view, lit, and in the pose given? "
                "Check the overlay before using this calibration"
            )
        print(f"wrote {out}")
        if is_endpoint(config.camera):
            print(
                f"apply it where the frames of {config.camera} are captured: "
                f"slac-camera --calibration {out}, or slac-run --camera-calibration {out}"
            )
        else:
            print(
                f"use it with: slac-camera --camera {config.camera} --calibration {out}   "
                f"or   slac-run --camera {config.camera} --camera-calibration {out}"
            )
    return 0


def _camera_table(c: CameraCalibration) -> str:
    crop = (
        "centre square"
        if c.crop is None
        else f"x={c.crop[0]} y={c.crop[1]} w={c.crop[2]} h={c.crop[3]}"
    )
    flips = ", ".join(
        n for n, on in (("horizontal", c.flip_horizontal), ("vertical", c.flip_vertical)) if on
    )
    return _table(
        [
            ("camera calibration", ""),
            ("crop (source px)", crop),
            ("rotation (deg, counter-clockwise)", f"{c.rotation_deg:+.2f}"),
            ("flip", flips or "none"),
            (
                "source size",
                "any" if c.source_size is None else f"{c.source_size[0]}x{c.source_size[1]}",
            ),
            ("output size", f"{c.output_size}x{c.output_size}"),
        ]
    )


def _triple(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:5.1f}" for v in values) + ")"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


# ---- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Calibrate a robot's joints and its camera view."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{joints,camera}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--robot", default="dclaw", help="robot name (default: %(default)s)")
    common.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )

    j = sub.add_parser(
        "joints",
        parents=[common],
        help="servo offsets at the zero pose, and a range check",
        description="Measure each servo's tick at the robot's zero pose (and, unless "
        "--no-range-check, the range each joint reaches) and write the joint calibration.",
    )
    j.add_argument(
        "--port", required=True, help="serial device of the servo bus, e.g. /dev/ttyUSB0"
    )
    j.add_argument(
        "--out",
        type=Path,
        default=None,
        help="calibration file to write (default: the robot's default location, where slac-run looks)",
    )
    j.add_argument(
        "--signs",
        type=_parse_signs,
        default=None,
        help="direction per joint, e.g. +1,+1,-1,... (default: all +1)",
    )
    j.add_argument(
        "--no-range-check",
        dest="check_ranges",
        action="store_false",
        help="only measure the offsets; do not move the robot",
    )
    j.add_argument(
        "--range-speed",
        type=float,
        default=0.3,
        help="range-check speed as a fraction of the joint velocity limit (default: %(default)s)",
    )
    j.add_argument(
        "--yes",
        action="store_true",
        help="no questions: the robot is already in its zero pose and free to move",
    )

    c = sub.add_parser(
        "camera",
        parents=[common],
        help="crop/rotation that makes the camera match the simulator",
        description="Render the simulator's task camera at the robot's joint state, compare it "
        "with the camera's frame, save an overlay and (with --auto) find and write the camera "
        "calibration.",
    )
    c.add_argument(
        "--camera",
        required=True,
        help="camera index (0), device (/dev/video0), video file, or a ZeroMQ endpoint of full-size frames",
    )
    pose = c.add_mutually_exclusive_group()
    pose.add_argument(
        "--port", default=None, help="read the joint state from the robot on this serial device"
    )
    pose.add_argument(
        "--joint-positions",
        default=None,
        help="the robot's pose: reset, zero, or one angle (rad) per joint, comma-separated",
    )
    c.add_argument(
        "--joint-calibration",
        type=Path,
        default=None,
        help="joint calibration for --port (default: the robot's default file, if any)",
    )
    c.add_argument("--auto", action="store_true", help="search the calibration and write it")
    c.add_argument(
        "--out",
        type=Path,
        default=None,
        help="camera calibration file to write with --auto (default: the robot's default location)",
    )
    c.add_argument(
        "--calibration-in",
        type=Path,
        default=None,
        help="camera calibration to show and compare (default: the default file, if any)",
    )
    c.add_argument(
        "--save-overlay",
        type=Path,
        default=None,
        help="overlay PNG: simulator | calibrated camera | blend (default: ./<robot>-camera-overlay.png)",
    )
    c.add_argument(
        "--scene",
        choices=["valve", "pose"],
        default="valve",
        help="scene to render (default: %(default)s)",
    )
    c.add_argument(
        "--valve-angle", type=float, default=0.0, help="valve angle in the render, rad (default: 0)"
    )
    c.add_argument(
        "--size",
        type=int,
        default=DEFAULT_OUTPUT_SIZE,
        help="policy image side (default: %(default)s)",
    )
    c.add_argument(
        "--max-rotation",
        type=float,
        default=10.0,
        help="rotations searched, ± degrees (default: %(default)s)",
    )
    c.add_argument(
        "--no-flips", dest="try_flips", action="store_false", help="do not try mirrored images"
    )
    c.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="longest wait for a frame, s (default: %(default)s)",
    )
    c.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds a live camera runs before the frame is taken (default: %(default)s)",
    )
    return p


def _config(args: argparse.Namespace) -> JointsConfig | CameraConfig:
    if args.command == "joints":
        return JointsConfig(
            robot=args.robot,
            port=args.port,
            out=args.out,
            signs=args.signs,
            check_ranges=args.check_ranges,
            range_speed=args.range_speed,
            yes=args.yes,
        )
    return CameraConfig(
        camera=args.camera,
        robot=args.robot,
        port=args.port,
        joint_positions=args.joint_positions,
        joint_calibration=args.joint_calibration,
        auto=args.auto,
        out=args.out,
        calibration_in=args.calibration_in,
        save_overlay=args.save_overlay,
        scene=args.scene,
        valve_angle=args.valve_angle,
        size=args.size,
        max_rotation_deg=args.max_rotation,
        try_flips=args.try_flips,
        timeout_s=args.timeout,
        warmup_s=args.warmup,
    )


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and the error
        return int(e.code or 0)
    try:
        config = _config(args)
        find_robot(config.robot)
        if isinstance(config, JointsConfig):
            return run_joints(config)
        from robots.mujoco_gl import select_gl_backend

        select_gl_backend()  # before the simulator imports mujoco
        return run_camera(config)
    except KeyboardInterrupt:
        print(f"\n{PROG}: aborted (torque is off); nothing was written", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        if args.traceback:
            raise
        print(f"{PROG}: error: {_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
