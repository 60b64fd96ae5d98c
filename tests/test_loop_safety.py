"""The control loop's safety: time from our own clock, sequence numbers, malformed messages, frames
in the log, the tracking-error watchdog, and stops that leave the robot as ``on_exit`` says.

Every test drives the loop with the shipped D'Claw policy (ONNX, fast) against a fake robot written
here (it records every goal and every hold/relax) and a scripted camera: a bare ZeroMQ PUB socket
in its own thread that sends, message by message, what the test asks for (frames with chosen
sequence numbers and timestamps, garbage, or nothing).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zmq

from robots.dclaw import DCLAW
from slac_runtime.control_loop import ControlLoop, LoopConfig, SafeStop
from slac_runtime.episode_log import EpisodeLogWriter, read_episode_log
from slac_runtime.frames import FrameSubscriber, encode_frame
from slac_runtime.log_summary import summarize
from slac_runtime.policy import OnnxPolicy
from slac_runtime.policy_rerun import policy_differences
from slac_runtime.robot import Robot, RobotState

pytestmark = pytest.mark.timeout(60)

POLICY = Path(__file__).resolve().parents[1] / "robots" / "dclaw" / "policies" / "turn.onnx"
PERIOD_S = 0.05  # the D'Claw's control period; the policy acts every 2 ticks (0.1 s)
CAMERA_FPS = 40.0


# -- a fake robot -------------------------------------------------------------------------------
class FakeRobot(Robot):
    """Joints that reach every goal at once, except ``blocked`` ones
    (joint index -> stuck angle)."""

    def __init__(
        self, description=DCLAW, on_exit: str = "relax", blocked: dict[int, float] | None = None
    ):
        self.description = description
        self.on_exit = on_exit
        self.blocked = dict(blocked or {})
        self.positions = np.asarray(description.reset_pose, dtype=np.float64).copy()
        self.goals: list[np.ndarray] = []  # every goal commanded, in order
        self.goal_times: list[float] = []  # time.monotonic() of each
        self.calls: list[str] = []  # hold / relax / connect / disconnect, in order
        self.torque = False

    def connect(self) -> None:
        self.calls.append("connect")
        self.torque = True

    def read_state(self) -> RobotState:
        positions = self.positions.copy()
        for j, angle in self.blocked.items():
            positions[j] = angle
        zeros = np.zeros(self.description.num_joints)
        return RobotState(positions=positions, velocities=zeros, currents=zeros)

    def command(self, goal_positions: np.ndarray) -> np.ndarray:
        goal = np.asarray(goal_positions, dtype=np.float64).copy()
        self.goals.append(goal)
        self.goal_times.append(time.monotonic())
        self.positions = goal.copy()
        return goal

    def hold(self) -> None:
        self.calls.append("hold")
        self.torque = True

    def relax(self) -> None:
        self.calls.append("relax")
        self.torque = False

    def disconnect(self) -> None:
        self.calls.append("disconnect")


# -- a scripted camera ----------------------------------------------------------------------------
def image(k: int) -> np.ndarray:
    """A distinct 64x64 RGB image per k."""
    return np.random.default_rng(k).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def frame_message(seq: int, timestamp: float | None = None, k: int | None = None) -> bytes:
    return encode_frame(
        image(seq if k is None else k), seq, time.time() if timestamp is None else timestamp
    )


class ScriptedCamera:
    """Sends ``script(k, elapsed_s)`` at ``fps`` from its own thread: bytes (a message), a list of
    bytes (a multipart message) or None (nothing). ``k`` counts the calls."""

    def __init__(
        self, endpoint: str, script: Callable[[int, float], bytes | None], fps: float = CAMERA_FPS
    ):
        self.endpoint = endpoint
        self.script = script
        self.fps = fps
        self.sent: list[tuple[float, bytes]] = []  # (time.monotonic(), message)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        socket = zmq.Context.instance().socket(zmq.PUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.bind(self.endpoint)
        self._ready.set()
        try:
            start = time.monotonic()
            k = 0
            while not self._stop.is_set():
                message = self.script(k, time.monotonic() - start)
                if isinstance(message, list):  # a multipart message
                    socket.send_multipart(message)
                elif message is not None:
                    socket.send(message)
                    self.sent.append((time.monotonic(), message))
                k += 1
                self._stop.wait(max(0.0, start + k / self.fps - time.monotonic()))
        except BaseException as e:  # reported by stop()
            self._error = e
        finally:
            socket.close(linger=0)

    def __enter__(self) -> ScriptedCamera:
        self._thread.start()
        self._ready.wait(5.0)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5.0)
        if self._error is not None:
            raise self._error


def steady(k: int, elapsed_s: float) -> bytes:
    return frame_message(k)


# -- running one episode ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def policy() -> OnnxPolicy:
    return OnnxPolicy(POLICY, threads=1, seed=0)


def config(**overrides) -> LoopConfig:
    base = dict(
        control_period_s=PERIOD_S,
        action_repeat=2,
        episode_policy_steps=15,
        deterministic=False,
        max_frame_age_s=0.25,
        stale_timeout_s=0.5,
        first_frame_timeout_s=3.0,
        seed=0,
    )
    return LoopConfig(**{**base, **overrides})


@dataclasses.dataclass
class Episode:
    robot: FakeRobot
    frames: FrameSubscriber
    camera: ScriptedCamera
    log_path: Path
    summary: dict | None
    error: BaseException | None
    stopped_at: float  # time.monotonic() when run_episode returned or raised

    @property
    def log(self):
        return read_episode_log(self.log_path)

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.log.events if e["event"] == kind]


def run_episode(
    tmp_path: Path,
    policy: OnnxPolicy,
    script,
    robot: FakeRobot | None = None,
    fps: float = CAMERA_FPS,
    **overrides,
) -> Episode:
    """One episode of the loop inside the robot's ``with`` block, as slac-run runs it."""
    robot = robot or FakeRobot()
    cfg = config(**overrides)
    endpoint = f"ipc://{tmp_path}/camera.ipc"
    log_path = tmp_path / "episode.slaclog"
    summary = error = None
    with (
        ScriptedCamera(endpoint, script, fps) as camera,
        FrameSubscriber(endpoint, max_age_s=cfg.max_frame_age_s) as frames,
    ):
        try:
            with (
                robot,
                EpisodeLogWriter(
                    log_path,
                    {"policy_metadata": {"control_period_s": PERIOD_S, "action_repeat": 2}},
                ) as log,
            ):
                summary = ControlLoop(robot, frames, policy, cfg).run_episode(log)
        except SafeStop as e:
            error = e
        stopped_at = time.monotonic()
    return Episode(robot, frames, camera, log_path, summary, error, stopped_at)


def assert_held_after_the_last_policy_step(log) -> None:
    """The logged goals move for one policy period after the last policy step (its action is
    applied over the two ticks of its period), then stay put: nothing moves the robot without a
    new frame, whenever the ticks ran."""
    last_step = log.policy_ticks()[-1]["tick"]
    goals = {t["tick"]: np.asarray(t["goal"]) for t in log.ticks if "goal" in t}
    moved = [k for k in goals if k - 1 in goals and not np.array_equal(goals[k], goals[k - 1])]
    assert moved and max(moved) <= last_step + 1


def assert_stopped_at_the_first_tick_past(log, limit_s: float) -> None:
    """By the loop's own logged clock, it stopped at the first tick that found its newest frame
    received more than ``limit_s`` ago: that tick's logged age is past the limit, and the tick
    before it was within it (its age is the stopping tick's less the time between their starts,
    give or take the 10 ms a tick may spend before it looks at the frame on a busy computer)."""
    stop, before = log.ticks[-1], log.ticks[-2]
    age_s = stop["stale_frame_age_s"]
    assert age_s > limit_s
    assert age_s - (stop["t"] - before["t"]) <= limit_s + 0.01, (age_s, stop["t"] - before["t"])


# -- 1. time from our own clock --------------------------------------------------------------------
@pytest.mark.parametrize("clock_offset_s", [30.0, -30.0])
def test_a_frozen_camera_with_an_offset_clock_stops_the_robot(tmp_path, policy, clock_offset_s):
    """A camera 30 s ahead of (or behind) us that freezes after 0.6 s: goals stop changing at once,
    and the loop stops after max_frame_age + stale_timeout, however far its clock is off."""
    freeze_s = 0.6

    def script(k, elapsed_s):
        return frame_message(k, time.time() + clock_offset_s) if elapsed_s < freeze_s else None

    ep = run_episode(tmp_path, policy, script, episode_policy_steps=100)
    assert isinstance(ep.error, SafeStop) and "stale" in str(ep.error)
    frozen_at = ep.camera.sent[-1][0]  # the last frame sent
    log = ep.log
    # Stopped max_frame_age + stale_timeout (0.75 s) after the last frame was received, at the
    # next tick; never sooner after it was sent.
    assert_stopped_at_the_first_tick_past(log, 0.75)
    assert ep.stopped_at - frozen_at >= 0.75
    # At most one policy step after the freeze (its goal moves for one policy period), then held.
    assert_held_after_the_last_policy_step(log)
    assert log.footer["stop_reason"] == str(ep.error)
    # Held for no new frame while the last one was young (unless the computer was too busy to
    # look before it was 0.25 s old), then as stale until the stop, never back.
    reasons = [e["reason"] for e in ep.events("hold")]
    assert reasons[-1] == "stale frame"
    assert "no new frame" not in reasons[reasons.index("stale frame") :]
    assert ep.events("safe_stop")
    # Frame age is ours (receive clock, never the camera's 30 s off): within max_frame_age (0.25 s)
    # for every frame used; the offset is measured and reported.
    assert log.footer["frame_age_max_ms"] <= 250
    assert log.footer["camera_clock_offset_ms"] == pytest.approx(-clock_offset_s * 1e3, abs=500)
    ages = [t["policy"]["frame_age_s"] for t in log.policy_ticks()]
    assert 0 <= min(ages) and max(ages) <= 0.25
    summary = summarize(log)
    assert 0 <= summary["frame_age_p99_ms"] <= 250
    assert summary["camera_clock_offset_ms"] == pytest.approx(-clock_offset_s * 1e3, abs=500)


def test_nan_timestamps_never_move_the_robot(tmp_path, policy):
    """Frames with NaN capture timestamps are malformed: the robot only eases in, then the loop
    stops (no valid frame ever arrives)."""
    ep = run_episode(
        tmp_path, policy, lambda k, s: frame_message(k, math.nan), first_frame_timeout_s=0.5
    )
    assert isinstance(ep.error, SafeStop)
    assert "no new camera frame" in str(ep.error) and "finite" in str(ep.error)
    assert ep.frames.malformed > 5 and ep.frames.received == 0
    reset_pose = np.asarray(DCLAW.reset_pose)
    assert all(np.allclose(g, reset_pose) for g in ep.robot.goals)  # the ease-in only
    assert ep.log.policy_ticks() == []


def test_a_camera_repeating_its_sequence_number_is_frozen(tmp_path, policy):
    """A frozen camera that keeps sending its last frame (same seq, fresh timestamps): repeats are
    not new frames, so the policy is not fed, goals are held, and the loop stops as stale."""
    freeze_s = 0.6

    def script(k, elapsed_s):
        seq = k if elapsed_s < freeze_s else 10_000  # the frozen frame's number, resent forever
        return frame_message(seq)

    ep = run_episode(tmp_path, policy, script, episode_policy_steps=100)
    assert isinstance(ep.error, SafeStop) and "stale" in str(ep.error)
    first_repeat = next(t for t, m in ep.camera.sent if int.from_bytes(m[8:16], "little") == 10_000)
    log = ep.log
    used = [t["policy"]["frame_seq"] for t in log.policy_ticks()]
    assert used.count(10_000) == 1  # the frozen frame was used once, as any new frame
    assert len(used) == len(set(used))  # never one frame twice
    assert ep.frames.repeats > 10
    assert_held_after_the_last_policy_step(log)
    # Stale 0.75 s after the frozen frame was first received (repeats do not refresh it).
    assert_stopped_at_the_first_tick_past(log, 0.75)
    assert ep.stopped_at - first_repeat >= 0.75


# -- 1b. publisher restarts ------------------------------------------------------------------------
def test_a_publisher_restart_restarts_the_history_and_replays(tmp_path, policy):
    """Sequence numbers going backwards (the publisher restarted after a 0.3 s gap): one
    camera_restart event, the goal held through the gap, the history restarted from the first new
    frame, no absurd drop count, and slac-replay --policy reproduces every step."""

    def script(k, elapsed_s):
        if elapsed_s < 0.5:
            return frame_message(1000 + k)
        if elapsed_s < 0.8:
            return None
        return frame_message(k - 32)  # restarted: 0, 1, 2, ...

    ep = run_episode(tmp_path, policy, script, episode_policy_steps=20)
    assert ep.error is None, ep.error
    log = ep.log
    [restart] = ep.events("camera_restart")
    assert restart["count"] == 1 and log.footer["camera_restarts"] == 1
    assert ep.frames.restarts == 1 and 0 <= ep.frames.drops < 100
    steps = log.policy_ticks()
    resets = [t["policy"]["step"] for t in steps if t["policy"]["history_reset"]]
    restart_step = next(t for t in steps if t["policy"]["frame_seq"] < 1000)
    assert resets == [0, restart_step["policy"]["step"]]
    assert summarize(log)["camera_restarts"] == 1
    assert policy_differences(log, POLICY).max() < 1e-5


def test_a_publisher_that_keeps_restarting_stops_the_robot(tmp_path, policy):
    ep = run_episode(
        tmp_path, policy, lambda k, s: frame_message(1000 - k), episode_policy_steps=30
    )
    # Every message restarts the numbering; the camera sends two per tick, so the count passes
    # the limit of 3 at 4 or 5.
    assert isinstance(ep.error, SafeStop)
    restarts = sum(e["count"] for e in ep.events("camera_restart"))
    assert restarts in (4, 5) and f"restarted {restarts} times" in str(ep.error)
    assert restarts == summarize(ep.log)["camera_restarts"]
    assert ep.frames.drops == 0


# -- 2. malformed messages ------------------------------------------------------------------------
def test_malformed_messages_are_survived_counted_and_logged(tmp_path, policy):
    """A random third of the messages are garbage: the episode completes, each reason is logged,
    and the policy only ever saw valid frames."""

    def script(k, elapsed_s):
        draw = np.random.default_rng(k).random()
        if draw < 0.15:
            return b"SLAC" + b"\x07" * 40  # a format version 7 header
        if draw < 0.3:
            return frame_message(k, math.inf)
        return frame_message(k)

    ep = run_episode(tmp_path, policy, script, episode_policy_steps=15, malformed_limit=100)
    assert ep.error is None, ep.error
    log = ep.log
    events = ep.events("malformed_frame")
    assert events and sum(e["count"] for e in events) == log.footer["malformed_frames"] >= 1
    reasons = " ".join(e["reason"] for e in events)
    assert "version 7" in reasons or "finite" in reasons
    valid = {
        int.from_bytes(m[8:16], "little")
        for _, m in ep.camera.sent
        if m[4] == 1 and np.isfinite(np.frombuffer(m[16:24], "<f8")[0])
    }
    assert {t["policy"]["frame_seq"] for t in log.policy_ticks()} <= valid
    # A policy tick whose newest message was garbage has no new frame (CONFLATE kept only the
    # garbage): it holds the goal.
    assert log.footer["policy_steps"] + log.footer["no_new_frame_steps"] == 15
    assert log.footer["policy_steps"] >= 8 and log.footer["stop_reason"] == "episode complete"
    assert summarize(log)["malformed_frames"] == log.footer["malformed_frames"]
    assert ep.robot.calls[-2:] == ["relax", "disconnect"]  # the context manager, on_exit relax


@pytest.mark.parametrize(
    "garbage_share, limits, why",
    [
        (
            1.0,
            {"malformed_in_a_row_limit": 5, "malformed_limit": 1000},
            "malformed camera messages in a row (the limit is 5)",
        ),
        (0.5, {"malformed_in_a_row_limit": 1000, "malformed_limit": 10}, "more than 10"),
    ],
)
def test_too_many_malformed_messages_stop_the_robot(tmp_path, policy, garbage_share, limits, why):
    """From 0.5 s on, all (or a random half) of the messages are garbage."""

    def script(k, elapsed_s):
        if elapsed_s > 0.5 and np.random.default_rng(k).random() < garbage_share:
            return b"SLAC garbage"
        return frame_message(k)

    ep = run_episode(tmp_path, policy, script, episode_policy_steps=100, fps=80.0, **limits)
    assert isinstance(ep.error, SafeStop) and why in str(ep.error) and "header" in str(ep.error)
    # Messages are counted as they arrive (four per tick here): the stop comes at the first tick
    # at or past the limit.
    count = int(str(ep.error).split()[0])
    assert count >= (5 if garbage_share == 1.0 else 11)
    assert ep.log.footer["stop_reason"] == str(ep.error)
    assert (
        ep.robot.goal_times[-1] - ep.camera.sent[0][0] < 3.0
    )  # stopped within a couple of seconds
    assert ep.events("malformed_frame")


# -- 3. every frame the policy used is in the log --------------------------------------------------
def test_every_frame_the_policy_used_is_logged_and_reproduces(tmp_path, policy):
    """A camera sending each sequence number three times: each policy step uses a distinct, logged
    frame, and the policy re-run on the log reproduces every action (noise included)."""
    ep = run_episode(
        tmp_path, policy, lambda k, s: frame_message(k // 3), fps=60.0, episode_policy_steps=20
    )
    assert ep.error is None, ep.error
    log = ep.log
    steps = log.policy_ticks()
    assert len(steps) + log.footer["no_new_frame_steps"] == 20
    assert len(steps) >= 15
    seqs = [t["policy"]["frame_seq"] for t in steps]
    assert len(seqs) == len(set(seqs)) and all(s in log.frames for s in seqs)
    for t in steps:
        np.testing.assert_array_equal(log.policy_frame(t), image(t["policy"]["frame_seq"]))
    assert all(t["policy"]["noise"] is not None for t in steps)
    assert policy_differences(log, POLICY).max() < 1e-5


# -- 4. tracking-error watchdog --------------------------------------------------------------------
TIGHT = dataclasses.replace(DCLAW, tracking_error_limit_rad=0.3, tracking_error_time_s=0.3)


class Dragged(FakeRobot):
    """MF21 reads 0.6 rad below its goal from the ``from_command``-th goal on (a joint held back,
    or a calibration off by 0.6 rad)."""

    def __init__(self, from_command: int, **kwargs):
        super().__init__(TIGHT, **kwargs)
        self.from_command = from_command

    def read_state(self):
        state = super().read_state()
        if len(self.goals) >= self.from_command:
            state.positions[4] -= 0.6
        return state


def test_a_joint_far_from_its_goal_stops_the_robot_naming_it(tmp_path, policy):
    """From the 10th goal on MF21 stays 0.6 rad off: the watchdog stops 0.3 s later, naming the
    joint, its goal, its reading and the limits; the log has the event and the ticks."""
    robot = Dragged(from_command=10)
    ep = run_episode(tmp_path, policy, steady, robot=robot, episode_policy_steps=100)
    assert isinstance(ep.error, SafeStop)
    message = str(ep.error)
    assert "joint MF21" in message and "limit 0.30 rad" in message and "0.30 s" in message
    [event] = ep.events("tracking_error")
    assert event["joint"] == "MF21" and event["error_rad"] == pytest.approx(0.6)
    assert event["goal_rad"] - event["position_rad"] == pytest.approx(0.6)
    assert f"goal {event['goal_rad']:+.3f} rad, read {event['position_rad']:+.3f} rad" in message
    # Off from the 10th goal on; stopped once it was off for more than 0.3 s: 6 or 7 ticks later.
    # The stopping tick is logged with its reading, and no goal was sent after it.
    ticks = ep.log.ticks
    first_off = next(t["tick"] for t in ticks if t["goal_error_rad"] > 0.5)
    assert 6 <= ticks[-1]["tick"] - first_off <= 8
    assert "sent" not in ticks[-1] and ticks[-1]["goal_error_rad"] == pytest.approx(0.6)
    assert sum("sent" in t for t in ticks) == ticks[-1]["tick"]  # one goal per earlier tick ...
    np.testing.assert_allclose(robot.goals[-1], ticks[-2]["goal"])  # ... and none after them
    assert robot.calls == [
        "connect",
        "relax",
        "disconnect",
    ]  # on_exit relax, by the context manager


def test_the_watchdog_also_guards_the_ease_in(tmp_path, policy):
    """Off by 0.6 rad from the start: the ease-in (12 steps of 0.05 s) is stopped half way."""
    robot = Dragged(from_command=0)
    ep = run_episode(tmp_path, policy, steady, robot=robot)
    assert isinstance(ep.error, SafeStop) and "joint MF21" in str(ep.error)
    assert ep.log.ticks == [] and ep.log.policy_ticks() == []
    assert 7 <= len(robot.goals) <= 10


def test_a_joint_briefly_off_its_goal_does_not_stop(tmp_path, policy):
    class Lagging(FakeRobot):
        """MF21 lags 0.5 rad behind its goal for 3 ticks out of every 10."""

        def read_state(self):
            state = super().read_state()
            if len(self.goals) % 10 < 3:
                state.positions[4] += 0.5
            return state

    ep = run_episode(tmp_path, policy, steady, robot=Lagging(TIGHT), episode_policy_steps=15)
    assert ep.error is None, ep.error
    assert ep.log.footer["goal_error_max_rad"] >= 0.5 and not ep.events("tracking_error")
    assert summarize(ep.log)["goal_error_max_rad"] >= 0.5


# -- 5. a stale stop leaves the robot as on_exit says ---------------------------------------------
@pytest.mark.parametrize("on_exit", ["hold", "relax"])
def test_stale_stop_does_not_relax_on_its_own(tmp_path, policy, on_exit):
    robot = FakeRobot(on_exit=on_exit)
    ep = run_episode(
        tmp_path,
        policy,
        lambda k, s: frame_message(k) if s < 0.5 else None,
        robot=robot,
        episode_policy_steps=100,
    )
    assert isinstance(ep.error, SafeStop) and "stale" in str(ep.error)
    assert "relaxed" not in str(ep.error)
    assert robot.calls == ["connect", on_exit, "disconnect"]  # only the context manager acted
    assert robot.torque is (on_exit == "hold")
    assert not ep.events("relax")


# -- 6. the configuration is checked -------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [
        ("control_period_s", 0.0),
        ("control_period_s", math.nan),
        ("max_frame_age_s", -1.0),
        ("stale_timeout_s", math.nan),
        ("stale_timeout_s", math.inf),
        ("first_frame_timeout_s", 0),
        ("action_repeat", 0),
        ("episode_policy_steps", 0),
        ("episode_policy_steps", -3),
        ("episode_policy_steps", 2.5),
        ("overrun_budget", -1),
        ("malformed_limit", -1),
        ("malformed_in_a_row_limit", 0),
        ("camera_restart_limit", -1),
        ("ease_in_speed", 0.0),
        ("ease_in_speed", 1.5),
        ("seed", -1),
    ],
)
def test_loop_config_refuses_bad_numbers(field, value):
    with pytest.raises(ValueError, match=field):
        config(**{field: value})


def test_loop_config_accepts_the_defaults():
    cfg = LoopConfig(control_period_s=0.05, action_repeat=2)
    assert (
        cfg.malformed_limit == 10
        and cfg.malformed_in_a_row_limit == 5
        and cfg.camera_restart_limit == 3
    )


# -- frames timed when they arrive -----------------------------------------------------------------
def sent_at(camera: ScriptedCamera) -> dict[int, float]:
    """Sequence number -> time.monotonic() just after the camera sent it."""
    return {int.from_bytes(m[8:16], "little"): t for t, m in camera.sent}


def assert_true_ages(log, camera: ScriptedCamera, max_age_s: float) -> None:
    """Every policy step used a frame younger than ``max_age_s``, and the logged arrival of each
    lies within 10 ms of when the camera sent it (the logged age counts from that arrival)."""
    sent = sent_at(camera)
    for tick in log.policy_ticks():
        p = tick["policy"]
        assert p["frame_age_s"] <= max_age_s
        assert abs(p["frame_arrived_monotonic"] - sent[p["frame_seq"]]) < 0.010


def test_a_camera_that_freezes_during_the_ease_in_never_feeds_an_old_frame(tmp_path, policy):
    """The camera freezes while the robot eases in (0.8 s): its last frame is older than
    max_frame_age when the ease-in ends, so the episode never starts on it."""
    robot = FakeRobot()
    robot.positions = robot.positions + 0.8  # 0.8 rad from the reset pose: a 0.8 s ease-in
    ep = run_episode(
        tmp_path,
        policy,
        lambda k, s: frame_message(k) if s < 0.2 else None,
        robot=robot,
        first_frame_timeout_s=1.0,
    )
    assert isinstance(ep.error, SafeStop) and "no new camera frame" in str(ep.error)
    assert ep.frames.received > 0  # frames did arrive, during the ease-in
    assert ep.log.policy_ticks() == []


def test_a_camera_that_dies_between_episodes_never_feeds_an_old_frame(tmp_path, policy):
    """The camera dies as the first episode ends; 0.4 s later the second episode starts. Its
    newest frame was never used by the policy, but it is 0.4 s old: the episode does not start."""
    alive = threading.Event()
    alive.set()
    cfg = config(episode_policy_steps=10, first_frame_timeout_s=1.0)
    endpoint = f"ipc://{tmp_path}/camera.ipc"
    robot = FakeRobot()
    header = {"policy_metadata": {"control_period_s": PERIOD_S, "action_repeat": 2}}
    with (
        ScriptedCamera(endpoint, lambda k, s: frame_message(k) if alive.is_set() else None) as cam,
        FrameSubscriber(endpoint, max_age_s=cfg.max_frame_age_s) as frames,
        robot,
    ):
        loop = ControlLoop(robot, frames, policy, cfg)
        with EpisodeLogWriter(tmp_path / "first.slaclog", header) as log:
            loop.run_episode(log)
        alive.clear()
        time.sleep(0.4)
        with (
            pytest.raises(SafeStop, match="no new camera frame"),
            EpisodeLogWriter(tmp_path / "second.slaclog", header) as log,
        ):
            loop.run_episode(log)
    first = read_episode_log(tmp_path / "first.slaclog")
    assert len(first.policy_ticks()) == 10
    assert_true_ages(first, cam, cfg.max_frame_age_s)
    assert read_episode_log(tmp_path / "second.slaclog").policy_ticks() == []


def test_logged_frame_ages_are_true_ages(tmp_path, policy):
    """A steady camera: each policy step's frame arrived within 10 ms of being sent."""
    ep = run_episode(tmp_path, policy, steady, episode_policy_steps=10)
    assert ep.error is None, ep.error
    assert_true_ages(ep.log, ep.camera, 0.25)
