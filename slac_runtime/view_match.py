"""How well a calibrated camera frame matches the task view the policy was trained on.

:func:`match_score` compares the camera's frame after calibration (the policy's ``uint8[64, 64,
3]`` RGB image) with the simulator's render of the task camera at the same joint state: the
zero-mean normalised cross-correlation of each colour channel, and the score is the lowest of the
three. Each channel's correlation is unchanged by a gain and an offset of that channel, so a
camera with another white balance, exposure or black level scores as the render itself would, and
a gamma moves it little. Taking the lowest channel keeps what only colour shows: the D'Claw's claw
looks the same mirrored, and only the valve's coloured spoke tells a flipped view from the true
one.

:data:`MATCH_THRESHOLD` separates correct calibrations from wrong ones on the virtual D'Claw's
camera (``benchmarks/camera_match.py``; the margins are in docs/results.md). A real camera, whose
scene is never the render's, scores lower than a virtual one for the same calibration: read a
score below the threshold as "look at the overlay", not as proof of a wrong calibration.
"""

from __future__ import annotations

import numpy as np

MATCH_THRESHOLD = 0.81  # a correct calibration scores above it, a wrong one below
FLAT_CHANNEL_STD = 1.0  # a channel this flat (0..255) in the render holds nothing to compare


def _channel_correlation(live: np.ndarray, expected: np.ndarray) -> float | None:
    """Zero-mean normalised cross-correlation of two channels; None where the render's is flat."""
    expected = expected - expected.mean()
    live = live - live.mean()
    expected_norm = float(np.sqrt((expected * expected).sum()))
    if expected_norm < FLAT_CHANNEL_STD * np.sqrt(expected.size):
        return None
    live_norm = float(np.sqrt((live * live).sum()))
    if live_norm == 0.0:
        return 0.0
    return float((live * expected).sum() / (live_norm * expected_norm))


def match_score(live_rgb: np.ndarray, expected_rgb: np.ndarray) -> float:
    """The match of the calibrated camera frame ``live_rgb`` with the render ``expected_rgb``
    (both ``uint8[H, W, 3]`` RGB, the same size): in [-1, 1], 1 for the same picture up to a gain
    and offset per channel."""
    live = np.asarray(live_rgb, np.float64)
    expected = np.asarray(expected_rgb, np.float64)
    if live.shape != expected.shape or live.ndim != 3 or live.shape[2] != 3:
        raise ValueError(
            f"the camera image is {live.shape} and the render {expected.shape}: both must be "
            "[H, W, 3] RGB of one size"
        )
    scores = [_channel_correlation(live[..., k], expected[..., k]) for k in range(3)]
    scores = [s for s in scores if s is not None]
    if not scores:
        raise ValueError("the render is a flat colour: there is nothing to match")
    return min(scores)


def passes(score: float) -> bool:
    return score >= MATCH_THRESHOLD


def describe(score: float) -> str:
    """``match 0.93 (threshold 0.81): pass``, one line."""
    verdict = "pass" if passes(score) else "below the threshold"
    return f"match {score:.3f} (1 = the render; threshold {MATCH_THRESHOLD:.2f}): {verdict}"


__all__ = ["MATCH_THRESHOLD", "describe", "match_score", "passes"]
