"""One config style for every command, and the runtime's shared jobs written once: option
checks, abbreviations, suggestions, the ease-in, tick timing, the endpoint rule, angle wrapping."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from slac_runtime.angles import wrap_angle
from slac_runtime.ease_in import ease_in, ease_in_ticks
from slac_runtime.frames import is_endpoint
from slac_runtime.options import (
    ExitCode,
    add_options,
    check_options,
    command_parser,
    int_at_least,
    option,
    parse_config,
    positive_float,
)
from slac_runtime.robot import RobotState
from slac_runtime.timing import RateTimer, sleep_until
from tests.test_timing import FakeClock


@dataclass
class ToyConfig:
    """A command's options."""

    steps: int = option(3, "how many steps", parse=int_at_least(1))
    period_s: float = option(
        0.5, "seconds per step", flag="period", parse=positive_float, aliases=["period-s"]
    )
    out: Path | None = option(None, "where to write")
    loud: bool = option(False, "say more")
    fast: bool = option(True, "go fast")

    def __post_init__(self) -> None:
        check_options(self)


def parse(argv: list[str]) -> ToyConfig:
    return parse_config(command_parser("toy", ToyConfig, "A toy command."), ToyConfig, argv)


def usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        parse(argv)
    assert stop.value.code == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    return err


def test_a_config_becomes_options_with_defaults_and_aliases():
    config = parse(["--steps", "5", "--period-s", "0.25", "--out", "x.json", "--loud", "--no-fast"])
    assert config == ToyConfig(steps=5, period_s=0.25, out=Path("x.json"), loud=True, fast=False)
    assert parse([]) == ToyConfig()


def test_abbreviations_are_refused_and_misspellings_get_a_suggestion(capsys):
    assert "unrecognized arguments: --step 5" in usage_error(["--step", "5"], capsys)
    err = usage_error(["--perod", "1"], capsys)
    assert "did you mean --period?" in err and "(see toy --help)" in err


def test_numbers_are_checked_on_the_command_line_and_in_code(capsys):
    assert "argument --steps: must be an integer of at least 1, got '0'" in usage_error(
        ["--steps", "0"], capsys
    )
    assert "argument --period: must be a finite number, got 'nan'" in usage_error(
        ["--period", "nan"], capsys
    )
    with pytest.raises(ValueError, match="argument --period: must be a positive number of seconds"):
        ToyConfig(period_s=-1.0)
    with pytest.raises(ValueError, match="argument --steps: must be an integer"):
        ToyConfig(steps=2.5)


def test_every_runtime_command_refuses_abbreviations_and_suggests(capsys):
    from slac_runtime import replay_cli, run_cli
    from slac_train import cli as train_cli

    with pytest.raises(SystemExit):
        run_cli.parse_args(["--camera", "0", "--episode", "2"])
    assert (
        "unrecognized arguments: --episode 2; did you mean --episodes?" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        replay_cli.parse_args(["x.slaclog", "--sumary"])
    assert "did you mean --summary?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.build_parser().parse_args(["--total-env-step", "5"])
    assert "did you mean --total-env-steps?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.build_parser().parse_args(["--lr-modl", "1e-3"])
    err = capsys.readouterr().err
    assert "did you mean --lr-model?" in err and len(err.strip().splitlines()) == 1
    # The old spelling of a renamed option still works, unlisted.
    assert vars(train_cli.build_parser().parse_args(["--num-threads", "1"])) == {
        "list_tasks": False,
        "resume": None,
        "num_threads": 1,
    }
    assert run_cli.parse_args(
        ["--camera", "0", "--calibration", "j.json"]
    ).joint_calibration == Path("j.json")


def test_a_runtime_config_built_in_code_is_checked_like_its_options():
    from slac_runtime.run_cli import RunConfig

    with pytest.raises(ValueError, match="argument --threads: must be an integer from 1 to"):
        RunConfig(camera="0", threads=10_000)
    with pytest.raises(ValueError, match="argument --stale-timeout: must be a finite number"):
        RunConfig(camera="0", stale_timeout=math.nan)


class LineRobot:
    """Records every goal; its joints are wherever the last goal put them."""

    def __init__(self, start):
        self.positions = np.asarray(start, dtype=np.float64)
        self.goals: list[np.ndarray] = []

    def read_state(self) -> RobotState:
        n = len(self.positions)
        return RobotState(
            positions=self.positions.copy(), velocities=np.zeros(n), currents=np.zeros(n)
        )

    def command(self, goal):
        self.goals.append(np.asarray(goal, dtype=np.float64))
        self.positions = self.goals[-1]
        return self.goals[-1]


def test_the_ease_in_is_a_straight_line_within_the_speed():
    robot = LineRobot([0.0, 1.0])
    target = np.array([0.3, 0.0])
    checked = []
    move = ease_in(robot, target, speed_rad_s=2.0, period_s=0.01, before_goal=checked.append)
    assert move.ticks == ease_in_ticks([0.0, 1.0], target, 0.02) == 50
    goals = np.array(robot.goals)
    np.testing.assert_allclose(goals[-1], target)
    assert np.max(np.abs(np.diff(goals, axis=0))) <= 0.02 + 1e-12
    assert len(checked) == 49 and not move.stopped
    halted = LineRobot([0.0, 1.0])
    stopped = ease_in(halted, target, 2.0, 0.01, stop_requested=lambda: True)
    assert stopped.stopped and len(halted.goals) == 1  # a stop request ends it after one goal


def test_tick_timing_keeps_absolute_deadlines():
    """Deadlines ``start + k * period`` on an injected clock: work of varying length in each tick
    does not shift the next deadline, and a deadline long passed is not waited for."""
    clock = FakeClock()
    timer = RateTimer(0.005, clock=clock, sleep=clock.sleep)
    started = clock.now
    for k, work_s in enumerate([0.001, 0.004, 0.0, 0.0045, 0.002]):
        lateness, overrun = timer.wait()
        assert clock.now - started == pytest.approx(k * 0.005, abs=1e-4)  # not drifting
        assert lateness == pytest.approx(0.0, abs=1e-4) and not overrun
        clock.work(work_s)
    clock.sleeps.clear()
    assert sleep_until(clock.now - 1.0, clock, clock.sleep) >= 1.0  # passed long ago: no wait
    assert clock.sleeps == []


def test_one_rule_says_what_is_a_frame_publisher():
    assert (
        is_endpoint("tcp://127.0.0.1:5555")
        and is_endpoint("ipc:///tmp/cam")
        and is_endpoint("inproc://x")
    )
    for camera in (
        "0",
        "/dev/video0",
        "clip.mp4",
        "rtsp://camera.local/stream",
        "http://cam/mjpg",
        0,
    ):
        assert not is_endpoint(camera)


def test_angles_wrap_to_minus_pi_pi():
    assert wrap_angle(3 * math.pi) == pytest.approx(-math.pi)
    assert isinstance(wrap_angle(7.0), float)
    np.testing.assert_allclose(
        wrap_angle(np.array([0.0, 2 * math.pi + 0.1, -math.pi - 0.1])), [0.0, 0.1, math.pi - 0.1]
    )


def test_add_options_can_leave_untyped_options_out_of_the_namespace():
    import argparse

    parser = argparse.ArgumentParser()
    add_options(parser, ToyConfig, suppress_defaults=True)
    assert vars(parser.parse_args(["--steps", "2"])) == {"steps": 2}
