"""Videos and contact sheets of rollouts: files a person can look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slac_runtime.video import VideoWriter, put_label


def upscale(frame: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of ``uint8[H, W, 3]`` so that 64x64 frames are watchable."""
    return frame.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else frame


def write_video(
    path: str | Path,
    frames: Sequence[np.ndarray],
    fps: float,
    scale: int = 4,
    panel_labels: Sequence[str] | None = None,
    captions: Sequence[str] | None = None,
) -> Path:
    """Write RGB ``uint8[H, W, 3]`` frames, upscaled ``scale`` times, as an H.264 mp4.

    ``panel_labels`` names side-by-side panels of equal width (a reconstruction video's
    ``("truth", "posterior", "prior")``), drawn at the top of each; ``captions`` holds one line per
    frame drawn at the bottom (an evaluation video's step, reward and success:
    :func:`episode_captions`).
    """
    if captions is not None and len(captions) != len(frames):
        raise ValueError(f"{len(captions)} captions for {len(frames)} frames")
    path = Path(path)
    with VideoWriter(path, fps) as writer:
        for i, frame in enumerate(frames):
            big = upscale(np.asarray(frame, dtype=np.uint8), scale).copy()
            if panel_labels:
                label_panels(big, panel_labels)
            if captions is not None:
                put_label(big, captions[i], (4, big.shape[0] - 6), 0.35)
            writer.write(big)
    return path


def label_panels(image: np.ndarray, labels: Sequence[str]) -> None:
    """Write ``labels[k]`` at the top left of the k-th of ``len(labels)`` equal-width panels."""
    width = image.shape[1] // len(labels)
    for k, label in enumerate(labels):
        put_label(image, label, (k * width + 4, 14), 0.4)


def episode_captions(
    rewards: Sequence[float], successes: Sequence[float | None] | None = None
) -> list[str]:
    """One caption per frame of an episode of ``len(rewards)`` steps (the first frame is the reset):
    ``step 12  reward +0.53  return 4.20  success``. ``successes[t]`` is the task's
    ``info["success"]`` after step ``t + 1`` (None where the task reports none)."""
    captions, total = ["step 0  (reset)"], 0.0
    for t, reward in enumerate(rewards):
        total += float(reward)
        text = f"step {t + 1}  reward {float(reward):+.2f}  return {total:.2f}"
        success = None if successes is None else successes[t]
        if success is not None:
            text += "  success" if success else "  no success"
        captions.append(text)
    return captions


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
