"""slac-calibrate against the virtual D'Claw: planted joint offsets are recovered, the range check
records the joint ranges, offsets read outside the zero pose (or directions other than the
D'Claw's) are refused unless --force, the camera search undoes a wide, rolled, off-centre view,
and wrong or broken calibration files are refused with a clear error."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.camera_alignment import align_camera, image_error
from calibration.cli import main
from calibration.frame_grab import grab_frame
from calibration.sim_view import render_task_view
from robots.dclaw.description import DCLAW, RESET_POSE
from robots.dclaw.driver import DEFAULT_CALIBRATION, DClawDriver
from robots.dclaw.sim import TASK_CAMERA
from robots.dclaw.virtual import VirtualDClaw
from robots.dclaw.wide_view import WideView
from robots.dynamixel.calibration import JointCalibration
from slac_runtime.preprocessing import CameraCalibration

TICK_RAD = 2 * math.pi / 4096
PLANTED = {10: +37, 21: -52, 32: +18}  # motor ID -> ticks added to the servo's true zero
RETRIES = 3  # the driver's default: the virtual robot's bus answers from its own process


def slac_calibrate(
    *argv: str, stdin: str = "", timeout: float = 120
) -> subprocess.CompletedProcess:
    """``slac-calibrate ARGV`` in its own process, as a user runs it
    (the virtual robot stays here)."""
    return subprocess.run(
        [sys.executable, "-m", "calibration.cli", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(autouse=True)
def calibration_dir(tmp_path, monkeypatch):
    """Never read or write the user's own calibration files."""
    directory = tmp_path / "config"
    monkeypatch.setenv("SLAC_CALIBRATION_DIR", str(directory))
    return directory


@pytest.fixture
def planted_dclaw(tmp_path):
    """A miscalibrated virtual D'Claw hanging in its zero pose (no valve in the way)."""
    robot = VirtualDClaw(
        tmp_path / "tty",
        f"ipc://{tmp_path}/camera",
        scene="pose",
        planted_offsets=PLANTED,
        initial_pose="zero",
    )
    with robot:
        yield robot


def planted_rad() -> np.ndarray:
    return np.array([PLANTED.get(i, 0) for i in DCLAW.motor_ids]) * TICK_RAD


def move_to(claw: DClawDriver, goal: np.ndarray, settle_s: float = 0.6) -> None:
    for _ in range(40):  # the driver limits each command's step
        if np.allclose(claw.command(goal), goal, atol=1e-3):
            break
        time.sleep(0.02)
    time.sleep(settle_s)


# ---- joints -------------------------------------------------------------------------------------


def test_planted_offsets_are_recovered(planted_dclaw, tmp_path):
    # Uncalibrated (the driver's nominal offsets), the readings are off by the planted ticks.
    with DClawDriver(planted_dclaw.port, retries=RETRIES) as claw:
        nominal = claw.read_state().positions
        truth = planted_dclaw.joint_positions()
    np.testing.assert_allclose(nominal - truth, planted_rad(), atol=TICK_RAD)
    assert np.abs(nominal - truth).max() > 50 * TICK_RAD

    out = tmp_path / "joints.json"
    run = slac_calibrate(
        "joints",
        "--robot",
        "dclaw",
        "--port",
        planted_dclaw.port,
        "--yes",
        "--no-range-check",
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert "FF10" in run.stdout and "offset (ticks)" in run.stdout and str(out) in run.stdout

    calibration = JointCalibration.load(out, "dclaw", DCLAW.joint_names, DCLAW.motor_ids)
    expected = DEFAULT_CALIBRATION.offsets_ticks + [PLANTED.get(i, 0) for i in DCLAW.motor_ids]
    np.testing.assert_array_equal(calibration.offsets_ticks, expected)
    assert all(j.measured_range_rad is None for j in calibration.joints)

    # Calibrated, the driver reads the simulator's angles, also away from the calibration pose.
    with DClawDriver(planted_dclaw.port, calibration=out, retries=RETRIES) as claw:
        np.testing.assert_allclose(
            claw.read_state().positions, planted_dclaw.joint_positions(), atol=TICK_RAD
        )
        move_to(claw, np.array(RESET_POSE))
        calibrated = claw.read_state().positions
        truth = planted_dclaw.joint_positions()
    assert np.abs(truth - np.array(RESET_POSE)).max() < 0.2  # it did move there
    np.testing.assert_allclose(calibrated, truth, atol=TICK_RAD)


def test_range_check_records_the_joint_ranges(planted_dclaw, calibration_dir):
    # Interactive: two Enters (zero pose; "the claw will now move"); the
    # file goes to the default place.
    run = slac_calibrate("joints", "--port", planted_dclaw.port, "--range-speed", "4", stdin="\n\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("Press Enter") == 2
    assert (
        "zero pose" in run.stdout and "will now move" in run.stdout and "warning" not in run.stdout
    )

    calibration = JointCalibration.load(calibration_dir / "dclaw-joints.json", "dclaw")
    expected = DEFAULT_CALIBRATION.offsets_ticks + [PLANTED.get(i, 0) for i in DCLAW.motor_ids]
    np.testing.assert_array_equal(calibration.offsets_ticks, expected)
    measured = np.array([j.measured_range_rad for j in calibration.joints])
    # The simulated servos (kp 2 N·m/rad) sag a few hundredths of a radian under gravity.
    np.testing.assert_allclose(measured[:, 0], DCLAW.low, atol=0.08)
    np.testing.assert_allclose(measured[:, 1], DCLAW.high, atol=0.08)
    assert np.abs(planted_dclaw.joint_positions()).max() < 0.05  # back at zero, torque off


def test_sigterm_during_the_range_check_relaxes_and_writes_nothing(planted_dclaw, tmp_path):
    """docker stop, systemd or timeout while the claw moves through its ranges: as Ctrl-C."""
    out = tmp_path / "joints.json"
    cmd = ["joints", "--robot", "dclaw", "--port", planted_dclaw.port, "--yes", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "calibration.cli", *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    emulator = planted_dclaw.emulator
    try:
        deadline = time.monotonic() + 60
        while not all(emulator.torque_enabled(i) for i in DCLAW.motor_ids):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the range check did not start"
            time.sleep(0.02)
        time.sleep(0.3)  # moving
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "SIGTERM: aborted (torque is off); nothing was written" in err
    assert not out.exists()
    assert not any(emulator.torque_enabled(i) for i in DCLAW.motor_ids)


def test_interactive_needs_a_terminal_or_yes(planted_dclaw):
    run = slac_calibrate("joints", "--port", planted_dclaw.port, "--no-range-check", stdin="")
    assert run.returncode == 2
    assert "--yes" in run.stderr and "Traceback" not in run.stderr


def test_joint_errors_are_one_line(planted_dclaw, tmp_path, capsys):
    def error(*argv: str) -> str:
        assert main(list(argv)) == 2
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err
        last = err.splitlines()[-1]  # argparse's errors follow its usage lines
        assert last.startswith("slac-calibrate")
        return last

    assert "--port" in error("joints", "--yes")  # argparse: required
    assert str(tmp_path / "nope") in error("joints", "--port", str(tmp_path / "nope"), "--yes")
    assert "unknown robot 'nao'" in error(
        "joints", "--robot", "nao", "--port", planted_dclaw.port, "--yes"
    )
    assert "+1 or -1" in error(
        "joints", "--port", planted_dclaw.port, "--yes", "--signs", "1,2,1,1,1,1,1,1,1"
    )
    assert "9 values" in error(
        "joints", "--port", planted_dclaw.port, "--yes", "--no-range-check", "--signs", "1,1"
    )
    assert "--range-speed" in error(
        "joints", "--port", planted_dclaw.port, "--yes", "--range-speed", "0"
    )

    planted_dclaw.emulator.set_silent(21)
    out = tmp_path / "j.json"
    run = slac_calibrate(
        "joints", "--port", planted_dclaw.port, "--yes", "--no-range-check", "--out", str(out)
    )
    assert run.returncode == 2
    assert run.stderr.startswith("slac-calibrate: error: ")
    assert "servo 21 (MF21)" in run.stderr and "did not answer" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_an_out_that_cannot_be_written_is_refused_before_calibrating(
    planted_dclaw, tmp_path, capsys
):
    (tmp_path / "a-file").write_text("")
    for out, need in (
        (tmp_path, f"--out {tmp_path} is a directory: give the name of a file to write"),
        (tmp_path / "a-file" / "j.json", f"cannot be written: {tmp_path / 'a-file'} is not a"),
    ):
        argv = ["joints", "--port", planted_dclaw.port, "--yes", "--no-range-check"]
        assert main([*argv, "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("slac-calibrate: error: ") and need in captured.err
        assert len(captured.err.strip().splitlines()) == 1
        assert "offsets" not in captured.out  # refused before the servos were read
    assert not list(tmp_path.glob("*.tmp"))


@pytest.fixture
def reset_dclaw(tmp_path):
    """The virtual D'Claw in its reset pose (fingers bent), no valve."""
    robot = VirtualDClaw(
        tmp_path / "tty", f"ipc://{tmp_path}/camera", scene="pose", initial_pose="reset"
    )
    with robot:
        yield robot


BENT_JOINTS = ("FF11", "FF12", "MF21", "MF22", "TH31", "TH32")  # ±pi/3 in the reset pose


def test_calibrating_in_the_reset_pose_is_refused_unless_forced(reset_dclaw, tmp_path):
    out = tmp_path / "joints.json"
    hold_pose(reset_dclaw, np.array(RESET_POSE))  # limp, the fingers would sag toward zero
    run = slac_calibrate("joints", "--port", reset_dclaw.port, "--yes", "--out", str(out))
    assert run.returncode == 2, run.stderr
    assert "zero pose (every finger hanging straight down, in line with its base)" in run.stdout
    err = run.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(
        "slac-calibrate: error: the offsets just read are far from the dclaw's nominal build "
        "(each zero within ±163 ticks of nominal, nominal directions): FF11 zero at tick"
    )
    assert all(f"{name} zero at tick" in err for name in BENT_JOINTS), err
    assert "FF10" not in err and "MF20" not in err and "TH30" not in err
    assert "Most likely the robot stood in or near its reset pose, not its zero pose" in err
    assert "pass --force" in err
    assert "reached [" not in run.stdout  # refused before the range check moved anything
    assert not out.exists()
    assert not any(reset_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)

    # --force writes it, recording the joints it accepted; the driver then takes the file.
    hold_pose(reset_dclaw, np.array(RESET_POSE))
    run = slac_calibrate(
        "joints",
        "--port",
        reset_dclaw.port,
        "--yes",
        "--no-range-check",
        "--force",
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert "warning: --force: accepting FF11 zero at tick" in run.stdout
    assert "FF11 (forced)" in run.stdout
    calibration = JointCalibration.load(out, "dclaw")
    assert set(calibration.forced_joints) == set(BENT_JOINTS)
    assert DClawDriver(reset_dclaw.port, calibration=out).calibration == calibration


def test_a_reversed_joint_is_written_only_with_force(planted_dclaw, tmp_path, capsys):
    out = tmp_path / "joints.json"
    signs = "+1,-1,+1,+1,+1,+1,+1,+1,+1"
    args = ["joints", "--port", planted_dclaw.port, "--yes", "--no-range-check", "--out", str(out)]
    assert main([*args, "--signs", signs]) == 2
    captured = capsys.readouterr()
    assert "offsets (ticks)" not in captured.out  # refused before the servos were read
    assert captured.err.strip() == (
        "slac-calibrate: error: --signs gives FF11 -1, but the dclaw's nominal build turns "
        "FF11 +1: "
        "leave these joints +1 in --signs (or leave --signs out), or, if this robot is built with "
        "those servos reversed, pass --force (nothing moved)"
    )
    assert not out.exists()
    assert main([*args, "--signs", signs, "--force"]) == 0
    calibration = JointCalibration.load(out, "dclaw")
    assert calibration.signs.tolist() == [1, -1, 1, 1, 1, 1, 1, 1, 1]
    assert calibration.forced_joints == ("FF11",)
    # the offset is the servo's tick at zero, whichever way the joint is said to turn
    assert calibration.offsets_ticks[1] == DEFAULT_CALIBRATION.offsets_ticks[1]


# ---- camera -------------------------------------------------------------------------------------


def hold_pose(robot: VirtualDClaw, q: np.ndarray) -> None:
    """Leave the virtual robot holding ``q`` (its servos start with torque off)."""
    with DClawDriver(robot.port, on_exit="hold", retries=RETRIES) as claw:
        move_to(claw, q, settle_s=0.3)


@pytest.fixture
def wide_dclaw(tmp_path):
    """The virtual D'Claw holding its reset pose above the valve, seen by
    an uncalibrated wide camera."""
    robot = VirtualDClaw(tmp_path / "tty", f"ipc://{tmp_path}/camera", wide_view=WideView())
    with robot:
        hold_pose(robot, np.array(RESET_POSE))
        yield robot


def assert_close_calibration(
    found: CameraCalibration,
    expected: CameraCalibration,
    crop_px: int = 3,
    rotation_deg: float = 1.0,
) -> None:
    assert not found.flip_horizontal and not found.flip_vertical
    assert found.source_size == expected.source_size
    assert np.abs(np.subtract(found.crop, expected.crop)).max() <= crop_px, (
        found.crop,
        expected.crop,
    )
    assert abs(found.rotation_deg - expected.rotation_deg) <= rotation_deg, (
        found.rotation_deg,
        expected.rotation_deg,
    )
    assert np.sign(found.rotation_deg) == np.sign(expected.rotation_deg)


def calibrate_camera_auto(robot: VirtualDClaw, overlay: Path) -> subprocess.CompletedProcess:
    """``slac-calibrate camera --auto`` on the virtual D'Claw; its overlay goes to ``overlay``."""
    return slac_calibrate(
        "camera",
        "--robot",
        "dclaw",
        "--camera",
        robot.camera_endpoint,
        "--port",
        robot.port,
        "--auto",
        "--save-overlay",
        str(overlay),
    )


def test_camera_auto_recovers_the_wide_view(wide_dclaw, tmp_path, calibration_dir, record_property):
    overlay = tmp_path / "overlay.png"
    run = calibrate_camera_auto(wide_dclaw, overlay)
    assert run.returncode == 0, run.stderr
    assert "image error" in run.stdout and "colour" in run.stdout
    print(run.stdout)

    found = CameraCalibration.load(calibration_dir / "dclaw-camera.json")  # the default place
    expected = WideView().expected_calibration(TASK_CAMERA.fovy_deg)
    assert_close_calibration(found, expected)
    settings = found.camera_settings  # what the camera reported, recorded
    assert (settings.width, settings.height) == (WideView().width, WideView().height)
    assert (settings.auto_exposure, settings.auto_white_balance) == (False, False)
    picture = cv2.imread(str(overlay))
    assert picture.shape == (64 * 4, 64 * 4 * 3, 3)

    # The calibrated frame matches the task camera's render; the uncalibrated one does not.
    hold_pose(wide_dclaw, np.array(RESET_POSE))  # slac-calibrate left the torque off
    frame = grab_frame(wide_dclaw.camera_endpoint)
    sim = render_task_view("dclaw", wide_dclaw.joint_positions())
    before = image_error(frame, sim, CameraCalibration())
    after = image_error(frame, sim, found)
    truth = image_error(frame, sim, expected)
    crop_error = int(np.abs(np.subtract(found.crop, expected.crop)).max())
    rotation_error = abs(found.rotation_deg - expected.rotation_deg)
    for name, value in (
        ("error_before", before),
        ("error_after", after),
        ("error_ground_truth", truth),
        ("crop_error_px", crop_error),
        ("rotation_error_deg", rotation_error),
    ):
        record_property(name, round(float(value), 3))
    print(
        f"\ncamera calibration: crop {found.crop} (truth {expected.crop}), rotation "
        f"{found.rotation_deg:+.2f} (truth {expected.rotation_deg:+.2f}) deg; image error before "
        f"{before:.2f}, after {after:.2f}, ground truth {truth:.2f}"
    )
    assert after < before / 2
    assert truth < before / 2  # the ground truth and preprocess_frame agree on the rotation's sign


def test_camera_auto_sets_aside_a_calibration_made_for_other_frames(
    wide_dclaw, tmp_path, calibration_dir
):
    """A camera calibration at the default place made for another resolution does not stop
    --auto from calibrating the camera as it is now: it is named, set aside and replaced."""
    stale = CameraCalibration(source_size=(640, 480), crop=(100, 40, 400, 400))
    calibration_dir.mkdir(parents=True, exist_ok=True)
    stale.save(calibration_dir / "dclaw-camera.json")
    run = calibrate_camera_auto(wide_dclaw, tmp_path / "overlay.png")
    assert run.returncode == 0, run.stderr
    assert "made for other frames than this camera's 320x240: not compared" in run.stdout
    found = CameraCalibration.load(calibration_dir / "dclaw-camera.json")
    assert found.source_size == (WideView().width, WideView().height)


def test_camera_search_handles_the_other_roll_and_a_mirror(tmp_path):
    """The search alone, on a view rolled the other way, and mirrored: both signs end to end."""
    view = WideView(roll_deg=-4.0, shift_px=(-10, 6))
    expected = view.expected_calibration(TASK_CAMERA.fovy_deg)
    with VirtualDClaw(tmp_path / "tty", f"ipc://{tmp_path}/camera", wide_view=view) as robot:
        hold_pose(robot, np.array(RESET_POSE))
        frame = grab_frame(robot.camera_endpoint)
        q = robot.joint_positions()
    sim = render_task_view("dclaw", q)
    result = align_camera(frame, sim, max_rotation_deg=6)
    assert_close_calibration(result.calibration, expected)
    assert result.error_after < result.error_before / 2
    print(
        f"\nroll -4 deg: crop {result.calibration.crop} (truth {expected.crop}), rotation "
        f"{result.calibration.rotation_deg:+.2f} deg; image error before "
        f"{result.error_before:.2f}, after {result.error_after:.2f}"
    )

    mirrored = align_camera(np.ascontiguousarray(frame[:, ::-1]), sim, max_rotation_deg=6)
    assert mirrored.calibration.flip_horizontal and not mirrored.calibration.flip_vertical
    assert abs(mirrored.calibration.rotation_deg + expected.rotation_deg) <= 1.0
    assert mirrored.error_after < mirrored.error_before / 2


def test_camera_overlay_with_a_given_pose_and_calibration(wide_dclaw, tmp_path, calibration_dir):
    expected = WideView().expected_calibration(TASK_CAMERA.fovy_deg)
    given = tmp_path / "given.json"
    expected.save(given)
    overlay = tmp_path / "o.png"
    assert (
        main(
            [
                "camera",
                "--camera",
                wide_dclaw.camera_endpoint,
                "--joint-positions",
                "reset",
                "--calibration-in",
                str(given),
                "--save-overlay",
                str(overlay),
            ]
        )
        == 0
    )
    assert overlay.is_file()
    assert not (calibration_dir / "dclaw-camera.json").exists()  # nothing is written without --auto


def test_camera_check_passes_the_true_calibration_and_fails_a_wrong_one(
    wide_dclaw, tmp_path, calibration_dir, capsys
):
    """--check on the virtual wide camera's live frames: the true calibration passes (exit 0), the
    same one rotated 5 degrees fails with one line and exit 1, and no calibration at all is
    refused (exit 2). Nothing is written but the overlay."""
    truth = WideView().expected_calibration(TASK_CAMERA.fovy_deg)
    right, wrong = tmp_path / "right.json", tmp_path / "wrong.json"
    truth.save(right)
    dataclasses.replace(truth, rotation_deg=truth.rotation_deg + 5.0).save(wrong)
    check = ["camera", "--camera", wide_dclaw.camera_endpoint, "--joint-positions", "reset"]
    check += ["--check", "--save-overlay", str(tmp_path / "overlay.png")]

    assert main([*check, "--camera-calibration", str(right)]) == 0
    out = capsys.readouterr().out
    assert "match" in out and out.rstrip().endswith(": pass")

    assert main([*check, "--camera-calibration", str(wrong)]) == 1
    captured = capsys.readouterr()
    assert captured.out.rstrip().endswith("below the threshold")
    [line] = captured.err.strip().splitlines()
    assert line.startswith("slac-calibrate: error: the calibrated camera does not match")

    assert main(check) == 2  # no calibration: none given, none at the default place
    assert "--check needs a camera calibration" in capsys.readouterr().err
    assert not (calibration_dir / "dclaw-camera.json").exists()


# ---- wrong files ---------------------------------------------------------------------------------


def write_joint_file(path, **changes):
    data = DEFAULT_CALIBRATION.to_dict()
    for key, value in changes.items():
        if key == "motor_id_of_first":
            data["joints"][0]["motor_id"] = value
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "case, needle",
    [
        ("other robot", "is for robot 'tripod', not 'dclaw'"),
        ("other motor IDs", "FF10: 13 (expected 10)"),
        ("bad JSON", "not valid JSON"),
        ("other format", "not a joint calibration file"),
        ("newer version", "version 7 is not supported"),
    ],
)
def test_driver_refuses_wrong_joint_files(tmp_path, case, needle):
    path = tmp_path / "joints.json"
    if case == "other robot":
        write_joint_file(path, robot="tripod")
    elif case == "other motor IDs":
        write_joint_file(path, motor_id_of_first=13)
    elif case == "bad JSON":
        path.write_text('{"format": "slac-joint-calibration", "version": 1, "joints": [')
    elif case == "other format":
        path.write_text(json.dumps(CameraCalibration().to_dict()))
    else:
        write_joint_file(path, version=7)
    with pytest.raises(ValueError) as info:
        DClawDriver(
            str(tmp_path / "no-port"), calibration=path
        )  # refused before the port is opened
    assert needle in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    "content, needle",
    [
        ('{"crop": [0, 0, 10', "not valid JSON"),
        (json.dumps({"crop": [0, 0, 10, 10], "zoom": 2}), "unknown field(s) 'zoom'"),
        (json.dumps({"schema_version": 2}), "schema_version"),
        (json.dumps({"crop": [300, 0, 100, 100], "source_size": [320, 240]}), "inside the 320x240"),
        (json.dumps(DEFAULT_CALIBRATION.to_dict()), "unknown field(s)"),  # a joint file
    ],
)
def test_wrong_camera_files_are_refused(tmp_path, content, needle):
    path = tmp_path / "camera.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        CameraCalibration.load(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_an_interrupted_write_keeps_the_calibration_there_was(tmp_path, monkeypatch):
    """Ctrl-C between writing the new file and putting it in place: the old file stays as it was,
    and no temporary file is left beside it."""
    camera_file, joint_file = tmp_path / "camera.json", tmp_path / "joints.json"
    CameraCalibration(crop=(1, 2, 30, 30)).save(camera_file)
    DEFAULT_CALIBRATION.save(joint_file)
    before = {path: path.read_bytes() for path in (camera_file, joint_file)}

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        CameraCalibration(crop=(5, 5, 10, 10)).save(camera_file)
    with pytest.raises(KeyboardInterrupt):
        dataclasses.replace(DEFAULT_CALIBRATION, note="new").save(joint_file)
    monkeypatch.undo()
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(tmp_path.iterdir()) == [camera_file, joint_file]


def test_slac_calibrate_refuses_wrong_files(tmp_path, capsys):
    bad_camera = tmp_path / "camera.json"
    bad_camera.write_text(json.dumps({"schema_version": 1, "zoom": 2}))
    assert (
        main(
            [
                "camera",
                "--camera",
                "ipc:///nonexistent",
                "--joint-positions",
                "reset",
                "--calibration-in",
                str(bad_camera),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert (
        "zoom" in err
        and str(bad_camera) in err
        and "Traceback" not in err
        and len(err.splitlines()) == 1
    )

    other_robot = write_joint_file(tmp_path / "joints.json", robot="tripod")
    assert (
        main(
            [
                "camera",
                "--camera",
                "ipc:///nonexistent",
                "--port",
                str(tmp_path / "tty"),
                "--joint-calibration",
                str(other_robot),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "'tripod'" in err and "Traceback" not in err and len(err.splitlines()) == 1

    assert main(["camera", "--camera", "0"]) == 2  # neither --port nor --joint-positions
    assert "--joint-positions" in capsys.readouterr().err
    assert main(["camera", "--camera", "0", "--joint-positions", "1,2"]) == 2
    assert "9 joints" in capsys.readouterr().err
