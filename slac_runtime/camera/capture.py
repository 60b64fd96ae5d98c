"""Camera capture: frame sources that keep only the newest frame.

- :class:`OpenCVCamera` reads a camera index (``0``), a device path (``/dev/video0``) or a video
  file (optionally looping) on its own thread, after setting and checking its capture settings
  (:mod:`slac_runtime.camera.settings`).
- :class:`CallableSource` and :class:`PushSource` let a simulator feed rendered RGB frames into the
  same machinery (:class:`~slac_runtime.camera.publisher.CameraPublisher` publishes them).
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from slac_runtime.camera.controls import apply_settings, read_settings
from slac_runtime.camera_settings import CameraSettings
from slac_runtime.frames import FIRST_FRAME_TIMEOUT_S, is_endpoint

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


def video_devices() -> str:
    """This computer's video devices, for messages: ``/dev/video0, /dev/video1`` or ``none``."""
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


def is_live_source(source: int | str) -> bool:
    """Whether ``source`` names a camera (an index or a device) rather than a file or stream."""
    try:
        return _parse_source(source)[0] in ("index", "device")
    except ValueError:
        return False


class OpenCVCamera:
    """A camera (index or ``/dev/videoN``) or a video file, read on a background thread.

    Only the newest frame is kept; :meth:`read` returns it once. A video file is played at its own
    frame rate (like a camera would deliver it), and from the start again when ``loop=True``.

    ``frame_timeout_s``: with no new frame for this long the camera counts as frozen
    (:attr:`is_frozen`); a live camera whose reads keep failing for this long fails with a
    :class:`CameraError`. ``settings``: the capture settings to ask for (resolution, frame rate,
    pixel format, exposure, white balance); what the camera or file then reports is
    :attr:`settings`, and a camera that does not deliver what was asked is refused with a
    :class:`CameraError` that says what differs. ``capture`` takes an already-open
    ``cv2.VideoCapture`` (or any object with ``read()`` and ``release()``) instead of opening
    ``source``.
    """

    def __init__(
        self,
        source: int | str,
        *,
        loop: bool = False,
        frame_timeout_s: float = DEFAULT_FRAME_TIMEOUT_S,
        settings: CameraSettings | None = None,
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
        self._capture = capture if capture is not None else self._open()
        self.settings = self._configure(settings or CameraSettings())
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

    @property
    def is_live(self) -> bool:
        """A camera (index or device), whose exposure and white balance can be set."""
        return self.kind in ("index", "device")

    def _configure(self, asked: CameraSettings) -> CameraSettings:
        """Ask for ``asked`` (a live camera), read back what is reported, refuse a difference."""
        if self.is_live and not asked.is_empty:
            apply_settings(self._capture, asked)
        reported = read_settings(self._capture, live=self.is_live)
        differences = asked.differences(reported)
        if differences:
            self._capture.release()
            raise CameraError(
                f"{self.name} does not deliver the capture settings asked: "
                f"{'; '.join(differences)} (`slac-camera --list` shows each camera's modes)"
            )
        return reported

    def _open(self) -> cv2.VideoCapture:
        check = (
            f"Check `ls /dev/video*` (found: {video_devices()}) that the camera is plugged in, "
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
                        f"(found: {video_devices()})"
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
