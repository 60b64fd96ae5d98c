"""What the simulator's task camera sees with the robot at a given joint state, through the robot
registry's renderer (``RobotEntry.task_view``; mujoco is imported when called)."""

from __future__ import annotations

import numpy as np

from slac_runtime.robot import find_robot


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
    entry = find_robot(robot)
    if entry.task_view is None:
        raise ValueError(
            f"camera calibration needs the robot's simulator; robot {robot!r} has none here"
        )
    return entry.load_task_view()(joint_positions, size=size, scene=scene, valve_angle=valve_angle)


__all__ = ["render_task_view"]
