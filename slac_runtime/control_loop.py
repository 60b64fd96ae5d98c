"""The fixed-rate control loop: camera frames → history → ONNX policy → joint goals
(docs/architecture.md §6).

Every control period the loop reads the robot state, takes the newest camera frame off the
subscriber and (re)sends the current goal; every ``action_repeat`` ticks it runs the policy on a
new frame and sets a new action. Between policy ticks the goal moves toward the action's target
exactly as in simulation (range mapping, clipping, per-period velocity limit). Deadlines are
absolute, so the loop does not drift; late ticks and overruns are counted and logged.

What stops the robot, and when (each raises :class:`SafeStop`; the loop itself never relaxes or
holds the robot on a stop -- the robot's context manager leaves it as its ``on_exit`` says):

- **Stale camera.** Frame age is measured on this computer's monotonic clock, from when the
  subscriber received the frame, never from the camera's capture timestamp. A policy tick whose
  newest frame is older than ``max_frame_age_s`` holds the goal; once the newest frame is older
  than ``max_frame_age_s + stale_timeout_s`` the loop stops.
- **No new frame.** A frame is new only when its sequence number advanced (the subscriber drops
  repeats). A policy tick without a new frame holds the goal and the policy does not run: the
  policy never sees one frame twice, and every frame it saw is in the episode log.
- **Publisher restart.** A sequence number going backwards is a camera restart: logged as a
  ``camera_restart`` event; the goal is held until a new frame arrives, and the policy's history
  restarts from that frame (as at an episode's start). More than ``camera_restart_limit``
  restarts in one episode stop the loop.
- **Malformed camera messages** are dropped by the subscriber and logged as ``malformed_frame``
  events (one per distinct reason per tick). More than ``malformed_limit`` in one episode, or
  ``malformed_in_a_row_limit`` in a row, stop the loop.
- **Tracking error.** Each tick compares every joint's reading with the goal sent the tick
  before; a joint further than the robot's ``tracking_error_limit_rad`` from its goal for longer
  than its ``tracking_error_time_s`` stops the loop, naming the joint (also during the ease-in).
- **Overruns** beyond ``overrun_budget`` per episode, and any policy or bus error.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from slac_runtime.ease_in import ease_in
from slac_runtime.episode_log import EpisodeLogWriter, tick_record
from slac_runtime.policy import OnnxPolicy
from slac_runtime.robot import Robot, RobotDescription
from slac_runtime.timing import RateTimer

HOLD_EVENT_EVERY_TICKS = 20  # a held (stale or no-new-frame) stretch logs a hold event this often
# The longest a policy may trust a frame (s): an older frame shows where the robot was, not where
# it is, and the policy would act on that.
MAX_FRAME_AGE_LIMIT_S = 1.0
# The longest a robot may be held blind before the loop stops it (s): a camera silent for longer is
# dead or disconnected, and holding on hides that.
STALE_TIMEOUT_LIMIT_S = 5.0


class FrameSource(Protocol):
    """What the loop needs from a frame subscriber (:class:`~slac_runtime.frames.FrameSubscriber`):
    the newest frame (with ``seq``, ``timestamp``, ``image``, ``received_monotonic`` and
    ``clock_offset_s``) or None, and its restart and malformed-message counters."""

    restarts: int
    malformed: int
    malformed_in_a_row: int
    last_malformed_reason: str | None

    def latest(self) -> Any: ...

    def take_malformed_reasons(self) -> list[str]: ...


class SafeStop(RuntimeError):
    """The loop stopped the robot for a reason a user must see (stale camera, bus error, ...)."""


def _positive_seconds(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 and math.isfinite(value))
    ):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")


def _whole_number(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, got {value!r}")


@dataclass
class LoopConfig:
    """How one robot is driven; checked at construction (ValueError with a sentence)."""

    control_period_s: float  # control period (s), one the robot may be driven at
    action_repeat: int  # control periods per policy step (from the policy metadata)
    episode_policy_steps: int = 40  # policy steps per episode
    deterministic: bool = False  # tanh(mean) instead of a tanh-Gaussian sample
    max_frame_age_s: float = (
        0.25  # newest frame received longer ago than this (s): stale, goal held
    )
    stale_timeout_s: float = 1.0  # stale for longer than this (s): safe stop
    overrun_budget: int = 20  # more overruns than this in an episode: safe stop
    ease_in_speed: float = 0.5  # fraction of the velocity limit used to reach the reset pose
    first_frame_timeout_s: float = 5.0  # wait this long (s) for the first fresh frame of an episode
    malformed_limit: int = 10  # more malformed camera messages than this in an episode: safe stop
    malformed_in_a_row_limit: int = 5  # this many malformed camera messages in a row: safe stop
    camera_restart_limit: int = 3  # more camera restarts than this in an episode: safe stop
    log_frames: bool = True  # log every frame the policy used (slac-replay --policy needs them)
    seed: int | None = None  # seed of the policy's action noise

    def __post_init__(self) -> None:
        for name in (
            "control_period_s",
            "max_frame_age_s",
            "stale_timeout_s",
            "first_frame_timeout_s",
        ):
            _positive_seconds(name, getattr(self, name))
        for name, limit in (
            ("max_frame_age_s", MAX_FRAME_AGE_LIMIT_S),
            ("stale_timeout_s", STALE_TIMEOUT_LIMIT_S),
        ):
            if getattr(self, name) > limit:
                raise ValueError(f"{name} is at most {limit:g} s, got {getattr(self, name)!r}")
        _whole_number("action_repeat", self.action_repeat, 1)
        _whole_number("episode_policy_steps", self.episode_policy_steps, 1)
        for name in ("overrun_budget", "malformed_limit", "camera_restart_limit"):
            _whole_number(name, getattr(self, name), 0)
        _whole_number("malformed_in_a_row_limit", self.malformed_in_a_row_limit, 1)
        speed = self.ease_in_speed
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed <= 1:
            raise ValueError(
                f"ease_in_speed is a fraction of the velocity limit in (0, 1], got {speed!r}"
            )
        if self.seed is not None:
            _whole_number("seed", self.seed, 0)


@dataclass
class LoopStats:
    ticks: int = 0
    policy_steps: int = 0
    overruns: int = 0
    stale_ticks: int = (
        0  # policy ticks held because the newest frame was older than max_frame_age_s
    )
    no_new_frame_steps: int = 0  # policy ticks held because no new frame had arrived
    malformed_frames: int = 0  # malformed camera messages dropped during the episode
    camera_restarts: int = 0
    lateness_s: list[float] = field(default_factory=list)  # tick start − deadline
    inference_s: list[float] = field(default_factory=list)
    frame_age_s: list[float] = field(
        default_factory=list
    )  # receive clock, of the frames the policy used
    clock_offset_s: list[float] = field(
        default_factory=list
    )  # receive wall time − capture timestamp
    goal_error_rad: list[float] = field(
        default_factory=list
    )  # per tick, largest joint |reading − goal| (rad)
    stop_reason: str = ""

    def summary(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        def pct(values: list[float], q: float, scale: float = 1e3) -> float | None:
            return float(np.percentile(values, q) * scale) if values else None

        out = {
            "ticks": self.ticks,
            "policy_steps": self.policy_steps,
            "overruns": self.overruns,
            "stale_ticks": self.stale_ticks,
            "no_new_frame_steps": self.no_new_frame_steps,
            "malformed_frames": self.malformed_frames,
            "camera_restarts": self.camera_restarts,
            "jitter_p50_ms": pct(self.lateness_s, 50),
            "jitter_p99_ms": pct(self.lateness_s, 99),
            "jitter_max_ms": pct(self.lateness_s, 100),
            "inference_p50_ms": pct(self.inference_s, 50),
            "inference_p99_ms": pct(self.inference_s, 99),
            "frame_age_p50_ms": pct(self.frame_age_s, 50),
            "frame_age_p99_ms": pct(self.frame_age_s, 99),
            "frame_age_max_ms": pct(self.frame_age_s, 100),
            "camera_clock_offset_ms": pct(self.clock_offset_s, 50),
            "goal_error_p99_rad": pct(self.goal_error_rad, 99, 1.0),
            "goal_error_max_rad": pct(self.goal_error_rad, 100, 1.0),
            "stop_reason": self.stop_reason,
        }
        out.update(extra or {})
        return out


def format_table(summary: dict[str, Any]) -> str:
    rows = [
        (k, "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
        for k, v in summary.items()
        if not isinstance(v, (dict, list))
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


class TrackingWatchdog:
    """Stops the robot when a joint stays far from its goal: a blocked joint, a wrong calibration,
    a servo that lost torque.

    ``check`` compares each joint's reading with the goal in force when it was read (the goal sent
    the tick before). A joint further than ``description.tracking_error_limit_rad`` from it
    continuously for longer than ``description.tracking_error_time_s`` raises :class:`SafeStop`.
    Returns the largest joint error (rad).
    """

    def __init__(self, description: RobotDescription):
        self.description = description
        self.limit_rad = description.tracking_error_limit_rad
        self.time_s = description.tracking_error_time_s
        self._over_since: list[float | None] = [None] * description.num_joints

    def check(
        self,
        positions: np.ndarray,
        goal: np.ndarray,
        now_s: float,
        log: EpisodeLogWriter | None = None,
        tick: int | None = None,
    ) -> float:
        error = np.abs(np.asarray(positions, dtype=np.float64) - np.asarray(goal, dtype=np.float64))
        for j, e in enumerate(error):
            if not e > self.limit_rad:  # NaN readings count as beyond the limit
                self._over_since[j] = None
                continue
            since = self._over_since[j]
            if since is None:
                self._over_since[j] = now_s
            elif now_s - since > self.time_s:
                name = self.description.joint_names[j]
                if log is not None:
                    log.event(
                        "tracking_error",
                        tick=tick,
                        joint=name,
                        goal_rad=float(goal[j]),
                        position_rad=float(positions[j]),
                        error_rad=float(e),
                        limit_rad=self.limit_rad,
                        time_s=self.time_s,
                        for_s=now_s - since,
                    )
                raise SafeStop(
                    f"joint {name} stayed {e:.2f} rad from its goal for {now_s - since:.2f} s "
                    f"(goal {goal[j]:+.3f} rad, read {positions[j]:+.3f} rad; limit "
                    f"{self.limit_rad:.2f} rad for at most {self.time_s:.2f} s): is the joint "
                    "blocked, or its calibration wrong?"
                )
        return float(np.max(error)) if error.size else 0.0


@dataclass
class _Episode:
    """One episode's running state, from tick to tick."""

    log: EpisodeLogWriter
    stats: LoopStats
    watchdog: TrackingWatchdog
    goal: np.ndarray  # the goal the loop moves (rad)
    sent: np.ndarray  # the goal in force: what the driver sent (differs by its rounding at most)
    last_action: np.ndarray  # the policy's previous action (its input)
    malformed_at_start: int  # the subscriber's malformed count when the episode began
    restarts_seen: int  # the subscriber's restart count last seen
    policy_action: np.ndarray | None = None  # None: hold the goal where it is
    reset_history: bool = True  # the next policy step starts the history
    hold_logged: tuple[str, int] | None = None  # reason and first tick of the holding stretch


class ControlLoop:
    """Drives one robot with one policy from one frame source; one call of
    ``run_episode`` per episode."""

    def __init__(
        self,
        robot: Robot,
        frames: FrameSource,
        policy: OnnxPolicy,
        config: LoopConfig,
        status: Callable[[str], None] | None = None,
        footer_stats: Callable[[], dict[str, Any]] | None = None,
        stop_requested: Callable[[], bool] = lambda: False,
    ):
        self.robot = robot
        self.frames = frames
        self.policy = policy
        self.config = config
        self.description = robot.description
        self._status = status
        self._footer_stats = (
            footer_stats  # extra counters for the log's footer (drops, bus retries)
        )
        self._stop_requested = stop_requested  # polled every tick: True ends the episode after it
        self._rng = np.random.default_rng(config.seed)
        self._last_used_monotonic = -math.inf  # receive time of the last frame the policy used

    # -- phases ---------------------------------------------------------------------------------
    def ease_in(self, log: EpisodeLogWriter | None = None) -> np.ndarray:
        """Move from the current pose to the reset pose, slowly; return the last goal sent.

        The tracking-error watchdog runs on every step (each reading against the goal before it).
        """
        d = self.description
        watchdog = TrackingWatchdog(d)
        move = ease_in(
            self.robot,
            np.asarray(d.reset_pose, dtype=np.float64),
            speed_rad_s=d.velocity_limit * self.config.ease_in_speed,
            period_s=self.config.control_period_s,
            before_goal=lambda sent: watchdog.check(
                self.robot.read_state().positions, sent, time.monotonic(), log
            ),
            stop_requested=self._stop_requested,
        )
        if log is not None:
            log.event("ease_in", ticks=move.ticks, start=move.start, target=move.target)
        return move.goal

    def _is_new(self, frame: Any) -> bool:
        return frame is not None and frame.received_monotonic > self._last_used_monotonic

    def _wait_first_frame(self, goal: np.ndarray) -> Any:
        """A frame the policy has not used, received within ``max_frame_age_s``. While waiting, the
        goal is re-sent every control period, as every tick does (the servos' bus watchdog expects
        a steady stream)."""
        cfg = self.config
        deadline = time.monotonic() + cfg.first_frame_timeout_s
        timer = RateTimer(cfg.control_period_s)
        while time.monotonic() < deadline and not self._stop_requested():
            frame = self.frames.latest()
            if (
                self._is_new(frame)
                and time.monotonic() - frame.received_monotonic <= cfg.max_frame_age_s
            ):
                return frame
            if time.perf_counter() >= timer.next_deadline:
                timer.wait()
                self.robot.command(goal)
            time.sleep(0.005)
        if self._stop_requested():
            return None
        newest = self.frames.latest()
        if self.frames.malformed:
            why = (
                f"{self.frames.malformed} malformed messages came, the last: "
                f"{self.frames.last_malformed_reason}"
            )
        elif newest is not None:
            why = (
                f"the newest arrived {time.monotonic() - newest.received_monotonic:.2f} s ago "
                f"(the policy takes frames up to {cfg.max_frame_age_s:g} s old): has the camera "
                "stopped?"
            )
        else:
            why = "is the camera publisher running?"
        raise SafeStop(
            f"no new camera frame arrived within {cfg.first_frame_timeout_s:.1f} s: {why}"
        )

    def _check_camera(
        self, log: EpisodeLogWriter, stats: LoopStats, tick: int, malformed_at_start: int
    ) -> None:
        """Log the malformed messages since the last tick; stop past the malformed limits."""
        cfg = self.config
        reasons = self.frames.take_malformed_reasons()
        stats.malformed_frames = self.frames.malformed - malformed_at_start
        for reason, count in collections.Counter(reasons).items():
            log.event(
                "malformed_frame",
                tick=tick,
                reason=reason,
                count=count,
                episode_total=stats.malformed_frames,
            )
        if stats.malformed_frames > cfg.malformed_limit:
            raise SafeStop(
                f"{stats.malformed_frames} malformed camera messages in this episode (more than "
                f"{cfg.malformed_limit}); the last: {self.frames.last_malformed_reason}"
            )
        if self.frames.malformed_in_a_row >= cfg.malformed_in_a_row_limit:
            raise SafeStop(
                f"{self.frames.malformed_in_a_row} malformed camera messages in a row (the limit "
                f"is {cfg.malformed_in_a_row_limit}); the last: {self.frames.last_malformed_reason}"
            )

    def run_episode(self, log: EpisodeLogWriter) -> dict[str, Any]:
        """Ease in, then run the policy for one episode; always closes ``log`` with a footer."""
        stats = LoopStats()
        try:
            self._run_ticks(self._start_episode(log, stats))
            if not self._stop_requested():
                self.robot.hold()
        except SafeStop as e:
            stats.stop_reason = str(e)
            log.event("safe_stop", reason=str(e))
            raise
        except (
            BaseException
        ) as e:  # bus errors, Ctrl-C: record why, then let the caller stop safely
            stats.stop_reason = f"{type(e).__name__}: {e}"
            log.event("error", reason=stats.stop_reason)
            raise
        finally:
            extra: dict[str, Any] = {"config": asdict(self.config)}
            if self._footer_stats is not None:
                extra.update(self._footer_stats())
            summary = stats.summary(extra)
            log.close(summary)
        return summary

    # -- one episode, step by step ----------------------------------------------------------------
    def _start_episode(self, log: EpisodeLogWriter, stats: LoopStats) -> _Episode:
        """Ease in to the reset pose and wait for a new frame."""
        malformed_at_start = self.frames.malformed
        watchdog = TrackingWatchdog(self.description)
        goal = self.ease_in(log)
        if self._wait_first_frame(goal) is None:
            stats.stop_reason = "stop requested"
        return _Episode(
            log=log,
            stats=stats,
            watchdog=watchdog,
            goal=goal,
            sent=goal,
            last_action=np.zeros(self.description.num_joints, dtype=np.float32),
            malformed_at_start=malformed_at_start,
            restarts_seen=self.frames.restarts,
        )

    def _run_ticks(self, ep: _Episode) -> None:
        cfg = self.config
        timer = RateTimer(cfg.control_period_s)
        total_ticks = cfg.episode_policy_steps * cfg.action_repeat
        for tick in range(total_ticks):
            if self._stop_requested():
                ep.stats.stop_reason = "stop requested"
                return
            self._tick(ep, tick, timer, total_ticks)
        ep.stats.stop_reason = ep.stats.stop_reason or "episode complete"

    def _tick(self, ep: _Episode, tick: int, timer: RateTimer, total_ticks: int) -> None:
        """One control period: read the robot, check the camera, maybe
        run the policy, send the goal."""
        cfg = self.config
        lateness, t_tick = self._wait_tick(ep, tick, timer)
        record = self._read_robot(ep, tick, lateness, t_tick)
        frame = self.frames.latest()  # the newest frame, timed from its arrival in this process
        age = math.inf if frame is None else time.monotonic() - frame.received_monotonic
        self._check_camera(ep.log, ep.stats, tick, ep.malformed_at_start)
        self._check_restart(ep, tick, frame)
        self._check_stale(ep, record, frame, age)
        if tick % cfg.action_repeat == 0:
            if age > cfg.max_frame_age_s or not self._is_new(frame):
                self._hold(ep, tick, frame, age, record)
            else:
                self._step_policy(ep, frame, age, record)
        if ep.policy_action is not None:
            ep.goal = self.description.action_to_joint_goal(
                ep.policy_action, ep.goal, cfg.control_period_s
            )
        ep.sent = np.asarray(self.robot.command(ep.goal), dtype=np.float64)
        record["goal"] = ep.goal
        record["sent"] = ep.sent
        ep.log.tick(record)
        if self._status and tick % 10 == 0:
            self._status(
                f"tick {tick + 1}/{total_ticks}  jitter {lateness * 1e3:5.2f} ms  "
                f"overruns {ep.stats.overruns}  stale {ep.stats.stale_ticks}  "
                f"frame age {age * 1e3:4.0f} ms"
            )

    def _wait_tick(self, ep: _Episode, tick: int, timer: RateTimer) -> tuple[float, float]:
        """Wait for the tick's deadline; count overruns (a safe stop past the budget). Returns the
        lateness (s) and the tick's start on the perf counter.

        An overrun is a tick whose lateness, measured when its wait ends, is over one control
        period (:class:`RateTimer`): the count is the number of logged ticks with ``lateness_s``
        above ``control_period_s``, each with its ``overrun`` event."""
        lateness, overrun = timer.wait()
        t_tick = time.perf_counter()
        stats = ep.stats
        stats.ticks += 1
        stats.lateness_s.append(lateness)
        if overrun:
            stats.overruns += 1
            ep.log.event("overrun", tick=tick, lateness_s=lateness)
            if stats.overruns > self.config.overrun_budget:
                raise SafeStop(f"more than {self.config.overrun_budget} overruns in one episode")
        return lateness, t_tick

    def _read_robot(
        self, ep: _Episode, tick: int, lateness: float, t_tick: float
    ) -> dict[str, Any]:
        """The tick's log record with the robot's state, checked by the tracking watchdog."""
        state = self.robot.read_state()
        record: dict[str, Any] = {
            **tick_record(tick, t_tick, lateness, state),
            "goal_error_rad": float(np.max(np.abs(state.positions - ep.sent))),
            "policy": None,
        }
        try:
            ep.watchdog.check(state.positions, ep.sent, time.monotonic(), ep.log, tick)
        except SafeStop:
            ep.log.tick(record)  # the reading that stopped the robot
            raise
        ep.stats.goal_error_rad.append(record["goal_error_rad"])
        return record

    def _check_restart(self, ep: _Episode, tick: int, frame: Any) -> None:
        """A camera restart: log it, hold until a new frame and restart the history from it; stop
        past the restart limit."""
        if self.frames.restarts == ep.restarts_seen:
            return
        cfg = self.config
        count = self.frames.restarts - ep.restarts_seen
        ep.stats.camera_restarts += count
        ep.restarts_seen = self.frames.restarts
        ep.log.event(
            "camera_restart",
            tick=tick,
            seq=None if frame is None else int(frame.seq),
            count=count,
            episode_total=ep.stats.camera_restarts,
        )
        if ep.stats.camera_restarts > cfg.camera_restart_limit:
            raise SafeStop(
                f"the camera publisher restarted {ep.stats.camera_restarts} times in "
                f"this episode (more than {cfg.camera_restart_limit})"
            )
        ep.reset_history = True
        ep.policy_action = None

    def _check_stale(self, ep: _Episode, record: dict[str, Any], frame: Any, age: float) -> None:
        cfg = self.config
        if age > cfg.max_frame_age_s + cfg.stale_timeout_s:
            record["stale_frame_age_s"] = None if frame is None else age
            ep.log.tick(record)
            raise SafeStop(
                f"camera frames stale for more than {cfg.stale_timeout_s:.2f} s: the newest "
                f"was received {age:.2f} s ago (stale after {cfg.max_frame_age_s:.2f} s)"
            )

    def _hold(
        self, ep: _Episode, tick: int, frame: Any, age: float, record: dict[str, Any]
    ) -> None:
        """A policy tick without a fresh, new frame: the goal stays where it is."""
        stale = age > self.config.max_frame_age_s
        if stale:
            ep.stats.stale_ticks += 1
            record["stale_frame_age_s"] = None if frame is None else age
        else:
            ep.stats.no_new_frame_steps += 1
            record["no_new_frame"] = True
        reason = "stale frame" if stale else "no new frame"
        if ep.hold_logged is None or ep.hold_logged[0] != reason:
            ep.hold_logged = (reason, tick)
        if (tick - ep.hold_logged[1]) % HOLD_EVENT_EVERY_TICKS == 0:
            ep.log.event(
                "hold",
                reason=reason,
                tick=tick,
                age_s=None if frame is None else age,
                seq=None if frame is None else int(frame.seq),
            )
        ep.policy_action = None

    def _step_policy(self, ep: _Episode, frame: Any, age: float, record: dict[str, Any]) -> None:
        """Run the policy on a new frame (logged first), restarting its history where due."""
        cfg = self.config
        ep.hold_logged = None
        noise = (
            None
            if cfg.deterministic
            else self._rng.standard_normal(self.description.num_joints).astype(np.float32)
        )
        if cfg.log_frames:
            ep.log.frame(int(frame.seq), frame.timestamp, frame.image)
        if ep.reset_history:
            out = self.policy.reset(frame.image, cfg.deterministic, noise)
        else:
            out = self.policy.step(frame.image, ep.last_action, cfg.deterministic, noise)
        self._last_used_monotonic = frame.received_monotonic
        ep.policy_action = out.action
        ep.last_action = out.action
        stats = ep.stats
        stats.policy_steps += 1
        stats.inference_s.append(out.inference_s)
        stats.frame_age_s.append(age)
        stats.clock_offset_s.append(frame.clock_offset_s)
        record["policy"] = {
            "step": stats.policy_steps - 1,
            "frame_seq": int(frame.seq),
            "frame_timestamp": frame.timestamp,
            "frame_age_s": age,
            "frame_arrived_monotonic": frame.received_monotonic,
            "frame_clock_offset_s": frame.clock_offset_s,
            "history_reset": ep.reset_history,
            "action": out.action,
            "deterministic_action": out.deterministic_action,
            "mean": out.mean,
            "log_std": out.log_std,
            "noise": noise,
            "inference_s": out.inference_s,
        }
        ep.reset_history = False
