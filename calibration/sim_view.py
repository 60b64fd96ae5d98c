"""What the simulator's task camera sees with the robot at a given joint state.

Imports mujoco (through the robot's simulation module) when called: a program that renders
offscreen chooses its GL backend first (:func:`robots.mujoco_gl.select_gl_backend`).
"""

from __future__ import annotations

import numpy as np


def render_task_view(
    robot: str,
    joint_positions: np.ndarray,
    size: int = 64,
    scene: str = "valve",
    valve_angle: float = 0.0,
) -> np.ndarray:
    """``uint8[size, size, 3]`` RGB: the task camera's render with the
    joints at ``joint_positions`` (rad).

    The goal markers are hidden (a real scene has none); ``valve_angle`` (rad) turns the valve.
    """
    if robot != "dclaw":
        raise ValueError(
            f"camera calibration needs the robot's simulator; robot {robot!r} has none here"
        )
    from robots.dclaw.sim import SCENES, DClawSim

    if scene not in SCENES:
        raise ValueError(f"unknown D'Claw scene {scene!r}; scenes: {', '.join(SCENES)}")
    sim = DClawSim(scene, render_size=size, show_goal=False)
    try:
        q = np.asarray(joint_positions, dtype=np.float64)
        if sim.has_valve:
            sim.reset(joint_positions=q, valve_angle=valve_angle)
        else:
            sim.reset(joint_positions=q)
        return sim.render()
    finally:
        sim.close()


__all__ = ["render_task_view"]
