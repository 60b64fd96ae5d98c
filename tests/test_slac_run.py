"""slac-run end to end against the virtual D'Claw: the loop, the log, the
action mapping, and faults."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import onnx
import pytest

from robots.dclaw import DCLAW
from robots.dclaw.virtual import VirtualDClaw
from slac_runtime.episode_log import read_episode_log
from slac_runtime.policy_rerun import policy_differences
from slac_runtime.stop_request import StopRequest
from tests.virtual_robot import episode_logs, run_slac_run, wait_for_ticks


@pytest.fixture
def virtual_dclaw(tmp_path):
    robot = VirtualDClaw(tmp_path / "tty", f"ipc://{tmp_path}/camera")
    with robot:
        yield robot


def test_episode_end_to_end(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    steps = 12
    result = run_slac_run(
        tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs", "--episode-steps", str(steps)
    )
    assert result.returncode == 0, result.stderr
    assert "episode complete" in result.stdout and "jitter_p99_ms" in result.stdout
    [path] = episode_logs(tmp_path / "logs")
    log = read_episode_log(path)
    assert not log.truncated
    assert log.header["policy_metadata"]["task"] == "dclaw-turn"
    # The camera's match with the task view, measured once at start, in the output and the header.
    assert "camera match" in result.stdout and log.header["camera_match"]["passes"]
    # Every tick is logged; a policy step every action_repeat (2) ticks, each with its frame.
    assert [t["tick"] for t in log.ticks] == list(range(2 * steps))
    policy_ticks = log.policy_ticks()
    assert [t["tick"] for t in policy_ticks] == list(range(0, 2 * steps, 2))
    assert all(t["policy"]["frame_seq"] in log.frames for t in policy_ticks)
    # The goals are what simulation's action mapping gives for the same actions, tick by tick.
    goal = np.asarray(DCLAW.reset_pose)
    action = None
    for t in log.ticks:
        if t["policy"] is not None:
            action = np.asarray(t["policy"]["action"])
        goal = DCLAW.action_to_joint_goal(action, goal, 0.05)
        np.testing.assert_allclose(t["goal"], goal, atol=1e-9)
        np.testing.assert_allclose(t["sent"], goal, atol=2 * np.pi / 4096)  # whole servo ticks
    # The servos followed the goals: logged positions end closer to the last goal than they began.
    final_goal = np.asarray(log.ticks[-1]["sent"])
    first, last = np.asarray(log.ticks[0]["positions"]), np.asarray(log.ticks[-1]["positions"])
    assert np.abs(last - final_goal).mean() < np.abs(first - final_goal).mean()
    # The policy that produced the log reproduces its actions from the logged frames.
    assert policy_differences(log, tiny_dclaw_policy).max() < 1e-5
    assert log.footer["ticks"] == 2 * steps and log.footer["stop_reason"] == "episode complete"


def disturb_episode(
    robot: VirtualDClaw,
    policy,
    log_dir,
    disturb,
    *args: str,
    steps: int = 200,
    ticks: int = 0,
    settle_s: float = 0.0,
    timeout_s: float = 60.0,
) -> tuple[int, str]:
    """Start a ``slac-run`` episode of ``steps`` steps; once its log holds ``ticks`` ticks and
    ``settle_s`` more seconds passed, call ``disturb(proc)``; return the exit code and stderr."""
    proc = run_slac_run(policy, robot, log_dir, "--episode-steps", str(steps), *args, wait=False)
    try:
        wait_for_ticks(log_dir, ticks)
        time.sleep(settle_s)
        disturb(proc)
        _, err = proc.communicate(timeout=timeout_s)
    finally:
        proc.kill()
    return proc.returncode, err


def stale_camera_episode(virtual_dclaw, policy, log_dir, *args: str, **timing):
    """An episode whose camera freezes once it runs (``--stale-timeout 0.6``, ``args`` after it);
    its exit code and stderr (``timing``: :func:`disturb_episode`'s)."""

    def freeze(_proc) -> None:
        virtual_dclaw.freeze_camera()

    stale = ("--stale-timeout", "0.6", *args)
    return disturb_episode(virtual_dclaw, policy, log_dir, freeze, *stale, **timing)


def test_frozen_camera_holds_then_relaxes(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    returncode, err = stale_camera_episode(
        virtual_dclaw, tiny_dclaw_policy, tmp_path / "logs", settle_s=1.0
    )
    assert returncode == 3, err
    assert "stale" in err and "robot relaxed (torque off)" in err
    log = read_episode_log(episode_logs(tmp_path / "logs")[0])
    events = [e["event"] for e in log.events]
    assert "hold" in events and "safe_stop" in events
    assert events.index("hold") < events.index("safe_stop")
    assert "stale" in log.footer["stop_reason"]
    assert not any(virtual_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)


def test_silent_servo_stops_safely_naming_it(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    returncode, err = disturb_episode(
        virtual_dclaw,
        tiny_dclaw_policy,
        tmp_path / "logs",
        lambda _: virtual_dclaw.emulator.set_silent(21),
        settle_s=1.0,
    )
    assert returncode == 1
    assert "21" in err and "MF21" in err, err
    log = read_episode_log(episode_logs(tmp_path / "logs")[0])
    assert any(e["event"] == "error" and "21" in e["reason"] for e in log.events)
    assert log.footer is not None  # closed properly despite the error
    silent_left_on = [
        i for i in DCLAW.motor_ids if i != 21 and virtual_dclaw.emulator.torque_enabled(i)
    ]
    assert silent_left_on == []


def test_sigkill_leaves_a_readable_log(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    proc = run_slac_run(
        tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs", "--episode-steps", "200", wait=False
    )
    try:
        wait_for_ticks(tmp_path / "logs", 10)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    log = read_episode_log(episode_logs(tmp_path / "logs")[0])
    assert log.truncated and log.footer is None
    assert len(log.ticks) >= 10
    assert [t["tick"] for t in log.ticks] == list(range(len(log.ticks)))


def test_sigkill_stops_the_servos_within_the_bus_watchdog_window(
    virtual_dclaw, tiny_dclaw_policy, tmp_path
):
    """While slac-run streams goals the servos' Bus Watchdog is armed: killed with SIGKILL, nothing
    is left to relax them, and the servos stop on their own once the window has passed since the
    last goal, by the bus's own clock (the bus process is real-time scheduled where permitted; how
    soon this test gets to look is not timed)."""
    from robots.dclaw.driver import DEFAULT_WATCHDOG_S
    from robots.dynamixel import control_table as ct

    proc = run_slac_run(
        tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs", "--episode-steps", "400", wait=False
    )
    try:
        wait_for_ticks(tmp_path / "logs", 10)
        emulator = virtual_dclaw.emulator
        windows = [emulator.register(i, ct.BUS_WATCHDOG) for i in DCLAW.motor_ids]
        assert windows == [round(DEFAULT_WATCHDOG_S / 0.02)] * DCLAW.num_joints, windows
        emulator.take_longest_silence_s()  # from here on: the silence the kill leaves
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=10)
        tripped = set()
        while len(tripped) < DCLAW.num_joints and time.monotonic() - killed < 5.0:
            for i in DCLAW.motor_ids:
                if i not in tripped and emulator.register(i, ct.BUS_WATCHDOG) in (-1, 0xFF):
                    tripped.add(i)
            time.sleep(0.005)
    finally:
        proc.kill()
    assert sorted(tripped) == sorted(DCLAW.motor_ids)
    # The silence the servos judged when they stopped: past the window, and not a period later.
    silence_s = emulator.take_longest_silence_s()
    assert DEFAULT_WATCHDOG_S < silence_s <= DEFAULT_WATCHDOG_S + 0.05, silence_s
    # Stopped: the goals froze where the joints were, and nothing moves them any more.
    goals = emulator.joint_goals()
    time.sleep(0.3)
    assert emulator.joint_goals() == goals
    readings = emulator.joint_readings()
    positions = np.array([readings[i].position_rad for i in sorted(goals)])
    assert np.abs(positions - np.array([goals[i] for i in sorted(goals)])).max() < 0.1
    assert all(
        emulator.torque_enabled(i) for i in DCLAW.motor_ids
    )  # stopped, holding: as the e-Manual says


def _servo_goals(virtual_dclaw):
    from robots.dynamixel import control_table as ct

    return [virtual_dclaw.emulator.register(i, ct.GOAL_POSITION) for i in DCLAW.motor_ids]


def test_position_limit_registers_that_contradict_the_calibration_refuse_the_run(
    virtual_dclaw, tiny_dclaw_policy, tmp_path
):
    """Min/Max Position Limit reading 0/0 would clamp every goal to tick 0: a pi-rad jump."""
    from robots.dynamixel import control_table as ct

    for i in DCLAW.motor_ids:
        virtual_dclaw.emulator.set_register(i, ct.MAX_POSITION_LIMIT, 0)
        virtual_dclaw.emulator.set_register(i, ct.MIN_POSITION_LIMIT, 0)
    goals = _servo_goals(virtual_dclaw)
    result = run_slac_run(tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs")
    assert result.returncode == 2, result.stderr
    assert "Position Limit" in result.stderr and "nothing moved" in result.stderr
    assert not any(virtual_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)
    assert _servo_goals(virtual_dclaw) == goals
    assert episode_logs(tmp_path / "logs") == []


def test_a_wrong_joint_calibration_refuses_the_run(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    """One joint's zero 1976 ticks (3 rad) from the servos' nominal zero: the file is refused
    before the servo port opens, naming the joint."""
    from robots.dclaw.driver import DEFAULT_CALIBRATION
    from robots.dynamixel.calibration import JointCalibration, JointCalibrationEntry

    joints = list(DEFAULT_CALIBRATION.joints)
    joints[2] = JointCalibrationEntry("FF12", 12, joints[2].offset_ticks + 1976, 1)
    path = JointCalibration("dclaw", tuple(joints)).save(tmp_path / "dclaw-joints.json")
    goals = _servo_goals(virtual_dclaw)
    before = dict(virtual_dclaw.emulator.counters)
    result = run_slac_run(
        tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs", "--calibration", str(path)
    )
    assert result.returncode == 2, result.stderr
    assert "FF12 zero at tick 4024" in result.stderr and "slac-calibrate joints" in result.stderr
    assert result.stderr.strip().endswith("(nothing moved)")
    assert dict(virtual_dclaw.emulator.counters) == before  # the port never opened
    assert not any(virtual_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)
    assert _servo_goals(virtual_dclaw) == goals


def test_killing_the_servo_bus_names_the_port(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    port = virtual_dclaw.port
    returncode, err = disturb_episode(
        virtual_dclaw,
        tiny_dclaw_policy,
        tmp_path / "logs",
        lambda _: virtual_dclaw.emulator.stop(),
        steps=400,
        ticks=6,
        timeout_s=30,
    )
    assert returncode == 1, err
    assert port in err and "the robot could not be told to relax" in err, err
    log = read_episode_log(episode_logs(tmp_path / "logs")[0])
    assert log.footer is not None and port in log.footer["stop_reason"]


def with_metadata(policy, tmp_path, key, edit) -> str:
    """A copy of ``policy`` whose metadata ``key`` is ``edit(value)`` (values are JSON)."""
    model = onnx.load(str(policy))
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = json.dumps(edit(json.loads(prop.value)))
    other = tmp_path / f"edited-{key}.onnx"
    onnx.save(model, str(other))
    return other


def _ranges_edited(ranges):
    ranges[1] = [-1.0, 1.0]
    return ranges


@pytest.mark.parametrize(
    "key, edit, message",
    [
        ("joint_ranges", _ranges_edited, "joint ranges differ"),
        # A policy may not set the speed limit: a 0.5 s period would allow 1.05 rad per command.
        (
            "control_period_s",
            lambda _: 0.5,
            "control period 0.5 s is not one robot 'dclaw' may be driven at",
        ),
        ("velocity_limit", lambda v: 10 * v, "velocity limit differs"),
    ],
)
def test_metadata_mismatch_is_refused_before_any_motion(
    virtual_dclaw, tiny_dclaw_policy, tmp_path, key, edit, message
):
    other = with_metadata(tiny_dclaw_policy, tmp_path, key, edit)
    before = dict(virtual_dclaw.emulator.counters)
    result = run_slac_run(other, virtual_dclaw, tmp_path / "logs")
    assert result.returncode == 2
    assert message in result.stderr and "nothing moved" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert dict(virtual_dclaw.emulator.counters) == before  # not one packet reached the servos


def test_step_clip_comes_from_the_robot(tiny_dclaw_policy, tmp_path, monkeypatch):
    """The driver's step clip is the robot's velocity limit over the
    robot's period, whatever the file."""
    from slac_runtime import run_cli

    seen = {}

    class Refuse(Exception):
        pass

    def make_driver(**kwargs):
        seen.update(kwargs)
        raise Refuse

    entry = run_cli.find_robot("dclaw")
    monkeypatch.setattr(type(entry), "make_driver", lambda self, **kw: make_driver(**kw))
    slightly_off = with_metadata(
        tiny_dclaw_policy, tmp_path, "control_period_s", lambda p: p * 1.005
    )
    monkeypatch.setattr(run_cli, "wait_for_camera", lambda *a: None)
    args = ["--camera", "tcp://127.0.0.1:1", "--policy", str(slightly_off), "--allow-uncalibrated"]
    with pytest.raises(Refuse):
        run_cli.run(run_cli.parse_args(args), {}, StopRequest())
    assert seen["max_step_rad"] == pytest.approx(1.1 * DCLAW.velocity_limit * 0.05)
    assert "watchdog_s" not in seen  # the driver's own default window
    with pytest.raises(Refuse):
        run_cli.run(run_cli.parse_args([*args, "--bus-watchdog", "0.5"]), {}, StopRequest())
    assert seen["watchdog_s"] == 0.5


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--threads", "1000", "--threads: must be an integer from 1 to"),
        ("--threads", "0", "--threads: must be an integer from 1 to"),
        ("--episodes", "0", "--episodes: must be an integer of at least 1"),
        ("--duration", "-5", "--duration: must be a positive number"),
        ("--episode-steps", "0", "--episode-steps: must be an integer of at least 1"),
        ("--episode-steps", "-3", "--episode-steps: must be an integer of at least 1"),
        ("--stale-timeout", "nan", "--stale-timeout: must be a finite number"),
        ("--max-frame-age", "inf", "--max-frame-age: must be a finite number"),
        ("--max-frame-age", "0", "--max-frame-age: must be a positive number"),
        ("--camera-timeout", "-1", "--camera-timeout: must be a positive number"),
        ("--seed", "x", "--seed: must be an integer"),
        ("--bus-watchdog", "0", "--bus-watchdog: must be a number of seconds from 0.02 to 2.54"),
        ("--bus-watchdog", "3", "--bus-watchdog: must be a number of seconds from 0.02 to 2.54"),
    ],
)
def test_every_number_is_checked_in_one_line(option, value, message, capsys):
    from slac_runtime.run_cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--camera", "tcp://127.0.0.1:1", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_local_camera_failure_is_reported_before_any_motion(
    virtual_dclaw, tiny_dclaw_policy, tmp_path
):
    before = dict(virtual_dclaw.emulator.counters)
    cmd_camera = str(tmp_path / "no-such-video.mp4")
    result = run_slac_run(
        tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs", "--camera", cmd_camera
    )
    assert result.returncode == 2, result.stderr
    assert "camera" in result.stderr and "nothing moved" in result.stderr
    assert dict(virtual_dclaw.emulator.counters) == before  # the servo port was never opened
    assert episode_logs(tmp_path / "logs") == []


def test_stale_camera_with_on_exit_hold_says_holding(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    returncode, err = stale_camera_episode(
        virtual_dclaw,
        tiny_dclaw_policy,
        tmp_path / "logs",
        "--on-exit",
        "hold",
        ticks=4,  # frozen once the policy runs (frozen earlier, the episode never starts)
    )
    assert returncode == 3, err
    assert "stale" in err and "robot left holding its pose" in err and "relaxed" not in err
    assert all(virtual_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_exit_with_their_code(virtual_dclaw, tiny_dclaw_policy, tmp_path, signum):
    returncode, err = disturb_episode(
        virtual_dclaw,
        tiny_dclaw_policy,
        tmp_path / "logs",
        lambda proc: proc.send_signal(signum),
        ticks=4,
        timeout_s=30,
    )
    assert returncode == 128 + signum, err
    assert f"interrupted: {signal.Signals(signum).name}; robot relaxed" in err
    log = read_episode_log(episode_logs(tmp_path / "logs")[0])
    assert log.footer["stop_reason"] == "stop requested" and not log.truncated
    assert not any(virtual_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)


def test_unknown_robot_and_missing_policy(tmp_path, tiny_dclaw_policy):
    from slac_runtime.run_cli import main

    assert (
        main(
            ["--robot", "nope", "--camera", "tcp://127.0.0.1:1", "--policy", str(tiny_dclaw_policy)]
        )
        == 2
    )
    assert (
        main(
            [
                "--robot",
                "dclaw",
                "--camera",
                "tcp://127.0.0.1:1",
                "--policy",
                str(tmp_path / "x.onnx"),
            ]
        )
        == 2
    )
