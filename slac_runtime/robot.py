"""The robot interface the runtime drives (docs/architecture.md §5), and the registry that finds
robots by name.

A robot package declares an entry point in the ``slac.robots`` group that points at a
:class:`RobotEntry`; the runtime never imports a robot package directly.
"""

from __future__ import annotations

import abc
import importlib
import math
import os
import time
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

ROBOT_ENTRY_POINT_GROUP = "slac.robots"
DEFAULT_ROBOT = "dclaw"  # the robot every command drives, calibrates or emulates unless told
ON_EXIT_CHOICES = ("relax", "hold")  # how a robot is left: torque off, or holding its position
CONTROL_PERIOD_TOLERANCE = 0.01  # a policy's control period may differ from the robot's by 1 %


@dataclass(frozen=True)
class ReplayTolerance:
    """How close a replay of a logged episode on a robot comes to the logged joint positions
    (rad): the largest joint error at 95 % of the ticks, and the error averaged over ticks and
    joints. A property of the robot (its servos' lag behind a goal, its bus timing), measured on
    it."""

    p95_error_rad: float
    mean_error_rad: float

    def holds(self, p95_error_rad: float, mean_error_rad: float) -> bool:
        return p95_error_rad <= self.p95_error_rad and mean_error_rad <= self.mean_error_rad

    def describe(self) -> str:
        return f"p95 <= {self.p95_error_rad:g} rad, mean <= {self.mean_error_rad:g} rad"


@dataclass(frozen=True)
class RobotDescription:
    """What every part of the toolkit needs to know about a robot's joints (units: radians, s)."""

    name: str
    joint_names: tuple[str, ...]
    motor_ids: tuple[int, ...]
    joint_ranges: tuple[tuple[float, float], ...]  # control range per joint, (low, high) rad
    velocity_limit: float  # rad/s, per joint
    reset_pose: tuple[float, ...]  # rad
    # The safety limits the runtime takes from the robot, never from a policy file:
    control_periods_s: tuple[
        float, ...
    ] = ()  # control periods the robot may be driven at (s); () any
    tracking_error_limit_rad: float = math.inf  # |goal - present| beyond this ...
    tracking_error_time_s: float = math.inf  # ... for longer than this stops the robot
    # Joints per limb (a finger, a leg), in joint order; plots draw a row per limb. (): one limb.
    joint_groups: tuple[int, ...] = ()
    replay_tolerance: ReplayTolerance | None = None  # None: not measured on this robot

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if not (len(self.motor_ids) == len(self.joint_ranges) == len(self.reset_pose) == n):
            raise ValueError(
                f"robot {self.name!r}: joint names, IDs, ranges and reset pose differ in length"
            )
        if not (self.velocity_limit > 0 and math.isfinite(self.velocity_limit)):
            raise ValueError(f"robot {self.name!r}: velocity limit must be positive and finite")
        if any(not (p > 0 and math.isfinite(p)) for p in self.control_periods_s):
            raise ValueError(f"robot {self.name!r}: control periods must be positive and finite")
        if not (self.tracking_error_limit_rad > 0 and self.tracking_error_time_s > 0):
            raise ValueError(f"robot {self.name!r}: tracking-error limit and time must be positive")
        if self.joint_groups and sum(self.joint_groups) != n:
            raise ValueError(f"robot {self.name!r}: joint groups do not add up to its {n} joints")

    def check_control_period(
        self, period_s: float, tolerance: float = CONTROL_PERIOD_TOLERANCE
    ) -> str | None:
        """None if the robot may be driven at ``period_s``; else a sentence saying why not."""
        if not (isinstance(period_s, (int, float)) and math.isfinite(period_s) and period_s > 0):
            return f"control period {period_s!r} s is not a positive number"
        if not self.control_periods_s:
            return None
        if any(abs(period_s - p) <= tolerance * p for p in self.control_periods_s):
            return None
        allowed = ", ".join(f"{p:g}" for p in self.control_periods_s)
        return (
            f"control period {period_s:g} s is not one robot {self.name!r} may be driven at "
            f"(allowed: {allowed} s, within {tolerance:.1%})"
        )

    def max_step_rad(self, period_s: float) -> float:
        """The largest change of a joint goal in one control period: the velocity limit times it."""
        return self.velocity_limit * period_s

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def low(self) -> np.ndarray:
        return np.array([r[0] for r in self.joint_ranges], dtype=np.float64)

    @property
    def high(self) -> np.ndarray:
        return np.array([r[1] for r in self.joint_ranges], dtype=np.float64)

    def action_to_joint_goal(
        self, action: np.ndarray, current_goal: np.ndarray, period_s: float
    ) -> np.ndarray:
        """Map a policy action in [-1, 1] onto joint goals, exactly as simulation does.

        Linear map onto the joint control ranges, clip to the ranges, then limit the change from
        ``current_goal`` to ``velocity_limit * period_s`` per step.
        """
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (self.num_joints,):
            raise ValueError(
                f"{self.name}: expected {self.num_joints} action values, got {action.shape}"
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(f"{self.name}: action contains NaN or inf: {action}")
        low, high = self.low, self.high
        target = low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)
        target = np.clip(target, low, high)
        max_step = self.max_step_rad(period_s)
        current_goal = np.asarray(current_goal, dtype=np.float64)
        return current_goal + np.clip(target - current_goal, -max_step, max_step)

    def joint_target_to_action(self, target: np.ndarray) -> np.ndarray:
        """The action whose linear map onto the joint ranges is ``target`` (rad): the inverse of
        the first step of :meth:`action_to_joint_goal` (for scripted controllers)."""
        target = np.asarray(target, dtype=np.float64)
        return (2.0 * (target - self.low) / (self.high - self.low) - 1.0).astype(np.float32)


class RobotRefused(RuntimeError):
    """A robot refused to start because its set-up contradicts what the runtime was told (servo
    settings, position limits, a start pose outside the calibrated ranges). Raised by ``connect()``
    before any torque goes on, so nothing moved; the message says what to fix."""


@dataclass
class RobotState:
    """One reading of the robot's joints (rad, rad/s, A) with its monotonic timestamp (s)."""

    positions: np.ndarray
    velocities: np.ndarray
    currents: np.ndarray
    timestamp: float = field(default_factory=time.monotonic)


class Robot(abc.ABC):
    """A robot the runtime can drive. Use it as a context manager::

        with entry.make_driver(port="/dev/ttyUSB0") as robot:
            state = robot.read_state()
            sent = robot.command(goal)

    On leaving the block -- normally, on an exception or on Ctrl-C -- the robot is relaxed
    (torque off) or left holding its position, as ``on_exit`` says, and disconnected.
    """

    description: RobotDescription
    on_exit: str = ON_EXIT_CHOICES[0]  # "relax" (torque off) or "hold"

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def read_state(self) -> RobotState: ...

    @abc.abstractmethod
    def command(self, goal_positions: np.ndarray) -> np.ndarray:
        """Send joint goals (rad); return what was actually sent after safety clipping."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Keep torque on and hold the current position."""

    @abc.abstractmethod
    def relax(self) -> None:
        """Torque off."""

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    def __enter__(self) -> Robot:
        self.connect()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.on_exit == "hold":
                self.hold()
            else:
                self.relax()
        finally:
            self.disconnect()


def _load_object(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class RobotEntry:
    """What a robot package registers: its description and where its driver and virtual robot live.

    ``driver`` and ``virtual`` are ``"module:attribute"`` paths, loaded only when asked for, so that
    looking a robot up never imports simulation code.
    """

    description: RobotDescription
    driver: str
    virtual: str | None = None
    policy: str | None = None  # "package:relative/path.onnx" of a policy shipped with the robot
    sim_replay: str | None = (
        None  # "module:function(log, video_path) -> dict" (simulation; heavy imports)
    )
    # "module:function(joint_positions, size, scene, valve_angle) -> uint8[size, size, 3] RGB": the
    # task camera's render at a joint state (simulation; heavy imports)
    task_view: str | None = None
    # The virtual robot's scene each task needs, by task name: (("dclaw-pose", "pose"), ...); a
    # task's variants ("dclaw-pose-random") need the scene of their task.
    task_scenes: tuple[tuple[str, str], ...] = ()

    def scene_for_task(self, task: str) -> str | None:
        """The scene of the virtual robot a policy of ``task`` needs; None if the robot says not."""
        for name, scene in self.task_scenes:
            if task == name or task.startswith(name + "-"):
                return scene
        return None

    def default_policy(self) -> Path | None:
        """The shipped policy file, if the robot package has one."""
        if self.policy is None:
            return None
        package, _, relative = self.policy.partition(":")
        path = Path(str(files(package).joinpath(relative)))
        return path if path.is_file() else None

    def default_calibration_path(self) -> Path:
        return default_calibration_path(self.description.name)

    def make_driver(self, **kwargs: Any) -> Robot:
        return _load_object(self.driver)(**kwargs)

    def load_sim_replay(self) -> Any:
        if self.sim_replay is None:
            raise RuntimeError(f"robot {self.description.name!r} has no simulation replay")
        return _load_object(self.sim_replay)

    def load_task_view(self) -> Any:
        if self.task_view is None:
            raise RuntimeError(
                f"robot {self.description.name!r} has no simulator to render its view"
            )
        return _load_object(self.task_view)

    def load_virtual(self) -> Any:
        if self.virtual is None:
            raise RuntimeError(f"robot {self.description.name!r} has no virtual robot")
        return _load_object(self.virtual)


def default_calibration_path(robot: str, kind: str = "joints") -> Path:
    """Where a robot's calibration lives by default: ``$SLAC_CALIBRATION_DIR`` or
    ``$XDG_CONFIG_HOME/slac`` (``~/.config/slac``), file ``<robot>-<kind>.json``."""
    base = os.environ.get("SLAC_CALIBRATION_DIR")
    if not base:
        base = os.path.join(
            os.environ.get("XDG_CONFIG_HOME", os.path.expanduser("~/.config")), "slac"
        )
    return Path(base) / f"{robot}-{kind}.json"


def list_robots() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ROBOT_ENTRY_POINT_GROUP))


def find_robot(name: str) -> RobotEntry:
    """Find a robot by name in the ``slac.robots`` entry-point group."""
    matches = [ep for ep in entry_points(group=ROBOT_ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        known = (
            ", ".join(list_robots()) or "none (is the package installed with `pip install -e .`?)"
        )
        raise KeyError(f"unknown robot {name!r}; registered robots: {known}")
    entry = matches[0].load()
    if not isinstance(entry, RobotEntry):
        raise TypeError(
            f"entry point {name!r} does not point at a RobotEntry (got {type(entry).__name__})"
        )
    return entry
