"""The real D'Claw driver and frame subscriber against the virtual D'Claw (MuJoCo behind the bus
emulator on a pty, camera over ZeroMQ): what the hardware-free pipeline stands on."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from robots.dclaw import DCLAW
from robots.dclaw.driver import DClawDriver
from robots.dclaw.virtual import VirtualDClaw
from robots.dclaw.wide_view import WideView
from robots.dynamixel.bus import ServoCommunicationError
from slac_runtime.frames import FrameSubscriber

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def virtual(tmp_path):
    with VirtualDClaw(tmp_path / "tty", f"ipc://{tmp_path}/camera") as robot:
        yield robot


def test_command_and_read_match_the_simulator(virtual):
    with DClawDriver(port=virtual.port, retries=5) as robot:
        time.sleep(0.5)  # let the claw settle in the pose it holds
        state = robot.read_state()
        np.testing.assert_allclose(state.positions, virtual.joint_positions(), atol=0.005)
        goal = np.array([0.2, -0.3, 0.5] * 3)
        current = state.positions
        for _ in range(60):  # walk there at the velocity limit, as the runtime does
            current = DCLAW.action_to_joint_goal(
                (goal - DCLAW.low) / (DCLAW.high - DCLAW.low) * 2 - 1, current, 0.05
            )
            robot.command(current)
            time.sleep(0.02)
        time.sleep(0.5)
        state = robot.read_state()
        sim = virtual.joint_positions()
        np.testing.assert_allclose(
            state.positions, sim, atol=0.005
        )  # the bus tells the truth (a tick = 0.0015)
        np.testing.assert_allclose(sim, goal, atol=0.15)  # and the simulated servos got there
        assert np.all(np.abs(state.currents) < 5.0)


def test_reset_scene_leaves_the_valve_where_it_was_put(virtual):
    """Between episodes the claw may rest among the spokes; turning only the valve back would make
    them collide. reset_scene puts the claw at its reset pose first, and the bus holds it there."""
    lowered = np.array([-0.25, 0.0, 0.8] * 3)  # where a Turn episode leaves the fingers
    with DClawDriver(port=virtual.port, retries=5, on_exit="hold") as robot:
        current = robot.read_state().positions
        for _ in range(40):
            current = DCLAW.action_to_joint_goal(
                (lowered - DCLAW.low) / (DCLAW.high - DCLAW.low) * 2 - 1, current, 0.05
            )
            robot.command(current)
            time.sleep(0.02)
        time.sleep(0.3)
    virtual.reset_scene(valve_angle=0.0)
    time.sleep(0.5)
    assert abs(virtual.valve_angle()) < 0.01
    np.testing.assert_allclose(virtual.joint_positions(), DCLAW.reset_pose, atol=0.05)
    goals = virtual.emulator.joint_goals()
    np.testing.assert_allclose([goals[i] for i in DCLAW.motor_ids], DCLAW.reset_pose, atol=0.01)


def test_reset_scene_never_applies_goals_the_bus_wrote_before_the_reset(virtual, monkeypatch):
    """On a busy machine the bus process may take the reset pose as its goals late, after goals
    written before the reset (a client's last hold, a write in flight) reached the shared state.
    Those must not pull the claw out of the pose while reset_scene waits for the bus."""
    with DClawDriver(port=virtual.port, retries=5, on_exit="hold") as robot:
        robot.hold()  # torque on where the claw is, and it stays on
    deadline = time.monotonic() + 5
    while not all(virtual.backend.torque) and time.monotonic() < deadline:
        time.sleep(0.01)  # until the simulation has taken the torque from the bus
    stale = dict(zip(DCLAW.motor_ids, [-0.25, 0.0, 0.8] * 3))
    take_reset_pose = virtual.emulator.goals_to

    def late_bus(goals):
        virtual.joint_state.write_goals(stale, dict.fromkeys(DCLAW.motor_ids, True))
        time.sleep(0.3)  # the simulation runs on meanwhile
        waiting.append(virtual.joint_positions())
        take_reset_pose(goals)

    waiting = []
    monkeypatch.setattr(virtual.emulator, "goals_to", late_bus)
    virtual.reset_scene(valve_angle=0.0)
    time.sleep(0.3)
    # Within what gravity sags a holding servo, while waiting for the bus and after.
    np.testing.assert_allclose(waiting[0], DCLAW.reset_pose, atol=0.05)
    np.testing.assert_allclose(virtual.joint_positions(), DCLAW.reset_pose, atol=0.05)
    goals = virtual.emulator.joint_goals()
    np.testing.assert_allclose([goals[i] for i in DCLAW.motor_ids], DCLAW.reset_pose, atol=0.01)


def test_reset_scene_keeps_the_torque_the_bus_set_just_before(virtual, monkeypatch):
    """Torque the bus switched on just before a reset, not yet taken by the simulation, is on
    while reset_scene waits for the bus: only the stale goals are held back."""
    take_reset_pose = virtual.emulator.goals_to
    torque_while_waiting = []

    def bus(goals):
        torque_while_waiting.append(virtual.backend.torque.copy())
        take_reset_pose(goals)

    monkeypatch.setattr(virtual.emulator, "goals_to", bus)
    with virtual.lock:  # the simulation waits, so the driver's torque-on is pending at the reset
        with DClawDriver(port=virtual.port, retries=5, on_exit="hold") as robot:
            robot.hold()
        assert not any(virtual.backend.torque)
        virtual.reset_scene(valve_angle=0.0)
    assert all(torque_while_waiting[0])


def test_faults_are_retried_and_counted(virtual):
    """A lost reply and a corrupt one each cost a retry: the sync read is sent again (the bus
    counts it) and counted by the driver. A busy computer may add retries (the SDK gives up on a
    reply it was not scheduled in time to read), never take one away."""
    with DClawDriver(port=virtual.port, retries=5) as robot:
        before = robot.stats["retries"]
        sync_reads_before = virtual.emulator.counters["rx_sync_read"]
        virtual.emulator.drop_replies(1)
        robot.read_state()
        virtual.emulator.corrupt_replies(1)
        robot.read_state()
        retries = robot.stats["retries"] - before
        counters = virtual.emulator.counters
        assert counters["dropped_replies"] == 1 and counters["corrupted_replies"] == 1
        assert retries >= 2 and robot.stats["failures"] == 0
        assert counters["rx_sync_read"] - sync_reads_before == 2 + retries


def test_silent_servo_is_named_and_torque_is_left_off(virtual):
    with pytest.raises(ServoCommunicationError, match="MF21"):
        with DClawDriver(port=virtual.port) as robot:
            robot.read_state()
            virtual.emulator.set_silent(21)
            robot.read_state()
    # Every servo that still answers was relaxed; the silent one could not be reached.
    assert not any(virtual.emulator.torque_enabled(i) for i in DCLAW.motor_ids if i != 21)


def test_torque_off_after_an_exception_in_the_block(virtual):
    with pytest.raises(ZeroDivisionError):
        with DClawDriver(port=virtual.port) as robot:
            robot.command(np.asarray(DCLAW.reset_pose))
            assert virtual.emulator.torque_enabled(10)
            raise ZeroDivisionError("a bug in the caller")
    assert not any(virtual.emulator.torque_enabled(i) for i in DCLAW.motor_ids)


def test_camera_publishes_the_task_view(virtual):
    with FrameSubscriber(virtual.camera_endpoint) as frames:
        first = frames.latest(timeout_s=2.0)
        second = frames.latest(timeout_s=2.0)
    assert first is not None and second is not None and second.seq > first.seq
    assert first.image.shape == (64, 64, 3) and first.image.std() > 5
    assert 0 <= second.age_s < 0.5
    virtual.freeze_camera()
    time.sleep(0.2)
    with FrameSubscriber(virtual.camera_endpoint, max_age_s=0.2) as frames:
        assert frames.latest(timeout_s=0.5) is None  # a frozen camera sends nothing


def test_cli_starts_and_stops(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "robots.virtual_cli",
            "--robot",
            "dclaw",
            "--port-link",
            str(tmp_path / "tty"),
            "--camera-bind",
            f"ipc://{tmp_path}/cam",
            "--duration",
            "1.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "servo port" in out and "stopped" in out
    assert "serving for 1.5 s" in out and "reply latency" in out and "its own process" in out
    assert not (tmp_path / "tty").exists()  # the port link is removed on exit


def test_cli_unknown_robot(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "robots.virtual_cli", "--robot", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "dclaw" in out.stderr


def test_visual_randomisation_keeps_the_wide_view(tmp_path):
    """Lights, colours and a small camera jitter are drawn around the wide view's camera, not the
    task camera's: its field of view (60 deg, not 42.75) and its roll survive."""
    import mujoco

    from robots.dclaw.sim import VISUAL_RANGES

    view = WideView()
    robot = VirtualDClaw(tmp_path / "tty", f"ipc://{tmp_path}/camera", wide_view=view)
    try:
        m, d = robot.sim.model, robot.sim.data
        cam = m.camera("task").id

        def roll_deg() -> float:
            mujoco.mj_forward(m, d)
            x_axis = d.cam_xmat[cam].reshape(3, 3)[:, 0]  # the image's x axis, in the world
            return float(np.degrees(np.arcsin(-x_axis[2])))

        roll_before = roll_deg()
        assert (
            abs(roll_before) > 1.5
        )  # the task camera has none; 3 deg about a pitched optical axis
        for seed in range(3):
            robot.randomize_visuals(seed)
            assert abs(m.cam_fovy[cam] - view.fovy_deg) <= VISUAL_RANGES.camera_fovy_jitter_deg
            assert abs(roll_deg() - roll_before) <= VISUAL_RANGES.camera_angle_jitter_deg + 0.5
    finally:
        robot.stop()
