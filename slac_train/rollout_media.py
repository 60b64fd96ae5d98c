"""Videos and contact sheets of rollouts: files a person can look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def upscale(frame: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of ``uint8[H, W, 3]`` so that 64x64 frames are watchable."""
    return frame.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else frame


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float, scale: int = 4) -> Path:
    """Write RGB ``uint8[H, W, 3]`` frames as an H.264 mp4."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(
        path, fps=fps, codec="libx264", quality=8, macro_block_size=1
    ) as writer:
        for frame in frames:
            writer.append_data(upscale(np.asarray(frame, dtype=np.uint8), scale))
    return path


def contact_sheet(
    frames: Sequence[np.ndarray], columns: int = 8, count: int = 32, scale: int = 2
) -> np.ndarray:
    """Tile ``count`` evenly spaced frames into one RGB image (1-pixel white gutters)."""
    if len(frames) == 0:
        raise ValueError("no frames to tile")
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    tiles = [upscale(np.asarray(frames[i], dtype=np.uint8), scale) for i in picks]
    h, w, _ = tiles[0].shape
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1, 3), 255, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = tile
    return sheet


def write_png(path: str | Path, image_rgb: np.ndarray) -> Path:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image_rgb[..., ::-1])):
        raise OSError(f"could not write {path}")
    return path
