"""``slac-camera``: capture a camera (or a video file), preprocess each frame with the camera
calibration and publish it over ZeroMQ::

    slac-camera --camera 0 --camera-bind tcp://*:5555 --fps 20 --size 64 \
        --camera-calibration cam.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slac_runtime.camera.capture import (
    DEFAULT_FRAME_TIMEOUT_S,
    CameraError,
    OpenCVCamera,
    is_live_source,
)
from slac_runtime.camera.devices import list_cameras
from slac_runtime.camera.publisher import CameraPublisher, CameraPublisherStats
from slac_runtime.camera.publishers import list_publishers, parse_endpoints
from slac_runtime.camera.settings_options import (
    asked_settings,
    auto_warning,
    camera_fps_option,
    exposure_option,
    fourcc_option,
    resolution_option,
    white_balance_option,
)
from slac_runtime.camera_settings import CameraSettings
from slac_runtime.frames import (
    DEFAULT_CAMERA_ENDPOINT,
    DEFAULT_CAMERA_FPS,
    DEFAULT_JPEG_QUALITY,
    FramePublisher,
)
from slac_runtime.options import (
    Check,
    CommandError,
    ExitCode,
    OneLineParser,
    UsageError,
    check_options,
    command_parser,
    int_in,
    option,
    parse_config,
    positive_float,
    run_command,
    say,
)
from slac_runtime.preprocessing import CameraCalibration
from slac_runtime.status_line import StatusLine
from slac_runtime.stop_request import StopRequest


@dataclass
class PublisherConfig:
    """``slac-camera``'s options."""

    camera: str = option(
        "",
        "camera index (0), device (/dev/video0), video file or stream (rtsp://...) (required "
        "unless --list)",
    )
    list_cameras: bool = option(
        False,
        "list this computer's cameras and the capture modes each delivers, and the frame "
        "publishers at --publishers (what each camera is, its frame size and rate), and exit",
        flag="list",
    )
    publishers: tuple[str, ...] = option(
        (DEFAULT_CAMERA_ENDPOINT,),
        "ZeroMQ endpoints --list listens at for frame publishers, comma-separated",
        parse=parse_endpoints,
        metavar="ENDPOINTS",
    )
    camera_bind: str = option(
        DEFAULT_CAMERA_ENDPOINT,
        "ZeroMQ endpoint to publish on (tcp://*:5555 serves other computers too)",
        aliases=["bind"],
    )
    fps: float = option(
        DEFAULT_CAMERA_FPS,
        "frames published per second, at most",
        parse=Check(float, lambda v: v > 0, "a positive number of frames per second"),
    )
    size: int | None = option(
        None,
        "output image side in pixels (default: the calibration's, 64)",
        parse=int_in(8, 1024, "a number of pixels"),
    )
    camera_calibration: Path | None = option(
        None, "camera calibration JSON file (crop, rotation, flips)", aliases=["calibration"]
    )
    jpeg: bool = option(False, "send JPEG instead of raw pixels (for slow links)")
    jpeg_quality: int = option(DEFAULT_JPEG_QUALITY, "JPEG quality", parse=int_in(1, 100))
    loop: bool = option(False, "play a video file again from the start when it ends")
    resolution: tuple[int, int] | None = resolution_option()
    camera_fps: float | None = camera_fps_option()
    fourcc: str | None = fourcc_option()
    exposure: float | str | None = exposure_option()
    white_balance: float | str | None = white_balance_option()
    frame_timeout: float = option(
        DEFAULT_FRAME_TIMEOUT_S,
        "seconds without a new frame before the camera counts as frozen",
        parse=positive_float,
    )
    duration: float | None = option(None, "stop after this many seconds", parse=positive_float)
    quiet: bool = option(False, "no status line")

    def __post_init__(self) -> None:
        check_options(self)
        if not self.camera and not self.list_cameras:
            raise UsageError(
                "--camera is required: a camera index (0), device, video file or stream "
                "(--list shows the cameras)"
            )


def build_parser() -> OneLineParser:
    return command_parser(
        "slac-camera",
        PublisherConfig,
        "Capture a camera (or a video file), preprocess each frame with the camera calibration and "
        "publish it over ZeroMQ in the SLAC frame wire format, with the capture settings the "
        "camera reports. The settings asked (--resolution, --camera-fps, --fourcc, --exposure, "
        "--white-balance; for a camera, by default those its calibration file records) are read "
        "back, and a camera that does not deliver them is refused.",
        exit_codes={
            0: "stopped (--duration, end of the video, Ctrl-C or SIGTERM); --list: listed",
            1: "the camera failed while publishing",
            2: "refused (options, calibration file, a camera or video that cannot be opened or "
            "does not deliver the settings asked, an endpoint that cannot be bound)",
        },
    )


class _StatusLine:
    """The publisher's statistics as a status line on stderr (:class:`StatusLine`)."""

    def __init__(self, endpoint: str, camera: OpenCVCamera) -> None:
        self.endpoint = endpoint
        self.camera = camera
        self.line = StatusLine()

    def show(self, stats: CameraPublisherStats) -> None:
        self.line.show(
            f"slac-camera: {stats.published} frames  {stats.fps:5.1f} fps  "
            f"capture->sent {stats.capture_to_publish_ms:5.1f} ms  "
            f"preprocess {stats.preprocess_ms:4.2f} ms  skipped {stats.skipped}  "
            f"from {self.camera.name} -> {self.endpoint}"
        )

    def message(self, text: str) -> None:
        self.line.message(text)


def main(argv: list[str] | None = None) -> int:
    return run_command("slac-camera", _main, argv)


def _main(argv: list[str]) -> int:
    args = parse_config(build_parser(), PublisherConfig, argv)
    if args.list_cameras:
        list_cameras()
        list_publishers(args.publishers)
        return ExitCode.OK
    calibration = _calibration(args)
    asked = asked_settings(args)
    if is_live_source(args.camera) and calibration.camera_settings is not None:
        asked = asked.over(calibration.camera_settings)
    publisher: CameraPublisher | None = None
    status: _StatusLine | None = None

    def stop_publishing() -> None:
        # The publishing loop stops at its next check (within 0.1 s), so the camera, the capture
        # thread and the socket close in order; an exception raised at an arbitrary point could
        # leave a lock held. Before publishing starts there is nothing to finish.
        if publisher is None:
            raise KeyboardInterrupt
        publisher.stop(timeout_s=0.0)

    try:
        with (
            StopRequest(on_request=stop_publishing).installed(),
            _opened(lambda: _open_camera(args, asked, calibration)) as camera,
            _opened(lambda: FramePublisher(args.camera_bind, source=_source(camera))) as frames,
        ):
            publisher = CameraPublisher(
                camera,
                frames,
                calibration=calibration,
                fps=args.fps,
                encoding="jpeg" if args.jpeg else "raw",
                jpeg_quality=args.jpeg_quality,
                frame_timeout_s=args.frame_timeout,
            )
            _announce(args, camera, calibration, frames.endpoint)
            status = _StatusLine(frames.endpoint, camera)
            publisher.run(duration_s=args.duration, on_status=None if args.quiet else status.show)
    except KeyboardInterrupt:
        pass
    except (CameraError, OSError, ValueError) as e:
        if status is not None:
            status.line.end()
        raise CommandError(str(e), ExitCode.FAULT) from e
    published = publisher.stats.published if publisher is not None else 0
    _say(status, f"slac-camera: stopped after {published} frames")
    return ExitCode.OK


def _calibration(args: PublisherConfig) -> CameraCalibration:
    try:
        calibration = (
            CameraCalibration.load(args.camera_calibration)
            if args.camera_calibration
            else CameraCalibration()
        )
        if args.size is not None:
            calibration = dataclasses.replace(calibration, output_size=args.size)
    except (OSError, ValueError) as e:
        raise UsageError(f"--camera-calibration {args.camera_calibration}: {e}") from e
    return calibration


def _open_camera(
    args: PublisherConfig, asked: CameraSettings, calibration: CameraCalibration
) -> OpenCVCamera:
    """The camera, refused (ValueError) when the calibration does not fit the frame size it
    reports: made for another size, or a crop box outside the frame."""
    camera = OpenCVCamera(
        args.camera, loop=args.loop, frame_timeout_s=args.frame_timeout, settings=asked
    )
    width, height = camera.settings.width, camera.settings.height
    if width is not None and height is not None:  # else the first frame is checked as it comes
        try:
            calibration.check_frame_size(width, height)
        except ValueError as e:
            camera.close()
            raise ValueError(f"--camera-calibration {args.camera_calibration}: {e}") from e
    return camera


def _source(camera: OpenCVCamera) -> dict[str, str]:
    """The source message: which camera, and the settings it reports."""
    return {"source": camera.name, **camera.settings.to_source()}


def _announce(
    args: PublisherConfig, camera: OpenCVCamera, calibration: CameraCalibration, endpoint: str
) -> None:
    """What is published, the camera's settings, and a warning for automatic ones left on."""
    side = calibration.output_size
    print(
        f"slac-camera: publishing {camera.name} as {side}x{side} "
        f"{'JPEG' if args.jpeg else 'raw'} RGB frames at up to {args.fps:g} fps on "
        f"{endpoint} (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    print(
        f"slac-camera: {camera.name} delivers {camera.settings.describe()}",
        file=sys.stderr,
        flush=True,
    )
    warning = auto_warning(camera.settings, camera.name) if camera.is_live else None
    if warning:
        say("slac-camera", "warning", warning)


@contextlib.contextmanager
def _opened(make: Callable[[], Any]) -> Iterator[Any]:
    """The camera or the publisher ``make`` opens, in a ``with`` block; a failure to open it is a
    refusal (exit 2): nothing was published."""
    try:
        thing = make()
    except (CameraError, OSError, ValueError) as e:
        raise UsageError(str(e)) from e
    with thing:
        yield thing


def _say(status: _StatusLine | None, text: str) -> None:
    if status is not None:
        status.message(text)
    else:
        print(text, file=sys.stderr, flush=True)
