"""The camera publisher: each new frame of a source, preprocessed with the camera calibration
(:func:`~slac_runtime.preprocessing.preprocess_frame`) and published over ZeroMQ at a set rate
(§4 of docs/architecture.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from slac_runtime.camera.capture import (
    DEFAULT_FIRST_FRAME_TIMEOUT_S,
    DEFAULT_FRAME_TIMEOUT_S,
    CallableSource,
    CameraError,
    EndOfStream,
    FrameSource,
    video_devices,
)
from slac_runtime.frames import DEFAULT_JPEG_QUALITY, EncodingName, FramePublisher
from slac_runtime.preprocessing import CameraCalibration, preprocess_frame


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
                    f"Check `ls /dev/video*` (found: {video_devices()})"
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
