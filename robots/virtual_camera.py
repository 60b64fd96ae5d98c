"""A virtual camera's lens, its capture settings, and a printed calibration board held up in front
of it.

:class:`LensWarp` gives a simulated camera a real lens: it knows, for every pixel of the camera's
frame, the ray that pixel sees (OpenCV's lens model inverted, :mod:`slac_runtime.lens`), renders
nothing itself, and turns a pinhole render wide enough to hold all those rays into the distorted
frame. Where a strong barrel term alone (k1 = -0.35 with no k2) turns back before the frame's
corners, those corners have no ray and stay black, like a lens that vignettes.

:class:`BoardInView` puts a printed sheet (a PNG that records its print size, as
``slac-calibrate camera --print-board`` writes it) into that frame at a sequence of poses, each for
a while, as a person holding the board up to the camera would: tilted, near the frame's corners
and edges, partly out of view. Each pose's image is computed once, through the same rays,
at twice the frame's resolution and area-averaged, so that the board's edges are anti-aliased.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slac_runtime.camera_settings import CameraSettings
from slac_runtime.lens import LensIntrinsics, undistort_pixels

SUPERSAMPLE = 2  # board images are computed at this many samples per pixel, each way
PAPER_WHITE = 215.0  # grey levels of the printed sheet as the camera sees it
INK_BLACK = 30.0
DEFAULT_POSE_S = 0.4  # how long the board stays at each pose

RENDERED_FOURCC = "RGB3"  # V4L2's name for 24-bit RGB, what a renderer delivers


def rendered_camera_settings(width: int, height: int, fps: float) -> CameraSettings:
    """What a rendered camera reports, as a real one does: its mode, and exposure and white
    balance fixed (a render's brightness and colour never adapt)."""
    return CameraSettings(
        width=width,
        height=height,
        fps=fps,
        fourcc=RENDERED_FOURCC,
        auto_exposure=False,
        auto_white_balance=False,
    )


@dataclass(frozen=True)
class Lens:
    """Distortion terms of OpenCV's model (radial k1, k2; tangential p1, p2); k3 is 0."""

    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    def __post_init__(self) -> None:
        for name in ("k1", "k2", "p1", "p2"):
            value = getattr(self, name)
            if not math.isfinite(value) or abs(value) > 2.0:
                raise ValueError(f"lens term {name} must be a number in [-2, 2], got {value}")

    def coefficients(self) -> np.ndarray:
        """``(k1, k2, p1, p2, k3)``."""
        return np.array([self.k1, self.k2, self.p1, self.p2, 0.0])

    @property
    def is_pinhole(self) -> bool:
        return self.k1 == self.k2 == self.p1 == self.p2 == 0.0


def _pixel_grid(width: int, height: int, samples: int) -> np.ndarray:
    """float64[H*s, W*s, 2]: the centres of ``samples x samples`` sub-pixels of every pixel."""
    offsets = (np.arange(samples) + 0.5) / samples - 0.5
    xs = (np.arange(width)[:, None] + offsets[None, :]).ravel()
    ys = (np.arange(height)[:, None] + offsets[None, :]).ravel()
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack([grid_x, grid_y], axis=-1)


class LensWarp:
    """The rays of a distorted ``width x height`` frame, and the warp of a pinhole render onto it.

    ``focal_px``, ``principal_point_px``: the lens's camera matrix (square pixels), in the frame's
    pixels. The pinhole render it needs (:attr:`render_size`, :attr:`render_fovy_deg`) has the
    same focal length and its principal point at its centre.
    """

    def __init__(
        self,
        width: int,
        height: int,
        focal_px: float,
        principal_point_px: tuple[float, float],
        lens: Lens,
    ):
        self.width, self.height = int(width), int(height)
        self.focal_px = float(focal_px)
        self.principal_point_px = (float(principal_point_px[0]), float(principal_point_px[1]))
        self.lens = lens
        # The truth, with the pinhole view the runtime would undistort to (checks the lens, too).
        self.intrinsics = LensIntrinsics.from_camera(
            self.camera_matrix(), lens.coefficients(), (self.width, self.height)
        )
        rays, valid = self.rays(1)
        reach = np.abs(rays[valid]).max(axis=0) * self.focal_px
        half_w, half_h = (int(math.ceil(v)) + 2 for v in reach)
        self.render_size = (2 * half_w + 1, 2 * half_h + 1)
        self.render_fovy_deg = math.degrees(
            2.0 * math.atan(self.render_size[1] / 2.0 / self.focal_px)
        )
        centre = ((self.render_size[0] - 1) / 2.0, (self.render_size[1] - 1) / 2.0)
        maps = np.where(valid[..., None], rays * self.focal_px + centre, -10.0).astype(np.float32)
        self._map_xy, self._map_fraction = cv2.convertMaps(maps[..., 0], maps[..., 1], cv2.CV_16SC2)

    def camera_matrix(self) -> np.ndarray:
        f, (cx, cy) = self.focal_px, self.principal_point_px
        return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])

    def rays(self, samples: int) -> tuple[np.ndarray, np.ndarray]:
        """``(float64[H*s, W*s, 2] normalised rays, bool[H*s, W*s] valid)`` of the frame's
        sub-pixels, ``samples x samples`` per pixel."""
        grid = _pixel_grid(self.width, self.height, samples)
        rays, valid = undistort_pixels(
            grid.reshape(-1, 2), self.camera_matrix(), self.lens.coefficients()
        )
        return rays.reshape(grid.shape), valid.reshape(grid.shape[:2])

    def warp(self, render: np.ndarray) -> np.ndarray:
        """The pinhole render (``render_size``) as the lens shows it: ``[height, width, C]``."""
        if (render.shape[1], render.shape[0]) != self.render_size:
            raise ValueError(
                f"the render must be {self.render_size[0]}x{self.render_size[1]}, got "
                f"{render.shape[1]}x{render.shape[0]}"
            )
        return cv2.remap(
            render,
            self._map_xy,
            self._map_fraction,
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )


# ---- the printed board --------------------------------------------------------------------------


def read_printed_sheet(path: str | Path) -> tuple[np.ndarray, float]:
    """A printed sheet: ``(uint8[H, W] grey, pixels per mm)`` from a PNG whose ``pHYs`` chunk gives
    its print resolution (``slac-calibrate camera --print-board`` writes one)."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path} is not a PNG image")
    per_metre = None
    offset = 8
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"pHYs" and length == 9:
            (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
            x, y, unit = struct.unpack(">IIB", body)
            if crc == zlib.crc32(kind + body) and unit == 1 and x == y and x > 0:
                per_metre = x
        if kind in (b"IDAT", b"IEND"):
            break
        offset += 12 + length
    if per_metre is None:
        raise ValueError(
            f"{path} does not say its print size (no pHYs chunk in pixels per metre): use a "
            "board written by slac-calibrate camera --print-board"
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"{path} could not be decoded as an image")
    return image, per_metre / 1000.0


def _rotation(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    rx, ry, rz = (math.radians(v) for v in (rx_deg, ry_deg, rz_deg))
    about_x = np.array(
        [[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]]
    )
    about_y = np.array(
        [[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]]
    )
    about_z = np.array(
        [[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]]
    )
    return about_z @ about_x @ about_y


@dataclass(frozen=True)
class BoardPose:
    """Where the sheet is, in the camera's frame (x right, y down, z forward; metres): its centre
    at ``position``, its own axes (x along its width, y down its height, z away from its printed
    side) the columns of ``rotation``."""

    rotation: np.ndarray
    position: np.ndarray


# Where the sheet's centre is aimed, as fractions of the frame's width and height, and how it is
# tilted (degrees about the camera's x and y axes, then turned about its own normal): the centre,
# the four corners and the four edges, each tilted another way, then a second round nearer.
_AIMS = (
    (0.50, 0.50, 0, 0, 0),
    (0.16, 0.18, 25, -25, 8),
    (0.84, 0.18, 25, 25, -8),
    (0.16, 0.82, -25, -25, -8),
    (0.84, 0.82, -25, 25, 8),
    (0.50, 0.12, 35, 0, 0),
    (0.50, 0.88, -35, 0, 0),
    (0.10, 0.50, 0, -35, 12),
    (0.90, 0.50, 0, 35, -12),
    (0.50, 0.50, 30, 20, 20),
    (0.06, 0.08, 15, -30, 0),
    (0.94, 0.08, 15, 30, 0),
    (0.06, 0.92, -15, -30, 0),
    (0.94, 0.92, -15, 30, 0),
    (0.30, 0.35, -30, 15, -15),
    (0.70, 0.65, 30, -15, 15),
    (0.70, 0.30, -20, -30, 5),
    (0.30, 0.70, 20, 30, -5),
    (0.25, 0.50, 0, 30, -10),
    (0.75, 0.50, 0, -30, 10),
    (0.50, 0.25, -30, 0, 15),
    (0.50, 0.75, 30, 0, -15),
    (0.35, 0.60, 35, 25, 0),
    (0.65, 0.40, -35, -25, 0),
)


def board_poses(
    warp: LensWarp, sheet_size_mm: tuple[float, float], fill: float = 0.8
) -> list[BoardPose]:
    """The poses a person would hold a sheet of ``sheet_size_mm`` at, in front of ``warp``'s
    camera: its width a ``fill`` fraction of the frame's in the centre (from the eleventh pose on,
    1.25x that), aimed at the centre, the corners and the edges, tilted 15-35 degrees."""
    width_m = sheet_size_mm[0] / 1000.0
    distance = warp.focal_px * width_m / (fill * warp.width)
    poses = []
    for k, (fu, fv, rx, ry, rz) in enumerate(_AIMS):
        target = np.array([[fu * (warp.width - 1), fv * (warp.height - 1)]])
        centre = np.array(warp.principal_point_px)
        for _ in range(20):  # aimed where the lens has a ray: move toward the centre until it does
            ray, valid = undistort_pixels(target, warp.camera_matrix(), warp.lens.coefficients())
            if valid[0]:
                break
            target = centre + 0.9 * (target - centre)
        z = distance * (0.8 if k >= 10 else 1.0)
        position = np.array([ray[0, 0] * z, ray[0, 1] * z, z])
        poses.append(BoardPose(rotation=_rotation(rx, ry, rz), position=position))
    return poses


class BoardInView:
    """A printed sheet held in front of a :class:`LensWarp`'s camera at :func:`board_poses`, each
    for ``pose_s`` seconds in turn: :meth:`layer` is the sheet's image and coverage at a time."""

    def __init__(
        self,
        sheet: np.ndarray,
        px_per_mm: float,
        warp: LensWarp,
        pose_s: float = DEFAULT_POSE_S,
        poses: list[BoardPose] | None = None,
    ):
        if not pose_s > 0:
            raise ValueError(f"pose_s must be positive, got {pose_s}")
        self.sheet = np.asarray(sheet, np.uint8)
        self.px_per_mm = float(px_per_mm)
        self.sheet_size_mm = (sheet.shape[1] / px_per_mm, sheet.shape[0] / px_per_mm)
        self.warp = warp
        self.pose_s = float(pose_s)
        self.poses = poses if poses is not None else board_poses(warp, self.sheet_size_mm)
        rays, valid = warp.rays(SUPERSAMPLE)
        self._layers = [self._image(pose, rays, valid) for pose in self.poses]

    def _image(
        self, pose: BoardPose, rays: np.ndarray, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sheet at ``pose``: ``(float32[H, W] grey multiplied by its coverage, float32[H, W]
        coverage in [0, 1])``."""
        normal = pose.rotation[:, 2]
        directions = np.concatenate([rays, np.ones(rays.shape[:2] + (1,))], axis=-1)
        facing = directions @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = float(normal @ pose.position) / facing
        points = directions * depth[..., None] - pose.position
        on_sheet = points @ pose.rotation[:, :2]  # metres along the sheet's width and height
        # The sheet, shrunk to about one of its pixels per sub-pixel where it is seen (no aliasing).
        samples_per_m = self.warp.focal_px * SUPERSAMPLE / float(pose.position[2])
        scale = min(1.0, samples_per_m / (self.px_per_mm * 1000.0))
        sheet = self.sheet
        if scale < 1.0:
            size = (max(2, round(sheet.shape[1] * scale)), max(2, round(sheet.shape[0] * scale)))
            sheet = cv2.resize(sheet, size, interpolation=cv2.INTER_AREA)
        per_m = self.px_per_mm * 1000.0 * sheet.shape[1] / self.sheet.shape[1]
        centre = ((sheet.shape[1] - 1) / 2.0, (sheet.shape[0] - 1) / 2.0)
        map_xy = on_sheet * per_m + centre
        seen = valid & (depth > 0) & np.all(np.isfinite(map_xy), axis=-1)
        map_xy = np.where(seen[..., None], map_xy, -10.0).astype(np.float32)
        tone = INK_BLACK + (PAPER_WHITE - INK_BLACK) * (sheet.astype(np.float32) / 255.0)
        # Outside the sheet both maps read 0: the grey comes out multiplied by the coverage.
        grey = cv2.remap(tone, map_xy[..., 0], map_xy[..., 1], cv2.INTER_LINEAR)
        cover = cv2.remap(np.ones_like(tone), map_xy[..., 0], map_xy[..., 1], cv2.INTER_LINEAR)
        size = (self.warp.width, self.warp.height)
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        cover = cv2.resize(cover, size, interpolation=cv2.INTER_AREA)
        return grey.astype(np.float32), np.clip(cover, 0.0, 1.0).astype(np.float32)

    def pose_at(self, elapsed_s: float) -> int:
        """The index of the pose shown ``elapsed_s`` after the board came into view."""
        return int(elapsed_s // self.pose_s) % len(self.poses)

    def layer(self, elapsed_s: float) -> tuple[np.ndarray, np.ndarray]:
        """``(grey x coverage, coverage)`` of the sheet ``elapsed_s`` after it came into view."""
        return self._layers[self.pose_at(elapsed_s)]

    def show(self, frame: np.ndarray, elapsed_s: float) -> np.ndarray:
        """``frame`` (uint8 ``[H, W, 3]``) with the sheet in front of it, as it is
        ``elapsed_s`` after it came into view (a new array)."""
        grey, cover = self.layer(elapsed_s)
        out = frame.astype(np.float32) * (1.0 - cover[..., None]) + grey[..., None]
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


__all__ = [
    "BoardInView",
    "BoardPose",
    "Lens",
    "LensWarp",
    "board_poses",
    "read_printed_sheet",
]
