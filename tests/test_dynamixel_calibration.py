"""Joint calibration files: conversions, round trip, and errors that say what
is wrong and how to fix it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from robots.dclaw.description import DCLAW
from robots.dclaw.driver import DEFAULT_CALIBRATION
from robots.dynamixel.calibration import JointCalibration, JointCalibrationEntry


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
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path, edit, message):
    data = DEFAULT_CALIBRATION.to_dict()
    edit(data)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as info:
        JointCalibration.load(path, "dclaw", DCLAW.joint_names, DCLAW.motor_ids)
    assert str(path) in str(info.value)


def test_corrupt_and_missing_files(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text('{"format": "slac-joint-calibration", "version": 1, "joi')
    with pytest.raises(
        ValueError, match=r"is not valid JSON .*recalibrate with `slac-calibrate joints`"
    ):
        JointCalibration.load(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        JointCalibration.load(tmp_path / "nope.json")
