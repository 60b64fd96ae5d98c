"""The camera's lens: intrinsics, distortion, and the pinhole image every frame is turned into
(docs/architecture.md §2, docs/calibration.md).

The lens model is OpenCV's: a point at normalised pinhole coordinates ``(x, y)`` (``X/Z, Y/Z`` in
the camera frame) appears at

    r² = x² + y²,  radial = 1 + k1 r² + k2 r⁴ + k3 r⁶
    x_d = x · radial + 2 p1 x y + p2 (r² + 2 x²)
    y_d = y · radial + p1 (r² + 2 y²) + 2 p2 x y
    u = fx · x_d + cx,  v = fy · y_d + cy        (pixels, pixel centres at integers)

:class:`LensIntrinsics` holds ``fx, fy, cx, cy``, ``k1, k2, p1, p2, k3`` and the **pinhole view**:
the camera matrix of the undistorted image the rest of the pipeline sees. It has the frame's size,
square pixels (one focal length ``f'``) and the lens's principal point, and ``f'`` is the
smallest (the widest view) for which every pixel of the undistorted image comes from inside the
frame, so the undistorted image has no black border (:func:`pinhole_view`).

:class:`Undistorter` turns a frame into that pinhole image with maps computed once
(``cv2.initUndistortRectifyMap``, fixed-point) and one ``cv2.remap`` per frame.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

DISTORTION_TERMS = ("k1", "k2", "p1", "p2", "k3")
BORDER_SAMPLES = 256  # points per frame edge where the pinhole view is checked to lie inside
_ROUND_TRIP_PX = 1e-3  # an undistorted point must distort back to within this of where it was
_UNDISTORT_ITERATIONS = 200


def _finite(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"lens intrinsics: {name} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"lens intrinsics: {name} must be finite, got {value!r}")
    return float(value)


def _pair(name: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"lens intrinsics: {name} must be a pair of numbers, got {value!r}")
    return _finite(name, value[0]), _finite(name, value[1])


@dataclass(frozen=True)
class LensIntrinsics:
    """A calibrated lens and the pinhole view its frames are undistorted to (all in pixels of
    frames ``image_size`` large)."""

    image_size: tuple[int, int]
    """``(width, height)`` of the frames the lens was calibrated on; frames of another size are
    refused."""
    focal_px: tuple[float, float]
    """``(fx, fy)``."""
    principal_point_px: tuple[float, float]
    """``(cx, cy)``, pixel centres at integers."""
    distortion: tuple[float, float, float, float, float]
    """``(k1, k2, p1, p2, k3)``, OpenCV's order."""
    pinhole_focal_px: float
    """``f'``: the undistorted image's focal length (square pixels)."""
    pinhole_principal_point_px: tuple[float, float]
    """The undistorted image's principal point."""
    rms_px: float | None = None
    """RMS reprojection error of the calibration that found these, pixels."""
    views: int | None = None
    """Number of board views that calibration used."""
    board: str | None = None
    """The board it was calibrated with, in words."""

    def __post_init__(self) -> None:
        size = self.image_size
        if (
            not isinstance(size, (tuple, list))
            or len(size) != 2
            or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size
            )
        ):
            raise ValueError(
                f"lens intrinsics: image_size must be [width, height] in pixels, got {size!r}"
            )
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        fx, fy = _pair("focal_px", self.focal_px)
        if fx <= 0 or fy <= 0:
            raise ValueError(f"lens intrinsics: focal_px must be positive, got {[fx, fy]}")
        object.__setattr__(self, "focal_px", (fx, fy))
        object.__setattr__(
            self, "principal_point_px", _pair("principal_point_px", self.principal_point_px)
        )
        if not isinstance(self.distortion, (tuple, list)) or len(self.distortion) != 5:
            raise ValueError(
                "lens intrinsics: distortion must be the 5 numbers k1, k2, p1, p2, k3, got "
                f"{self.distortion!r}"
            )
        object.__setattr__(
            self,
            "distortion",
            tuple(_finite(n, v) for n, v in zip(DISTORTION_TERMS, self.distortion)),
        )
        f = _finite("pinhole_focal_px", self.pinhole_focal_px)
        if f <= 0:
            raise ValueError(f"lens intrinsics: pinhole_focal_px must be positive, got {f}")
        object.__setattr__(self, "pinhole_focal_px", f)
        object.__setattr__(
            self,
            "pinhole_principal_point_px",
            _pair("pinhole_principal_point_px", self.pinhole_principal_point_px),
        )
        width, height = self.image_size
        for name in ("principal_point_px", "pinhole_principal_point_px"):
            cx, cy = getattr(self, name)
            if not (0 <= cx <= width - 1 and 0 <= cy <= height - 1):
                raise ValueError(
                    f"lens intrinsics: {name} {[cx, cy]} lies outside the {width}x{height} frame"
                )
        if self.rms_px is not None:
            rms = _finite("rms_px", self.rms_px)
            if rms < 0:
                raise ValueError(f"lens intrinsics: rms_px must be at least 0, got {rms}")
            object.__setattr__(self, "rms_px", rms)
        if self.views is not None and (
            not isinstance(self.views, (int, np.integer))
            or isinstance(self.views, bool)
            or self.views < 1
        ):
            raise ValueError(f"lens intrinsics: views must be a positive integer, got {self.views}")
        if self.board is not None and not isinstance(self.board, str):
            raise ValueError(f"lens intrinsics: board must be text, got {self.board!r}")

    # ---- construction ---------------------------------------------------------------------------

    @classmethod
    def from_camera(
        cls,
        camera_matrix: np.ndarray,
        distortion: np.ndarray,
        image_size: tuple[int, int],
        **details: Any,
    ) -> LensIntrinsics:
        """Intrinsics as OpenCV gives them (``K[3, 3]``, 4, 5 or more coefficients of which the
        first five are used and any others must be zero), with their pinhole view."""
        matrix = np.asarray(camera_matrix, dtype=np.float64)
        coefficients = np.zeros(5)
        given = np.asarray(distortion, dtype=np.float64).ravel()
        if given.size > 5 and np.any(given[5:] != 0):
            raise ValueError(
                "lens intrinsics: only k1, k2, p1, p2 and k3 are modelled, got further "
                f"non-zero coefficients {given[5:].tolist()}"
            )
        coefficients[: min(5, given.size)] = given[:5]
        focal, centre = pinhole_view(matrix, coefficients, image_size)
        return cls(
            image_size=(int(image_size[0]), int(image_size[1])),
            focal_px=(float(matrix[0, 0]), float(matrix[1, 1])),
            principal_point_px=(float(matrix[0, 2]), float(matrix[1, 2])),
            distortion=tuple(float(v) for v in coefficients),
            pinhole_focal_px=focal,
            pinhole_principal_point_px=centre,
            **details,
        )

    # ---- OpenCV's forms -------------------------------------------------------------------------

    def check_frame_size(self, width: int, height: int) -> None:
        """ValueError, saying what to do, for frames of another size than ``image_size``."""
        if (width, height) != self.image_size:
            w, h = self.image_size
            raise ValueError(
                f"the lens was calibrated on {w}x{h} frames, but the camera delivers "
                f"{width}x{height}; recalibrate (slac-calibrate camera --intrinsics) or set the "
                "camera's resolution"
            )

    def camera_matrix(self) -> np.ndarray:
        """``K``: float64[3, 3]."""
        (fx, fy), (cx, cy) = self.focal_px, self.principal_point_px
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def distortion_coefficients(self) -> np.ndarray:
        """``(k1, k2, p1, p2, k3)``: float64[5]."""
        return np.array(self.distortion, dtype=np.float64)

    def pinhole_matrix(self) -> np.ndarray:
        """The undistorted image's camera matrix: float64[3, 3]."""
        f, (cx, cy) = self.pinhole_focal_px, self.pinhole_principal_point_px
        return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])

    # ---- points ---------------------------------------------------------------------------------

    def raw_from_pinhole(self, points_px: np.ndarray) -> np.ndarray:
        """Where points of the undistorted image lie in the camera's frame: float64[N, 2]."""
        points = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
        f, (cx, cy) = self.pinhole_focal_px, self.pinhole_principal_point_px
        normalised = (points - (cx, cy)) / f
        distorted = distort_normalised(normalised, self.distortion_coefficients())
        return distorted * self.focal_px + self.principal_point_px

    def pinhole_from_raw(self, points_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where points of the camera's frame lie in the undistorted image: ``(float64[N, 2],
        valid bool[N])``; a point is invalid where the lens model has no inverse (beyond the
        radius where a strong barrel term turns back)."""
        normalised, valid = undistort_pixels(
            points_px, self.camera_matrix(), self.distortion_coefficients()
        )
        return normalised * self.pinhole_focal_px + self.pinhole_principal_point_px, valid

    # ---- files ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "image_size": list(self.image_size),
            "focal_px": list(self.focal_px),
            "principal_point_px": list(self.principal_point_px),
            "distortion": dict(zip(DISTORTION_TERMS, self.distortion)),
            "pinhole_focal_px": self.pinhole_focal_px,
            "pinhole_principal_point_px": list(self.pinhole_principal_point_px),
        }
        for name in ("rms_px", "views", "board"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> LensIntrinsics:
        if not isinstance(data, dict):
            raise ValueError(f"lens intrinsics must be a JSON object, got {type(data).__name__}")
        required = {
            "image_size",
            "focal_px",
            "principal_point_px",
            "distortion",
            "pinhole_focal_px",
            "pinhole_principal_point_px",
        }
        known = required | {"rms_px", "views", "board"}
        if missing := sorted(required - set(data)):
            raise ValueError(f"lens intrinsics: missing field(s) {', '.join(map(repr, missing))}")
        if unknown := sorted(set(data) - known):
            raise ValueError(
                f"lens intrinsics: unknown field(s) {', '.join(map(repr, unknown))}; known "
                f"fields are {', '.join(sorted(known))}"
            )
        terms = data["distortion"]
        if not isinstance(terms, dict) or set(terms) != set(DISTORTION_TERMS):
            raise ValueError(
                "lens intrinsics: distortion must be an object with exactly "
                f"{', '.join(DISTORTION_TERMS)}, got {terms!r}"
            )
        kwargs = dict(data)
        kwargs["distortion"] = tuple(terms[n] for n in DISTORTION_TERMS)
        for name in ("image_size", "focal_px", "principal_point_px", "pinhole_principal_point_px"):
            if isinstance(kwargs[name], list):
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)


# ---- the model ----------------------------------------------------------------------------------


def distort_normalised(points: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """The lens model above: normalised pinhole coordinates -> normalised distorted ones,
    float64[N, 2]."""
    k1, k2, p1, p2, k3 = (float(v) for v in np.asarray(coefficients, dtype=np.float64)[:5])
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return np.stack([xd, yd], axis=1)


def undistort_pixels(
    points_px: np.ndarray, camera_matrix: np.ndarray, coefficients: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the camera's frame -> normalised pinhole coordinates, ``(float64[N, 2],
    valid bool[N])``.

    A point is valid when the model maps the result back onto it and the model is one-to-one
    there (its Jacobian's determinant is positive): a strong barrel term without a higher one
    (k1 = -0.35 alone) turns back beyond some radius, and pixels outside it have no inverse.
    """
    points = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    matrix = np.asarray(camera_matrix, dtype=np.float64)
    coefficients = np.asarray(coefficients, dtype=np.float64)
    if points.size == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=bool)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, _UNDISTORT_ITERATIONS, 1e-12)
    normalised = cv2.undistortPoints(
        points.reshape(-1, 1, 2), matrix, coefficients, criteria=criteria
    ).reshape(-1, 2)
    back = distort_normalised(normalised, coefficients) * (matrix[0, 0], matrix[1, 1]) + (
        matrix[0, 2],
        matrix[1, 2],
    )
    valid = np.all(np.isfinite(normalised), axis=1)
    valid &= np.linalg.norm(back - points, axis=1) <= _ROUND_TRIP_PX
    valid &= _jacobian_determinant(normalised, coefficients) > 0
    return normalised, valid


def _jacobian_determinant(points: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    step = 1e-6
    dx = distort_normalised(points + (step, 0.0), coefficients) - distort_normalised(
        points - (step, 0.0), coefficients
    )
    dy = distort_normalised(points + (0.0, step), coefficients) - distort_normalised(
        points - (0.0, step), coefficients
    )
    return (dx[:, 0] * dy[:, 1] - dx[:, 1] * dy[:, 0]) / (4 * step * step)


def _edge_points(width: int, height: int) -> dict[str, np.ndarray]:
    xs = np.linspace(0.0, width - 1.0, BORDER_SAMPLES)
    ys = np.linspace(0.0, height - 1.0, BORDER_SAMPLES)
    return {
        "top": np.stack([xs, np.zeros_like(xs)], axis=1),
        "bottom": np.stack([xs, np.full_like(xs, height - 1.0)], axis=1),
        "left": np.stack([np.zeros_like(ys), ys], axis=1),
        "right": np.stack([np.full_like(ys, width - 1.0), ys], axis=1),
    }


def pinhole_view(
    camera_matrix: np.ndarray, coefficients: np.ndarray, image_size: tuple[int, int]
) -> tuple[float, tuple[float, float]]:
    """The pinhole view of a lens: ``(f', (cx, cy))`` for an undistorted image of the frame's size.

    The principal point stays where the lens has it; ``f'`` is the smallest focal length for which
    the frame's edges, carried into the undistorted image, all lie on or beyond its edges: the
    widest undistorted view without black borders. Each edge gives a bound per sampled point
    (the top edge: ``cy + f' · y <= 0``); ``f'`` is the largest bound.
    """
    width, height = int(image_size[0]), int(image_size[1])
    matrix = np.asarray(camera_matrix, dtype=np.float64)
    cx, cy = float(matrix[0, 2]), float(matrix[1, 2])
    if not (0 <= cx <= width - 1 and 0 <= cy <= height - 1):
        raise ValueError(
            f"the lens's principal point ({cx:.1f}, {cy:.1f}) lies outside the "
            f"{width}x{height} frame"
        )
    bounds = []
    for edge, points in _edge_points(width, height).items():
        normalised, valid = undistort_pixels(points, matrix, coefficients)
        if not valid.any():
            raise ValueError(
                f"the lens model has no inverse anywhere on the frame's {edge} edge: "
                "its distortion is not one a camera can have"
            )
        x, y = normalised[valid, 0], normalised[valid, 1]
        if edge == "top":
            room, along = cy, -y
        elif edge == "bottom":
            room, along = height - 1.0 - cy, y
        elif edge == "left":
            room, along = cx, -x
        else:
            room, along = width - 1.0 - cx, x
        if np.any(along <= 0):
            raise ValueError(
                f"the lens model folds the frame's {edge} edge across the principal point"
            )
        bounds.append(float(np.max(room / along)))
    return max(bounds), (cx, cy)


# ---- frames -------------------------------------------------------------------------------------


class Undistorter:
    """Frames of the calibrated size -> the pinhole image, by one ``cv2.remap`` through maps made
    once (16-bit fixed point; bilinear)."""

    def __init__(self, intrinsics: LensIntrinsics):
        self.intrinsics = intrinsics
        self._map_xy, self._map_fraction = cv2.initUndistortRectifyMap(
            intrinsics.camera_matrix(),
            intrinsics.distortion_coefficients(),
            None,
            intrinsics.pinhole_matrix(),
            intrinsics.image_size,
            cv2.CV_16SC2,
        )

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """``frame[H, W, C]`` (or ``[H, W]``) of the calibrated size -> its pinhole image (new)."""
        height, width = frame.shape[:2]
        self.intrinsics.check_frame_size(width, height)
        return cv2.remap(
            frame,
            self._map_xy,
            self._map_fraction,
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )


@functools.lru_cache(maxsize=4)
def undistorter(intrinsics: LensIntrinsics) -> Undistorter:
    """The :class:`Undistorter` of ``intrinsics``, made on first use and kept."""
    return Undistorter(intrinsics)


__all__ = [
    "DISTORTION_TERMS",
    "LensIntrinsics",
    "Undistorter",
    "distort_normalised",
    "pinhole_view",
    "undistort_pixels",
    "undistorter",
]
