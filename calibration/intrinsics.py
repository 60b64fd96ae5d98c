"""The lens's intrinsics from views of a calibration board: collecting views, OpenCV's
``calibrateCamera``, and the checks a result must pass before it is written.

A view is the board's corners found in one frame (:mod:`calibration.board`). Views come from a live
camera (:func:`capture_views`: a view is taken when the board is held still somewhere it has not
been yet, with guidance on what is still missing) or from a folder of images
(:func:`views_from_images`). :func:`calibrate` fits the camera matrix and the distortion terms
k1, k2, p1, p2 (k3 stays 0: it only fits noise at the frame's corners for an ordinary webcam lens)
and refuses, with one sentence saying why, a result it cannot vouch for:

- fewer than :data:`MIN_VIEWS` views: too few to fix four distortion terms and the focal lengths;
- a cell of the :data:`COVERAGE_GRID` where no corner was ever seen: the distortion there is an
  extrapolation, and the frame's corners and edges are where it is largest;
- an RMS reprojection error above :data:`MAX_RMS_PX`: the corners do not fit one lens (motion
  blur, a bent or wrongly sized board, frames from another camera or resolution);
- a focal length uncertain by more than :data:`MAX_FOCAL_UNCERTAINTY` of itself: the board was
  not tilted enough for the focal length to be told apart from the distance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from calibration.board import Board, BoardDetection, BoardDetector
from slac_runtime.lens import LensIntrinsics, Undistorter

MIN_VIEWS = 10
MAX_RMS_PX = 0.5
COVERAGE_GRID = (4, 3)  # cells across and down a landscape frame (down and across a portrait one)
MAX_FOCAL_UNCERTAINTY = 0.02  # standard deviation of fx and fy, as a fraction of them
CALIBRATION_FLAGS = cv2.CALIB_FIX_K3
# A live view is taken when the board has stood still (corners moved at most STILL_PX between two
# frames) and differs from every view taken so far: its shared corners moved by more than
# NEW_VIEW_FRACTION of the frame's diagonal (median), or it reaches a cell no view reached.
STILL_PX = 1.0
NEW_VIEW_FRACTION = 0.03
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_ROW_NAMES = {3: ("top", "middle", "bottom"), 4: ("top", "upper middle", "lower middle", "bottom")}
_COLUMN_NAMES = {
    3: ("left", "centre", "right"),
    4: ("left", "centre-left", "centre-right", "right"),
}


class IntrinsicsRefused(ValueError):
    """The views cannot give intrinsics to trust; the message says why and what to do."""


@dataclass(frozen=True)
class BoardView:
    """The board's corners in one frame, and where that frame came from."""

    detection: BoardDetection
    source: str  # a file name, or "frame N" of a live camera


class Coverage:
    """Which cells of a coarse grid over the frame hold at least one corner of some view."""

    def __init__(self, image_size: tuple[int, int]):
        width, height = image_size
        self.image_size = (int(width), int(height))
        across, down = COVERAGE_GRID if width >= height else COVERAGE_GRID[::-1]
        self.shape = (down, across)
        self.counts = np.zeros(self.shape, dtype=np.int64)

    def cells(self, points: np.ndarray) -> set[tuple[int, int]]:
        """The ``(row, column)`` cells ``points`` (float[N, 2] pixels) fall in."""
        width, height = self.image_size
        down, across = self.shape
        columns = np.clip((points[:, 0] + 0.5) * across // width, 0, across - 1).astype(int)
        rows = np.clip((points[:, 1] + 0.5) * down // height, 0, down - 1).astype(int)
        return set(zip(rows.tolist(), columns.tolist()))

    def add(self, points: np.ndarray) -> None:
        for row, column in self.cells(points):
            self.counts[row, column] += 1

    def missing(self) -> list[str]:
        """The empty cells, in words ("top left", ...)."""
        down, across = self.shape
        rows, columns = _ROW_NAMES[down], _COLUMN_NAMES[across]
        return [
            f"{rows[r]} {columns[c]}"
            for r in range(down)
            for c in range(across)
            if not self.counts[r, c]
        ]

    @property
    def covered(self) -> int:
        return int(np.count_nonzero(self.counts))

    @property
    def total(self) -> int:
        return int(self.counts.size)


class ViewCollector:
    """The views kept for calibration, their coverage, and which new ones are worth keeping."""

    def __init__(self, image_size: tuple[int, int]):
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.views: list[BoardView] = []
        self.coverage = Coverage(self.image_size)
        self.frame: np.ndarray | None = None  # the newest frame a view was kept from (RGB)
        self._diagonal = float(np.hypot(*self.image_size))

    def is_new(self, detection: BoardDetection) -> bool:
        """True when ``detection`` reaches an empty cell or differs from every kept view."""
        if any(
            not self.coverage.counts[cell] for cell in self.coverage.cells(detection.image_points)
        ):
            return True
        for view in self.views:
            shared, mine, theirs = np.intersect1d(
                detection.ids, view.detection.ids, return_indices=True
            )
            if len(shared) < 0.5 * len(detection.ids):
                continue
            moved = np.linalg.norm(
                detection.image_points[mine] - view.detection.image_points[theirs], axis=1
            )
            if np.median(moved) < NEW_VIEW_FRACTION * self._diagonal:
                return False
        return True

    def add(self, view: BoardView, frame: np.ndarray | None = None) -> None:
        self.views.append(view)
        self.coverage.add(view.detection.image_points)
        if frame is not None:
            self.frame = frame

    def progress(self, target_views: int) -> str:
        missing = self.coverage.missing()
        line = (
            f"{len(self.views)}/{target_views} views, corners in {self.coverage.covered}/"
            f"{self.coverage.total} cells of the frame"
        )
        if missing:
            line += f"; still empty: {', '.join(missing)}"
        return line


# ---- views from files ---------------------------------------------------------------------------


def views_from_images(
    directory: Path, detector: BoardDetector, log: Callable[[str], None] = print
) -> ViewCollector:
    """Every image in ``directory`` (sorted by name) that shows the board; the images must all be
    the same size. Images without the board, and copies of a view already taken (every corner
    within ``STILL_PX`` of where it was), are named and skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        raise IntrinsicsRefused(f"--images {directory} is not a directory")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise IntrinsicsRefused(
            f"no images in {directory} (looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    collector: ViewCollector | None = None
    without_board, repeats = [], []
    for path in paths:
        colour = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if colour is None:
            raise IntrinsicsRefused(f"{path} could not be read as an image")
        image = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
        size = (image.shape[1], image.shape[0])
        if collector is None:
            collector = ViewCollector(size)
            first = path
        elif size != collector.image_size:
            raise IntrinsicsRefused(
                f"{path.name} is {size[0]}x{size[1]} but {first.name} is "
                f"{collector.image_size[0]}x{collector.image_size[1]}: calibrate one camera "
                "resolution at a time"
            )
        detection = detector.detect(image)
        if detection is None:
            without_board.append(path.name)
            continue
        if any(_still(view.detection, detection) for view in collector.views):
            repeats.append(path.name)
            continue
        collector.add(BoardView(detection, path.name), cv2.cvtColor(colour, cv2.COLOR_BGR2RGB))
    log(
        f"{len(collector.views)} of {len(paths)} images in {directory} are views of the board"
        + (f"; not found in: {', '.join(without_board)}" if without_board else "")
        + (f"; copies of a view already taken: {', '.join(repeats)}" if repeats else "")
    )
    return collector


# ---- views from a live camera -------------------------------------------------------------------


def _still(previous: BoardDetection | None, current: BoardDetection) -> bool:
    if previous is None:
        return False
    shared, mine, theirs = np.intersect1d(current.ids, previous.ids, return_indices=True)
    if len(shared) < 0.8 * len(current.ids):
        return False
    moved = np.linalg.norm(current.image_points[mine] - previous.image_points[theirs], axis=1)
    return float(moved.max()) <= STILL_PX


def capture_views(
    next_frame: Callable[[float], np.ndarray | None],
    detector: BoardDetector,
    target_views: int,
    timeout_s: float,
    log: Callable[[str], None] = print,
    guidance_every_s: float = 5.0,
) -> ViewCollector:
    """Views from a live camera until ``target_views`` are kept and every coverage cell holds a
    corner, or ``timeout_s`` has passed.

    ``next_frame(timeout_s)`` returns the camera's next new frame (uint8 RGB or grey) or None, and
    raises EOFError when the source has no more (a video file). A view is kept when the board
    stood still for two frames and :meth:`ViewCollector.is_new`.
    """
    collector: ViewCollector | None = None
    previous: BoardDetection | None = None
    frames = 0
    start = time.monotonic()
    last_guidance = start
    while time.monotonic() - start < timeout_s:
        try:
            frame = next_frame(min(1.0, max(0.05, timeout_s - (time.monotonic() - start))))
        except EOFError:
            break
        now = time.monotonic()
        if frame is None:
            continue
        frames += 1
        if collector is None:
            collector = ViewCollector((frame.shape[1], frame.shape[0]))
        elif (frame.shape[1], frame.shape[0]) != collector.image_size:
            raise IntrinsicsRefused(
                f"the camera's frames changed size from {collector.image_size[0]}x"
                f"{collector.image_size[1]} to {frame.shape[1]}x{frame.shape[0]} during the capture"
            )
        detection = detector.detect(frame)
        if detection is not None and _still(previous, detection) and collector.is_new(detection):
            collector.add(BoardView(detection, f"frame {frames}"), frame)
            log(
                f"view {len(collector.views)}: {len(detection.ids)} corners; "
                + collector.progress(target_views)
            )
            last_guidance = now
            if len(collector.views) >= target_views and not collector.coverage.missing():
                return collector
        previous = detection
        if now - last_guidance >= guidance_every_s:
            last_guidance = now
            if detection is None:
                log("no board in view: hold it up to the camera, flat and well lit")
            else:
                log(
                    "hold the board still somewhere new (tilted, nearer a corner or an edge); "
                    + collector.progress(target_views)
                )
    if collector is None:
        raise IntrinsicsRefused(f"the camera delivered no frame in {timeout_s:g} s")
    log("the capture ended: " + collector.progress(target_views))
    return collector


# ---- calibration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntrinsicsResult:
    intrinsics: LensIntrinsics
    rms_px: float
    per_view_rms_px: np.ndarray  # float[views]
    uncertainty: dict[str, float]  # standard deviation per parameter (fx, fy, cx, cy, k1, ...)
    corners: int
    coverage: Coverage = field(repr=False)


def check_views(collector: ViewCollector) -> None:
    """Refuse too few views, or a frame not covered; before any fitting."""
    count = len(collector.views)
    if count < MIN_VIEWS:
        raise IntrinsicsRefused(
            f"only {count} view{'s' if count != 1 else ''} of the board, at least {MIN_VIEWS} are "
            "needed: hold it at more places and angles (or give more images)"
        )
    missing = collector.coverage.missing()
    if missing:
        down, across = collector.coverage.shape
        raise IntrinsicsRefused(
            f"no board corner was seen in the {', '.join(missing)} of the frame (a {across}x{down} "
            "grid of cells): the lens distorts most near the edges and corners, so hold the board "
            "there too, partly out of view if need be"
        )


def calibrate(collector: ViewCollector, board: Board) -> IntrinsicsResult:
    """Fit the lens to the views and check the result (:class:`IntrinsicsRefused` if poor)."""
    check_views(collector)
    views = collector.views
    object_points = [v.detection.object_points.reshape(-1, 1, 3) for v in views]
    image_points = [v.detection.image_points.reshape(-1, 1, 2) for v in views]
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-9)
    rms, matrix, distortion, _, _, std_intrinsics, _, per_view = cv2.calibrateCameraExtended(
        object_points,
        image_points,
        collector.image_size,
        None,
        None,
        flags=CALIBRATION_FLAGS,
        criteria=criteria,
    )
    names = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")
    uncertainty = dict(zip(names, (float(v) for v in np.ravel(std_intrinsics)[:8])))
    per_view = np.ravel(per_view)
    if not rms <= MAX_RMS_PX:
        worst = np.argsort(per_view)[::-1][:3]
        worst_text = ", ".join(f"{views[k].source} ({per_view[k]:.2f} px)" for k in worst)
        raise IntrinsicsRefused(
            f"RMS reprojection error {rms:.2f} px is above {MAX_RMS_PX:g} px: the corners do not "
            f"fit one lens; worst views {worst_text}: motion blur, a bent board, a wrong "
            "--square-mm or --board-squares, or frames of another camera or resolution?"
        )
    for name, index in (("fx", 0), ("fy", 1)):
        relative = uncertainty[name] / float(matrix[index, index])
        if not relative <= MAX_FOCAL_UNCERTAINTY:
            raise IntrinsicsRefused(
                f"the focal length is uncertain by {100 * relative:.1f} % (at most "
                f"{100 * MAX_FOCAL_UNCERTAINTY:g} % is accepted): tilt the board more, up to 45 "
                "degrees each way, in some of the views"
            )
    try:
        intrinsics = LensIntrinsics.from_camera(
            matrix,
            distortion,
            collector.image_size,
            rms_px=round(float(rms), 4),
            views=len(views),
            board=board.describe(),
        )
    except ValueError as e:
        raise IntrinsicsRefused(f"the fitted lens cannot be used: {e}") from e
    return IntrinsicsResult(
        intrinsics=intrinsics,
        rms_px=float(rms),
        per_view_rms_px=per_view,
        uncertainty=uncertainty,
        corners=int(sum(len(v.detection.ids) for v in views)),
        coverage=collector.coverage,
    )


def report(result: IntrinsicsResult) -> list[tuple[str, str]]:
    """Rows of a table: each parameter with its standard deviation, the errors, the pinhole view."""
    lens = result.intrinsics
    u = result.uncertainty
    (fx, fy), (cx, cy) = lens.focal_px, lens.principal_point_px
    width, height = lens.image_size
    f = lens.pinhole_focal_px
    fov_x = np.degrees(2 * np.arctan(width / 2 / f))
    fov_y = np.degrees(2 * np.arctan(height / 2 / f))
    rows = [
        (
            "lens intrinsics",
            f"{width}x{height} frames, {lens.views} views, {result.corners} corners",
        ),
        ("focal length fx, fy (px)", f"{fx:.2f} ± {u['fx']:.2f}, {fy:.2f} ± {u['fy']:.2f}"),
        ("principal point cx, cy (px)", f"{cx:.2f} ± {u['cx']:.2f}, {cy:.2f} ± {u['cy']:.2f}"),
    ]
    for name, value in zip(("k1", "k2", "p1", "p2"), lens.distortion):
        rows.append((name, f"{value:+.5f} ± {u[name]:.5f}"))
    rows += [
        (
            "RMS reprojection error (px)",
            f"{result.rms_px:.3f} (at most {MAX_RMS_PX:g}); worst view "
            f"{result.per_view_rms_px.max():.3f}",
        ),
        (
            "pinhole view",
            f"f' {f:.2f} px, centre ({lens.pinhole_principal_point_px[0]:.1f}, "
            f"{lens.pinhole_principal_point_px[1]:.1f}), field of view {fov_x:.1f} x "
            f"{fov_y:.1f} deg",
        ),
    ]
    return rows


def _palette(count: int) -> list[tuple[int, int, int]]:
    hues = np.uint8([[[int(180 * k / count), 255, 255] for k in range(count)]])
    return [tuple(int(v) for v in rgb) for rgb in cv2.cvtColor(hues, cv2.COLOR_HSV2RGB)[0]]


def coverage_picture(
    frame_rgb: np.ndarray,
    views: Iterable[BoardView],
    coverage: Coverage,
    intrinsics: LensIntrinsics | None = None,
) -> np.ndarray:
    """A picture to check the capture (RGB): the frame with every view's corners and the coverage
    grid (empty cells red), and beside it the frame undistorted by ``intrinsics``."""
    frame = frame_rgb if frame_rgb.ndim == 3 else cv2.cvtColor(frame_rgb, cv2.COLOR_GRAY2RGB)
    height, width = frame.shape[:2]
    down, across = coverage.shape
    tint = frame.copy()
    for r, c in zip(*np.nonzero(coverage.counts == 0)):
        x0, x1 = c * width // across, (c + 1) * width // across
        y0, y1 = r * height // down, (r + 1) * height // down
        tint[y0:y1, x0:x1] = (255, 0, 0)
    picture = cv2.addWeighted(frame, 0.7, tint, 0.3, 0.0)
    for c in range(1, across):
        cv2.line(
            picture, (c * width // across, 0), (c * width // across, height - 1), (0, 255, 255)
        )
    for r in range(1, down):
        cv2.line(picture, (0, r * height // down), (width - 1, r * height // down), (0, 255, 255))
    palette = _palette(15)
    for k, view in enumerate(views):
        for x, y in view.detection.image_points:
            cv2.circle(picture, (int(round(x)), int(round(y))), 2, palette[k % len(palette)], -1)
    if intrinsics is None:
        return picture
    return np.concatenate([picture, Undistorter(intrinsics)(frame)], axis=1)


__all__ = [
    "COVERAGE_GRID",
    "MAX_FOCAL_UNCERTAINTY",
    "MAX_RMS_PX",
    "MIN_VIEWS",
    "BoardView",
    "Coverage",
    "IntrinsicsRefused",
    "IntrinsicsResult",
    "ViewCollector",
    "calibrate",
    "capture_views",
    "check_views",
    "coverage_picture",
    "report",
    "views_from_images",
]
