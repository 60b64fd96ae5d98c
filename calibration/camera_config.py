"""The options of ``slac-calibrate camera``, checked when they are read."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from calibration import check_file_to_write
from slac_runtime.frames import FIRST_FRAME_TIMEOUT_S
from slac_runtime.options import (
    UsageError,
    check_options,
    finite_float,
    float_in,
    int_in,
    non_negative_float,
    option,
    positive_float,
)
from slac_runtime.preprocessing import DEFAULT_OUTPUT_SIZE
from slac_runtime.robot import DEFAULT_ROBOT


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


@dataclass(frozen=True)
class CameraConfig:
    """``slac-calibrate camera``: render the simulator's task camera at the robot's joint state,
    compare it with the camera's frame, save an overlay and (with --auto) find and write the
    camera calibration, or (with --check) say whether the calibration still matches."""

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
    check: bool = option(
        False,
        "match the live frame under the camera calibration against the render and say whether it "
        "passes the threshold (exit 0) or not (exit 1); writes only the overlay",
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
        for option_name, path in (
            ("--out", self.out),
            ("--save-overlay", self.save_overlay),
            ("--save-coverage", self.save_coverage),
            ("--print-board", self.print_board),
        ):
            check_file_to_write(path, option_name)
        if self.print_board is not None:
            return
        if self.check and (self.auto or self.intrinsics):
            raise UsageError(
                "--check checks the calibration there is: give it without --auto or --intrinsics"
            )
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
