"""Per-robot joint calibration: how servo ticks map to joint angles,
stored as a versioned JSON file.

For each joint: joint angle (rad) = sign · (ticks − offset_ticks) · 2π/4096. Velocities and
currents take the same sign. A calibration also records the robot it belongs to, when it was made
and, optionally, the range each joint was seen to move through while calibrating, and the joints
whose departure from the robot's nominal build was accepted on purpose (``forced_joints``, written
by ``slac-calibrate joints --force``).

Every problem with a calibration -- a file missing or unreadable, contents malformed, made for
another robot, or far from the robot's nominal build -- raises :class:`CalibrationError`, a
:class:`~slac_runtime.robot.RobotRefused`: it is found before any servo is touched.

File format (``"format": "slac-joint-calibration"``, ``"version": 1``)::

    {
      "format": "slac-joint-calibration",
      "version": 1,
      "robot": "dclaw",
      "date": "2025-01-31T12:00:00+00:00",
      "note": "optional free text",
      "forced_joints": [],
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
from slac_runtime.atomic_file import write_text_atomic
from slac_runtime.robot import RobotRefused

CALIBRATION_FORMAT = "slac-joint-calibration"
CALIBRATION_VERSION = 1
RECALIBRATE = "recalibrate with `slac-calibrate joints`"


class CalibrationError(ValueError, RobotRefused):
    """A joint calibration that cannot be used for this robot; the message names the file (or
    what the calibration came from), what is wrong and how to fix it."""


class CalibrationSanityError(CalibrationError):
    """A calibration whose joints depart from the robot's nominal build by more than a correct
    calibration can: ``deviations`` lists them."""

    def __init__(self, message: str, deviations: Sequence[JointDeviation]):
        super().__init__(message)
        self.deviations = tuple(deviations)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.deviations)


@dataclass(frozen=True)
class JointDeviation:
    """One joint whose calibration departs from the robot's nominal build: a direction other than
    the nominal one, or a zero further than allowed from the nominal zero tick."""

    name: str
    offset_ticks: float
    nominal_offset_ticks: float
    sign: int
    nominal_sign: int
    max_offset_error_ticks: float

    @property
    def offset_error_ticks(self) -> float:
        return self.offset_ticks - self.nominal_offset_ticks

    @property
    def sign_differs(self) -> bool:
        return self.sign != self.nominal_sign

    @property
    def offset_too_far(self) -> bool:
        return abs(self.offset_error_ticks) > self.max_offset_error_ticks

    def describe(self) -> str:
        parts = []
        if self.sign_differs:
            parts.append(f"direction {self.sign:+d}, nominal {self.nominal_sign:+d}")
        if self.offset_too_far:
            error = self.offset_error_ticks
            parts.append(
                f"zero at tick {self.offset_ticks:g}, {error:+g} ticks "
                f"({error * ct.RAD_PER_TICK:+.2f} rad) from nominal {self.nominal_offset_ticks:g}"
            )
        return f"{self.name} " + " and ".join(parts)


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
        if (
            isinstance(self.sign, bool)
            or not isinstance(self.sign, (int, np.integer))
            or self.sign not in (1, -1)
        ):
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
    # Joints whose departure from the nominal build was accepted (slac-calibrate joints --force):
    # the sanity check against the nominal build skips them.
    forced_joints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "joints", tuple(self.joints))
        object.__setattr__(self, "forced_joints", tuple(self.forced_joints))
        if not self.robot:
            raise ValueError("a calibration needs the robot's name")
        if not self.joints:
            raise ValueError(f"calibration for {self.robot!r} lists no joints")
        for kind, values in (("joint names", self.joint_names), ("motor IDs", self.motor_ids)):
            duplicates = sorted({v for v in values if values.count(v) > 1}, key=str)
            if duplicates:
                raise ValueError(f"calibration for {self.robot!r} repeats {kind}: {duplicates}")
        unknown = [n for n in self.forced_joints if n not in self.joint_names]
        if unknown:
            raise ValueError(
                f"calibration for {self.robot!r}: forced_joints names joints it does not have: "
                f"{unknown}"
            )

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
        """Raise :class:`CalibrationError` unless this calibration is for ``robot`` with exactly
        these joints and IDs."""
        fix = "pass this robot's calibration file, or make one with `slac-calibrate joints`"
        if self.robot != robot:
            raise CalibrationError(f"{source} is for robot {self.robot!r}, not {robot!r}: {fix}")
        if self.joint_names != tuple(joint_names):
            raise CalibrationError(
                f"{source} lists joints {list(self.joint_names)}, but robot {robot!r} has "
                f"{list(joint_names)} (same names, same order): {fix}"
            )
        if self.motor_ids != tuple(motor_ids):
            wrong = [
                f"{n}: {a} (expected {b})"
                for n, a, b in zip(self.joint_names, self.motor_ids, motor_ids)
                if a != b
            ]
            raise CalibrationError(
                f"{source} has motor IDs that do not match robot {robot!r}: "
                f"{', '.join(wrong)}: {fix}"
            )

    def deviations_from(
        self, nominal: JointCalibration, max_offset_error_ticks: float
    ) -> list[JointDeviation]:
        """The joints, matched to ``nominal``'s by name, whose direction differs from the nominal
        one or whose zero lies more than ``max_offset_error_ticks`` from the nominal zero;
        :attr:`forced_joints` are left out."""
        nominal_by_name = {j.name: j for j in nominal.joints}
        deviations = []
        for j in self.joints:
            expected = nominal_by_name.get(j.name)
            if expected is None or j.name in self.forced_joints:
                continue
            deviation = JointDeviation(
                name=j.name,
                offset_ticks=j.offset_ticks,
                nominal_offset_ticks=expected.offset_ticks,
                sign=j.sign,
                nominal_sign=expected.sign,
                max_offset_error_ticks=max_offset_error_ticks,
            )
            if deviation.sign_differs or deviation.offset_too_far:
                deviations.append(deviation)
        return deviations

    def check_near(
        self,
        nominal: JointCalibration,
        max_offset_error_ticks: float,
        source: str = "calibration",
        fix: str = "",
    ) -> None:
        """Raise :class:`CalibrationSanityError` naming every joint (not forced) whose direction
        differs from ``nominal``'s or whose zero lies more than ``max_offset_error_ticks`` from
        it; ``fix`` ends the message."""
        deviations = self.deviations_from(nominal, max_offset_error_ticks)
        if deviations:
            raise CalibrationSanityError(
                f"{source} is far from the {self.robot}'s nominal build "
                f"({nominal_build_rule(max_offset_error_ticks)}): "
                + "; ".join(d.describe() for d in deviations)
                + (f": {fix}" if fix else ""),
                deviations,
            )

    # --- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "robot": self.robot,
            "date": self.date,
            "note": self.note,
            "forced_joints": list(self.forced_joints),
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
        """Build from a parsed file; every problem raises :class:`CalibrationError` naming
        ``source`` and the field."""
        if not isinstance(data, dict):
            raise CalibrationError(
                f"{source}: expected a JSON object, got {_json_type(data)}: {RECALIBRATE}"
            )
        if data.get("format") != CALIBRATION_FORMAT:
            raise CalibrationError(
                f'{source}: not a joint calibration file ("format" is {data.get("format")!r}, '
                f"expected {CALIBRATION_FORMAT!r})"
            )
        version = data.get("version")
        if version != CALIBRATION_VERSION:
            raise CalibrationError(
                f"{source}: calibration format version {version!r} is not supported (this software "
                f"reads version {CALIBRATION_VERSION}); recalibrate with `slac-calibrate joints` "
                "or upgrade the software"
            )
        missing = [k for k in ("robot", "joints") if k not in data]
        if missing:
            raise CalibrationError(f"{source}: missing field(s) {missing}: {RECALIBRATE}")
        if not isinstance(data["robot"], str):
            raise CalibrationError(
                f'{source}: "robot" must be a robot\'s name, got {_json_type(data["robot"])}'
            )
        joints_data = data["joints"]
        if not isinstance(joints_data, list):
            raise CalibrationError(
                f'{source}: "joints" must be a list, got {_json_type(joints_data)}: {RECALIBRATE}'
            )
        forced = data.get("forced_joints") or []
        if not (isinstance(forced, list) and all(isinstance(n, str) for n in forced)):
            raise CalibrationError(
                f'{source}: "forced_joints" must be a list of joint names, got {forced!r}'
            )
        joints = [
            _entry_from_dict(item, where=f"{source}: joints[{i}]")
            for i, item in enumerate(joints_data)
        ]
        try:
            return cls(
                robot=data["robot"],
                joints=tuple(joints),
                date=str(data.get("date", "")),
                note=str(data.get("note", "")),
                forced_joints=tuple(forced),
            )
        except ValueError as exc:
            raise CalibrationError(f"{source}: {exc}") from exc

    def save(self, path: str | os.PathLike) -> Path:
        """Write the file atomically (temporary file + rename) and return its path; a failed or
        interrupted write leaves the file there was and no temporary one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        robot: str | None = None,
        joint_names: Sequence[str] | None = None,
        motor_ids: Sequence[int] | None = None,
    ) -> JointCalibration:
        """Read a calibration file; with ``robot``/``joint_names``/``motor_ids`` also check it
        fits. Every problem raises :class:`CalibrationError` naming the file."""
        path = Path(path)
        source = f"calibration file {path}"
        if path.is_dir():
            raise CalibrationError(
                f"{source} is a directory: pass the calibration file written by "
                "`slac-calibrate joints`"
            )
        if not path.exists():
            raise CalibrationError(
                f"{source} not found: make one with `slac-calibrate joints` or pass the right path"
            )
        if not path.is_file():
            raise CalibrationError(
                f"{source} is not a regular file: pass the calibration file written by "
                "`slac-calibrate joints`"
            )
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise CalibrationError(
                f"cannot read {source}: {exc.strerror or exc}: check its permissions"
            ) from exc
        except UnicodeDecodeError as exc:
            raise CalibrationError(
                f"{source} is not text (byte {exc.start} is not UTF-8): restore it from a backup "
                f"or {RECALIBRATE}"
            ) from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalibrationError(
                f"{source} is not valid JSON ({exc}): restore it from a backup or {RECALIBRATE}"
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


_ENTRY_FIELDS = {"name", "motor_id", "offset_ticks", "sign", "measured_range_rad"}


def _entry_from_dict(item: object, where: str) -> JointCalibrationEntry:
    """One element of a file's "joints"; every problem raises :class:`CalibrationError`."""
    if not isinstance(item, dict):
        raise CalibrationError(f"{where} must be an object, got {_json_type(item)}")
    missing = [k for k in ("name", "motor_id", "offset_ticks") if k not in item]
    if missing:
        raise CalibrationError(f"{where} is missing {missing}: {RECALIBRATE}")
    unknown = sorted(set(item) - _ENTRY_FIELDS)
    if unknown:
        raise CalibrationError(f"{where} has unknown field(s) {unknown}")
    if not isinstance(item["name"], str):
        raise CalibrationError(
            f"{where}: name must be a joint's name, got {_json_type(item['name'])}"
        )
    measured = item.get("measured_range_rad")
    if measured is not None:
        if not (
            isinstance(measured, list)
            and len(measured) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in measured)
        ):
            raise CalibrationError(
                f"{where}: measured_range_rad must be null or [low, high], got {measured!r}"
            )
        measured = (float(measured[0]), float(measured[1]))
    try:
        return JointCalibrationEntry(
            name=item["name"],
            motor_id=item["motor_id"],
            offset_ticks=item["offset_ticks"],
            sign=item.get("sign", 1),
            measured_range_rad=measured,
        )
    except ValueError as exc:
        raise CalibrationError(f"{where}: {exc}: {RECALIBRATE}") from exc


def nominal_build_rule(max_offset_error_ticks: float) -> str:
    """What a sane calibration keeps to, in a few words."""
    if math.isinf(max_offset_error_ticks):
        return "the nominal directions"
    return f"each zero within ±{max_offset_error_ticks:g} ticks of nominal, nominal directions"


def _json_type(value: object) -> str:
    """What a parsed JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
