"""Finding the crop, rotation and flip that make a real camera frame look like the simulator's view.

The search compares the simulator's task-camera render (at the robot's current joint state) with
the camera frame under every candidate calibration: for each flip and rotation, the render is
matched as a template over the rotated frame at many scales (normalised cross-correlation of grey
images), coarse to fine. The best match gives the crop box; it is expressed as a rotation about
the crop centre, which is how :func:`slac_runtime.preprocessing.preprocess_frame` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slac_runtime.preprocessing import CameraCalibration, preprocess_frame


@dataclass(frozen=True)
class AlignmentResult:
    calibration: CameraCalibration
    score: float  # normalised cross-correlation of the best match, in [-1, 1]
    error_before: float  # mean |pixel difference| (0..255) with the identity calibration
    error_after: float  # the same with the found calibration


def _grey(image_rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _rotate(image: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle_deg, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0), matrix


def _best_match(
    rotated: np.ndarray, sim: np.ndarray, sides: np.ndarray
) -> tuple[float, int, int, int]:
    best = (-2.0, 0, 0, 0)
    h, w = rotated.shape[:2]
    for side in sides:
        side = int(side)
        if side > min(h, w) or side < 8:
            continue
        template = cv2.resize(sim, (side, side), interpolation=cv2.INTER_LINEAR)
        if template.std() < 1e-3:
            continue
        scores = cv2.matchTemplate(rotated, template, cv2.TM_CCOEFF_NORMED)
        _, score, _, (x, y) = cv2.minMaxLoc(scores)
        if score > best[0]:
            best = (float(score), x, y, side)
    return best


def _search(frame_grey: np.ndarray, sim_grey: np.ndarray, angles: np.ndarray, sides: np.ndarray):
    best = (-2.0, 0.0, 0, 0, 0)
    for angle in angles:
        rotated, _ = _rotate(frame_grey, float(angle))
        score, x, y, side = _best_match(rotated, sim_grey, sides)
        if score > best[0]:
            best = (score, float(angle), x, y, side)
    return best


def align_camera(
    frame_rgb: np.ndarray,
    sim_rgb: np.ndarray,
    max_rotation_deg: float = 10.0,
    min_fraction: float = 0.25,
    try_flips: bool = True,
) -> AlignmentResult:
    """The calibration under which ``frame_rgb`` (any size, RGB) best reproduces ``sim_rgb``.

    ``min_fraction``: the smallest crop side searched, as a fraction of the frame's shorter side.
    """
    frame_rgb = np.asarray(frame_rgb, dtype=np.uint8)
    sim_rgb = np.asarray(sim_rgb, dtype=np.uint8)
    size = sim_rgb.shape[0]
    h, w = frame_rgb.shape[:2]
    short = min(h, w)

    # Coarse: a downscaled frame, 1-degree rotations, sides in 4 % steps.
    scale = min(1.0, 200.0 / short)
    small = cv2.resize(
        _grey(frame_rgb), (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
    )
    sim_grey = _grey(sim_rgb)
    flips = (
        [(False, False), (True, False), (False, True), (True, True)]
        if try_flips
        else [(False, False)]
    )
    candidates = []
    for fh, fv in flips:
        target = sim_grey
        if fh:
            target = cv2.flip(target, 1)
        if fv:
            target = cv2.flip(target, 0)
        sides = np.unique(np.round(np.geomspace(min_fraction * short * scale, short * scale, 36)))
        angles = np.arange(-max_rotation_deg, max_rotation_deg + 1e-9, 1.0)
        candidates.append((_search(small, target, angles, sides), fh, fv, target))
    (score, angle, x, y, side), fh, fv, target = max(candidates, key=lambda c: c[0][0])
    if side == 0:
        raise ValueError(f"nothing to match: the render is blank or the {w}x{h} frame is too small")

    # Fine: full resolution around the coarse answer, 0.1-degree and 1-pixel steps.
    full = _grey(frame_rgb)
    side_full = side / scale
    sides = np.unique(np.round(np.linspace(side_full * 0.94, side_full * 1.06, 25)))
    angles = np.arange(angle - 1.0, angle + 1.0 + 1e-9, 0.1)
    score, angle, x, y, side = _search(full, target, angles, sides)

    # (x, y, side) is a box in the frame rotated about the frame centre; find its centre in the
    # source frame and express the same warp as a rotation about the crop centre.
    _, matrix = _rotate(full, angle)
    inverse = cv2.invertAffineTransform(matrix)
    centre_rot = np.array([x + (side - 1) / 2.0, y + (side - 1) / 2.0, 1.0])
    cx, cy = inverse @ centre_rot
    crop_x = int(round(cx - (side - 1) / 2.0))
    crop_y = int(round(cy - (side - 1) / 2.0))
    crop_x = min(max(crop_x, 0), w - side)
    crop_y = min(max(crop_y, 0), h - side)
    calibration = CameraCalibration(
        crop=(crop_x, crop_y, int(side), int(side)),
        rotation_deg=round(float(angle), 2),
        flip_horizontal=bool(fh),
        flip_vertical=bool(fv),
        output_size=size,
        source_size=(w, h),
    )
    return AlignmentResult(
        calibration=calibration,
        score=float(score),
        error_before=image_error(frame_rgb, sim_rgb, CameraCalibration(output_size=size)),
        error_after=image_error(frame_rgb, sim_rgb, calibration),
    )


def image_error(
    frame_rgb: np.ndarray, sim_rgb: np.ndarray, calibration: CameraCalibration | None
) -> float:
    """Mean absolute difference (0..255, over pixels and channels) between the render and the
    camera frame under ``calibration`` (identity when None)."""
    real = preprocess_frame(frame_rgb, calibration, bgr=False)
    return float(np.abs(real.astype(np.int16) - np.asarray(sim_rgb, np.int16)).mean())


OVERLAY_PANELS = ("simulator", "camera (calibrated)", "blend")


def overlay(
    frame_rgb: np.ndarray,
    sim_rgb: np.ndarray,
    calibration: CameraCalibration | None,
    alpha: float = 0.5,
    scale: int = 4,
    labels: bool = True,
) -> np.ndarray:
    """Three panels side by side, upscaled for viewing (RGB): the simulator's render | the camera
    frame under ``calibration`` (identity when None) | the two blended (``alpha`` of the render)."""
    sim = np.asarray(sim_rgb, np.uint8)
    real = preprocess_frame(frame_rgb, calibration, bgr=False)
    if real.shape != sim.shape:
        raise ValueError(
            f"the calibrated frame is {real.shape} but the render is {sim.shape}: "
            "use the render's size as the calibration's output_size"
        )
    blend = cv2.addWeighted(real, 1 - alpha, sim, alpha, 0.0)
    row = np.concatenate([sim, real, blend], axis=1)
    row = cv2.resize(
        row, (row.shape[1] * scale, row.shape[0] * scale), interpolation=cv2.INTER_NEAREST
    )
    if labels:
        panel = sim.shape[1] * scale
        for k, text in enumerate(OVERLAY_PANELS):
            origin = (k * panel + 4, 14)
            cv2.putText(row, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(
                row, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA
            )
    return row


def colour_statistics(frame_rgb: np.ndarray, sim_rgb: np.ndarray) -> dict[str, list[float]]:
    """Per-channel mean and std of the real and simulated images (for
    colour randomisation ranges)."""
    real = np.asarray(frame_rgb, np.float32).reshape(-1, 3)
    sim = np.asarray(sim_rgb, np.float32).reshape(-1, 3)
    return {
        "real_mean_rgb": [round(float(v), 1) for v in real.mean(0)],
        "real_std_rgb": [round(float(v), 1) for v in real.std(0)],
        "sim_mean_rgb": [round(float(v), 1) for v in sim.mean(0)],
        "sim_std_rgb": [round(float(v), 1) for v in sim.std(0)],
    }


__all__ = ["AlignmentResult", "align_camera", "colour_statistics", "image_error", "overlay"]
