"""A joint calibration is checked where it is loaded for the D'Claw, before the servo port is
opened: a file that is missing, unreadable, malformed, made for another robot, or far from ROBEL's
nominal build (a joint turning the other way, a zero far from the nominal tick) is a refusal
(``RobotRefused``: ``slac-run`` exits 2, "nothing moved") in one line naming the file and what is
wrong. Every calibration the toolkit ships or plants in its tests passes."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from calibration.joints import _offsets_refusal
from robots.dclaw import ROBOT
from robots.dclaw.description import DCLAW
from robots.dclaw.driver import (
    DEFAULT_CALIBRATION,
    MAX_ZERO_ERROR_RAD,
    DClawDriver,
    load_calibration,
)
from robots.dynamixel import control_table as ct
from robots.dynamixel.bus import DynamixelBus
from robots.dynamixel.calibration import (
    CalibrationError,
    CalibrationSanityError,
    JointCalibration,
    JointCalibrationEntry,
)
from robots.dynamixel.emulated_servo import mountings_from_calibration
from slac_runtime.preprocessing import CameraCalibration
from slac_runtime.robot import RobotRefused

MAX_ZERO_ERROR_TICKS = round(MAX_ZERO_ERROR_RAD / ct.RAD_PER_TICK)


def with_joint(index: int, **changes) -> JointCalibration:
    """ROBEL's nominal calibration with one joint changed."""
    joints = list(DEFAULT_CALIBRATION.joints)
    joints[index] = dataclasses.replace(joints[index], **changes)
    return JointCalibration("dclaw", tuple(joints))


def reset_pose_calibration() -> JointCalibration:
    """What calibrating in the reset pose instead of the zero pose reads: the middle and bottom
    joints' offsets ∓683 ticks (∓π/3) from nominal."""
    ticks = DEFAULT_CALIBRATION.rad_to_ticks(DCLAW.reset_pose)
    return JointCalibration(
        "dclaw",
        tuple(
            dataclasses.replace(j, offset_ticks=int(t))
            for j, t in zip(DEFAULT_CALIBRATION.joints, ticks)
        ),
    )


def nominal_dict() -> dict:
    return DEFAULT_CALIBRATION.to_dict()


def edited(edit) -> dict:
    data = nominal_dict()
    edit(data)
    return data


def write_json(data) -> callable:
    return lambda path: path.write_text(json.dumps(data))


# name, how to make the file at ``path``, what the one-line refusal says
BAD_FILES = [
    (
        "another robot",
        write_json(edited(lambda d: d.update(robot="dkitty"))),
        r"is for robot 'dkitty', not 'dclaw'",
    ),
    (
        "NaN offset",
        write_json(edited(lambda d: d["joints"][4].update(offset_ticks=math.nan))),
        r"joints\[4\]: joint MF21: offset_ticks must be a finite number, got nan",
    ),
    (
        "eight joints",
        write_json(edited(lambda d: d["joints"].pop())),
        r"lists joints \[.*\], but robot 'dclaw' has",
    ),
    (
        "no joints key",
        write_json(edited(lambda d: d.pop("joints"))),
        r"missing field\(s\) \['joints'\]",
    ),
    (
        "a joint without its offset",
        write_json(edited(lambda d: d["joints"][2].pop("offset_ticks"))),
        r"joints\[2\] is missing \['offset_ticks'\]",
    ),
    (
        "swapped motor IDs",
        write_json(
            edited(
                lambda d: (d["joints"][0].update(motor_id=11), d["joints"][1].update(motor_id=10))
            )
        ),
        r"motor IDs that do not match robot 'dclaw': FF10: 11 \(expected 10\), FF11: 10",
    ),
    ("not JSON", lambda path: path.write_text("{ not json"), r"is not valid JSON"),
    ("empty", lambda path: path.write_text(""), r"is not valid JSON"),
    ("not an object", write_json([1, 2]), r"expected a JSON object, got a list"),
    ("not text", lambda path: path.write_bytes(b"\x89PNG\r\n"), r"is not text"),
    ("a directory", lambda path: path.mkdir(), r"is a directory"),
    ("missing", lambda path: None, r"not found: make one with `slac-calibrate joints`"),
    (
        "a camera calibration",
        lambda path: CameraCalibration().save(path),
        r"not a joint calibration file",
    ),
    (
        "one joint's sign flipped",
        write_json(with_joint(1, sign=-1).to_dict()),
        r"nominal build \(.*\): FF11 direction -1, nominal \+1: recalibrate",
    ),
    (
        "calibrated in the reset pose",
        write_json(reset_pose_calibration().to_dict()),
        r"FF11 zero at tick 1365, -683 ticks \(-1\.05 rad\) from nominal 2048; FF12 zero at tick "
        r"2731, \+683 ticks",
    ),
    (
        "a zero one tick past the bound",
        write_json(with_joint(6, offset_ticks=1024 - MAX_ZERO_ERROR_TICKS - 1).to_dict()),
        rf"TH30 zero at tick {1024 - MAX_ZERO_ERROR_TICKS - 1}",
    ),
]


@pytest.mark.parametrize(
    ("make", "message"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_a_bad_calibration_file_is_refused_before_the_port_opens(
    tmp_path, monkeypatch, make, message
):
    path = tmp_path / "dclaw-joints.json"
    make(path)
    monkeypatch.setattr(DynamixelBus, "open", lambda self: pytest.fail("the port was opened"))
    with pytest.raises(CalibrationError, match=message) as info:
        # as slac-run, slac-replay and slac-calibrate camera make the driver
        ROBOT.make_driver(port=str(tmp_path / "tty"), calibration=path).connect()
    text = str(info.value)
    assert isinstance(info.value, RobotRefused)  # slac-run: exit 2, "nothing moved"
    assert str(path) in text and "\n" not in text
    with pytest.raises(CalibrationError, match=message):
        load_calibration(str(path))


def test_a_calibration_object_is_checked_like_a_file():
    with pytest.raises(
        CalibrationSanityError, match=r"the joint calibration is far .*FF11"
    ) as info:
        DClawDriver(calibration=with_joint(1, sign=-1))
    assert info.value.joint_names == ("FF11",)
    with pytest.raises(CalibrationSanityError, match=r"MF22 zero at tick 2731"):
        DClawDriver(calibration=reset_pose_calibration())


def test_the_zero_bound_is_inclusive_and_symmetric():
    for index, nominal in ((0, 1024), (4, 2048)):
        for delta in (MAX_ZERO_ERROR_TICKS, -MAX_ZERO_ERROR_TICKS):
            load_calibration(with_joint(index, offset_ticks=nominal + delta))
            with pytest.raises(CalibrationSanityError):
                load_calibration(
                    with_joint(index, offset_ticks=nominal + delta + (1 if delta > 0 else -1))
                )


def test_forced_joints_pass_and_only_those():
    forced = dataclasses.replace(
        with_joint(1, sign=-1, offset_ticks=2048 + 400), forced_joints=("FF11",)
    )
    assert load_calibration(forced) is forced
    elsewhere = dataclasses.replace(forced, forced_joints=("FF12",))
    with pytest.raises(CalibrationSanityError, match=r"FF11 direction -1, nominal \+1 and zero at"):
        load_calibration(elsewhere)


def test_calibrating_checks_the_signs_but_not_the_offsets():
    """slac-calibrate measures with offsets 0: only the directions can be checked then."""
    raw = JointCalibration(
        "dclaw", tuple(dataclasses.replace(j, offset_ticks=0) for j in DEFAULT_CALIBRATION.joints)
    )
    assert DClawDriver(calibration=raw, calibrating=True).calibration is raw
    with pytest.raises(CalibrationSanityError, match=r"nominal directions\): TH32 direction -1"):
        DClawDriver(
            calibration=dataclasses.replace(
                raw, joints=with_joint(8, sign=-1, offset_ticks=0).joints
            ),
            calibrating=True,
        )
    with pytest.raises(CalibrationSanityError):
        DClawDriver(calibration=raw)


def test_every_calibration_the_toolkit_uses_passes():
    # the driver's default, and the virtual D'Claw's servos (mounted by the default calibration)
    assert load_calibration(None) is DEFAULT_CALIBRATION
    mountings = mountings_from_calibration(DEFAULT_CALIBRATION)
    virtual = JointCalibration(
        "dclaw",
        tuple(
            JointCalibrationEntry(n, i, mountings[i].offset_ticks, mountings[i].sign)
            for n, i in zip(DCLAW.joint_names, DCLAW.motor_ids)
        ),
    )
    load_calibration(virtual)
    # the offsets docs/calibration.md and tests/test_calibration.py plant in the virtual D'Claw
    planted = {10: +37, 21: -52, 32: +18, 22: -77}
    load_calibration(
        JointCalibration(
            "dclaw",
            tuple(
                dataclasses.replace(j, offset_ticks=j.offset_ticks + planted.get(j.motor_id, 0))
                for j in DEFAULT_CALIBRATION.joints
            ),
        )
    )


def test_slac_calibrate_says_when_the_robot_stood_in_its_reset_pose():
    nominal, bound = DClawDriver.nominal_calibration, DClawDriver.max_zero_error_ticks
    message = _offsets_refusal(reset_pose_calibration(), nominal, bound, DCLAW)
    assert "FF11 zero at tick 1365" in message and "reset pose, not its zero pose" in message
    assert "every finger hanging straight down" in message and "--force" in message
    # A single joint far off (the rest of the claw in its zero pose) is not the reset pose.
    message = _offsets_refusal(with_joint(5, offset_ticks=2048 + 512), nominal, bound, DCLAW)
    assert "MF22 zero at tick 2560" in message and "reset pose" not in message
    assert "a servo horn or bracket is mounted off" in message


# ---- slac-run end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def virtual_dclaw(tmp_path_factory):
    from robots.dclaw.virtual import VirtualDClaw

    directory = tmp_path_factory.mktemp("virtual")
    with VirtualDClaw(directory / "tty", f"ipc://{directory}/camera") as robot:
        yield robot


E2E_FILES = {
    "one joint's sign flipped": (with_joint(1, sign=-1).to_dict(), "FF11 direction -1"),
    "calibrated in the reset pose": (reset_pose_calibration().to_dict(), "FF11 zero at tick 1365"),
    "NaN offset": (
        edited(lambda d: d["joints"][4].update(offset_ticks=math.nan)),
        "joint MF21: offset_ticks must be a finite number",
    ),
}


@pytest.mark.parametrize("case", E2E_FILES)
def test_slac_run_refuses_the_file_naming_the_joint(virtual_dclaw, tmp_path, capsys, case):
    from slac_runtime.run_cli import main
    from tests.virtual_robot import episode_logs

    data, named = E2E_FILES[case]
    path = tmp_path / "dclaw-joints.json"
    path.write_text(json.dumps(data))
    emulator = virtual_dclaw.emulator
    goals = [emulator.register(i, ct.GOAL_POSITION) for i in DCLAW.motor_ids]
    command = virtual_dclaw.slac_run_command(
        ROBOT.default_policy(), tmp_path / "logs", "--calibration", str(path)
    )
    assert main(command[3:]) == 2  # (without "python -m slac_runtime.run_cli")
    err = capsys.readouterr().err.strip()
    assert err.startswith("slac-run: error: ") and len(err.splitlines()) == 1, err
    assert str(path) in err and named in err and err.endswith("(nothing moved)"), err
    assert not any(emulator.torque_enabled(i) for i in DCLAW.motor_ids)
    assert [emulator.register(i, ct.GOAL_POSITION) for i in DCLAW.motor_ids] == goals
    assert episode_logs(tmp_path / "logs") == []


def test_slac_calibrate_refuses_reversed_signs_before_the_port_opens(monkeypatch, tmp_path):
    from calibration.joints import calibrate_joints

    monkeypatch.setattr(DynamixelBus, "open", lambda self: pytest.fail("the port was opened"))
    signs = [1, 1, 1, 1, 1, -1, 1, 1, -1]
    with pytest.raises(CalibrationSanityError) as info:
        calibrate_joints(str(tmp_path / "tty"), signs=signs, log=lambda line: None)
    assert str(info.value).startswith("--signs gives MF22 -1, TH32 -1, but the dclaw's nominal")
    assert info.value.joint_names == ("MF22", "TH32")
