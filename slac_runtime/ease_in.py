"""The straight-line ease-in: from wherever the joints are to a target pose, slowly.

``slac-run`` eases in to the reset pose before each episode, ``slac-replay`` to the goal in force
when the logged episode began, and ``slac-calibrate joints`` moves each joint to its range ends
this way. Goals go along a straight line in joint space, one per control period, no joint moving
more than ``speed_rad_s * period_s`` a period; the driver still clips every goal as usual.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from slac_runtime.robot import Robot
from slac_runtime.timing import RateTimer


@dataclass
class EaseIn:
    """What an ease-in did: where it started, where it went, how many goals it sent."""

    start: np.ndarray  # joint positions read before the first goal (rad)
    target: np.ndarray  # the pose eased to (rad)
    ticks: int  # goals planned (one per control period)
    goal: np.ndarray  # the last goal sent (rad): the target, unless stopped early
    sent: np.ndarray  # what the driver sent for it (its rounding, rad)
    timer: RateTimer  # its deadlines: ``timer.next_deadline`` is one period after the last goal
    stopped: bool = False  # ``stop_requested`` ended it before the target


def ease_in_ticks(start: np.ndarray, target: np.ndarray, max_step_rad: float) -> int:
    """Control periods a straight line from ``start`` to ``target`` needs
    at ``max_step_rad`` a period."""
    return max(
        1, math.ceil(float(np.max(np.abs(np.asarray(target) - np.asarray(start)))) / max_step_rad)
    )


def ease_in(
    robot: Robot,
    target: np.ndarray,
    speed_rad_s: float,
    period_s: float,
    before_goal: Callable[[np.ndarray], None] | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    start: np.ndarray | None = None,
) -> EaseIn:
    """Send goals from the current pose to ``target`` at ``speed_rad_s``, one every ``period_s``.

    ``before_goal(sent)`` runs before each goal but the first, with the goal sent the period before
    (a tracking watchdog reads the joints there). ``stop_requested`` is polled after each goal.
    ``start``: where the line begins (default: the joints' present positions).
    """
    if start is None:
        start = robot.read_state().positions
    start = np.asarray(start, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    n = ease_in_ticks(start, target, speed_rad_s * period_s)
    timer = RateTimer(period_s)
    goal = sent = start
    for k in range(1, n + 1):
        timer.wait()
        if k > 1 and before_goal is not None:
            before_goal(sent)
        goal = start + (target - start) * (k / n)
        sent = np.asarray(robot.command(goal), dtype=np.float64)
        if stop_requested():
            return EaseIn(start, target, n, goal, sent, timer, stopped=k < n)
    return EaseIn(start, target, n, goal, sent, timer)
