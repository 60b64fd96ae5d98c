"""The metadata that makes an exported ONNX policy self-describing (docs/architecture.md §3).

Stored in the ONNX file's ``metadata_props`` (string → string; structured values as JSON). The
exporter (``slac-export``) writes it; the runtime reads it, takes its rates from it and refuses a
policy whose metadata does not match the robot it is about to drive.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

# The graph's tensor names (the runtime and the exporter agree on these).
INPUT_FRAMES = (
    "frames"  # uint8 [1, N, H, W, 3] RGB, the N newest frames, oldest first (1 <= N <= history)
)
INPUT_CACHED_FEATURES = (
    "cached_features"  # float32 [1, history, F]: the previous call's `features`;
)
#   the graph keeps its newest history - N rows (zeros are fine when N = history)
INPUT_PREV_ACTIONS = "prev_actions"  # float32 [1, history - 1, A], oldest first
OUTPUT_ACTION = "action"  # float32 [1, A], deterministic action tanh(mean)
OUTPUT_MEAN = "mean"  # float32 [1, A], pre-tanh mean
OUTPUT_LOG_STD = (
    "log_std"  # float32 [1, A], clipped log std; stochastic = tanh(mean + exp(log_std) * eps)
)
OUTPUT_FEATURES = "features"  # float32 [1, history, F], all features the actor saw (the new cache)


@dataclass(frozen=True)
class PolicyMetadata:
    """What the runtime must know about an exported policy."""

    task: str
    robot: str | None  # None for tasks without a real robot (e.g. DM Control)
    image_height: int
    image_width: int
    channel_order: str  # "RGB"
    history_length: int  # frames the actor sees (8)
    action_dim: int
    feature_dim: int
    joint_names: tuple[str, ...]  # () when robot is None
    joint_ranges: tuple[tuple[float, float], ...]  # rad, the ranges actions map onto
    velocity_limit: float | None  # rad/s per joint (robot tasks)
    control_period_s: float  # environment control period: the rate goals are sent
    action_repeat: int  # control periods per policy step
    training_agent_steps: int
    training_env_steps: int
    checkpoint_sha256: str
    created_at: str  # ISO 8601, UTC
    package_version: str
    episode_policy_steps: int | None = None  # policy steps per episode of the task (None: unknown)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        problems = _type_problems(self)
        if problems:  # the checks below compare numbers
            raise ValueError("invalid policy metadata: " + "; ".join(problems))
        if self.channel_order != "RGB":
            problems.append(f"channel_order must be 'RGB', got {self.channel_order!r}")
        sizes = ("image_height", "image_width", "history_length", "action_dim", "feature_dim")
        if any(getattr(self, name) < 1 for name in sizes):
            problems.append(", ".join(sizes[:-1]) + f" and {sizes[-1]} must be positive")
        if self.control_period_s <= 0 or self.action_repeat < 1:
            problems.append("control_period_s must be > 0 and action_repeat >= 1")
        if self.robot is not None and len(self.joint_names) != self.action_dim:
            problems.append(f"{len(self.joint_names)} joint names for {self.action_dim} actions")
        if len(self.joint_ranges) not in (0, self.action_dim):
            problems.append(f"{len(self.joint_ranges)} joint ranges for {self.action_dim} actions")
        if problems:
            raise ValueError("invalid policy metadata: " + "; ".join(problems))

    @property
    def policy_period_s(self) -> float:
        return self.control_period_s * self.action_repeat

    def to_props(self) -> dict[str, str]:
        """As ONNX ``metadata_props``: every value a string (JSON for non-strings)."""
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "the ONNX file") -> PolicyMetadata:
        if "schema_version" not in props:
            raise ValueError(
                f"{source} has no SLAC policy metadata (no 'schema_version' in metadata_props): "
                "export it with `slac-export RUN_DIR`"
            )
        try:
            version = int(props["schema_version"])
        except ValueError:
            raise ValueError(
                f"{source}: policy metadata schema_version {props['schema_version']!r} is not a "
                "whole number: re-export the policy with `slac-export RUN_DIR`"
            ) from None
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"{source} has policy metadata schema {version}; this runtime reads schema "
                f"{SCHEMA_VERSION}: re-export the policy with this version of slac-export"
            )
        values: dict[str, Any] = {}
        missing = []
        for f in fields(cls):
            if f.name not in props:
                if f.default is MISSING:  # fields with a default may be absent (added later)
                    missing.append(f.name)
                continue
            raw = props[f.name]
            if f.type in ("str",):
                values[f.name] = raw
            else:
                try:
                    values[f.name] = json.loads(raw)
                except json.JSONDecodeError:
                    values[f.name] = raw  # plain strings (task, created_at, ...)
        if missing:
            raise ValueError(f"{source}: policy metadata lacks {', '.join(missing)}")
        if isinstance(values["joint_names"], list):
            values["joint_names"] = tuple(values["joint_names"])
        values["joint_ranges"] = _ranges_from_json(values["joint_ranges"])
        try:
            return cls(**values)
        except ValueError as e:
            raise ValueError(
                f"{source}: {e}: re-export the policy with `slac-export RUN_DIR`"
            ) from e

    def mismatches(
        self,
        robot_description: Any | None = None,
        image_size: tuple[int, int] | None = None,
        history_length: int | None = None,
    ) -> list[str]:
        """Sentences naming every difference between this policy and what it is about to drive."""
        out = []
        if robot_description is not None:
            d = robot_description
            if self.robot != d.name:
                out.append(f"policy was trained for robot {self.robot!r}, not {d.name!r}")
            if tuple(self.joint_names) != tuple(d.joint_names):
                out.append(
                    f"joint names differ: policy {list(self.joint_names)} vs robot "
                    f"{list(d.joint_names)}"
                )
            ranges_robot = tuple(tuple(map(float, r)) for r in d.joint_ranges)
            if len(self.joint_ranges) != len(ranges_robot) or any(
                abs(a - b) > 1e-6
                for ra, rb in zip(self.joint_ranges, ranges_robot)
                for a, b in zip(ra, rb)
            ):
                out.append(
                    f"joint ranges differ: policy {self.joint_ranges} vs robot {ranges_robot}"
                )
            if (
                self.velocity_limit is not None
                and abs(self.velocity_limit - d.velocity_limit) > 1e-6
            ):
                out.append(
                    f"velocity limit differs: policy {self.velocity_limit} vs robot "
                    f"{d.velocity_limit} rad/s"
                )
            check_period = getattr(d, "check_control_period", None)
            period_problem = (
                check_period(self.control_period_s) if check_period is not None else None
            )
            if period_problem is not None:
                out.append(f"the policy's {period_problem}")
        if image_size is not None and (self.image_height, self.image_width) != tuple(image_size):
            out.append(
                f"image size differs: policy {self.image_height}x{self.image_width} vs camera "
                f"{image_size[0]}x{image_size[1]}"
            )
        if history_length is not None and self.history_length != history_length:
            out.append(
                f"history length differs: policy {self.history_length} vs runtime {history_length}"
            )
        return out


_STRING_FIELDS = ("task", "channel_order", "checkpoint_sha256", "created_at", "package_version")
_WHOLE_NUMBER_FIELDS = (
    "image_height",
    "image_width",
    "history_length",
    "action_dim",
    "feature_dim",
    "action_repeat",
    "training_agent_steps",
    "training_env_steps",
    "schema_version",
)


def _is_whole_number(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_range(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(_is_finite_number(v) for v in value)
        and value[0] < value[1]
    )


def _type_problems(m: PolicyMetadata) -> list[str]:
    """A sentence for every field whose value is not of its kind (metadata read from a file holds
    whatever the file says)."""
    wrong: list[tuple[str, str]] = []
    wrong += [
        (name, "a string") for name in _STRING_FIELDS if not isinstance(getattr(m, name), str)
    ]
    if m.robot is not None and not isinstance(m.robot, str):
        wrong.append(("robot", "a robot's name or null"))
    wrong += [
        (name, "a whole number")
        for name in _WHOLE_NUMBER_FIELDS
        if not _is_whole_number(getattr(m, name))
    ]
    if m.episode_policy_steps is not None and not _is_whole_number(m.episode_policy_steps):
        wrong.append(("episode_policy_steps", "a whole number or null"))
    if not _is_finite_number(m.control_period_s):
        wrong.append(("control_period_s", "a finite number of seconds"))
    if m.velocity_limit is not None and not (
        _is_finite_number(m.velocity_limit) and m.velocity_limit > 0
    ):
        wrong.append(("velocity_limit", "a positive, finite number of rad/s or null"))
    if not (isinstance(m.joint_names, tuple) and all(isinstance(n, str) for n in m.joint_names)):
        wrong.append(("joint_names", "a list of joint names"))
    if not (isinstance(m.joint_ranges, tuple) and all(_is_range(r) for r in m.joint_ranges)):
        wrong.append(("joint_ranges", "a list of [low, high] pairs of finite numbers, low < high"))
    return [f"{name} must be {what}, got {getattr(m, name)!r}" for name, what in wrong]


def _ranges_from_json(value: Any) -> Any:
    """JSON's ``[[low, high], ...]`` as a tuple of float pairs; anything else as it is (for the
    metadata's check to name)."""
    if not (isinstance(value, list) and all(isinstance(r, list) for r in value)):
        return value
    if not all(_is_finite_number(v) for r in value for v in r):
        return tuple(tuple(r) for r in value)
    return tuple(tuple(float(v) for v in r) for r in value)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file (policy and checkpoint provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
