"""One full-size RGB frame from the camera being calibrated.

The source is what ``slac-calibrate camera --camera SRC`` names: an OpenCV camera index (``0``), a
device (``/dev/video0``) or a video file, or the ZeroMQ endpoint (``tcp://…``, ``ipc://…``) of a
publisher of *full-size* frames (the virtual D'Claw's ``--wide-view`` camera, for instance). A
``slac-camera`` stream is already cropped to 64x64 by the old calibration, so it is no source to
calibrate from.
"""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from slac_runtime.camera_settings import CameraSettings
from slac_runtime.frames import is_endpoint


def grab_frame(source: str, timeout_s: float = 10.0, warmup_s: float = 1.0) -> np.ndarray:
    """The newest frame of ``source`` as ``uint8[H, W, 3]`` RGB.

    ``warmup_s``: for a live camera, frames are read (and dropped) this long first, so that
    exposure and white balance have settled. Raises RuntimeError naming the source when no frame
    comes within ``timeout_s``.
    """
    if is_endpoint(source):
        return _grab_from_endpoint(source, timeout_s)
    return _grab_from_opencv(source, timeout_s, warmup_s)


def _grab_from_endpoint(endpoint: str, timeout_s: float) -> np.ndarray:
    from slac_runtime.frames import FrameSubscriber

    with FrameSubscriber(endpoint) as subscriber:
        frame = subscriber.latest(timeout_s=timeout_s)
    if frame is None:
        raise RuntimeError(
            f"no frame from {endpoint} within {timeout_s:g} s: is the camera "
            "publisher running there?"
        )
    image = np.array(frame.image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise RuntimeError(
            f"frames from {endpoint} have shape {image.shape}, expected [H, W, 3] RGB"
        )
    return image


def _grab_from_opencv(source: str, timeout_s: float, warmup_s: float) -> np.ndarray:
    from slac_runtime.camera.capture import CameraError, OpenCVCamera

    try:
        camera = OpenCVCamera(source, frame_timeout_s=timeout_s)
    except CameraError as e:
        raise RuntimeError(str(e)) from e
    try:
        captured = camera.read(timeout_s)
        if captured is None:
            raise RuntimeError(f"{camera.name} delivered no frame within {timeout_s:g} s")
        if camera.kind != "file":
            deadline = time.monotonic() + warmup_s
            while time.monotonic() < deadline:
                newer = camera.read(max(0.0, deadline - time.monotonic()))
                captured = newer if newer is not None else captured
    except CameraError as e:
        raise RuntimeError(str(e)) from e
    finally:
        camera.close()
    image = captured.image
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)


def camera_settings(source: str, timeout_s: float = 10.0) -> CameraSettings | None:
    """The capture settings ``source`` reports (a publisher: those its source message carries),
    for the calibration file; None when it reports none."""
    if is_endpoint(source):
        from slac_runtime.frames import FrameSubscriber

        with FrameSubscriber(source) as subscriber:
            subscriber.latest(timeout_s=timeout_s)
            return CameraSettings.from_source(subscriber.source)
    from slac_runtime.camera.capture import CameraError, OpenCVCamera

    try:
        with OpenCVCamera(source, frame_timeout_s=timeout_s) as camera:
            return None if camera.settings.is_empty else camera.settings
    except CameraError as e:
        raise RuntimeError(str(e)) from e


class FrameStream:
    """The new frames of a live source one after another, as ``uint8[H, W, 3]`` RGB: an OpenCV
    camera, device, video file or stream, or the ZeroMQ endpoint of a publisher of full-size frames.

    :meth:`next` waits for a frame newer than the last one returned; at the end of a video file it
    raises EOFError.
    """

    def __init__(self, source: str, timeout_s: float = 10.0):
        from slac_runtime.camera.capture import CameraError, OpenCVCamera
        from slac_runtime.frames import FrameSubscriber

        self.source = source
        self._subscriber: FrameSubscriber | None = None
        self._camera: OpenCVCamera | None = None
        if is_endpoint(source):
            self._subscriber = FrameSubscriber(source)
        else:
            try:
                self._camera = OpenCVCamera(source, frame_timeout_s=timeout_s)
            except CameraError as e:
                raise RuntimeError(str(e)) from e

    def next(self, timeout_s: float) -> np.ndarray | None:
        """The next new frame, or None if none came within ``timeout_s``."""
        from slac_runtime.camera.capture import CameraError, EndOfStream

        if self._subscriber is not None:
            frame = self._subscriber.latest(timeout_s=timeout_s)
            if frame is None:
                return None
            image = np.array(frame.image)
            if image.ndim != 3 or image.shape[2] != 3:
                raise RuntimeError(
                    f"frames from {self.source} have shape {image.shape}, expected [H, W, 3] RGB"
                )
            return image
        try:
            captured = self._camera.read(timeout_s)
        except EndOfStream as e:
            raise EOFError(str(e)) from e
        except CameraError as e:
            raise RuntimeError(str(e)) from e
        if captured is None:
            return None
        image = captured.image
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._subscriber is not None:
            self._subscriber.close()
        if self._camera is not None:
            self._camera.close()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def with_camera_settings(calibration, source: str, timeout_s: float = 10.0):
    """``calibration`` (a :class:`~slac_runtime.preprocessing.CameraCalibration`) with the
    capture settings camera ``source`` reports, said in one line when it reports any."""
    settings = camera_settings(source, timeout_s)
    if settings is not None:
        print(f"camera settings recorded: {settings.describe()}")
    return dataclasses.replace(calibration, camera_settings=settings)


__all__ = ["FrameStream", "camera_settings", "grab_frame", "is_endpoint", "with_camera_settings"]
