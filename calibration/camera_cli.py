"""``slac-calibrate camera``: the crop, rotation and flip that make the camera's frame match the
simulator's task view (``--auto``), the overlay that shows the match, and the match score on live
frames (``--check``)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from calibration import PROG
from calibration.camera_config import CameraConfig
from calibration.lens_cli import (
    board_of,
    calibrate_lens,
    print_board,
    save_lens,
    wait_until_board_is_gone,
)
from calibration.text_table import text_table
from slac_runtime.options import ExitCode, UsageError, say
from slac_runtime.preprocessing import CameraCalibration, preprocess_frame
from slac_runtime.robot import RobotDescription, default_calibration_path, find_robot
from slac_runtime.view_match import MATCH_THRESHOLD, describe, match_score, passes


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
    compared: list[tuple[str, CameraCalibration]],
    frame: np.ndarray,
    sim: np.ndarray,
) -> None:
    """The calibration, the image error and match of each calibration ``compared``, and the colour
    statistics of the camera under ``calibration`` and of the render."""
    from calibration.camera_alignment import colour_statistics, image_error
    from slac_runtime.preprocessing import preprocess_frame
    from slac_runtime.view_match import MATCH_THRESHOLD, match_score

    print()
    print(_camera_table(calibration))
    print()
    header = (
        "calibration",
        "image error (mean |real - sim|, 0..255)",
        f"match (1 = the render; threshold {MATCH_THRESHOLD:.2f})",
    )
    rows = [
        (
            name,
            f"{image_error(frame, sim, c):.2f}",
            f"{match_score(preprocess_frame(frame, c, bgr=False), sim):.3f}",
        )
        for name, c in compared
    ]
    print(text_table([header, *rows]))
    print()
    stats = colour_statistics(preprocess_frame(frame, calibration, bgr=False), sim)
    print(
        text_table(
            [("colour (R, G, B)", "mean", "std")]
            + [
                (who, _triple(stats[f"{key}_mean_rgb"]), _triple(stats[f"{key}_std_rgb"]))
                for who, key in (("camera (calibrated)", "real"), ("simulator", "sim"))
            ]
        )
    )


def _save_found(config: CameraConfig, robot: str, result, match: float) -> None:
    """Write the calibration the search found, and say how good it is and how to use it."""
    from calibration.frame_grab import is_endpoint, with_camera_settings

    out = config.out or default_calibration_path(robot, "camera")
    out.parent.mkdir(parents=True, exist_ok=True)
    with_camera_settings(result.calibration, config.camera, config.camera_timeout).save(out)
    print(describe(match))
    if not passes(match):
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


def run_camera(config: CameraConfig) -> int:
    if config.print_board is not None:
        return print_board(config)
    entry = find_robot(config.robot)
    d = entry.description
    previous, previous_path = _previous_camera_calibration(config, d.name)
    if config.check:
        return check_camera(config, entry, previous, previous_path)
    if config.intrinsics:
        lens = calibrate_lens(config, d.name)
        if not config.auto:
            save_lens(config, d.name, lens)
            return 0
        if config.images is None:
            wait_until_board_is_gone(config, board_of(config).detector())
        previous = CameraCalibration(
            output_size=config.size, source_size=lens.image_size, intrinsics=lens
        )
        previous_path = None
    frame, sim = _frame_and_render(config, entry)
    if previous is not None and config.auto and not _fits(previous, frame):
        print(
            f"{previous_path}: made for other frames than this camera's "
            f"{frame.shape[1]}x{frame.shape[0]}: not compared, and its lens not used (calibrate "
            "the lens at this size with --intrinsics --auto)",
            flush=True,
        )
        previous = None
    lens = None if previous is None else previous.intrinsics
    if lens is not None:
        _say_lens(lens, previous_path)
    identity = CameraCalibration(output_size=config.size)
    compared = [("uncalibrated (centre square)", identity)]
    if previous is not None:
        compared.append((str(previous_path or "lens only (centre square)"), previous))
    calibration = previous or identity
    result = _search(config, frame, sim, lens) if config.auto else None
    if result is not None:
        calibration = result.calibration
        compared.append(("found", calibration))
    overlay_path = _write_overlay(config, d.name, frame, sim, calibration)
    _print_comparison(calibration, compared, frame, sim)
    print(f"\noverlay (simulator | camera | blend): {overlay_path}")
    if result is not None:
        live = preprocess_frame(frame, calibration, bgr=False)
        _save_found(config, d.name, result, match_score(live, sim))
    return 0


def _fits(calibration: CameraCalibration, frame: np.ndarray) -> bool:
    """Whether ``calibration`` can preprocess ``frame`` (made for its size, lens and crop box
    included)."""
    try:
        calibration.check_frame_size(frame.shape[1], frame.shape[0])
    except ValueError:
        return False
    return True


def _say_lens(lens, path: Path | None) -> None:
    print(
        "frames are undistorted with "
        + (f"the lens in {path}" if path else "the lens just calibrated")
        + f" ({lens.image_size[0]}x{lens.image_size[1]}"
        + (f", RMS {lens.rms_px:g} px" if lens.rms_px is not None else "")
        + ")"
    )


def _frame_and_render(config: CameraConfig, entry) -> tuple[np.ndarray, np.ndarray]:
    """A camera frame, and the task camera's render at the joint state the frame shows."""
    from calibration.sim_view import render_task_view

    frame, q, source = _frame_and_pose(config, entry)
    _describe_frame(config, entry.description, frame, q, source)
    sim = render_task_view(
        entry.description.name,
        q,
        size=config.size,
        scene=config.scene,
        valve_angle=config.valve_angle,
    )
    return frame, sim


def check_camera(
    config: CameraConfig, entry, calibration: CameraCalibration | None, path: Path | None
) -> int:
    """``--check``: the match of the calibrated live frame with the task camera's render; exit 0
    when it passes the threshold, 1 (saying so in one line) when it does not."""
    if calibration is None:
        default = default_calibration_path(entry.description.name, "camera")
        raise UsageError(
            f"--check needs a camera calibration: there is none at {default}; run `{PROG} camera "
            "--auto` first or give --camera-calibration FILE"
        )
    print(f"checking the camera calibration {path}")
    frame, sim = _frame_and_render(config, entry)
    score = match_score(preprocess_frame(frame, calibration, bgr=False), sim)
    overlay_path = _write_overlay(config, entry.description.name, frame, sim, calibration)
    print(f"overlay (simulator | camera | blend): {overlay_path}")
    print(describe(score))
    if passes(score):
        return ExitCode.OK
    say(
        PROG,
        "error",
        f"the calibrated camera does not match the task view (match {score:.3f}, threshold "
        f"{MATCH_THRESHOLD:.2f}): look at {overlay_path}, check the pose and valve angle given, "
        f"and run `{PROG} camera --auto` again",
    )
    return ExitCode.FAULT


def _camera_table(c: CameraCalibration) -> str:
    crop = (
        "centre square"
        if c.crop is None
        else f"x={c.crop[0]} y={c.crop[1]} w={c.crop[2]} h={c.crop[3]}"
    )
    flips = ", ".join(
        n for n, on in (("horizontal", c.flip_horizontal), ("vertical", c.flip_vertical)) if on
    )
    return text_table(
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
