"""Joint calibration files: conversions, round trip, errors that say what is wrong and how to fix
it, and the check against a robot's nominal build."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from robots.dclaw.description import DCLAW
from robots.dclaw.driver import DEFAULT_CALIBRATION
from robots.dynamixel.calibration import (
    CalibrationError,
    CalibrationSanityError,
    JointCalibration,
    JointCalibrationEntry,
)
from slac_runtime.robot import RobotRefused


def test_default_dclaw_calibration_follows_robels_build():
    assert DEFAULT_CALIBRATION.robot == "dclaw"
    assert DEFAULT_CALIBRATION.joint_names == DCLAW.joint_names
    assert DEFAULT_CALIBRATION.motor_ids == DCLAW.motor_ids
    np.testing.assert_array_equal(DEFAULT_CALIBRATION.offsets_ticks, [1024, 2048, 2048] * 3)
    np.testing.assert_array_equal(DEFAULT_CALIBRATION.signs, np.ones(9))


def test_ticks_and_radians():
    cal = JointCalibration(
        "bot", (JointCalibrationEntry("a", 1, 2048, 1), JointCalibrationEntry("b", 2, 1000.5, -1))
    )
    np.testing.assert_allclose(cal.ticks_to_rad([3072, 1000.5]), [math.pi / 2, 0.0])
    np.testing.assert_allclose(cal.ticks_to_rad([2048, 0]), [0.0, 1000.5 * 2 * math.pi / 4096])
    np.testing.assert_array_equal(cal.rad_to_ticks([math.pi / 2, -math.pi / 2]), [3072, 2024])
    angles = np.array([0.3, -1.1])
    np.testing.assert_allclose(
        cal.ticks_to_rad(cal.rad_to_ticks(angles)), angles, atol=math.pi / 4096
    )


def test_save_and_load_round_trip(tmp_path):
    joints = list(DEFAULT_CALIBRATION.joints)
    joints[4] = JointCalibrationEntry("MF21", 21, 2101, -1, (-1.2, 1.1))
    cal = JointCalibration("dclaw", tuple(joints), note="bench 2")
    path = cal.save(tmp_path / "sub" / "dclaw.json")
    data = json.loads(path.read_text())
    assert data["format"] == "slac-joint-calibration" and data["version"] == 1 and data["date"]
    assert data["joints"][4] == {
        "name": "MF21",
        "motor_id": 21,
        "offset_ticks": 2101,
        "sign": -1,
        "measured_range_rad": [-1.2, 1.1],
    }
    loaded = JointCalibration.load(path, "dclaw", DCLAW.joint_names, DCLAW.motor_ids)
    assert loaded == cal
    assert data["forced_joints"] == [] and loaded.forced_joints == ()


def test_forced_joints_round_trip_and_must_be_joints(tmp_path):
    cal = JointCalibration("dclaw", DEFAULT_CALIBRATION.joints, forced_joints=("FF11", "TH32"))
    loaded = JointCalibration.load(cal.save(tmp_path / "dclaw.json"), "dclaw")
    assert loaded.forced_joints == ("FF11", "TH32")
    # A file without the field (older files) has none.
    data = cal.to_dict()
    del data["forced_joints"]
    assert JointCalibration.from_dict(data).forced_joints == ()
    with pytest.raises(ValueError, match=r"forced_joints names joints it does not have: \['XX'\]"):
        JointCalibration("dclaw", DEFAULT_CALIBRATION.joints, forced_joints=("XX",))
    data["forced_joints"] = "FF11"
    with pytest.raises(CalibrationError, match=r'"forced_joints" must be a list of joint names'):
        JointCalibration.from_dict(data)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d.update(robot="dkitty"),
            r"is for robot 'dkitty', not 'dclaw'.*slac-calibrate joints",
        ),
        (
            lambda d: d["joints"][1].update(motor_id=41),
            r"motor IDs that do not match robot 'dclaw': FF11: 41 \(expected 11\)",
        ),
        (lambda d: d["joints"].pop(), r"lists joints .* but robot 'dclaw' has"),
        (lambda d: d.update(version=99), r"version 99 is not supported"),
        (lambda d: d.update(format="something"), r"not a joint calibration file"),
        (lambda d: d["joints"][0].update(sign=0), r"joints\[0\]: joint FF10: sign must be 1 or -1"),
        (
            lambda d: d["joints"][2].pop("offset_ticks"),
            r"joints\[2\] is missing \['offset_ticks'\]",
        ),
        (
            lambda d: d["joints"][2].update(offset="x"),
            r"joints\[2\] has unknown field\(s\) \['offset'\]",
        ),
        (lambda d: d["joints"][3].update(motor_id=10), r"repeats motor IDs: \[10\]"),
        (lambda d: d["joints"][0].update(measured_range_rad=[1.0, -1.0]), r"low <= high"),
        (lambda d: d["joints"][0].update(sign=1.0), r"joint FF10: sign must be 1 or -1, got 1\.0"),
        (lambda d: d["joints"][0].update(name=10), r"joints\[0\]: name must be a joint's name"),
        (lambda d: d.update(robot=None), r'"robot" must be a robot\'s name, got null'),
        (lambda d: d.update(joints={}), r'"joints" must be a list, got an object'),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path, edit, message):
    data = DEFAULT_CALIBRATION.to_dict()
    edit(data)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=message) as info:
        JointCalibration.load(path, "dclaw", DCLAW.joint_names, DCLAW.motor_ids)
    assert str(path) in str(info.value)
    # A refusal (the runtime: exit 2, nothing moved), and still a ValueError for older callers.
    assert isinstance(info.value, RobotRefused) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_corrupt_and_missing_files(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text('{"format": "slac-joint-calibration", "version": 1, "joi')
    with pytest.raises(
        ValueError, match=r"is not valid JSON .*recalibrate with `slac-calibrate joints`"
    ):
        JointCalibration.load(path)
    with pytest.raises(CalibrationError, match=r"nope\.json not found"):
        JointCalibration.load(tmp_path / "nope.json")
    with pytest.raises(CalibrationError, match=r"is a directory"):
        JointCalibration.load(tmp_path)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(CalibrationError, match=r"is not text \(byte 0 is not UTF-8\)"):
        JointCalibration.load(path)


# ---- the check against a robot's nominal build ---------------------------------------------------


def test_deviations_from_the_nominal_build_name_each_joint():
    joints = list(DEFAULT_CALIBRATION.joints)
    joints[1] = JointCalibrationEntry("FF11", 11, 2048 + 20, -1)  # reversed, zero close
    joints[2] = JointCalibrationEntry("FF12", 12, 2048 + 101, 1)  # zero just past 100 ticks
    joints[5] = JointCalibrationEntry("MF22", 22, 2048 - 100, 1)  # zero exactly at the bound
    cal = JointCalibration("dclaw", tuple(joints))
    found = cal.deviations_from(DEFAULT_CALIBRATION, max_offset_error_ticks=100)
    assert [(d.name, d.sign_differs, d.offset_too_far) for d in found] == [
        ("FF11", True, False),
        ("FF12", False, True),
    ]
    with pytest.raises(CalibrationSanityError) as info:
        cal.check_near(DEFAULT_CALIBRATION, 100, source="calibration file x.json", fix="redo it")
    assert str(info.value) == (
        "calibration file x.json is far from the dclaw's nominal build (each zero within ±100 "
        "ticks of nominal, nominal directions): FF11 direction -1, nominal +1; FF12 zero at tick "
        "2149, +101 ticks (+0.15 rad) from nominal 2048: redo it"
    )
    assert info.value.joint_names == ("FF11", "FF12")
    # Forced joints are accepted as they are.
    forced = JointCalibration("dclaw", tuple(joints), forced_joints=("FF11", "FF12"))
    forced.check_near(DEFAULT_CALIBRATION, 100)
    DEFAULT_CALIBRATION.check_near(DEFAULT_CALIBRATION, 0)
