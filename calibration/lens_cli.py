"""``slac-calibrate camera --print-board`` and ``--intrinsics``: the printed board, and the lens
measured from views of it."""

from __future__ import annotations

import time
from pathlib import Path

from calibration import PROG
from calibration.camera_config import CameraConfig
from calibration.text_table import text_table
from slac_runtime.options import UsageError
from slac_runtime.preprocessing import CameraCalibration
from slac_runtime.robot import default_calibration_path


def board_of(config: CameraConfig):
    from calibration.board import Board, default_board_kind

    across, down = config.board_squares
    return Board(config.board or default_board_kind(), across, down, config.square_mm)


def print_board(config: CameraConfig) -> int:
    from calibration.board import PRINT_DPI, write_board

    board = board_of(config)
    width_mm, height_mm = write_board(board, config.print_board)
    print(f"wrote {config.print_board}: {board.describe()}")
    print(
        f"the sheet is {width_mm:.0f} x {height_mm:.0f} mm at {PRINT_DPI:g} dpi: print it at 100 % "
        "(no 'fit to page'), glue it flat onto something stiff, measure a square and give what "
        "you measure with --square-mm"
    )
    return 0


BOARD_GONE_S = 1.0  # with --intrinsics --auto: no board in view for this long before the search


def wait_until_board_is_gone(config: CameraConfig, detector) -> None:
    from calibration.frame_grab import FrameStream

    print("take the board out of the camera's view: the crop search needs the robot alone")
    deadline = time.monotonic() + config.capture_time
    gone_since = None
    still_in_view = f"after {config.capture_time:g} s (--capture-time)"
    with FrameStream(config.camera, config.camera_timeout) as stream:
        while time.monotonic() < deadline:
            try:
                frame = stream.next(1.0)
            except EOFError:  # the end of a video file
                still_in_view = f"when {config.camera} ended"
                break
            if frame is None:
                continue
            if detector.detect(frame) is not None:
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since >= BOARD_GONE_S:
                return
    raise UsageError(
        f"the board was still in view {still_in_view}, so the crop search could not follow and "
        "nothing was written: run --intrinsics --auto again and take the board away once the "
        "lens is accepted, or --intrinsics alone"
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

    board = board_of(config)
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
    print(text_table(report(result)))
    print(f"accepted: RMS {result.rms_px:.3f} px (at most {MAX_RMS_PX:g}), every cell covered")
    return result.intrinsics


def save_lens(config: CameraConfig, robot: str, lens) -> None:
    out = config.out or default_calibration_path(robot, "camera")
    out.parent.mkdir(parents=True, exist_ok=True)
    calibration = CameraCalibration(
        output_size=config.size, source_size=lens.image_size, intrinsics=lens
    )
    if config.images is None:  # the capture settings of the camera that saw the board
        from calibration.frame_grab import with_camera_settings

        calibration = with_camera_settings(calibration, config.camera, config.camera_timeout)
    calibration.save(out)
    print(
        f"wrote {out}: the lens, and the centre square of the undistorted frame until "
        f"`{PROG} camera --auto` finds the crop there"
    )
