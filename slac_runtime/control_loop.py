"""The fixed-rate control loop: camera frames → history → ONNX policy → joint goals (DESIGN.md §6).

Every control period (from the policy metadata) the loop reads the robot state and (re)sends the
current goal; every ``action_repeat`` ticks it takes the newest frame, runs the policy and sets a
new action. Between policy ticks the goal moves toward the action's target exactly as in
simulation (range mapping, clipping, per-period velocity limit). Deadlines are absolute, so the
loop does not drift; late ticks, overruns and stale frames are counted and logged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from slac_runtime.episode_log import EpisodeLogWriter
from slac_runtime.policy import OnnxPolicy
from slac_runtime.robot import Robot

SPIN_S = 0.0015  # the last part of each wait is spent spinning, for sub-millisecond tick timing


class FrameSource(Protocol):
    """What the loop needs from a frame subscriber: the newest frame, or None."""

    def latest(self) -> Any: ...


class SafeStop(RuntimeError):
    """The loop stopped the robot for a reason a user must see (stale camera, bus error, ...)."""


@dataclass
class LoopConfig:
    control_period_s: float  # environment control period (from the policy metadata)
    action_repeat: int  # control periods per policy step (from the policy metadata)
    episode_policy_steps: int = 40  # policy steps per episode
    deterministic: bool = False  # tanh(mean) instead of a tanh-Gaussian sample
    max_frame_age_s: float = 0.25  # older frames are stale: the goal is held
    stale_timeout_s: float = 1.0  # stale this long: relax and stop
    overrun_budget: int = 20  # more overruns than this in an episode: safe stop
    ease_in_speed: float = 0.5  # fraction of the velocity limit used to reach the reset pose
    first_frame_timeout_s: float = 5.0  # wait this long for the first fresh frame
    log_frames: bool = True
    seed: int | None = None


@dataclass
class LoopStats:
    ticks: int = 0
    policy_steps: int = 0
    overruns: int = 0
    stale_ticks: int = 0
    lateness_s: list[float] = field(default_factory=list)  # tick start − deadline
    inference_s: list[float] = field(default_factory=list)
    frame_age_s: list[float] = field(default_factory=list)
    stop_reason: str = ""

    def summary(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            return float(np.percentile(values, q) * 1e3) if values else None

        out = {
            "ticks": self.ticks,
            "policy_steps": self.policy_steps,
            "overruns": self.overruns,
            "stale_ticks": self.stale_ticks,
            "jitter_p50_ms": pct(self.lateness_s, 50),
            "jitter_p99_ms": pct(self.lateness_s, 99),
            "jitter_max_ms": pct(self.lateness_s, 100),
            "inference_p50_ms": pct(self.inference_s, 50),
            "inference_p99_ms": pct(self.inference_s, 99),
            "frame_age_p50_ms": pct(self.frame_age_s, 50),
            "frame_age_p99_ms": pct(self.frame_age_s, 99),
            "stop_reason": self.stop_reason,
        }
        out.update(extra or {})
        return out


def format_table(summary: dict[str, Any]) -> str:
    rows = [(k, "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
            for k, v in summary.items() if not isinstance(v, (dict, list))]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


class RateTimer:
    """Absolute deadlines ``start + k * period``; ``wait()`` returns the lateness of the tick."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.perf_counter):
        self.period_s = period_s
        self._clock = clock
        self._start = clock()
        self._k = 0

    @property
    def next_deadline(self) -> float:
        return self._start + self._k * self.period_s

    def wait(self) -> tuple[float, bool]:
        """Sleep until the next deadline; return (lateness_s, overrun). Missed deadlines are skipped."""
        deadline = self.next_deadline
        now = self._clock()
        overrun = now > deadline + self.period_s
        if overrun:  # skip the deadlines we missed instead of bursting to catch up
            self._k += int((now - deadline) // self.period_s)
            deadline = self.next_deadline
        remaining = deadline - self._clock()
        if remaining > SPIN_S:
            time.sleep(remaining - SPIN_S)
        while self._clock() < deadline:
            pass
        self._k += 1
        return self._clock() - deadline, overrun


class ControlLoop:
    """Drives one robot with one policy from one frame source; one call of ``run_episode`` per episode."""

    def __init__(self, robot: Robot, frames: FrameSource, policy: OnnxPolicy, config: LoopConfig,
                 status: Callable[[str], None] | None = None,
                 footer_stats: Callable[[], dict[str, Any]] | None = None):
        self.robot = robot
        self.frames = frames
        self.policy = policy
        self.config = config
        self.description = robot.description
        self._status = status
        self._footer_stats = footer_stats  # extra counters for the log's footer (drops, bus retries)
        self.stop_requested = False
        self._rng = np.random.default_rng(config.seed)

    def request_stop(self) -> None:
        """Finish the current tick, then stop (safe from a signal handler)."""
        self.stop_requested = True

    # -- phases ---------------------------------------------------------------------------------
    def ease_in(self, log: EpisodeLogWriter | None = None) -> np.ndarray:
        """Move from the current pose to the reset pose, slowly; return the last goal sent."""
        d = self.description
        period = self.config.control_period_s
        start = self.robot.read_state().positions.astype(np.float64)
        target = np.asarray(d.reset_pose, dtype=np.float64)
        step = d.velocity_limit * self.config.ease_in_speed * period
        n = max(1, math.ceil(float(np.max(np.abs(target - start))) / step))
        timer = RateTimer(period)
        goal = start
        for k in range(1, n + 1):
            timer.wait()
            goal = start + (target - start) * (k / n)
            self.robot.command(goal)
            if self.stop_requested:
                break
        if log is not None:
            log.event("ease_in", ticks=n, start=start, target=target)
        return goal

    def _wait_first_frame(self) -> Any:
        deadline = time.monotonic() + self.config.first_frame_timeout_s
        while time.monotonic() < deadline and not self.stop_requested:
            frame = self.frames.latest()
            if frame is not None and time.time() - frame.timestamp <= self.config.max_frame_age_s:
                return frame
            time.sleep(0.005)
        raise SafeStop(
            f"no camera frame newer than {self.config.max_frame_age_s * 1e3:.0f} ms arrived within "
            f"{self.config.first_frame_timeout_s:.1f} s: is the camera publisher running?"
        )

    def run_episode(self, log: EpisodeLogWriter) -> dict[str, Any]:
        """Ease in, then run the policy for one episode; always closes ``log`` with a footer."""
        cfg = self.config
        stats = LoopStats()
        policy_action: np.ndarray | None = None  # None: hold the goal where it is
        last_action = np.zeros(self.description.num_joints, dtype=np.float32)
        try:
            goal = self.ease_in(log)
            frame = self._wait_first_frame()
            timer = RateTimer(cfg.control_period_s)
            stale_since: float | None = None
            last_seq = -1
            total_ticks = cfg.episode_policy_steps * cfg.action_repeat
            for tick in range(total_ticks):
                if self.stop_requested:
                    stats.stop_reason = "stop requested"
                    break
                lateness, overrun = timer.wait()
                t_tick = time.perf_counter()
                stats.ticks += 1
                stats.lateness_s.append(lateness)
                if overrun:
                    stats.overruns += 1
                    log.event("overrun", tick=tick, lateness_s=lateness)
                    if stats.overruns > cfg.overrun_budget:
                        raise SafeStop(f"more than {cfg.overrun_budget} overruns in one episode")
                state = self.robot.read_state()
                record: dict[str, Any] = {
                    "tick": tick,
                    "t": t_tick,
                    "wall_time": time.time(),
                    "lateness_s": lateness,
                    "positions": state.positions,
                    "velocities": state.velocities,
                    "currents": state.currents,
                    "policy": None,
                }
                if tick % cfg.action_repeat == 0:
                    if tick > 0:
                        frame = self.frames.latest()
                    age = math.inf if frame is None else time.time() - frame.timestamp
                    if age > cfg.max_frame_age_s:
                        stats.stale_ticks += 1
                        stale_since = stale_since or time.monotonic()
                        record["stale_frame_age_s"] = None if frame is None else age
                        if time.monotonic() - stale_since > cfg.stale_timeout_s:
                            log.tick(record)
                            self.robot.relax()
                            log.event("relax", reason="camera stale", age_s=age)
                            raise SafeStop(
                                f"camera frames stale for more than {cfg.stale_timeout_s:.1f} s "
                                f"(newest is {age:.2f} s old): robot relaxed"
                            )
                        if stats.stale_ticks == 1 or tick % 20 == 0:
                            log.event("hold", reason="stale frame", tick=tick, age_s=age)
                        policy_action = None  # hold: the goal stays where it is
                    else:
                        stale_since = None
                        noise = None if cfg.deterministic else self._rng.standard_normal(
                            self.description.num_joints).astype(np.float32)
                        if stats.policy_steps == 0:
                            out = self.policy.reset(frame.image, cfg.deterministic, noise)
                        else:
                            out = self.policy.step(frame.image, last_action, cfg.deterministic, noise)
                        policy_action = out.action
                        last_action = out.action
                        stats.policy_steps += 1
                        stats.inference_s.append(out.inference_s)
                        stats.frame_age_s.append(age)
                        record["policy"] = {
                            "step": stats.policy_steps - 1,
                            "frame_seq": int(frame.seq),
                            "frame_timestamp": frame.timestamp,
                            "frame_age_s": age,
                            "action": out.action,
                            "deterministic_action": out.deterministic_action,
                            "mean": out.mean,
                            "log_std": out.log_std,
                            "noise": noise,
                            "inference_s": out.inference_s,
                        }
                        if cfg.log_frames and frame.seq != last_seq:
                            log.frame(int(frame.seq), frame.timestamp, frame.image)
                        last_seq = frame.seq
                if policy_action is not None:
                    goal = self.description.action_to_joint_goal(policy_action, goal, cfg.control_period_s)
                sent = self.robot.command(goal)
                record["goal"] = goal
                record["sent"] = sent
                log.tick(record)
                if self._status and tick % 10 == 0:
                    self._status(f"tick {tick + 1}/{total_ticks}  jitter {lateness * 1e3:5.2f} ms  "
                                 f"overruns {stats.overruns}  stale {stats.stale_ticks}")
            else:
                stats.stop_reason = "episode complete"
            if not self.stop_requested:
                self.robot.hold()
        except SafeStop as e:
            stats.stop_reason = str(e)
            log.event("safe_stop", reason=str(e))
            raise
        except BaseException as e:  # bus errors, Ctrl-C: record why, then let the caller stop safely
            stats.stop_reason = f"{type(e).__name__}: {e}"
            log.event("error", reason=stats.stop_reason)
            raise
        finally:
            extra: dict[str, Any] = {"config": asdict(cfg)}
            if self._footer_stats is not None:
                extra.update(self._footer_stats())
            summary = stats.summary(extra)
            log.close(summary)
        return summary
