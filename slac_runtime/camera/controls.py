"""A ``cv2.VideoCapture``'s capture settings: set what is asked, read back what it reports.

OpenCV reports -1 (or 0) for a property a backend does not know; such a setting reads back as not
reported (``None``). Auto-exposure takes backend-specific values: V4L2's exposure modes (1 manual,
3 aperture priority), elsewhere OpenCV's 0.25 manual and 0.75 auto.
"""

from __future__ import annotations

from typing import Any

import cv2

from slac_runtime.camera_settings import WHITE_BALANCE_RANGE_K, CameraSettings

V4L2_EXPOSURE_MODES = (1.0, 3.0)  # manual, auto (aperture priority)
OTHER_EXPOSURE_MODES = (0.25, 0.75)  # manual, auto (DirectShow, Media Foundation)


def exposure_modes(capture: Any) -> tuple[float, float]:
    """``(manual, auto)``: the values of CAP_PROP_AUTO_EXPOSURE on this capture's backend."""
    backend = capture.getBackendName() if hasattr(capture, "getBackendName") else ""
    return V4L2_EXPOSURE_MODES if backend == "V4L2" else OTHER_EXPOSURE_MODES


def fourcc_code(fourcc: str) -> int:
    return cv2.VideoWriter_fourcc(*fourcc)


def fourcc_text(code: float) -> str | None:
    """The four characters of a CAP_PROP_FOURCC value, or None when it holds none."""
    if not code or code < 0:
        return None
    text = int(code).to_bytes(4, "little").decode("ascii", errors="replace")
    return text if all(c.isalnum() or c == " " for c in text) else None


def apply_settings(capture: Any, asked: CameraSettings) -> None:
    """Ask ``capture`` for the settings ``asked`` holds, pixel format first (it decides which
    sizes and rates exist), then size, rate, exposure and white balance."""
    manual, auto = exposure_modes(capture)
    requests = [
        (cv2.CAP_PROP_FOURCC, None if asked.fourcc is None else fourcc_code(asked.fourcc)),
        (cv2.CAP_PROP_FRAME_WIDTH, asked.width),
        (cv2.CAP_PROP_FRAME_HEIGHT, asked.height),
        (cv2.CAP_PROP_FPS, asked.fps),
        (cv2.CAP_PROP_AUTO_EXPOSURE, _choose(asked.auto_exposure, auto, manual)),
        (cv2.CAP_PROP_EXPOSURE, asked.exposure),
        (cv2.CAP_PROP_AUTO_WB, _choose(asked.auto_white_balance, 1.0, 0.0)),
        (cv2.CAP_PROP_WB_TEMPERATURE, asked.white_balance_k),
    ]
    for prop, value in requests:
        if value is not None:
            capture.set(prop, float(value))


def read_settings(capture: Any, *, live: bool) -> CameraSettings:
    """What ``capture`` reports; exposure and white balance only for a live camera (a video file
    has none)."""
    if not hasattr(capture, "get"):
        return CameraSettings()
    width, height = (
        _positive(capture.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT)
    )
    mode = {
        "width": None if width is None else int(width),
        "height": None if height is None else int(height),
        "fps": _positive(capture.get(cv2.CAP_PROP_FPS)),
        "fourcc": fourcc_text(capture.get(cv2.CAP_PROP_FOURCC)),
    }
    if not live:
        return CameraSettings(**mode)
    manual, _ = exposure_modes(capture)
    auto_exposure = capture.get(cv2.CAP_PROP_AUTO_EXPOSURE)
    auto_wb = capture.get(cv2.CAP_PROP_AUTO_WB)
    low, high = WHITE_BALANCE_RANGE_K
    white_balance = capture.get(cv2.CAP_PROP_WB_TEMPERATURE)
    exposure = capture.get(cv2.CAP_PROP_EXPOSURE)
    return CameraSettings(
        **mode,
        auto_exposure=None if auto_exposure < 0 else abs(auto_exposure - manual) > 1e-3,
        exposure=None if exposure == -1 else float(exposure),
        auto_white_balance=None if auto_wb < 0 else auto_wb > 0,
        white_balance_k=float(white_balance) if low <= white_balance <= high else None,
    )


def _choose(flag: bool | None, on: float, off: float) -> float | None:
    return None if flag is None else (on if flag else off)


def _positive(value: float) -> float | None:
    return float(value) if value and value > 0 else None


__all__ = ["apply_settings", "exposure_modes", "fourcc_code", "fourcc_text", "read_settings"]
