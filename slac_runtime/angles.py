"""Angles on the circle."""

from __future__ import annotations

import math

import numpy as np


def wrap_angle(angle: float | np.ndarray) -> float | np.ndarray:
    """Wrap an angle (rad) to [-pi, pi): a float for a float, an array for an array."""
    if isinstance(angle, np.ndarray):
        return (angle + np.pi) % (2 * np.pi) - np.pi
    return (float(angle) + math.pi) % (2 * math.pi) - math.pi
