"""slac-run end to end against the virtual D'Claw: the loop, the log, the action mapping, and faults."""

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
from slac_runtime.replay import policy_differences
from tests.virtual_robot import episode_logs, run_slac_run, wait_for_ticks


@pytest.fixture
def virtual_dclaw(tmp_path):
    robot = VirtualDClaw(tmp_path / "tty", f"ipc://{tmp_path}/camera")
    with robot:
        yield robot


def test_episode_end_to_end(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    steps = 12
    result = run_slac_run(tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs", "--episode-steps", str(steps))
    assert result.returncode == 0, result.stderr
    assert "episode complete" in result.stdout and "jitter_p99_ms" in result.stdout
    [path] = episode_logs(tmp_path / "logs")
    log = read_episode_log(path)
    assert not log.truncated
    assert log.header["policy_metadata"]["task"] == "dclaw-turn"
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


def test_frozen_camera_holds_then_relaxes(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    proc = run_slac_run(tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs", "--episode-steps", "200",
                        "--stale-timeout", "0.6", wait=False)
    try:
        wait_for_ticks(tmp_path / "logs")
        time.sleep(1.0)
        virtual_dclaw.freeze_camera()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "stale" in err
    log = read_episode_log(episode_logs(tmp_path / "logs")[0])
    events = [e["event"] for e in log.events]
    assert "hold" in events and "relax" in events
    assert events.index("hold") < events.index("relax")
    assert "stale" in log.footer["stop_reason"]
    assert not any(virtual_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)


def test_silent_servo_stops_safely_naming_it(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    proc = run_slac_run(tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs", "--episode-steps", "200", wait=False)
    try:
        wait_for_ticks(tmp_path / "logs")
        time.sleep(1.0)
        virtual_dclaw.emulator.set_silent(21)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "21" in err and "MF21" in err, err
    log = read_episode_log(episode_logs(tmp_path / "logs")[0])
    assert any(e["event"] == "error" and "21" in e["reason"] for e in log.events)
    assert log.footer is not None  # closed properly despite the error
    silent_left_on = [i for i in DCLAW.motor_ids if i != 21 and virtual_dclaw.emulator.torque_enabled(i)]
    assert silent_left_on == []


def test_sigkill_leaves_a_readable_log(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    proc = run_slac_run(tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs", "--episode-steps", "200", wait=False)
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


def test_sigterm_finishes_cleanly(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    proc = run_slac_run(tiny_dclaw_policy, virtual_dclaw, tmp_path / "logs", "--episode-steps", "200", wait=False)
    try:
        wait_for_ticks(tmp_path / "logs", 6)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    log = read_episode_log(episode_logs(tmp_path / "logs")[0])
    assert log.footer["stop_reason"] == "stop requested" and not log.truncated
    assert not any(virtual_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)


def test_metadata_mismatch_is_refused_before_any_motion(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    model = onnx.load(str(tiny_dclaw_policy))
    for prop in model.metadata_props:
        if prop.key == "joint_ranges":
            ranges = json.loads(prop.value)
            ranges[1] = [-1.0, 1.0]
            prop.value = json.dumps(ranges)
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    before = dict(virtual_dclaw.emulator.counters)
    result = run_slac_run(other, virtual_dclaw, tmp_path / "logs")
    assert result.returncode == 2
    assert "joint ranges differ" in result.stderr
    assert dict(virtual_dclaw.emulator.counters) == before  # not one packet reached the servos


def test_unknown_robot_and_missing_policy(tmp_path, tiny_dclaw_policy):
    from slac_runtime.run_cli import main

    assert main(["--robot", "nope", "--camera", "tcp://127.0.0.1:1", "--policy", str(tiny_dclaw_policy)]) == 2
    assert main(["--robot", "dclaw", "--camera", "tcp://127.0.0.1:1", "--policy", str(tmp_path / "x.onnx")]) == 2
