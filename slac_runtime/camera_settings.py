"""The capture settings a policy depends on: resolution, frame rate, pixel format, exposure and
white balance.

A :class:`CameraSettings` is either what is *asked* of a camera (``None``: leave the camera's own)
or what a camera *reports* after being set (``None``: it does not report it). The reported
settings travel with the frames in the publisher's source messages (§4 of docs/architecture.md,
flat strings: :meth:`CameraSettings.to_source`), and are recorded in the camera calibration file
and in every episode log's header (:meth:`CameraSettings.to_dict`).

Auto-exposure and auto white balance change every frame's statistics while the policy runs:
:meth:`CameraSettings.auto_left_on` names those left on, for a one-line warning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

MAX_SIDE_PX = 16384
WHITE_BALANCE_RANGE_K = (1000.0, 15000.0)
FPS_TOLERANCE = 0.01  # a reported frame rate within 1 % of the one asked is the one asked
CONTROL_TOLERANCE = 0.02  # exposure and white balance: within 2 % (drivers round to their steps)
_SOURCE_FLAGS = {"on": True, "off": False}


def refuse_unknown_fields(cls: type, data: dict[str, Any], what: str) -> None:
    """ValueError naming the keys of ``data`` that are no field of dataclass ``cls`` (a record
    read from a file), and the fields it has."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"{what}: unknown field(s) {', '.join(map(repr, unknown))}; "
            f"known fields are {', '.join(sorted(known))}"
        )


@dataclass(frozen=True)
class CameraSettings:
    """A camera's capture settings (see the module's docstring for what ``None`` means)."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None  # frames per second the camera delivers
    fourcc: str | None = None  # pixel format, four characters: MJPG, YUYV
    auto_exposure: bool | None = None
    exposure: float | None = None  # in the driver's units (V4L2: 100 µs steps)
    auto_white_balance: bool | None = None
    white_balance_k: float | None = None  # colour temperature, kelvin

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and 1 <= value <= MAX_SIDE_PX):
                raise ValueError(f"camera {name} must be 1..{MAX_SIDE_PX} pixels, got {value!r}")
        if self.fps is not None and not (_is_number(self.fps) and self.fps > 0):
            raise ValueError(f"camera fps must be a positive number, got {self.fps!r}")
        if self.fourcc is not None and not _is_fourcc(self.fourcc):
            raise ValueError(
                f"camera fourcc must be four letters, digits or spaces (MJPG, YUYV), "
                f"got {self.fourcc!r}"
            )
        for name in ("auto_exposure", "auto_white_balance"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"camera {name} must be true or false, got {value!r}")
        if self.exposure is not None and not _is_number(self.exposure):
            raise ValueError(f"camera exposure must be a number, got {self.exposure!r}")
        low, high = WHITE_BALANCE_RANGE_K
        wb = self.white_balance_k
        if wb is not None and not (_is_number(wb) and low <= wb <= high):
            raise ValueError(f"camera white balance must be {low:g}..{high:g} K, got {wb!r}")

    # ---- what the settings say -----------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def auto_left_on(self) -> list[str]:
        """``auto-exposure`` and ``auto white balance`` where they are (reported) on."""
        names = (
            ("auto-exposure", self.auto_exposure),
            ("auto white balance", self.auto_white_balance),
        )
        return [name for name, on in names if on]

    def describe(self) -> str:
        """One line: ``640x480 MJPG at 30 fps, exposure 157 (fixed), white balance auto``."""
        size = "?x?" if self.width is None else f"{self.width}x{self.height}"
        parts = [size, self.fourcc or "(pixel format not reported)"]
        fps = "" if self.fps is None else f" at {self.fps:g} fps"
        return (
            f"{' '.join(parts)}{fps}, exposure {_control(self.auto_exposure, self.exposure, '')}, "
            f"white balance {_control(self.auto_white_balance, self.white_balance_k, ' K')}"
        )

    def differences(self, reported: CameraSettings) -> list[str]:
        """What ``reported`` does not deliver of these (asked) settings, one phrase each:
        ``1920x1080 asked, it delivers 640x480``."""
        out = []
        if self.width is not None and (reported.width, reported.height) != (
            self.width,
            self.height,
        ):
            out.append(f"{_size(self)} asked, it delivers {_size(reported)}")
        if self.fourcc is not None and self.fourcc != reported.fourcc:
            out.append(f"pixel format {self.fourcc} asked, it delivers {reported.fourcc or '?'}")
        if self.fps is not None and not _close(reported.fps, self.fps, FPS_TOLERANCE):
            out.append(f"{self.fps:g} fps asked, it delivers {_number(reported.fps)} fps")
        out += _control_differences(
            "exposure", self.auto_exposure, self.exposure, reported.auto_exposure, reported.exposure
        )
        out += _control_differences(
            "white balance",
            self.auto_white_balance,
            self.white_balance_k,
            reported.auto_white_balance,
            reported.white_balance_k,
        )
        return out

    def over(self, defaults: CameraSettings) -> CameraSettings:
        """These settings, with ``defaults`` where these leave one to the camera."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in values.items():
            if value is None:
                values[name] = getattr(defaults, name)
        if values["auto_exposure"] is True:  # an automatic control has no value to hold
            values["exposure"] = None
        if values["auto_white_balance"] is True:
            values["white_balance_k"] = None
        return CameraSettings(**values)

    # ---- files and messages --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; settings not known are left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any) -> CameraSettings:
        if not isinstance(data, dict):
            raise ValueError(f"camera settings must be a JSON object, got {data!r}")
        refuse_unknown_fields(cls, data, "camera settings")
        return cls(**data)

    def to_source(self) -> dict[str, str]:
        """The settings as a source message's strings (flags as ``on``/``off``)."""
        out = {}
        for name, value in self.to_dict().items():
            if isinstance(value, bool):
                out[name] = "on" if value else "off"
            else:
                out[name] = f"{value:g}" if isinstance(value, float) else str(value)
        return out

    @classmethod
    def from_source(cls, source: dict[str, str] | None) -> CameraSettings | None:
        """The settings a publisher's source message carries; None when it carries none.
        ValueError naming the entry that is not a setting."""
        names = [f.name for f in fields(cls) if source and f.name in source]
        if not names:
            return None
        values: dict[str, Any] = {}
        for name in names:
            values[name] = _parse_source_value(name, source[name])
        return cls(**values)


# ---- parsing what comes in ---------------------------------------------------------------------


def _parse_source_value(name: str, text: str) -> Any:
    try:
        if name in ("auto_exposure", "auto_white_balance"):
            return _SOURCE_FLAGS[text]
        if name in ("width", "height"):
            return int(text)
        if name == "fourcc":
            return text
        value = float(text)
    except (KeyError, ValueError):
        raise ValueError(f"camera setting {name}={text!r} is not a value of {name}") from None
    if not math.isfinite(value):
        raise ValueError(f"camera setting {name}={text!r} is not a finite number")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _is_fourcc(text: Any) -> bool:
    return isinstance(text, str) and len(text) == 4 and all(c.isalnum() or c == " " for c in text)


# ---- words -------------------------------------------------------------------------------------


def _control(auto: bool | None, value: float | None, unit: str) -> str:
    if auto is None and value is None:
        return "not reported"
    if auto:
        return "auto"
    if value is None:
        return "fixed"
    return f"{value:g}{unit} (fixed)" if auto is False else f"{value:g}{unit}"


def _size(settings: CameraSettings) -> str:
    return f"{settings.width or '?'}x{settings.height or '?'}"


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _close(value: float | None, target: float, tolerance: float) -> bool:
    return value is not None and abs(value - target) <= tolerance * max(abs(target), 1.0)


def _control_differences(
    what: str, auto: bool | None, value: float | None, got_auto: bool | None, got: float | None
) -> list[str]:
    if auto is not None and got_auto is None:
        return [f"{'auto' if auto else 'fixed'} {what} asked, it does not report its {what}"]
    if auto is not None and got_auto != auto:
        return [f"{'auto' if auto else 'fixed'} {what} asked, auto {what} stays {_flag(got_auto)}"]
    if value is not None and not _close(got, value, CONTROL_TOLERANCE):
        return [f"{what} {value:g} asked, it reports {_number(got)}"]
    return []


def _flag(value: bool) -> str:
    return "on" if value else "off"


__all__ = ["CameraSettings"]
