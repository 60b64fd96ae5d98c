"""Camera capture and the camera publisher: OpenCV (or a simulator) -> preprocessing -> ZeroMQ.

- :class:`OpenCVCamera` reads a camera index (``0``), a device path (``/dev/video0``) or a video
  file (optionally looping) on its own thread and keeps only the newest frame.
- :class:`CallableSource` and :class:`PushSource` let a simulator feed rendered RGB frames into the
  same machinery (or it simply calls :meth:`FramePublisher.publish` itself).
- :class:`CameraPublisher` preprocesses each new frame with the camera calibration
  (:func:`~slac_runtime.preprocessing.preprocess_frame`) and publishes it at a set rate.
- :func:`main` is the ``slac-camera`` console script::

      slac-camera --camera 0 --camera-bind tcp://*:5555 --fps 20 --size 64 \
          --camera-calibration cam.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from slac_runtime.frames import (
    DEFAULT_CAMERA_ENDPOINT,
    DEFAULT_CAMERA_FPS,
    DEFAULT_JPEG_QUALITY,
    FIRST_FRAME_TIMEOUT_S,
    EncodingName,
    FramePublisher,
    is_endpoint,
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
)
from slac_runtime.preprocessing import CameraCalibration, preprocess_frame
from slac_runtime.status_line import StatusLine

DEFAULT_FRAME_TIMEOUT_S = 2.0  # a camera with no new frame for this long is frozen
DEFAULT_FIRST_FRAME_TIMEOUT_S = FIRST_FRAME_TIMEOUT_S  # a camera's first frame may take seconds
DEFAULT_VIDEO_FPS = 30.0  # when a video file does not say its frame rate
_STOP_JOIN_S = 2.0  # how long close() waits for a capture thread blocked inside OpenCV


class CameraError(RuntimeError):
    """A camera that cannot be opened, failed, or stopped delivering frames."""


class EndOfStream(CameraError):
    """A video file (not looping) has no more frames."""


@dataclass(frozen=True)
class CapturedFrame:
    """One frame as a source delivered it."""

    image: np.ndarray = field(repr=False)  # uint8[H, W, 3]: BGR from OpenCV, RGB from a simulator
    timestamp: float  # capture time, seconds since the Unix epoch (time.time())
    index: int  # 0, 1, 2 ... in capture order


class FrameSource(Protocol):
    """Anything :class:`CameraPublisher` can publish from."""

    name: str
    bgr: bool  # True: images are in OpenCV's BGR order

    def read(self, timeout_s: float) -> CapturedFrame | None:
        """The newest frame newer than the last one returned, waiting up to ``timeout_s``;
        ``None`` if none came in time. Raises :class:`CameraError` when the source failed and
        :class:`EndOfStream` when a video has ended."""
        ...

    def close(self) -> None: ...


# ---- the newest-frame slot shared by the capture thread and readers ----------------------------


class _NewestFrame:
    """A thread-safe slot holding the newest frame, with an error or end-of-stream flag."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._frame: CapturedFrame | None = None
        self._count = 0  # frames put so far
        self._last_read = 0  # value of _count at the last read
        self._error: BaseException | None = None
        self._last_put_monotonic: float | None = None

    def put(self, image: np.ndarray, timestamp: float) -> None:
        with self._condition:
            self._frame = CapturedFrame(image=image, timestamp=timestamp, index=self._count)
            self._count += 1
            self._last_put_monotonic = time.monotonic()
            self._condition.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._condition:
            self._error = error
            self._condition.notify_all()

    def read(self, timeout_s: float) -> CapturedFrame | None:
        with self._condition:
            self._condition.wait_for(
                lambda: self._count > self._last_read or self._error is not None,
                timeout=max(0.0, timeout_s),
            )
            if self._count > self._last_read:
                self._last_read = self._count
                return self._frame
            if self._error is not None:
                raise self._error
            return None

    @property
    def count(self) -> int:
        return self._count

    @property
    def since_last_put_s(self) -> float | None:
        last = self._last_put_monotonic
        return None if last is None else time.monotonic() - last


# ---- sources ------------------------------------------------------------------------------------


def _video_devices() -> str:
    devices = sorted(glob.glob("/dev/video*"))
    return ", ".join(devices) if devices else "none"


def _parse_source(source: int | str) -> tuple[str, int | str]:
    """``("index", 0)``, ``("device", "/dev/video0")``,
    ``("stream", "rtsp://...")`` or ``("file", path)``."""
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return "index", int(source)
    if not isinstance(source, str) or not source:
        raise ValueError(
            f"camera source must be an index, a /dev/video* path or a video file, got {source!r}"
        )
    if source.isdigit():
        return "index", int(source)
    if is_endpoint(source):
        raise ValueError(
            f"camera source {source!r} is the endpoint of a frame publisher, not a camera: "
            "subscribe to it (slac-run --camera ENDPOINT) instead of capturing it"
        )
    if source.startswith("/dev/"):
        return "device", source
    if "://" in source:
        return "stream", source
    return "file", source


class OpenCVCamera:
    """A camera (index or ``/dev/videoN``) or a video file, read on a background thread.

    Only the newest frame is kept; :meth:`read` returns it once. A video file is played at its own
    frame rate (like a camera would deliver it), and from the start again when ``loop=True``.

    ``frame_timeout_s``: with no new frame for this long the camera counts as frozen
    (:attr:`is_frozen`); a live camera whose reads keep failing for this long fails with a
    :class:`CameraError`. ``width``/``height``/``fps`` request a capture mode from a live camera.
    ``capture`` takes an already-open ``cv2.VideoCapture`` (or any object with ``read()`` and
    ``release()``) instead of opening ``source``.
    """

    def __init__(
        self,
        source: int | str,
        *,
        loop: bool = False,
        frame_timeout_s: float = DEFAULT_FRAME_TIMEOUT_S,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        capture: object | None = None,
    ) -> None:
        if not frame_timeout_s > 0:
            raise ValueError(f"frame_timeout_s must be positive, got {frame_timeout_s}")
        self.kind, self.source = _parse_source(source)
        self.name = (
            f"camera {self.source}" if self.kind in ("index", "device") else f"video {self.source}"
        )
        self.bgr = True
        self.loop = loop
        self.frame_timeout_s = frame_timeout_s
        self._capture = capture if capture is not None else self._open(width, height, fps)
        self._file_period_s: float | None = None
        if self.kind == "file":
            file_fps = self._capture.get(cv2.CAP_PROP_FPS) if hasattr(self._capture, "get") else 0.0
            self._file_period_s = 1.0 / (
                file_fps if file_fps and file_fps > 0 else DEFAULT_VIDEO_FPS
            )
        self._slot = _NewestFrame()
        self._stop = threading.Event()
        self._opened_monotonic = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"slac-{self.name}", daemon=True)
        self._thread.start()

    def _open(self, width: int | None, height: int | None, fps: float | None) -> cv2.VideoCapture:
        check = (
            f"Check `ls /dev/video*` (found: {_video_devices()}) that the camera is plugged in, "
            "that your user may read it (group 'video') and that no other program holds it."
        )
        if self.kind == "file":
            if not os.path.isfile(self.source):
                what = "is a directory" if os.path.isdir(self.source) else "does not exist"
                raise CameraError(
                    f"video file {self.source} {what} (for a camera give an index like 0 "
                    "or a device like /dev/video0)"
                )
            capture = cv2.VideoCapture(self.source)
            if not capture.isOpened():
                raise CameraError(
                    f"video file {self.source} could not be opened by OpenCV (format or codec?)"
                )
            return capture
        if self.kind == "device" and not os.path.exists(self.source):
            raise CameraError(
                f"camera {self.source} could not be opened: the device does not exist. {check}"
            )
        if self.kind == "device":
            capture = cv2.VideoCapture(self.source, cv2.CAP_V4L2)
        else:
            capture = cv2.VideoCapture(self.source)
        if not capture.isOpened():
            capture.release()
            if self.kind == "stream":
                raise CameraError(f"video stream {self.source} could not be opened by OpenCV")
            raise CameraError(
                f"camera {self.source} could not be opened: no video device answered. {check}"
            )
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, width),
            (cv2.CAP_PROP_FRAME_HEIGHT, height),
            (cv2.CAP_PROP_FPS, fps),
        ):
            if value is not None:
                capture.set(prop, float(value))
        return capture

    # -- capture thread --

    def _run(self) -> None:
        try:
            next_due = time.monotonic()
            failing_since: float | None = None
            while not self._stop.is_set():
                if self._file_period_s is not None:  # play a file at its frame rate
                    delay = next_due - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    next_due = max(
                        next_due + self._file_period_s, time.monotonic() - self._file_period_s
                    )
                ok, image = self._capture.read()
                if self._stop.is_set():
                    break
                if ok and image is not None:
                    failing_since = None
                    self._slot.put(image, time.time())
                    continue
                if self.kind == "file":
                    if self.loop and self._slot.count > 0 and self._rewind():
                        continue
                    self._slot.fail(EndOfStream(f"{self.name} has no more frames"))
                    return
                # A live camera whose read failed: retry until frame_timeout_s, then give up.
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since > self.frame_timeout_s:
                    raise CameraError(
                        f"{self.name} stopped delivering frames (reads failing for "
                        f"{now - failing_since:.1f} s): unplugged? Check `ls /dev/video*` "
                        f"(found: {_video_devices()})"
                    )
                self._stop.wait(0.01)
        except BaseException as e:  # handed to the reader, never swallowed
            self._slot.fail(
                e if isinstance(e, CameraError) else CameraError(f"{self.name} failed: {e!r}")
            )

    def _rewind(self) -> bool:
        if hasattr(self._capture, "set") and self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            return True
        # Some backends cannot seek: reopen the file.
        self._capture.release()
        self._capture = cv2.VideoCapture(self.source)
        return self._capture.isOpened()

    # -- reading --

    def read(self, timeout_s: float | None = None) -> CapturedFrame | None:
        """The newest frame newer than the last one returned, waiting up to ``timeout_s``
        (default ``frame_timeout_s``); ``None`` if none came. Raises :class:`CameraError` when
        the capture failed and :class:`EndOfStream` at the end of a non-looping video."""
        return self._slot.read(self.frame_timeout_s if timeout_s is None else timeout_s)

    @property
    def frames_captured(self) -> int:
        return self._slot.count

    @property
    def since_last_frame_s(self) -> float:
        """Seconds since the capture thread last delivered a frame (or since opening)."""
        since = self._slot.since_last_put_s
        return time.monotonic() - self._opened_monotonic if since is None else since

    @property
    def is_frozen(self) -> bool:
        """True when no frame arrived for ``frame_timeout_s`` (after the first frame)."""
        return self._slot.count > 0 and self.since_last_frame_s > self.frame_timeout_s

    def close(self) -> None:
        """Stop the capture thread and release the camera."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=_STOP_JOIN_S)
        if not self._thread.is_alive():
            self._capture.release()
        # else: the thread is stuck inside the driver; releasing under it could crash the
        # process, so leave both to process exit (the thread is a daemon).

    def __enter__(self) -> OpenCVCamera:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PushSource:
    """A source that others push frames into (e.g. a simulator's render loop, from any thread).

    ``put(image)`` stores the newest frame; :class:`CameraPublisher` reads it like a camera.
    """

    def __init__(self, name: str = "simulator", *, bgr: bool = False) -> None:
        self.name = name
        self.bgr = bgr
        self._slot = _NewestFrame()

    def put(self, image: np.ndarray, timestamp: float | None = None) -> None:
        self._slot.put(np.asarray(image), time.time() if timestamp is None else timestamp)

    def read(self, timeout_s: float) -> CapturedFrame | None:
        return self._slot.read(timeout_s)

    def close(self) -> None:
        pass


class CallableSource:
    """A source that calls ``render()`` for each frame (e.g. a thread-safe simulator renderer).

    Rendering happens when a frame is read, so the publisher's rate is the render rate.
    """

    def __init__(
        self, render: Callable[[], np.ndarray], name: str = "simulator", *, bgr: bool = False
    ) -> None:
        self.name = name
        self.bgr = bgr
        self._render = render
        self._index = 0

    def read(self, timeout_s: float) -> CapturedFrame | None:
        timestamp = time.time()
        image = np.asarray(self._render())
        frame = CapturedFrame(image=image, timestamp=timestamp, index=self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        pass


# ---- publisher -------------------------------------------------------------------------------


@dataclass
class CameraPublisherStats:
    """What a camera publisher did so far; ``*_ms`` are moving averages."""

    published: int = 0  # frames sent
    skipped: int = 0  # source frames not sent because they came faster than fps
    source_frames: int = 0  # frames read from the source
    fps: float = 0.0  # published frames per second, over the last status period
    capture_to_publish_ms: float = 0.0  # capture timestamp -> sent
    preprocess_ms: float = 0.0


class CameraPublisher:
    """Takes each new frame from ``source``, preprocesses it and publishes it, at most ``fps``
    times a second.

    Frames are sent as soon as they arrive (no added latency) unless they come faster than
    ``fps``, in which case some are skipped to keep the rate. A source with no new frame for
    ``frame_timeout_s`` (``first_frame_timeout_s`` for the first one) raises :class:`CameraError`.
    Run it in the foreground with :meth:`run`, or in a background thread with :meth:`start` /
    :meth:`stop` (then check :attr:`error`).
    """

    def __init__(
        self,
        source: FrameSource,
        publisher: FramePublisher,
        *,
        calibration: CameraCalibration | None = None,
        fps: float = 20.0,
        encoding: EncodingName = "raw",
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        frame_timeout_s: float = DEFAULT_FRAME_TIMEOUT_S,
        first_frame_timeout_s: float = DEFAULT_FIRST_FRAME_TIMEOUT_S,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not frame_timeout_s > 0:
            raise ValueError(f"frame_timeout_s must be positive, got {frame_timeout_s}")
        self.source = source
        self.publisher = publisher
        self.calibration = calibration or CameraCalibration()
        self.period_s = 1.0 / fps
        self.encoding = encoding
        self.jpeg_quality = jpeg_quality
        self.frame_timeout_s = frame_timeout_s
        self.first_frame_timeout_s = max(first_frame_timeout_s, frame_timeout_s)
        self.stats = CameraPublisherStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_due: float | None = (
            None  # capture time (epoch s) from which the next frame is due
        )

    def publish_next(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for a new source frame; publish it when due.

        Returns its sequence number, or ``None`` (no new frame, or skipped to keep the rate).
        """
        captured = self.source.read(timeout_s)
        if captured is None:
            return None
        self.stats.source_frames += 1
        if isinstance(self.source, CallableSource):
            due = True  # on-demand sources are paced by the caller
        else:
            due = (
                self._next_due is None
                or captured.timestamp >= self._next_due - 0.25 * self.period_s
            )
        if not due:
            self.stats.skipped += 1
            return None
        start = time.perf_counter()
        image = preprocess_frame(captured.image, self.calibration, bgr=self.source.bgr)
        preprocess_ms = (time.perf_counter() - start) * 1000.0
        seq = self.publisher.publish(
            image,
            timestamp=captured.timestamp,
            encoding=self.encoding,
            jpeg_quality=self.jpeg_quality,
        )
        sent = time.time()
        # Keep the schedule on a fixed grid, but never let it fall more than one period behind.
        base = captured.timestamp if self._next_due is None else self._next_due
        self._next_due = max(base + self.period_s, captured.timestamp)
        stats = self.stats
        stats.published += 1
        weight = 1.0 if stats.published == 1 else 0.1
        stats.preprocess_ms += weight * (preprocess_ms - stats.preprocess_ms)
        stats.capture_to_publish_ms += weight * (
            (sent - captured.timestamp) * 1000.0 - stats.capture_to_publish_ms
        )
        return seq

    def run(
        self,
        *,
        duration_s: float | None = None,
        max_frames: int | None = None,
        on_status: Callable[[CameraPublisherStats], None] | None = None,
        status_period_s: float = 1.0,
    ) -> CameraPublisherStats:
        """Publish until :meth:`stop`, ``duration_s``, ``max_frames``, or the end of a video.

        Raises :class:`CameraError` when the source fails or freezes.
        """
        start = time.monotonic()
        last_frame = start
        last_status, last_count = start, self.stats.published
        next_tick = start
        frames_seen = self.stats.source_frames
        on_demand = isinstance(self.source, CallableSource)
        while not self._stop.is_set():
            now = time.monotonic()
            if duration_s is not None and now - start >= duration_s:
                break
            if max_frames is not None and self.stats.published >= max_frames:
                break
            if on_demand:  # render at the publishing rate
                next_tick += self.period_s
                next_tick = max(next_tick, now - self.period_s)
                if next_tick > now:
                    self._stop.wait(next_tick - now)
            try:
                self.publish_next(timeout_s=min(0.1, self.period_s))
            except EndOfStream:
                break
            now = time.monotonic()
            if self.stats.source_frames != frames_seen:
                frames_seen = self.stats.source_frames
                last_frame = now
            limit = self.frame_timeout_s if self.stats.source_frames else self.first_frame_timeout_s
            if now - last_frame > limit:
                what = "new frame" if self.stats.source_frames else "frame at all"
                raise CameraError(
                    f"{self.source.name} delivered no {what} for {now - last_frame:.1f} s "
                    f"(limit {limit:g} s): frozen, unplugged or held by another program? "
                    f"Check `ls /dev/video*` (found: {_video_devices()})"
                )
            if on_status is not None and now - last_status >= status_period_s:
                self.stats.fps = (self.stats.published - last_count) / (now - last_status)
                last_status, last_count = now, self.stats.published
                on_status(self.stats)
        return self.stats

    def start(self) -> None:
        """Run :meth:`run` on a background thread (errors land in :attr:`error`).

        ZeroMQ sockets are not thread-safe: until :meth:`stop`, only that thread may use
        ``publisher``.
        """
        if self._thread is not None:
            raise RuntimeError("CameraPublisher.start() called twice")

        def target() -> None:
            try:
                self.run()
            except BaseException as e:
                self.error = e

        self._thread = threading.Thread(target=target, name="slac-camera-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop :meth:`run` (from another thread) and wait for the background thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def publish_simulated_frame(
    publisher: FramePublisher,
    image_rgb: np.ndarray,
    *,
    calibration: CameraCalibration | None = None,
    timestamp: float | None = None,
    encoding: EncodingName = "raw",
) -> int:
    """Publish one rendered RGB frame from a simulator exactly as a camera frame would be.

    The render is passed through :func:`preprocess_frame` (a no-op beyond a copy when it is
    already ``output_size`` square and the calibration is the identity), so a simulator may
    render at any size. Returns the sequence number.
    """
    image = preprocess_frame(image_rgb, calibration, bgr=False)
    return publisher.publish(image, timestamp=timestamp, encoding=encoding)


# ---- slac-camera -------------------------------------------------------------------------------


def _parse_resolution(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"resolution must look like 640x480, got {text!r}") from e
    return width, height


@dataclass
class PublisherConfig:
    """``slac-camera``'s options."""

    camera: str = option(
        "",
        "camera index (0), device (/dev/video0), video file or stream (rtsp://...)",
        required=True,
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
    resolution: tuple[int, int] | None = option(
        None,
        "capture mode to ask a live camera for, e.g. 640x480",
        parse=_parse_resolution,
        metavar="WxH",
    )
    frame_timeout: float = option(
        DEFAULT_FRAME_TIMEOUT_S,
        "seconds without a new frame before the camera counts as frozen",
        parse=positive_float,
    )
    duration: float | None = option(None, "stop after this many seconds", parse=positive_float)
    quiet: bool = option(False, "no status line")

    def __post_init__(self) -> None:
        check_options(self)


def build_parser() -> OneLineParser:
    return command_parser(
        "slac-camera",
        PublisherConfig,
        "Capture a camera (or a video file), preprocess each frame with the camera calibration and "
        "publish it over ZeroMQ in the SLAC frame wire format.",
        exit_codes={
            0: "stopped (--duration, end of the video, Ctrl-C or SIGTERM)",
            1: "the camera failed while publishing",
            2: "refused (options, calibration file, a camera or video that cannot be opened, an "
            "endpoint that cannot be bound)",
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

    width, height = args.resolution if args.resolution else (None, None)
    publisher: CameraPublisher | None = None
    status: _StatusLine | None = None

    def request_stop(signum: int, frame: object) -> None:
        # Ctrl-C and SIGTERM stop the publishing loop at its next check (within 0.1 s), so the
        # camera, the capture thread and the socket close in order; an exception raised at an
        # arbitrary point could leave a lock held. A second signal, or one before publishing
        # starts, interrupts at once.
        if publisher is None or publisher.stop_requested:
            raise KeyboardInterrupt
        publisher.stop(timeout_s=0.0)

    previous = {}  # the handlers to put back: a caller's own, when main() is called in-process
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with (
            _opened(
                lambda: OpenCVCamera(
                    args.camera,
                    loop=args.loop,
                    frame_timeout_s=args.frame_timeout,
                    width=width,
                    height=height,
                )
            ) as camera,
            _opened(lambda: FramePublisher(args.camera_bind)) as frames,
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
            print(
                f"slac-camera: publishing {camera.name} as "
                f"{calibration.output_size}x{calibration.output_size} "
                f"{'JPEG' if args.jpeg else 'raw'} RGB frames at up to {args.fps:g} fps on "
                f"{frames.endpoint} (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            )
            status = _StatusLine(frames.endpoint, camera)
            publisher.run(duration_s=args.duration, on_status=None if args.quiet else status.show)
    except KeyboardInterrupt:
        pass
    except (CameraError, OSError, ValueError) as e:
        if status is not None:
            status.line.end()
        raise CommandError(str(e), ExitCode.FAULT) from e
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    published = publisher.stats.published if publisher is not None else 0
    _say(status, f"slac-camera: stopped after {published} frames")
    return ExitCode.OK


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


if __name__ == "__main__":
    raise SystemExit(main())
