"""The capture settings as command-line options, shared by ``slac-camera`` and
``slac-calibrate camera``.

A config that declares these fields (``resolution = resolution_option()`` ...) turns them into a
:class:`~slac_runtime.camera_settings.CameraSettings` with :func:`asked_settings`.
"""

from __future__ import annotations

import argparse
from typing import Any

from slac_runtime.camera_settings import MAX_SIDE_PX, WHITE_BALANCE_RANGE_K, CameraSettings
from slac_runtime.options import Check, option, parse_int

AUTO = "auto"


def parse_resolution(text: str) -> tuple[int, int]:
    try:
        width, height = (parse_int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"resolution must look like 640x480, got {text!r}") from e
    if not (width > 0 and height > 0):
        raise argparse.ArgumentTypeError(f"resolution must be positive, like 640x480, got {text!r}")
    if max(width, height) > MAX_SIDE_PX:
        raise argparse.ArgumentTypeError(
            f"resolution must be at most {MAX_SIDE_PX} pixels each way, like 640x480, got {text!r}"
        )
    return width, height


def parse_fourcc(text: str) -> str:
    fourcc = text  # case matters: MJPG, YUYV, ffv1
    if len(fourcc) != 4 or not all(c.isalnum() or c == " " for c in fourcc):
        raise argparse.ArgumentTypeError(
            f"pixel format must be four characters such as MJPG or YUYV, got {text!r}"
        )
    return fourcc


def _auto_or(check: Check) -> Any:
    def parse(text: str) -> float | str:
        return AUTO if text.lower() == AUTO else check(text)

    parse.__name__ = check.__name__
    return parse


parse_exposure = _auto_or(Check(float, lambda v: True, "a number", name="exposure"))
parse_white_balance = _auto_or(
    Check(
        float,
        lambda v: WHITE_BALANCE_RANGE_K[0] <= v <= WHITE_BALANCE_RANGE_K[1],
        f"auto or a colour temperature in {WHITE_BALANCE_RANGE_K[0]:g}.."
        f"{WHITE_BALANCE_RANGE_K[1]:g} K",
        name="white balance",
    )
)


def resolution_option() -> Any:
    return option(
        None,
        "capture mode to ask a camera for, e.g. 640x480",
        parse=parse_resolution,
        metavar="WxH",
    )


def camera_fps_option() -> Any:
    return option(
        None,
        "frame rate to ask the camera for (frames per second)",
        parse=Check(float, lambda v: v > 0, "a positive number of frames per second"),
    )


def fourcc_option() -> Any:
    return option(
        None,
        "pixel format to ask the camera for, as it spells it: MJPG (compressed, high rates) or "
        "YUYV (raw)",
        parse=parse_fourcc,
        metavar="FOURCC",
    )


def exposure_option() -> Any:
    return option(
        None,
        "fixed exposure in the camera driver's units (V4L2: 100 us steps), or auto "
        "(default: as the camera has it)",
        parse=parse_exposure,
        metavar="auto|VALUE",
    )


def white_balance_option() -> Any:
    return option(
        None,
        "fixed white balance in kelvin (e.g. 4600), or auto (default: as the camera has it)",
        parse=parse_white_balance,
        metavar="auto|KELVIN",
    )


def asked_settings(config: Any) -> CameraSettings:
    """The settings a config's ``resolution``, ``camera_fps``, ``fourcc``, ``exposure`` and
    ``white_balance`` ask for (None: left as the camera has it)."""
    width, height = config.resolution or (None, None)
    exposure, white_balance = config.exposure, config.white_balance
    return CameraSettings(
        width=width,
        height=height,
        fps=config.camera_fps,
        fourcc=config.fourcc,
        auto_exposure=None if exposure is None else exposure == AUTO,
        exposure=None if exposure in (None, AUTO) else float(exposure),
        auto_white_balance=None if white_balance is None else white_balance == AUTO,
        white_balance_k=None if white_balance in (None, AUTO) else float(white_balance),
    )


def auto_warning(settings: CameraSettings, where: str) -> str | None:
    """The one-line warning for auto-exposure or auto white balance left on, or None."""
    on = settings.auto_left_on()
    if not on:
        return None
    return (
        f"{' and '.join(on)} {'is' if len(on) == 1 else 'are'} on for {where}: the frames' "
        "brightness and colour change while the policy runs; fix them with slac-camera "
        "--exposure VALUE --white-balance KELVIN"
    )


__all__ = [
    "AUTO",
    "asked_settings",
    "auto_warning",
    "camera_fps_option",
    "exposure_option",
    "fourcc_option",
    "parse_fourcc",
    "parse_resolution",
    "resolution_option",
    "white_balance_option",
]
