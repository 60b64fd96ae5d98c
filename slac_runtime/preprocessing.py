"""Image preprocessing shared by the camera publisher, the runtime and the tests
(docs/architecture.md §2).

A camera frame (OpenCV: BGR, any size) becomes what the policy was trained on: an RGB ``uint8``
image ``[size, size, 3]``. The steps, in this order, are

0. with lens intrinsics (:class:`~slac_runtime.lens.LensIntrinsics`, from ``slac-calibrate camera
   --intrinsics``), the frame is undistorted into the lens's pinhole image, and the crop box and
   rotation of step 1 are in that image's pixels. Undistortion and step 1 are one remap, through
   maps made once per calibration, from the frame straight onto step 1's grid
   (:func:`_lens_cut_maps`): a fifth of the pixels of undistorting the whole frame, and one
   interpolation instead of two;
1. rotate the source by ``rotation_deg`` about the centre of the crop box (counter-clockwise for a
   positive angle, as seen on screen), and cut out the crop box (one bilinear warp; with a
   rotation, it samples the box straight onto a grid at most 2x coarser than the source, see
   :func:`_rotate_and_cut`);
2. flip horizontally and/or vertically;
3. resize to ``output_size x output_size`` with area interpolation (``cv2.INTER_AREA``);
4. convert BGR to RGB (when the frame came from OpenCV).

Steps 2 and 4 are applied to the small resized image: both commute with an area resize, and doing
them on 64x64 pixels instead of 640x480 is what keeps a frame well under a millisecond.

:class:`CameraCalibration` holds the crop/rotation/flip settings; it is the identity by default
(centre square of the frame, no rotation, no flip, 64 pixels) and is saved as a small JSON file.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from slac_runtime.atomic_file import write_text_atomic
from slac_runtime.camera_settings import CameraSettings, refuse_unknown_fields
from slac_runtime.lens import LensIntrinsics

CALIBRATION_SCHEMA_VERSION = 1
DEFAULT_OUTPUT_SIZE = 64  # pixels, the image size the policy is trained on


def _fail(name: str, message: str, value: Any) -> ValueError:
    return ValueError(f"camera calibration: field {name!r} {message}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class CameraCalibration:
    """How a camera frame is cut and turned into the policy's image (identity by default).

    All pixel quantities refer to the *source* frame as the camera delivers it.
    """

    crop: tuple[int, int, int, int] | None = None
    """Crop box ``(x, y, width, height)`` in source pixels; ``None`` takes the largest centred
    square of the frame (the whole frame when it is square), so a 4:3 camera is not squashed."""
    rotation_deg: float = 0.0
    """Rotation of the source about the crop-box centre, degrees, counter-clockwise on screen.
    Corners rotated in from outside the frame are black."""
    flip_horizontal: bool = False
    """Mirror left-right (after rotation and crop)."""
    flip_vertical: bool = False
    """Mirror top-bottom (after rotation and crop)."""
    output_size: int = DEFAULT_OUTPUT_SIZE
    """Side of the square output image, pixels."""
    source_size: tuple[int, int] | None = None
    """``(width, height)`` of the frames this calibration was made for; when set, a frame of
    another size is refused instead of being cut at the wrong place. ``None``: any size."""
    schema_version: int = CALIBRATION_SCHEMA_VERSION
    """Version of this file format."""
    intrinsics: LensIntrinsics | None = None
    """The lens: frames are undistorted into its pinhole view before anything else, and the crop
    box is in that view's pixels. ``None`` (and absent from the file): frames are used as they
    come."""
    camera_settings: CameraSettings | None = None
    """The capture settings the camera reported when it was calibrated (resolution, frame rate,
    pixel format, exposure, white balance); ``slac-camera`` asks a camera for them unless its
    options say otherwise. ``None`` (and absent from the file): not recorded."""

    def __post_init__(self) -> None:
        if not _is_int(self.schema_version):
            raise _fail("schema_version", "must be an integer", self.schema_version)
        if self.schema_version != CALIBRATION_SCHEMA_VERSION:
            raise _fail(
                "schema_version",
                f"must be {CALIBRATION_SCHEMA_VERSION} (the version this code reads)",
                self.schema_version,
            )
        if self.crop is not None:
            crop = self.crop
            if (
                not isinstance(crop, (tuple, list))
                or len(crop) != 4
                or not all(_is_int(v) for v in crop)
            ):
                raise _fail("crop", "must be null or [x, y, width, height] as 4 integers", crop)
            x, y, w, h = (int(v) for v in crop)
            if x < 0 or y < 0:
                raise _fail("crop", "must have x >= 0 and y >= 0", crop)
            if w <= 0 or h <= 0:
                raise _fail("crop", "must have width > 0 and height > 0", crop)
            object.__setattr__(self, "crop", (x, y, w, h))
        if isinstance(self.rotation_deg, (bool, np.bool_)) or not isinstance(
            self.rotation_deg, (int, float, np.integer, np.floating)
        ):
            raise _fail("rotation_deg", "must be a number of degrees", self.rotation_deg)
        if not math.isfinite(float(self.rotation_deg)):
            raise _fail("rotation_deg", "must be finite", self.rotation_deg)
        object.__setattr__(self, "rotation_deg", float(self.rotation_deg))
        for name in ("flip_horizontal", "flip_vertical"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise _fail(name, "must be true or false", getattr(self, name))
            object.__setattr__(self, name, bool(getattr(self, name)))
        if not _is_int(self.output_size) or not 1 <= self.output_size <= 4096:
            raise _fail(
                "output_size", "must be an integer number of pixels in 1..4096", self.output_size
            )
        object.__setattr__(self, "output_size", int(self.output_size))
        if self.source_size is not None:
            size = self.source_size
            if (
                not isinstance(size, (tuple, list))
                or len(size) != 2
                or not all(_is_int(v) and v > 0 for v in size)
            ):
                raise _fail(
                    "source_size", "must be null or [width, height] as 2 positive integers", size
                )
            object.__setattr__(self, "source_size", (int(size[0]), int(size[1])))
            if self.crop is not None:
                x, y, w, h = self.crop
                if x + w > size[0] or y + h > size[1]:
                    raise _fail(
                        "crop",
                        f"must lie inside the {size[0]}x{size[1]} source frame",
                        list(self.crop),
                    )
        if not isinstance(self.camera_settings, (CameraSettings, type(None))):
            raise _fail("camera_settings", "must be camera settings or null", self.camera_settings)
        if self.intrinsics is not None:
            if not isinstance(self.intrinsics, LensIntrinsics):
                raise _fail("intrinsics", "must be lens intrinsics or null", self.intrinsics)
            if self.source_size is not None and self.source_size != self.intrinsics.image_size:
                raise _fail(
                    "intrinsics",
                    f"must be for the {self.source_size[0]}x{self.source_size[1]} source frames "
                    "(source_size)",
                    f"a lens calibrated on {self.intrinsics.image_size[0]}x"
                    f"{self.intrinsics.image_size[1]} frames",
                )
            width, height = self.intrinsics.image_size
            if self.crop is not None and (
                self.crop[0] + self.crop[2] > width or self.crop[1] + self.crop[3] > height
            ):
                raise _fail(
                    "crop",
                    f"must lie inside the lens's {width}x{height} pinhole image",
                    list(self.crop),
                )

    # ---- construction helpers -------------------------------------------------------------------

    @property
    def is_identity(self) -> bool:
        """True when only the centre-square cut and the resize are applied."""
        return (
            self.intrinsics is None
            and self.crop is None
            and self.rotation_deg == 0.0
            and not self.flip_horizontal
            and not self.flip_vertical
        )

    def check_frame_size(self, frame_width: int, frame_height: int) -> None:
        """ValueError, saying what to do, unless frames of this size can be preprocessed: the
        size the calibration (and its lens) was made for, the crop box inside."""
        self.crop_box(frame_width, frame_height)
        if self.intrinsics is not None:
            self.intrinsics.check_frame_size(frame_width, frame_height)

    def crop_box(self, frame_width: int, frame_height: int) -> tuple[int, int, int, int]:
        """The crop box ``(x, y, w, h)`` used on a frame of this size (checked against it)."""
        if self.source_size is not None and (frame_width, frame_height) != self.source_size:
            raise ValueError(
                f"camera calibration was made for {self.source_size[0]}x{self.source_size[1]} "
                f"frames, but the camera delivers {frame_width}x{frame_height}; recalibrate "
                "(slac-calibrate camera) or set the camera's resolution"
            )
        if self.crop is None:
            side = min(frame_width, frame_height)
            return (frame_width - side) // 2, (frame_height - side) // 2, side, side
        x, y, w, h = self.crop
        if x + w > frame_width or y + h > frame_height:
            raise ValueError(
                f"camera calibration crop box x={x} y={y} w={w} h={h} does not fit in a "
                f"{frame_width}x{frame_height} frame; recalibrate (slac-calibrate camera)"
            )
        return x, y, w, h

    # ---- files ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return {
            "schema_version": self.schema_version,
            "crop": None if self.crop is None else list(self.crop),
            "rotation_deg": self.rotation_deg,
            "flip_horizontal": self.flip_horizontal,
            "flip_vertical": self.flip_vertical,
            "output_size": self.output_size,
            "source_size": None if self.source_size is None else list(self.source_size),
            **({} if self.intrinsics is None else {"intrinsics": self.intrinsics.to_dict()}),
            **(
                {}
                if self.camera_settings is None
                else {"camera_settings": self.camera_settings.to_dict()}
            ),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraCalibration:
        """Build from :meth:`to_dict` output; missing fields take their
        defaults, unknown ones fail."""
        if not isinstance(data, dict):
            raise ValueError(f"camera calibration must be a JSON object, got {type(data).__name__}")
        refuse_unknown_fields(cls, data, "camera calibration")
        kwargs = dict(data)
        for name in ("crop", "source_size"):
            if isinstance(kwargs.get(name), list):
                kwargs[name] = tuple(kwargs[name])
        if kwargs.get("intrinsics") is not None:
            kwargs["intrinsics"] = LensIntrinsics.from_dict(kwargs["intrinsics"])
        if kwargs.get("camera_settings") is not None:
            kwargs["camera_settings"] = CameraSettings.from_dict(kwargs["camera_settings"])
        return cls(**kwargs)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as pretty JSON (atomically: a crash never leaves half a file, and a failed or
        interrupted write leaves the file there was and no temporary one)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CameraCalibration:
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"camera calibration file {path} is not valid JSON: {e}") from e
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e


IDENTITY = CameraCalibration()


def _as_three_channels(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:  # drop alpha (same for BGRA and RGBA)
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    raise ValueError(
        f"expected an image [H, W, 3] (or [H, W] grey, [H, W, 4]), got shape {frame.shape}"
    )


def _cut_matrix(
    box: tuple[int, int, int, int], rotation_deg: float, size: int
) -> tuple[np.ndarray, int]:
    """The affine map (float64[2, 3]) from source pixels to a grid of ``size x factor`` pixels a
    side that rotates the source about the centre of ``box`` and fits ``box`` onto the grid, and
    that grid's side: a whole multiple of ``size`` at most 2x coarser than the source."""
    x, y, w, h = box
    factor = max(1, math.ceil(max(w, h) / (2 * size)))
    grid = size * factor
    # Source -> crop-box coordinates: rotation about the box centre (pixel centres at integers).
    rotate = cv2.getRotationMatrix2D((x + (w - 1) / 2.0, y + (h - 1) / 2.0), rotation_deg, 1.0)
    rotate[0, 2] -= x
    rotate[1, 2] -= y
    # Crop-box -> grid coordinates: scale so that box edges land on grid edges.
    sx, sy = grid / w, grid / h
    scale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale[:, :2] @ rotate[:, :2]
    matrix[:, 2] = scale[:, :2] @ rotate[:, 2] + scale[:, 2]
    return matrix, grid


def _rotate_and_cut(
    frame: np.ndarray, box: tuple[int, int, int, int], rotation_deg: float, size: int
) -> np.ndarray:
    """Rotate ``frame`` about the centre of ``box`` and cut ``box`` out, in one bilinear warp.

    The warp writes straight onto a grid that is a whole multiple of the output size and at most
    2x coarser than the source (480 source pixels -> 256 for a 64-pixel output), so the area
    resize that follows is a fast integer one and no pixels are spent on a full-resolution
    rotation: about a quarter of the time of rotating at full resolution, and on average within
    about one grey level of it.
    """
    matrix, grid = _cut_matrix(box, rotation_deg, size)
    return cv2.warpAffine(
        frame,
        matrix,
        (grid, grid),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


@functools.lru_cache(maxsize=8)
def _lens_cut_maps(
    calibration: CameraCalibration, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Maps that take a camera frame straight to :func:`_rotate_and_cut`'s grid over the lens's
    pinhole image: ``(map_xy int16[G, G, 2], map_fraction uint16[G, G], G)``.

    ``cv2.initUndistortRectifyMap`` carries each output pixel through the inverse of a camera
    matrix ``P`` and a rotation ``R`` to a ray, then through the lens to the frame. With the cut's
    affine map ``g = S R2 p + b`` (``p`` a pinhole pixel, ``R2`` the rotation, ``S`` the scale),
    ``P`` has focal lengths ``S f'`` and principal point ``S R2 c' + b`` (where the pinhole image's
    principal point lands on the grid), and ``R`` turns about the optical axis by ``R2``.
    """
    lens = calibration.intrinsics
    matrix, grid = _cut_matrix(box, calibration.rotation_deg, calibration.output_size)
    x, y, w, h = box
    sx, sy = grid / w, grid / h
    rotation = np.eye(3)
    rotation[:2, :2] = np.diag([1.0 / sx, 1.0 / sy]) @ matrix[:, :2]
    centre = matrix[:, :2] @ np.array(lens.pinhole_principal_point_px) + matrix[:, 2]
    f = lens.pinhole_focal_px
    projection = np.array([[sx * f, 0.0, centre[0]], [0.0, sy * f, centre[1]], [0.0, 0.0, 1.0]])
    map_xy, map_fraction = cv2.initUndistortRectifyMap(
        lens.camera_matrix(),
        lens.distortion_coefficients(),
        rotation,
        projection,
        (grid, grid),
        cv2.CV_16SC2,
    )
    return map_xy, map_fraction, grid


def _undistort_rotate_and_cut(frame: np.ndarray, calibration: CameraCalibration) -> np.ndarray:
    """:func:`_rotate_and_cut` of the frame's pinhole image, in one remap from the frame itself."""
    height, width = frame.shape[:2]
    calibration.intrinsics.check_frame_size(width, height)
    box = calibration.crop_box(width, height)
    map_xy, map_fraction, _ = _lens_cut_maps(calibration, box)
    return cv2.remap(
        frame,
        map_xy,
        map_fraction,
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def preprocess_frame(
    frame: np.ndarray,
    calibration: CameraCalibration | None = None,
    *,
    bgr: bool = True,
) -> np.ndarray:
    """Turn a camera frame into the policy's image: ``uint8[size, size, 3]`` RGB, a new array.

    ``frame`` is ``uint8[H, W, 3]`` in BGR order as OpenCV captures it (``bgr=True``) or already
    RGB (``bgr=False``, e.g. a simulator render); grey ``[H, W]`` frames are accepted too.
    ``calibration`` says how to rotate, crop and flip (identity when ``None``).
    """
    calibration = IDENTITY if calibration is None else calibration
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {frame.dtype}")
    frame = _as_three_channels(frame)
    height, width = frame.shape[:2]
    x, y, w, h = calibration.crop_box(width, height)
    size = calibration.output_size

    if calibration.intrinsics is not None:
        region = _undistort_rotate_and_cut(frame, calibration)
    elif calibration.rotation_deg == 0.0:
        region = frame[y : y + h, x : x + w]  # a view: no copy
    else:
        region = _rotate_and_cut(frame, (x, y, w, h), calibration.rotation_deg, size)

    if region.shape[:2] == (size, size):
        small = np.array(region)  # copy: the result never aliases the caller's frame
    else:
        small = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)

    if calibration.flip_horizontal and calibration.flip_vertical:
        small = cv2.flip(small, -1)
    elif calibration.flip_horizontal:
        small = cv2.flip(small, 1)
    elif calibration.flip_vertical:
        small = cv2.flip(small, 0)

    if bgr:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    return small
