"""What the D'Claw's task camera sees with the claw at a given joint state: the view a camera
calibration must reproduce (``slac-calibrate camera``, and ``slac-run``'s match at start).

Imports mujoco when called, after choosing its offscreen GL backend
(:func:`robots.mujoco_gl.select_gl_backend`).
"""

from __future__ import annotations

import numpy as np


def render_task_view(
    joint_positions: np.ndarray,
    size: int = 64,
    scene: str = "valve",
    valve_angle: float = 0.0,
) -> np.ndarray:
    """``uint8[size, size, 3]`` RGB: the task camera's render with the joints at
    ``joint_positions`` (rad) and the valve at ``valve_angle`` (rad); the goal markers are hidden
    (a real scene has none)."""
    from robots.mujoco_gl import select_gl_backend

    select_gl_backend()
    from robots.dclaw.sim import SCENES, DClawSim

    if scene not in SCENES:
        raise ValueError(f"unknown D'Claw scene {scene!r}; scenes: {', '.join(SCENES)}")
    with DClawSim(scene, render_size=size, show_goal=False) as sim:
        q = np.asarray(joint_positions, dtype=np.float64)
        if sim.has_valve:
            sim.reset(joint_positions=q, valve_angle=valve_angle)
        else:
            sim.reset(joint_positions=q)
        return sim.render()


__all__ = ["render_task_view"]
