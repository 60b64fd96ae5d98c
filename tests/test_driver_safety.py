"""The D'Claw driver refuses what it cannot move safely, and says so: servo registers and
start poses that contradict the calibration (refused before torque on), the servos' Bus
Watchdog (armed while goals stream, so a killed process stops the servos), a port that
goes away (named), bad options.

Each test checks what the servos did -- torque, goal registers, positions in the emulator -- not
only the message."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest

from robots.dclaw.description import DCLAW
from robots.dclaw.driver import (
    DEFAULT_CALIBRATION,
    DEFAULT_WATCHDOG_S,
    START_POSE_MARGIN_RAD,
    DClawDriver,
)
from robots.dynamixel import control_table as ct
from robots.dynamixel.bus import BusDisconnectedError, BusWatchdogError, ServoConfigurationError
from robots.dynamixel.calibration import (
    CalibrationSanityError,
    JointCalibration,
    JointCalibrationEntry,
)
from robots.dynamixel.emulator import ServoBusEmulator
from tests.test_dclaw_driver import make_emulator
from tests.virtual_robot import wait_for

pytestmark = pytest.mark.timeout(60)

IDS = DCLAW.motor_ids
RESET = np.array(DCLAW.reset_pose)
WATCHDOG_UNITS = round(DEFAULT_WATCHDOG_S / ct.BUS_WATCHDOG_UNIT_S)  # 10
FAR = 10.0  # rad: a step limit wider than any joint range


def goals(emu: ServoBusEmulator) -> list[int]:
    return [emu.register(i, ct.GOAL_POSITION) for i in IDS]


def watchdogs(emu: ServoBusEmulator) -> list[int]:
    return [emu.register(i, ct.BUS_WATCHDOG) & 0xFF for i in IDS]  # 0xFF: Bus Watchdog Error


def true_positions(emu: ServoBusEmulator) -> np.ndarray:
    readings = emu.joint_readings()
    return np.array([readings[i].position_rad for i in IDS])


def assert_untouched(emu: ServoBusEmulator, goals_before: list[int]) -> None:
    """Refused before torque on: every servo limp, no goal written, no watchdog armed."""
    assert not any(emu.torque_enabled(i) for i in IDS)
    assert goals(emu) == goals_before
    assert watchdogs(emu) == [0] * 9


# ---- servo-side checks at connect ----------------------------------------------------------------


def test_position_limits_reading_0_0_refuse_the_run_before_torque_on(tmp_path):
    with make_emulator(tmp_path) as emu:
        for i in IDS:
            emu.set_register(i, ct.MIN_POSITION_LIMIT, 0)
            emu.set_register(i, ct.MAX_POSITION_LIMIT, 0)
        before = goals(emu)
        claw = DClawDriver(emu.port_path)
        with pytest.raises(ServoConfigurationError) as info:
            claw.connect()
        message = str(info.value)
        assert (
            "servo 10 (FF10) limits read 0..0 but FF10's range [-0.48, +0.48] rad needs ticks "
            "711..1337" in message
        )
        assert "servo 32 (TH32) limits read 0..0" in message
        assert "Dynamixel Wizard" in message and "slac-calibrate joints" in message
        assert info.value.servo_ids == IDS and not claw.bus.is_open
        assert_untouched(emu, before)


def test_a_wrong_calibration_is_refused_at_connect(tmp_path):
    # A calibration whose FF12 zero is 1976 ticks off: at 0.43 rad FF12 reads -2.60 rad. Far from
    # ROBEL's build, it is refused before the port opens; forced, the servos' readings refuse it.
    start = RESET.copy()
    start[2] = 0.43
    joints = list(DEFAULT_CALIBRATION.joints)
    joints[2] = JointCalibrationEntry("FF12", 12, 2048 + 1976, 1)
    with pytest.raises(CalibrationSanityError, match=r"FF12 zero at tick 4024, \+1976 ticks"):
        DClawDriver(calibration=JointCalibration("dclaw", tuple(joints)))
    wrong = JointCalibration("dclaw", tuple(joints), forced_joints=("FF12",))
    with make_emulator(tmp_path, start=start) as emu:
        before = goals(emu)
        with pytest.raises(
            ServoConfigurationError,
            match=r"FF12 reads -2\.60 rad \(range \[-1\.57, \+1\.57\]\)\. The joint calibration is "
            r"probably wrong \(run `slac-calibrate joints`\), or the joint must be moved",
        ) as info:
            DClawDriver(emu.port_path, calibration=wrong).connect()
        assert info.value.servo_ids == (12,)
        assert_untouched(emu, before)
        # The right calibration connects and holds the pose without a jump.
        with DClawDriver(emu.port_path) as claw:
            np.testing.assert_allclose(claw.read_state().positions, start, atol=ct.RAD_PER_TICK)
            assert all(emu.torque_enabled(i) for i in IDS)
            assert goals(emu) == before


def test_a_joint_resting_just_outside_its_range_is_accepted(tmp_path):
    start = RESET.copy()
    start[1] = DCLAW.low[1] - 0.5 * START_POSE_MARGIN_RAD  # FF11 sagging past -pi/3
    with make_emulator(tmp_path, start=start) as emu:
        before = goals(emu)
        with DClawDriver(emu.port_path) as claw:
            assert all(emu.torque_enabled(i) for i in IDS)
            assert goals(emu) == before  # it holds where it is
            sent = claw.command(claw.last_goal)  # the first goal pulls it into its range
            assert sent[1] >= DCLAW.low[1] - ct.RAD_PER_TICK  # (rounded to whole ticks)


def test_an_operating_mode_that_does_not_stick_is_refused(tmp_path, monkeypatch):
    with make_emulator(tmp_path) as emu:
        emu.set_register(20, ct.OPERATING_MODE, 4)
        before = goals(emu)
        claw = DClawDriver(emu.port_path)
        write = claw.bus.write

        def ignoring_mf20(servo_id, register, value, allow_alert=False):
            if servo_id == 20 and register is ct.OPERATING_MODE:
                return  # a servo that acknowledges but keeps its mode
            write(servo_id, register, value, allow_alert=allow_alert)

        monkeypatch.setattr(claw.bus, "write", ignoring_mf20)
        with pytest.raises(
            ServoConfigurationError,
            match=(
                r"Operating Mode .* not position control \(3\) after writing it: "
                r"servo 20 \(MF20\) reads 4 \(extended position\)"
            ),
        ) as info:
            claw.connect()
        assert info.value.servo_ids == (20,)
        assert_untouched(emu, before)
        assert emu.register(20, ct.OPERATING_MODE) == 4
        assert emu.register(21, ct.OPERATING_MODE) == 3


def test_a_reversed_drive_mode_is_refused(tmp_path):
    with make_emulator(tmp_path) as emu:
        emu.set_register(21, ct.DRIVE_MODE, ct.DRIVE_MODE_REVERSE)
        emu.set_register(31, ct.DRIVE_MODE, ct.DRIVE_MODE_TORQUE_ON_BY_GOAL)
        before = goals(emu)
        with pytest.raises(
            ServoConfigurationError,
            match=(
                r"servo 21 \(MF21\): Drive Mode 1 \(bit 0 reverses .*"
                r"servo 31 \(TH31\): Drive Mode 8 \(bit 3 lets a goal write turn torque on\)"
            ),
        ) as info:
            DClawDriver(emu.port_path).connect()
        assert info.value.servo_ids == (21, 31)
        assert_untouched(emu, before)
        assert (
            emu.register(21, ct.DRIVE_MODE) == 1
        )  # the driver never rewrites it behind the calibration


def test_calibrating_skips_only_the_checks_that_need_a_calibration(tmp_path):
    raw = JointCalibration(
        "dclaw",
        tuple(JointCalibrationEntry(j.name, j.motor_id, 0, 1) for j in DEFAULT_CALIBRATION.joints),
    )
    # Offsets 0 are far from ROBEL's build: refused before the port opens, unless calibrating.
    with pytest.raises(CalibrationSanityError, match=r"FF10 zero at tick 0, -1024 ticks"):
        DClawDriver(calibration=raw)
    forced = JointCalibration(raw.robot, raw.joints, forced_joints=DCLAW.joint_names)
    with make_emulator(tmp_path) as emu:
        before = goals(emu)
        with pytest.raises(ServoConfigurationError, match="start pose is outside"):
            DClawDriver(emu.port_path, calibration=forced).connect()
        assert_untouched(emu, before)
        with DClawDriver(emu.port_path, calibration=raw, calibrating=True) as claw:
            assert goals(emu) == before and all(emu.torque_enabled(i) for i in IDS)
            claw.relax()
        # A pose outside the position limits still cannot be held, calibrating or not.
        emu.set_register(11, ct.MIN_POSITION_LIMIT, 2500)  # FF11 sits at tick 1365
        with pytest.raises(
            ServoConfigurationError,
            match=r"servo 11 \(FF11\) is at tick 1365, outside its position limits 2500\.\.4095",
        ):
            DClawDriver(emu.port_path, calibration=raw, calibrating=True).connect()
        assert_untouched(emu, before)


# ---- Bus Watchdog --------------------------------------------------------------------------------


def test_the_watchdog_is_armed_while_goals_stream_and_cleared_otherwise(tmp_path):
    with make_emulator(tmp_path) as emu:
        with DClawDriver(emu.port_path, on_exit="hold") as claw:
            assert claw.watchdog_s == pytest.approx(0.2)
            assert watchdogs(emu) == [0] * 9  # connected and holding: not armed
            before = dict(claw.stats)
            claw.command(claw.last_goal)
            assert watchdogs(emu) == [WATCHDOG_UNITS] * 9
            # arming: one sync write of 1 byte at 98 and one sync read to confirm, beside the goals
            assert (
                claw.stats["writes"] - before["writes"],
                claw.stats["reads"] - before["reads"],
            ) == (2, 1)
            before = dict(claw.stats)
            for _ in range(20):
                claw.command(claw.last_goal)
            # streaming: one sync write per command, nothing else
            assert (
                claw.stats["writes"] - before["writes"],
                claw.stats["reads"] - before["reads"],
            ) == (20, 0)
            claw.hold()
            assert watchdogs(emu) == [0] * 9 and all(emu.torque_enabled(i) for i in IDS)
            claw.command(claw.last_goal)
            assert watchdogs(emu) == [WATCHDOG_UNITS] * 9
            claw.relax()  # torque off (confirmed writes), then a sync write clears the watchdog
            assert not any(emu.torque_enabled(i) for i in IDS)
            assert wait_for(lambda: watchdogs(emu) == [0] * 9)
            claw.hold()
            claw.command(claw.last_goal)
        # on_exit="hold": left holding, torque on, watchdog cleared so nothing trips later
        assert watchdogs(emu) == [0] * 9 and all(emu.torque_enabled(i) for i in IDS)
        with DClawDriver(emu.port_path, watchdog_s=None) as claw:
            claw.command(claw.last_goal)
            assert watchdogs(emu) == [0] * 9


def test_a_silence_longer_than_half_the_window_makes_the_next_command_check(tmp_path):
    with make_emulator(tmp_path) as emu:
        with DClawDriver(emu.port_path, watchdog_s=2.0) as claw:
            claw.command(claw.last_goal)
            time.sleep(1.1)
            before = dict(claw.stats)
            claw.command(claw.last_goal)  # not stopped: the goal goes out
            assert claw.stats["reads"] - before["reads"] == 1
            assert watchdogs(emu) == [100] * 9


def test_a_stalled_client_is_stopped_by_the_watchdog_and_told_so(tmp_path):
    with make_emulator(tmp_path, max_velocity_rad_s=0.3) as emu:
        with DClawDriver(emu.port_path, max_step_rad=FAR) as claw:
            target = RESET.copy()
            target[0] = 0.45  # FF10 walks 0.45 rad at 0.3 rad/s
            claw.command(target)
            time.sleep(DEFAULT_WATCHDOG_S + 0.15)  # the process stalls
            assert wait_for(lambda: watchdogs(emu) == [0xFF] * 9)
            assert all(emu.torque_enabled(i) for i in IDS)  # stopped, holding
            stopped = true_positions(emu)
            assert 0.0 < stopped[0] < 0.2  # FF10 stopped on its way
            stopped_goals = goals(emu)
            assert stopped_goals[0] == emu.register(10, ct.PRESENT_POSITION)
            with pytest.raises(
                BusWatchdogError, match=r"servo 10 \(FF10\), .* stopped on the Bus Watchdog"
            ) as info:
                claw.command(target)
            assert info.value.servo_ids == IDS
            # in the command line's words: slac-run's option, not the driver's argument
            message = str(info.value)
            assert "slac-run --bus-watchdog SECONDS (now 0.20 s, at most 2.54)" in message
            assert "watchdog_s" not in message and "hold()" not in message
            with pytest.raises(BusWatchdogError, match=r"--bus-watchdog"):
                claw.command(target)  # no goal goes out until hold()
            assert goals(emu) == stopped_goals
            np.testing.assert_allclose(true_positions(emu), stopped, atol=ct.RAD_PER_TICK)
            claw.hold()
            assert watchdogs(emu) == [0] * 9 and all(emu.torque_enabled(i) for i in IDS)
            claw.command(target)  # streams again
            assert wait_for(lambda: true_positions(emu)[0] > stopped[0] + 0.01)


KILLED_CLIENT = """
import sys, time
import numpy as np
from robots.dclaw.driver import DClawDriver
target = np.array({target})
with DClawDriver({port!r}, max_step_rad=10.0) as claw:
    while True:  # stream the same far goal at 20 Hz until killed
        claw.command(target)
        print("streaming", flush=True)
        time.sleep(0.05)
"""


def test_kill_9_of_a_streaming_process_stops_the_servos_within_the_window(tmp_path):
    target = RESET.copy()
    target[0] = 0.45
    with make_emulator(tmp_path, max_velocity_rad_s=0.3) as emu:
        code = KILLED_CLIENT.format(port=emu.port_path, target=target.tolist())
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(3):
                assert proc.stdout.readline().startswith("streaming")
            emu.take_longest_silence_s()  # from here on: the silence the kill leaves
        finally:
            proc.kill()  # SIGKILL: no relax, no hold, no clean-up of any kind
            proc.wait(timeout=10)
        assert wait_for(lambda: watchdogs(emu) == [0xFF] * 9, timeout_s=5.0)
        # The silence the servos judged when they stopped, on the emulator's clock: past the
        # window, and within two control periods of it (the emulator's thread woke on time).
        silence_s = emu.take_longest_silence_s()
        assert DEFAULT_WATCHDOG_S < silence_s <= DEFAULT_WATCHDOG_S + 0.1, silence_s
        assert all(emu.torque_enabled(i) for i in IDS)  # holding where they stopped
        stopped = true_positions(emu)
        assert stopped[0] < 0.35  # short of the goal it was streaming toward
        time.sleep(0.3)
        # and it stays there (its goal is its present position, rounded to a whole tick)
        np.testing.assert_allclose(true_positions(emu), stopped, atol=ct.RAD_PER_TICK)
        # The next driver finds the watchdog tripped, clears it and holds where the claw is.
        with DClawDriver(emu.port_path) as claw:
            np.testing.assert_allclose(claw.last_goal, stopped, atol=ct.RAD_PER_TICK)
            assert watchdogs(emu) == [0] * 9


# ---- the port going away ------------------------------------------------------------------------


def test_an_io_error_names_the_port(tmp_path):
    with make_emulator(tmp_path) as emu:
        port = emu.port_path
        with pytest.raises(BusDisconnectedError) as info:
            with DClawDriver(port) as claw:
                sent = claw.command(claw.last_goal)
                last = DEFAULT_CALIBRATION.rad_to_ticks(sent).tolist()
                assert wait_for(lambda: goals(emu) == last)
                emu.stop()  # the virtual robot goes away: its pty closes
                claw.read_state()
        message = str(info.value)
        assert f"the serial link on {port} failed ([Errno 5] Input/output error)" in message
        assert "plugged in" in message and "its process is still running" in message
        assert info.value.port == port and not claw.bus.is_open and not claw.connected
        # What the servos were left with: the last goal, torque on (nothing could reach them).
        assert goals(emu) == last
        assert all(emu.torque_enabled(i) for i in IDS)


# ---- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_step_rad": math.inf}, "max_step_rad must be a positive, finite number"),
        ({"max_step_rad": math.nan}, "max_step_rad must be a positive, finite number"),
        ({"max_step_rad": 0.0}, "max_step_rad must be a positive, finite number"),
        ({"max_step_rad": -0.1}, "max_step_rad must be a positive, finite number"),
        ({"max_step_rad": True}, "max_step_rad must be a positive, finite number"),
        ({"watchdog_s": 0.01}, r"watchdog_s must be within 0\.02\.\.2\.54 s"),
        ({"watchdog_s": 3.0}, r"watchdog_s must be within 0\.02\.\.2\.54 s"),
        ({"watchdog_s": math.nan}, r"watchdog_s must be within"),
        ({"watchdog_s": -0.2}, r"watchdog_s must be within"),
        ({"retries": -1}, r"retries must be an integer in 0\.\.20"),
        ({"retries": 21}, r"retries must be an integer in 0\.\.20"),
        ({"retries": 1.5}, r"retries must be an integer in 0\.\.20"),
        ({"baudrate": 123}, "baud rate 123 is not supported"),
        ({"baudrate": 1e6}, "baud rate 1000000.0 is not supported"),
        ({"on_exit": "drop"}, "on_exit"),
    ],
)
def test_options_are_validated(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DClawDriver(str(tmp_path / "no-port"), **kwargs)


def test_watchdog_windows_round_to_20_ms_units(tmp_path):
    port = str(tmp_path / "no-port")
    assert DClawDriver(port, watchdog_s=None).watchdog_s is None
    assert DClawDriver(port, watchdog_s=0).watchdog_s is None
    assert DClawDriver(port, watchdog_s=0.02).watchdog_s == pytest.approx(0.02)
    assert DClawDriver(port, watchdog_s=0.51).watchdog_s == pytest.approx(0.52)
    assert DClawDriver(port, watchdog_s=2.54).watchdog_s == pytest.approx(2.54)
