"""The camera: capture, capture settings, the ZeroMQ publisher and ``slac-camera``.

- :mod:`~slac_runtime.camera.capture`: OpenCV cameras, video files and simulators as frame
  sources that keep only the newest frame;
- :mod:`~slac_runtime.camera.settings`: the capture settings a policy depends on (resolution,
  frame rate, pixel format, exposure, white balance), set, read back and recorded;
- :mod:`~slac_runtime.camera.devices`: the cameras of this computer and the modes they deliver;
- :mod:`~slac_runtime.camera.publisher`: preprocessing and publishing at a set rate (§4);
- :mod:`~slac_runtime.camera.cli`: the ``slac-camera`` command (``python -m slac_runtime.camera``).
"""

from slac_runtime.camera.capture import (
    DEFAULT_FIRST_FRAME_TIMEOUT_S,
    DEFAULT_FRAME_TIMEOUT_S,
    CallableSource,
    CameraError,
    CapturedFrame,
    EndOfStream,
    FrameSource,
    OpenCVCamera,
    PushSource,
)
from slac_runtime.camera.cli import PublisherConfig, build_parser, main
from slac_runtime.camera.publisher import (
    CameraPublisher,
    CameraPublisherStats,
    publish_simulated_frame,
)

__all__ = [
    "DEFAULT_FIRST_FRAME_TIMEOUT_S",
    "DEFAULT_FRAME_TIMEOUT_S",
    "CallableSource",
    "CameraError",
    "CameraPublisher",
    "CameraPublisherStats",
    "CapturedFrame",
    "EndOfStream",
    "FrameSource",
    "OpenCVCamera",
    "PublisherConfig",
    "PushSource",
    "build_parser",
    "main",
    "publish_simulated_frame",
]
