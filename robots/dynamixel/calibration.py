"""Per-robot joint calibration: how servo ticks map to joint angles,
stored as a versioned JSON file.

For each joint: joint angle (rad) = sign · (ticks − offset_ticks) · 2π/4096. Velocities and
currents take the same sign. A calibration also records the robot it belongs to, when it was made
and, optionally, the range each joint was seen to move through while calibrating.

File format (``"format": "slac-joint-calibration"``, ``"version": 1``)::

    {
      "format": "slac-joint-calibration",
      "version": 1,
      "robot": "dclaw",
      "date": "2025-01-31T12:00:00+00:00",
      "note": "optional free text",
      "joints": [
        {"name": "FF10", "motor_id": 10, "offset_ticks": 1024, "sign": 1,
         "measured_range_rad": [-0.52, 0.51]},
        ...
      ]
    }
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robots.dynamixel import control_table as ct

CALIBRATION_FORMAT = "slac-joint-calibration"
CALIBRATION_VERSION = 1


@dataclass(frozen=True)
class JointCalibrationEntry:
    """One joint: its servo, the tick at joint zero, the direction (+1/−1), an
    optional measured range (rad)."""

    name: str
    motor_id: int
    offset_ticks: float
    sign: int = 1
    measured_range_rad: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a calibrated joint needs a name")
        if (
            not isinstance(self.motor_id, int)
            or isinstance(self.motor_id, bool)
            or not 0 <= self.motor_id <= 252
        ):
            raise ValueError(
                f"joint {self.name}: motor_id must be an integer in 0..252, got {self.motor_id!r}"
            )
        if (
            isinstance(self.offset_ticks, bool)
            or not isinstance(self.offset_ticks, (int, float))
            or not math.isfinite(self.offset_ticks)
        ):
            raise ValueError(
                f"joint {self.name}: offset_ticks must be a finite number, got "
                f"{self.offset_ticks!r}"
            )
        if self.sign not in (1, -1) or isinstance(self.sign, bool):
            raise ValueError(f"joint {self.name}: sign must be 1 or -1, got {self.sign!r}")
        if self.measured_range_rad is not None:
            low, high = self.measured_range_rad
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(
                    f"joint {self.name}: measured_range_rad must be [low, high] with low <= high, "
                    f"got {self.measured_range_rad!r}"
                )
            object.__setattr__(self, "measured_range_rad", (float(low), float(high)))


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class JointCalibration:
    """A robot's joint calibration, joints in the robot's joint order."""

    robot: str
    joints: tuple[JointCalibrationEntry, ...]
    date: str = field(default_factory=_now_iso)
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "joints", tuple(self.joints))
        if not self.robot:
            raise ValueError("a calibration needs the robot's name")
        if not self.joints:
            raise ValueError(f"calibration for {self.robot!r} lists no joints")
        for kind, values in (("joint names", self.joint_names), ("motor IDs", self.motor_ids)):
            duplicates = sorted({v for v in values if values.count(v) > 1}, key=str)
            if duplicates:
                raise ValueError(f"calibration for {self.robot!r} repeats {kind}: {duplicates}")

    # --- views --------------------------------------------------------------------------------
    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def motor_ids(self) -> tuple[int, ...]:
        return tuple(j.motor_id for j in self.joints)

    @property
    def offsets_ticks(self) -> np.ndarray:
        return np.array([j.offset_ticks for j in self.joints], dtype=np.float64)

    @property
    def signs(self) -> np.ndarray:
        return np.array([j.sign for j in self.joints], dtype=np.float64)

    # --- conversions (arrays in joint order) --------------------------------------------------
    def ticks_to_rad(self, ticks) -> np.ndarray:
        return ct.ticks_to_rad(ticks, self.offsets_ticks, self.signs)

    def rad_to_ticks(self, angles_rad) -> np.ndarray:
        return ct.rad_to_ticks(angles_rad, self.offsets_ticks, self.signs)

    # --- checks -------------------------------------------------------------------------------
    def check_matches(
        self,
        robot: str,
        joint_names: Sequence[str],
        motor_ids: Sequence[int],
        source: str = "calibration",
    ) -> None:
        """Raise ValueError unless this calibration is for ``robot`` with
        exactly these joints and IDs."""
        fix = "pass this robot's calibration file, or make one with `slac-calibrate joints`"
        if self.robot != robot:
            raise ValueError(f"{source} is for robot {self.robot!r}, not {robot!r}: {fix}")
        if self.joint_names != tuple(joint_names):
            raise ValueError(
                f"{source} lists joints {list(self.joint_names)}, but robot {robot!r} has "
                f"{list(joint_names)} (same names, same order): {fix}"
            )
        if self.motor_ids != tuple(motor_ids):
            wrong = [
                f"{n}: {a} (expected {b})"
                for n, a, b in zip(self.joint_names, self.motor_ids, motor_ids)
                if a != b
            ]
            raise ValueError(
                f"{source} has motor IDs that do not match robot {robot!r}: "
                f"{', '.join(wrong)}: {fix}"
            )

    # --- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "robot": self.robot,
            "date": self.date,
            "note": self.note,
            "joints": [
                {
                    "name": j.name,
                    "motor_id": j.motor_id,
                    "offset_ticks": j.offset_ticks,
                    "sign": j.sign,
                    "measured_range_rad": list(j.measured_range_rad)
                    if j.measured_range_rad
                    else None,
                }
                for j in self.joints
            ],
        }

    @classmethod
    def from_dict(cls, data: object, source: str = "calibration") -> JointCalibration:
        """Build from a parsed file; every problem raises ValueError
        naming ``source`` and the field."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != CALIBRATION_FORMAT:
            raise ValueError(
                f'{source}: not a joint calibration file ("format" is {data.get("format")!r}, '
                f"expected {CALIBRATION_FORMAT!r})"
            )
        version = data.get("version")
        if version != CALIBRATION_VERSION:
            raise ValueError(
                f"{source}: calibration format version {version!r} is not supported (this software "
                f"reads version {CALIBRATION_VERSION}); recalibrate with `slac-calibrate joints` "
                "or upgrade the software"
            )
        missing = [k for k in ("robot", "joints") if k not in data]
        if missing:
            raise ValueError(f"{source}: missing field(s) {missing}")
        joints_data = data["joints"]
        if not isinstance(joints_data, list):
            raise ValueError(f'{source}: "joints" must be a list')
        joints = []
        for i, item in enumerate(joints_data):
            where = f"{source}: joints[{i}]"
            if not isinstance(item, dict):
                raise ValueError(f"{where} must be an object")
            missing = [k for k in ("name", "motor_id", "offset_ticks") if k not in item]
            if missing:
                raise ValueError(f"{where} is missing {missing}")
            unknown = sorted(
                set(item) - {"name", "motor_id", "offset_ticks", "sign", "measured_range_rad"}
            )
            if unknown:
                raise ValueError(f"{where} has unknown field(s) {unknown}")
            measured = item.get("measured_range_rad")
            if measured is not None:
                if not (
                    isinstance(measured, list)
                    and len(measured) == 2
                    and all(isinstance(v, (int, float)) for v in measured)
                ):
                    raise ValueError(
                        f"{where}: measured_range_rad must be null or [low, high], got {measured!r}"
                    )
                measured = (float(measured[0]), float(measured[1]))
            try:
                joints.append(
                    JointCalibrationEntry(
                        name=str(item["name"]),
                        motor_id=item["motor_id"],
                        offset_ticks=item["offset_ticks"],
                        sign=item.get("sign", 1),
                        measured_range_rad=measured,
                    )
                )
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from exc
        try:
            return cls(
                robot=str(data["robot"]),
                joints=tuple(joints),
                date=str(data.get("date", "")),
                note=str(data.get("note", "")),
            )
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc

    def save(self, path: str | os.PathLike) -> Path:
        """Write the file atomically (temporary file + rename) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        robot: str | None = None,
        joint_names: Sequence[str] | None = None,
        motor_ids: Sequence[int] | None = None,
    ) -> JointCalibration:
        """Read a calibration file; with
        ``robot``/``joint_names``/``motor_ids`` also check it fits."""
        path = Path(path)
        source = f"calibration file {path}"
        if not path.is_file():
            raise FileNotFoundError(
                f"{source} not found: make one with `slac-calibrate joints` or pass the right path"
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"{source} is not valid JSON ({exc}): restore it from a backup or recalibrate with "
                "`slac-calibrate joints`"
            ) from exc
        calibration = cls.from_dict(data, source=source)
        if robot is not None:
            calibration.check_matches(
                robot,
                joint_names if joint_names is not None else calibration.joint_names,
                motor_ids if motor_ids is not None else calibration.motor_ids,
                source=source,
            )
        return calibration
