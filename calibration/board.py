"""The calibration board for the lens: what it looks like on paper and where its corners are in a
camera frame.

Two kinds, both of black and white squares ``columns x rows`` of ``square_mm`` each:

- **ChArUco** (the default where the installed OpenCV has ``cv2.aruco.CharucoDetector``): every
  white square holds an ArUco marker, so each corner is identified on its own and a board that is
  partly out of view, or seen at a steep angle, still gives its visible corners. That is what lets
  the corners reach the edges and corners of the frame, where the lens distorts most.
- **chessboard**: plain squares, found by ``cv2.findChessboardCorners`` and refined by
  ``cv2.cornerSubPix``; the whole board must be in view.

:meth:`Board.sheet` draws the board with a white margin at a stated print resolution, and
:func:`png_with_print_size` stores that resolution in the PNG (its ``pHYs`` chunk), so that a
printer, and the virtual D'Claw's camera, know how large the sheet is.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

BOARD_KINDS = ("charuco", "chessboard")
DEFAULT_COLUMNS = 9  # squares across
DEFAULT_ROWS = 6  # squares down: 9 x 6 squares of 25 mm fit a sheet of A4 or Letter
DEFAULT_SQUARE_MM = 25.0
MARKER_FRACTION = 0.7  # a ChArUco marker's side as a fraction of its square's
DICTIONARY = "DICT_4X4_50"  # 4x4-bit ArUco markers: the largest cells for a given marker size
PRINT_DPI = 300.0
MARGIN_MM = 12.0  # white margin around the squares (the outer corners need a light surround)
MIN_CORNERS = 6  # fewer corners than this in a frame is no view of the board


def charuco_available() -> bool:
    """True when the installed OpenCV detects ChArUco boards."""
    return hasattr(cv2, "aruco") and hasattr(cv2.aruco, "CharucoDetector")


def default_board_kind() -> str:
    return "charuco" if charuco_available() else "chessboard"


@dataclass(frozen=True)
class BoardDetection:
    """The corners of the board found in one image."""

    image_points: np.ndarray  # float32[N, 2], pixels (pixel centres at integers)
    object_points: np.ndarray  # float32[N, 3], metres on the board (z = 0)
    ids: np.ndarray  # int32[N], inner corners numbered row by row


@dataclass(frozen=True)
class Board:
    """A board of ``columns x rows`` squares of ``square_mm``; its inner corners are what is
    measured: ``(columns - 1) x (rows - 1)`` of them."""

    kind: str = "charuco"
    columns: int = DEFAULT_COLUMNS
    rows: int = DEFAULT_ROWS
    square_mm: float = DEFAULT_SQUARE_MM

    def __post_init__(self) -> None:
        if self.kind not in BOARD_KINDS:
            raise ValueError(f"board kind must be one of {', '.join(BOARD_KINDS)}, got {self.kind}")
        if self.kind == "charuco" and not charuco_available():
            raise ValueError(
                f"this OpenCV ({cv2.__version__}) has no ChArUco detector (cv2.aruco); use "
                "--board chessboard"
            )
        if not (3 <= self.columns <= 30 and 3 <= self.rows <= 30):
            raise ValueError(
                f"a board needs 3 to 30 squares each way, got {self.columns}x{self.rows}"
            )
        if self.kind == "charuco" and (self.columns * self.rows) // 2 > 50:
            raise ValueError(
                f"a {self.columns}x{self.rows} ChArUco board needs more than the 50 markers of "
                f"{DICTIONARY}"
            )
        if not 1.0 <= self.square_mm <= 500.0:
            raise ValueError(f"a square must measure 1 to 500 mm, got {self.square_mm:g}")

    # ---- geometry -------------------------------------------------------------------------------

    @property
    def inner_corners(self) -> tuple[int, int]:
        """``(across, down)`` inner corners."""
        return self.columns - 1, self.rows - 1

    @property
    def corner_count(self) -> int:
        return (self.columns - 1) * (self.rows - 1)

    def corner_positions(self) -> np.ndarray:
        """float32[corner_count, 3]: every inner corner on the board, metres, row by row from the
        top-left one."""
        across, down = self.inner_corners
        square_m = self.square_mm / 1000.0
        xs, ys = np.meshgrid(np.arange(1, across + 1), np.arange(1, down + 1))
        return np.stack(
            [xs.ravel() * square_m, ys.ravel() * square_m, np.zeros(xs.size)], axis=1
        ).astype(np.float32)

    def describe(self) -> str:
        what = "ChArUco" if self.kind == "charuco" else "chessboard"
        extra = (
            f", {MARKER_FRACTION * self.square_mm:g} mm {DICTIONARY} markers"
            if self.kind == "charuco"
            else ""
        )
        return f"{what} {self.columns}x{self.rows} squares of {self.square_mm:g} mm{extra}"

    # ---- drawing --------------------------------------------------------------------------------

    def sheet(self, dpi: float = PRINT_DPI) -> tuple[np.ndarray, float]:
        """The board to print, with its white margin: ``(uint8[H, W] grey, pixels per mm)``.

        A square is a whole number of pixels, so the resolution is adjusted to the nearest one that
        makes the squares exactly ``square_mm`` at 100 % scale.
        """
        square_px = max(8, int(round(self.square_mm * dpi / 25.4)))
        px_per_mm = square_px / self.square_mm
        margin_px = int(round(MARGIN_MM * px_per_mm))
        width, height = self.columns * square_px, self.rows * square_px
        if self.kind == "charuco":
            squares = self._charuco().generateImage((width, height), marginSize=0, borderBits=1)
        else:
            ys, xs = np.mgrid[0:height, 0:width]
            dark = ((xs // square_px) + (ys // square_px)) % 2 == 0
            squares = np.where(dark, 0, 255).astype(np.uint8)
        sheet = np.full((height + 2 * margin_px, width + 2 * margin_px), 255, np.uint8)
        sheet[margin_px : margin_px + height, margin_px : margin_px + width] = squares
        return sheet, px_per_mm

    def _charuco(self):
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, DICTIONARY))
        square_m = self.square_mm / 1000.0
        return cv2.aruco.CharucoBoard(
            (self.columns, self.rows), square_m, MARKER_FRACTION * square_m, dictionary
        )

    # ---- detection ------------------------------------------------------------------------------

    def detector(self) -> BoardDetector:
        return BoardDetector(self)


class BoardDetector:
    """Finds a :class:`Board`'s inner corners in grey or RGB images (one detector per thread)."""

    def __init__(self, board: Board):
        self.board = board
        self._corners = board.corner_positions()
        if board.kind == "charuco":
            self._charuco_board = board._charuco()
            self._charuco = cv2.aruco.CharucoDetector(self._charuco_board)
            self._corners = np.asarray(
                self._charuco_board.getChessboardCorners(), dtype=np.float32
            ).reshape(-1, 3)

    def detect(self, image: np.ndarray) -> BoardDetection | None:
        """The board's corners in ``image`` (uint8 ``[H, W]`` grey or ``[H, W, 3]`` RGB), or
        None when fewer than :data:`MIN_CORNERS` are found."""
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if self.board.kind == "charuco":
            found = self._detect_charuco(grey)
        else:
            found = self._detect_chessboard(grey)
        if found is None:
            return None
        points, ids = found
        if len(ids) < MIN_CORNERS:
            return None
        return BoardDetection(
            image_points=points.astype(np.float32),
            object_points=self._corners[ids],
            ids=ids.astype(np.int32),
        )

    def _detect_charuco(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        corners, ids, _, _ = self._charuco.detectBoard(grey)
        if ids is None or len(ids) < MIN_CORNERS:
            return None
        if self._charuco_board.checkCharucoCornersCollinear(ids):
            return None  # one row of corners fixes nothing
        return corners.reshape(-1, 2), ids.ravel()

    def _detect_chessboard(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        pattern = self.board.inner_corners
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        found, corners = cv2.findChessboardCorners(grey, pattern, flags=flags)
        if not found:
            return None
        corners = corners.reshape(-1, 2)
        # The search window: a third of the smallest square side seen, 2 to 11 pixels.
        grid = corners.reshape(pattern[1], pattern[0], 2)
        spacing = min(
            np.linalg.norm(np.diff(grid, axis=1), axis=2).min(),
            np.linalg.norm(np.diff(grid, axis=0), axis=2).min(),
        )
        half = int(np.clip(spacing / 3.0, 2, 11))
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-3)
        refined = cv2.cornerSubPix(
            grey, corners.reshape(-1, 1, 2).copy(), (half, half), (-1, -1), criteria
        )
        return refined.reshape(-1, 2), np.arange(len(corners))


# ---- print size in the PNG ----------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_print_size(image: np.ndarray, px_per_mm: float) -> bytes:
    """``image`` as PNG bytes whose ``pHYs`` chunk gives its resolution (pixels per metre), so that
    it prints, and is read back, at its true size."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("OpenCV could not encode the board as PNG")
    data = encoded.tobytes()
    per_metre = int(round(px_per_mm * 1000.0))
    phys = _chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1))
    end_of_header = 8 + 8 + 13 + 4  # signature, then IHDR (length, type, 13 bytes, crc)
    return data[:end_of_header] + phys + data[end_of_header:]


def write_board(board: Board, path: Path, dpi: float = PRINT_DPI) -> tuple[float, float]:
    """Write the board to print as a PNG; returns the sheet's ``(width, height)`` in mm."""
    sheet, px_per_mm = board.sheet(dpi)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_with_print_size(sheet, px_per_mm))
    return sheet.shape[1] / px_per_mm, sheet.shape[0] / px_per_mm


__all__ = [
    "BOARD_KINDS",
    "Board",
    "BoardDetection",
    "BoardDetector",
    "charuco_available",
    "default_board_kind",
    "png_with_print_size",
    "write_board",
]
