"""``slac-calibrate``: a robot's joint offsets, and the camera crop
that matches the simulator's view.

::

    # interactive, writes the default file
    slac-calibrate joints --robot dclaw --port /dev/ttyUSB0
    # no questions (scripts, tests)
    slac-calibrate joints --robot dclaw --port PORT --yes --out F.json
    slac-calibrate camera --robot dclaw --camera 0 --port /dev/ttyUSB0 --auto
    slac-calibrate camera --robot dclaw --camera tcp://127.0.0.1:5555 --joint-positions reset --auto
    # the lens first: print the board, then show it to the camera
    slac-calibrate camera --print-board board.png --square-mm 25
    slac-calibrate camera --robot dclaw --camera 0 --intrinsics
    # which serial port the servos are on
    slac-calibrate ports

Files go to ``--out`` or to the robot's default location (``$SLAC_CALIBRATION_DIR`` or
``~/.config/slac``: ``dclaw-joints.json``, ``dclaw-camera.json``), where ``slac-run`` finds the
joint calibration by itself. docs/calibration.md walks through both steps with a real D'Claw.

Errors are one line on stderr and exit code 2 (``--traceback`` adds the traceback); Ctrl-C or
SIGTERM exits with 130 or 143, writes nothing and leaves the servos' torque off.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.ports import PortsConfig, run_ports
from slac_runtime.frames import FIRST_FRAME_TIMEOUT_S
from slac_runtime.options import (
    Check,
    ExitCode,
    OneLineParser,
    UsageError,
    add_options,
    check_options,
    config_from_args,
    error_message,
    finite_float,
    float_in,
    int_in,
    non_negative_float,
    option,
    positive_float,
    run_command,
    signals_interrupt,
)
from slac_runtime.preprocessing import DEFAULT_OUTPUT_SIZE, CameraCalibration
from slac_runtime.robot import (
    DEFAULT_ROBOT,
    RobotDescription,
    RobotRefused,
    default_calibration_path,
    find_robot,
)

PROG = "slac-calibrate"
MAX_RANGE_SPEED = 5.0  # x the velocity limit; above 1 only makes sense for the virtual robot


def _parse_squares(text: str) -> tuple[int, int]:
    try:
        across, down = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"board squares must look like 9x6 (across x down), got {text!r}"
        ) from None
    if not (3 <= across <= 30 and 3 <= down <= 30):
        raise argparse.ArgumentTypeError(f"a board needs 3 to 30 squares each way, got {text!r}")
    return across, down


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


# ---- configurations ---------------------------------------------------------------------------


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
        if not self.port:
            raise UsageError(
                "--port is empty: give the servo bus's serial device, e.g. /dev/ttyUSB0"
            )


@dataclass(frozen=True)
class CameraConfig:
    """``slac-calibrate camera``: render the simulator's task camera at the robot's joint state,
    compare it with the camera's frame, save an overlay and (with --auto) find and write the
    camera calibration."""

    camera: str = option(
        "",
        "camera index (0), device (/dev/video0), video file or stream, or the "
        "ZeroMQ endpoint of a publisher of full-size frames (needed except with --print-board, "
        "or --intrinsics --images alone)",
    )
    robot: str = option(DEFAULT_ROBOT, "robot name in the slac.robots registry")
    port: str | None = option(
        None, "read the joint state from the robot on this serial device", exclusive="pose"
    )
    joint_positions: str | None = option(
        None,
        "the robot's pose: reset, zero, or one angle (rad) per joint, comma-separated",
        exclusive="pose",
    )
    joint_calibration: Path | None = option(
        None, "joint calibration for --port (default: the robot's default file, if any)"
    )
    auto: bool = option(
        False, "search the crop/rotation/flip that best matches the render and write it"
    )
    out: Path | None = option(
        None, "camera calibration file to write with --auto (default: the robot's default location)"
    )
    camera_calibration: Path | None = option(
        None,
        "camera calibration to show and compare (default: the robot's default file, if any)",
        aliases=["calibration-in"],
    )
    save_overlay: Path | None = option(
        None,
        "overlay PNG: simulator | calibrated camera | blend (default: "
        "./<robot>-camera-overlay.png)",
    )
    scene: str = option("valve", "the simulator scene to render", choices=["valve", "pose"])
    valve_angle: float = option(0.0, "the valve's angle in the render (rad)", parse=finite_float)
    size: int = option(
        DEFAULT_OUTPUT_SIZE,
        "side of the policy's image (pixels)",
        parse=int_in(8, 1024, "a number of pixels"),
    )
    max_rotation_deg: float = option(
        10.0,
        "the search tries rotations in [-x, x] degrees",
        flag="max-rotation",
        parse=float_in(0, 45, "degrees"),
    )
    try_flips: bool = option(True, "the search also tries mirrored images", flag="flips")
    camera_timeout: float = option(
        FIRST_FRAME_TIMEOUT_S,
        "longest wait for a camera frame (s)",
        aliases=["timeout"],
        parse=positive_float,
    )
    warmup: float = option(
        1.0,
        "a live camera runs this long before the frame is taken, so that exposure settles (s)",
        parse=non_negative_float,
    )
    intrinsics: bool = option(
        False,
        "calibrate the lens (camera matrix and distortion) from views of the calibration board and "
        "write it into the camera calibration, whose crop the next --auto then finds in the "
        "undistorted frames; with --auto as well, that search follows once the board is taken "
        "out of view",
    )
    images: Path | None = option(
        None, "with --intrinsics: the board's views from the images in this folder", metavar="DIR"
    )
    print_board: Path | None = option(
        None,
        "write the calibration board to print as a PNG (300 dpi, with its print size recorded) "
        "and exit",
        metavar="FILE.png",
    )
    board: str | None = option(
        None,
        "the calibration board (default: charuco where this OpenCV has cv2.aruco, else chessboard)",
        choices=["charuco", "chessboard"],
    )
    board_squares: tuple[int, int] = option(
        (9, 6), "the board's squares, across x down", parse=_parse_squares, metavar="AxD"
    )
    square_mm: float = option(
        25.0,
        "the side of one printed square, as measured on the print (mm)",
        parse=float_in(1, 500, "millimetres"),
    )
    views: int = option(
        15,
        "with --intrinsics from the camera: board views to take (at least 10)",
        parse=int_in(10, 500, "a number of views"),
    )
    capture_time: float = option(
        180.0,
        "with --intrinsics from the camera: stop taking views after this long (s)",
        parse=positive_float,
    )
    save_coverage: Path | None = option(
        None,
        "with --intrinsics: picture of the board views (corners seen, coverage grid | the frame "
        "undistorted) (default: ./<robot>-camera-coverage.png)",
    )

    def __post_init__(self) -> None:
        check_options(self)
        if self.print_board is not None:
            return
        if self.images is not None and not self.intrinsics:
            raise UsageError("--images gives the board's views for --intrinsics: add --intrinsics")
        lens_only = self.intrinsics and not self.auto
        if not self.camera and not (lens_only and self.images is not None):
            raise UsageError(
                "--camera is required: the camera index (0), device, video file or stream, or a "
                "publisher's endpoint"
            )
        if self.port is not None and self.joint_positions is not None:
            raise UsageError("give --port or --joint-positions, not both")
        if not lens_only and self.port is None and self.joint_positions is None:
            raise UsageError(
                "give either --port (read the robot's joint state) or --joint-positions "
                "reset|zero|q1,...,qN (the pose the robot is in), not both or neither"
            )


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
    return _table(rows)


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


# ---- camera -------------------------------------------------------------------------------------


def pose_from_text(text: str, description: RobotDescription) -> np.ndarray:
    """ "reset", "zero" or comma-separated angles (rad) -> joint positions, checked against the
    ranges."""
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
    path = config.camera_calibration
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


def _frame_and_pose(config: CameraConfig, entry) -> tuple[np.ndarray, np.ndarray, str]:
    """A camera frame, the joint state it shows, and where that state came from."""
    from calibration.frame_grab import grab_frame

    d = entry.description

    def grab() -> np.ndarray:
        return grab_frame(config.camera, config.camera_timeout, config.warmup)

    if config.port is None:
        q = pose_from_text(config.joint_positions, d)  # checked before the camera is opened
        return grab(), q, f"--joint-positions {config.joint_positions}"
    joint_file = _joint_calibration_path(config, d.name)
    if joint_file is None:
        print(
            f"note: no joint calibration for the {d.name} (run `{PROG} joints` first); reading the "
            "joints with the driver's nominal offsets"
        )
    with entry.make_driver(port=config.port, calibration=joint_file) as robot:
        frame, q = _still_frame(robot, grab)
    source = f"robot on {config.port}" + (
        f" (joint calibration {joint_file})" if joint_file else ""
    )
    return frame, q, source


def _describe_frame(
    config: CameraConfig, d: RobotDescription, frame: np.ndarray, q: np.ndarray, source: str
) -> None:
    h, w = frame.shape[:2]
    print(f"camera {config.camera}: {w}x{h} frame")
    if min(h, w) < 2 * config.size:
        print(
            f"warning: the frames are only {w}x{h}: calibrate from the camera itself or a "
            "publisher of full-size frames, not from a stream that is already cropped (slac-camera)"
        )
    print(
        f"joint state from {source}: "
        + ", ".join(f"{n}={v:+.3f}" for n, v in zip(d.joint_names, q))
    )


def _search(config: CameraConfig, frame: np.ndarray, sim: np.ndarray, lens):
    """The crop/rotation/flip search, on the frame's pinhole image when the lens is known."""
    from calibration.camera_alignment import align_camera
    from slac_runtime.lens import undistorter

    flips = " and flips" if config.try_flips else ""
    where = " in the undistorted frame" if lens is not None else ""
    print(f"searching crop, rotation (±{config.max_rotation_deg:g}°){flips}{where} ...", flush=True)
    pinhole = frame if lens is None else undistorter(lens)(frame)
    result = align_camera(
        pinhole, sim, max_rotation_deg=config.max_rotation_deg, try_flips=config.try_flips
    )
    if lens is None:
        return result
    return dataclasses.replace(
        result, calibration=dataclasses.replace(result.calibration, intrinsics=lens)
    )


def _write_overlay(
    config: CameraConfig,
    robot: str,
    frame: np.ndarray,
    sim: np.ndarray,
    calibration: CameraCalibration,
) -> Path:
    import cv2

    from calibration.camera_alignment import overlay

    path = config.save_overlay or Path(f"{robot}-camera-overlay.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(
        str(path), cv2.cvtColor(overlay(frame, sim, calibration), cv2.COLOR_RGB2BGR)
    ):
        raise UsageError(f"could not write the overlay image {path}")
    return path


def _print_comparison(
    calibration: CameraCalibration,
    errors: list[tuple[str, float]],
    frame: np.ndarray,
    sim: np.ndarray,
) -> None:
    from calibration.camera_alignment import colour_statistics
    from slac_runtime.preprocessing import preprocess_frame

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


def _save_found(config: CameraConfig, robot: str, result) -> None:
    """Write the calibration the search found, and say how good it is and how to use it."""
    from calibration.frame_grab import is_endpoint

    out = config.out or default_calibration_path(robot, "camera")
    out.parent.mkdir(parents=True, exist_ok=True)
    _with_settings(config, result.calibration).save(out)
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
            f"slac-camera --camera-calibration {out}, or slac-run --camera-calibration {out}"
        )
    else:
        print(
            f"use it with: slac-camera --camera {config.camera} --camera-calibration {out}   "
            f"or   slac-run --camera {config.camera} --camera-calibration {out}"
        )


# ---- the lens -----------------------------------------------------------------------------------


def _board(config: CameraConfig):
    from calibration.board import Board, default_board_kind

    across, down = config.board_squares
    return Board(config.board or default_board_kind(), across, down, config.square_mm)


def print_board(config: CameraConfig) -> int:
    from calibration.board import PRINT_DPI, write_board

    board = _board(config)
    width_mm, height_mm = write_board(board, config.print_board)
    print(f"wrote {config.print_board}: {board.describe()}")
    print(
        f"the sheet is {width_mm:.0f} x {height_mm:.0f} mm at {PRINT_DPI:g} dpi: print it at 100 % "
        "(no 'fit to page'), glue it flat onto something stiff, measure a square and give what "
        "you measure with --square-mm"
    )
    return 0


BOARD_GONE_S = 1.0  # with --intrinsics --auto: no board in view for this long before the search


def _wait_until_board_is_gone(config: CameraConfig, detector) -> None:
    from calibration.frame_grab import FrameStream

    print("take the board out of the camera's view: the crop search needs the robot alone")
    deadline = time.monotonic() + config.capture_time
    gone_since = None
    with FrameStream(config.camera, config.camera_timeout) as stream:
        while time.monotonic() < deadline:
            frame = stream.next(1.0)
            if frame is None:
                continue
            if detector.detect(frame) is not None:
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since >= BOARD_GONE_S:
                return
    raise UsageError(
        f"the board was still in view after {config.capture_time:g} s (--capture-time); the lens "
        "calibration is written: run --auto again once the board is away"
    )


def calibrate_lens(config: CameraConfig, robot: str):
    """``--intrinsics``: views of the board -> the lens, checked and shown; the coverage picture
    is written whether or not the result is accepted."""
    import cv2

    from calibration.frame_grab import FrameStream
    from calibration.intrinsics import (
        MAX_RMS_PX,
        MIN_VIEWS,
        calibrate,
        capture_views,
        coverage_picture,
        report,
        views_from_images,
    )

    board = _board(config)
    detector = board.detector()
    print(f"lens calibration with a {board.describe()}")

    def log(line: str) -> None:
        print(f"  {line}", flush=True)

    if config.images is not None:
        collector = views_from_images(config.images, detector, log)
    else:
        print(
            f"  hold the board up to the camera and keep it still for a moment at each place: "
            f"{config.views} views (at least {MIN_VIEWS}), tilted up to 45 degrees, reaching "
            "every edge and corner of the frame (partly out of view is fine); at most "
            f"{config.capture_time:g} s",
            flush=True,
        )
        with FrameStream(config.camera, config.camera_timeout) as stream:
            collector = capture_views(stream.next, detector, config.views, config.capture_time, log)
    picture = config.save_coverage or Path(f"{robot}-camera-coverage.png")
    result = None
    try:
        result = calibrate(collector, board)
    finally:
        if collector.frame is not None:
            picture.parent.mkdir(parents=True, exist_ok=True)
            image = coverage_picture(
                collector.frame,
                collector.views,
                collector.coverage,
                None if result is None else result.intrinsics,
            )
            if not cv2.imwrite(str(picture), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise UsageError(f"could not write the coverage picture {picture}")
            print(f"board views (corners seen | undistorted frame): {picture}")
    print()
    print(_table(report(result)))
    print(f"accepted: RMS {result.rms_px:.3f} px (at most {MAX_RMS_PX:g}), every cell covered")
    return result.intrinsics


def _save_lens(config: CameraConfig, robot: str, lens) -> None:
    out = config.out or default_calibration_path(robot, "camera")
    out.parent.mkdir(parents=True, exist_ok=True)
    calibration = CameraCalibration(
        output_size=config.size, source_size=lens.image_size, intrinsics=lens
    )
    _with_settings(config, calibration).save(out)
    print(
        f"wrote {out}: the lens, and the centre square of the undistorted frame until "
        f"`{PROG} camera --auto` finds the crop there"
    )


def _with_settings(config: CameraConfig, calibration: CameraCalibration) -> CameraCalibration:
    """``calibration`` with the capture settings the camera reports (none from --images)."""
    if config.images is not None and not config.auto:
        return calibration
    from calibration.frame_grab import camera_settings

    settings = camera_settings(config.camera, config.camera_timeout)
    if settings is not None:
        print(f"camera settings recorded: {settings.describe()}")
    return dataclasses.replace(calibration, camera_settings=settings)


def run_camera(config: CameraConfig) -> int:
    from calibration.camera_alignment import image_error
    from calibration.sim_view import render_task_view

    if config.print_board is not None:
        return print_board(config)
    entry = find_robot(config.robot)
    d = entry.description
    previous, previous_path = _previous_camera_calibration(config, d.name)
    if config.intrinsics:
        lens = calibrate_lens(config, d.name)
        if not config.auto:
            _save_lens(config, d.name, lens)
            return 0
        if config.images is None:
            _wait_until_board_is_gone(config, _board(config).detector())
        previous = CameraCalibration(
            output_size=config.size, source_size=lens.image_size, intrinsics=lens
        )
        previous_path = None
    lens = None if previous is None else previous.intrinsics
    if lens is not None:
        print(
            "frames are undistorted with "
            + (f"the lens in {previous_path}" if previous_path else "the lens just calibrated")
            + f" ({lens.image_size[0]}x{lens.image_size[1]}"
            + (f", RMS {lens.rms_px:g} px" if lens.rms_px is not None else "")
            + ")"
        )
    frame, q, source = _frame_and_pose(config, entry)
    _describe_frame(config, d, frame, q, source)
    sim = render_task_view(
        d.name, q, size=config.size, scene=config.scene, valve_angle=config.valve_angle
    )
    identity = CameraCalibration(output_size=config.size)
    errors = [("uncalibrated (centre square)", image_error(frame, sim, identity))]
    if previous is not None:
        errors.append(
            (str(previous_path or "lens only (centre square)"), image_error(frame, sim, previous))
        )
    calibration = previous or identity
    result = _search(config, frame, sim, lens) if config.auto else None
    if result is not None:
        calibration = result.calibration
        errors.append(("found", result.error_after))
    overlay_path = _write_overlay(config, d.name, frame, sim, calibration)
    _print_comparison(calibration, errors, frame, sim)
    print(f"\noverlay (simulator | camera | blend): {overlay_path}")
    if result is not None:
        _save_found(config, d.name, result)
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
            ("lens", _lens_summary(c.intrinsics)),
        ]
    )


def _lens_summary(lens) -> str:
    if lens is None:
        return "none: frames are used as they come (--intrinsics calibrates it)"
    (fx, fy), (cx, cy) = lens.focal_px, lens.principal_point_px
    k1, k2, p1, p2, _ = lens.distortion
    return (
        f"fx {fx:.1f} fy {fy:.1f} cx {cx:.1f} cy {cy:.1f} px, k1 {k1:+.4f} k2 {k2:+.4f} "
        f"p1 {p1:+.5f} p2 {p2:+.5f}; undistorted to f' {lens.pinhole_focal_px:.1f} px"
    )


def _triple(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:5.1f}" for v in values) + ")"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


# ---- command line -------------------------------------------------------------------------------


EXIT_CODES = {
    0: "done",
    2: "refused or failed (options, files, robot set-up, servo bus); nothing was written",
    130: "interrupted by Ctrl-C (torque off, nothing written)",
    143: "stopped by SIGTERM (the same)",
}

COMMANDS: dict[str, tuple[type, str]] = {
    "joints": (JointsConfig, "servo offsets at the zero pose, and a range check"),
    "camera": (
        CameraConfig,
        "lens, and crop/rotation that makes the camera match the simulator",
    ),
    "ports": (PortsConfig, "the serial ports and the Dynamixel servos answering on each"),
}


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Calibrate a robot's joints and its camera view.",
        exit_codes=EXIT_CODES,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{joints,camera,ports}")
    for name, (config_class, summary) in COMMANDS.items():
        command = sub.add_parser(
            name,
            help=summary,
            description=" ".join(config_class.__doc__.split("``: ", 1)[1].split()),
            prog=f"{PROG} {name}",
            exit_codes=EXIT_CODES,
        )
        add_options(command, config_class)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a one-line usage error already printed
        return int(e.code or 0)
    received: list[int] = []
    # (SIGTERM from docker stop, systemd or timeout as Ctrl-C; Ctrl-C itself raises it already)
    with signals_interrupt(received, (signal.SIGTERM,)):
        try:
            config = config_from_args(COMMANDS[args.command][0], args)
            find_robot(config.robot)
            if isinstance(config, JointsConfig):
                return run_joints(config)
            if isinstance(config, PortsConfig):
                return run_ports(config)
            from robots.mujoco_gl import select_gl_backend

            select_gl_backend()  # before the simulator imports mujoco
            return run_camera(config)
        except KeyboardInterrupt:
            name = signal.Signals(received[0]).name if received else "Ctrl-C"
            aborted = f"\n{PROG}: {name}: aborted (torque is off); nothing was written"
            print(aborted, file=sys.stderr)
            return ExitCode.for_signal(received[0] if received else signal.SIGINT)
        except RobotRefused as e:  # the robot or its port refused before torque went on
            raise UsageError(f"{error_message(e)} (nothing moved)") from e
        except (ValueError, KeyError, OSError, RuntimeError) as e:
            raise UsageError(error_message(e)) from e


if __name__ == "__main__":
    sys.exit(main())
