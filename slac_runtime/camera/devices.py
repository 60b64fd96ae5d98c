"""This computer's cameras and the capture modes each delivers (``slac-camera --list``).

Each ``/dev/video*`` device is opened with OpenCV's V4L2 backend and asked for common modes, pixel
format first; a mode is listed when the camera reports back exactly what was asked. A device
OpenCV cannot open (a UVC camera's metadata node, or one another program holds) is listed as such.
Nothing is left changed but the mode the camera was last asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2

from slac_runtime.camera.controls import apply_settings, read_settings
from slac_runtime.camera_settings import CameraSettings

DEV_DIR = Path("/dev")
SYSFS_DIR = Path("/sys/class/video4linux")
FOURCCS = ("MJPG", "YUYV")
RESOLUTIONS = ((320, 240), (640, 480), (800, 600), (1280, 720), (1920, 1080))
FRAME_RATES = (30.0, 60.0)


@dataclass(frozen=True)
class CameraDevice:
    """One video device: its path, the name its driver gives, and the modes it delivered."""

    path: Path
    name: str
    modes: tuple[CameraSettings, ...] = ()
    opened: bool = True

    def describe(self) -> list[str]:
        """Lines: the device, then one per pixel format with its sizes and rates."""
        if not self.opened:
            return [
                f"{self.path}  {self.name}: OpenCV cannot open it (a metadata node, or held by "
                "another program)"
            ]
        lines = [f"{self.path}  {self.name}"]
        for fourcc in dict.fromkeys(m.fourcc for m in self.modes):
            sizes = [
                f"{m.width}x{m.height} at {m.fps:g} fps" for m in self.modes if m.fourcc == fourcc
            ]
            lines.append(f"  {fourcc}  {', '.join(sizes)}")
        if not self.modes:
            lines.append("  none of the common modes: it delivers only what it reports now")
        return lines


def video_device_paths(dev_dir: Path = DEV_DIR) -> list[Path]:
    """``dev_dir``'s ``video<N>`` entries in numeric order."""
    found = [p for p in dev_dir.glob("video*") if re.fullmatch(r"video\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name[len("video") :]))


def device_name(path: Path, sysfs_dir: Path = SYSFS_DIR) -> str:
    """The driver's name for a device (``HD Webcam C525``), or ``(no name)``."""
    try:
        return (sysfs_dir / path.name / "name").read_text().strip() or "(no name)"
    except OSError:
        return "(no name)"


def probe_device(path: Path, sysfs_dir: Path = SYSFS_DIR) -> CameraDevice:
    """Open ``path`` with V4L2 and find which common modes it delivers."""
    name = device_name(path, sysfs_dir)
    capture = cv2.VideoCapture(str(path), cv2.CAP_V4L2)
    try:
        if not capture.isOpened():
            return CameraDevice(path, name, opened=False)
        return CameraDevice(path, name, tuple(_working_modes(capture)))
    finally:
        capture.release()


def _working_modes(capture: cv2.VideoCapture) -> list[CameraSettings]:
    modes = []
    for fourcc in FOURCCS:
        for width, height in RESOLUTIONS:
            for fps in FRAME_RATES:
                asked = CameraSettings(width=width, height=height, fps=fps, fourcc=fourcc)
                apply_settings(capture, asked)
                if not asked.differences(read_settings(capture, live=False)):
                    modes.append(asked)
    return modes


def list_cameras(dev_dir: Path = DEV_DIR, sysfs_dir: Path = SYSFS_DIR) -> int:
    """Print each camera and its modes (or one line saying there is none); exit code 0."""
    paths = video_device_paths(dev_dir)
    if not paths:
        print(f"no cameras found: no video devices in {dev_dir} (is one plugged in?)")
        return 0
    for path in paths:
        print("\n".join(probe_device(path, sysfs_dir).describe()), flush=True)
    return 0


__all__ = ["CameraDevice", "device_name", "list_cameras", "probe_device", "video_device_paths"]
