"""Replaying a log's joint goals on a robot, with their logged timing.

Tick ``i``'s logged goal (``sent``, what the driver actually sent) is sent at the logged time of
tick ``i`` (relative to tick 0, absolute deadlines), after reading the joints as the control loop
does, so that replay tick ``i``'s positions compare with logged tick ``i``'s. The replay's footer
holds the joint error |replayed − logged position| and whether it is within the robot's
:class:`~slac_runtime.robot.ReplayTolerance` (its description's ``replay_tolerance``). Both runs
see the same goals at the same times, but not the same bus and thread timing, nor the same start
(the ease-in starts from wherever the joints are), so a replay never matches its log exactly.
Replaying in simulation needs MuJoCo and lives with the robot (``RobotEntry.sim_replay``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from slac_runtime.ease_in import ease_in
from slac_runtime.episode_log import EpisodeLog, EpisodeLogWriter, tick_record
from slac_runtime.log_series import (
    control_period_s,
    initial_goal,
    logged_goals,
    logged_positions,
    tick_times,
)
from slac_runtime.robot import ReplayTolerance, Robot, RobotDescription
from slac_runtime.timing import sleep_until


@dataclass
class RobotReplayConfig:
    ease_in_speed: float = 0.5  # fraction of the velocity limit used to reach the starting goal
    overrun_budget: int = 20  # more ticks than this late by a whole period: safe stop


def tracking_stats(errors: np.ndarray, tolerance: ReplayTolerance | None) -> dict[str, Any]:
    """Statistics of |replayed − logged joint positions| ``errors[T, J]`` (rad), and whether they
    are within ``tolerance`` (None when there are no ticks or no tolerance)."""
    if errors.size == 0:
        return {
            "max_tracking_error_rad": None,
            "p95_tracking_error_rad": None,
            "mean_tracking_error_rad": None,
            "max_tracking_error_per_joint_rad": None,
            "within_tolerance": None,
        }
    per_tick = errors.max(axis=1)
    p95 = float(np.percentile(per_tick, 95))
    mean = float(errors.mean())
    return {
        "max_tracking_error_rad": float(per_tick.max()),
        "p95_tracking_error_rad": p95,
        "mean_tracking_error_rad": mean,
        "max_tracking_error_per_joint_rad": errors.max(axis=0).round(4).tolist(),
        "within_tolerance": None if tolerance is None else tolerance.holds(p95, mean),
    }


class ReplayStopped(RuntimeError):
    """The replay was stopped by a request (Ctrl-C, SIGTERM) before its last tick."""


def _tick_ranges(ticks: list[int]) -> str:
    """``[3, 4, 5, 9]`` as ``3-5, 9``."""
    ranges: list[list[int]] = []
    for t in ticks:
        if ranges and t == ranges[-1][1] + 1:
            ranges[-1][1] = t
        else:
            ranges.append([t, t])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def check_replayable(log: EpisodeLog, description: RobotDescription) -> None:
    """Raise ValueError (before anything moves) unless the log's goals fit this robot's joints."""
    if not log.ticks:
        raise ValueError(f"{log.path} holds no ticks to replay")
    if log.header.get("robot") not in (None, description.name):
        raise ValueError(
            f"{log.path} was recorded on robot {log.header['robot']!r}, not {description.name!r}"
        )
    names = log.header.get("policy_metadata", {}).get("joint_names")
    if names and tuple(names) != tuple(description.joint_names):
        raise ValueError(
            f"{log.path} was logged with joints {list(names)}, robot {description.name!r} "
            f"has {list(description.joint_names)}"
        )
    lost = log.lost_ticks()
    if lost:
        raise ValueError(
            f"{log.path}: {'tick' if len(lost) == 1 else 'ticks'} {_tick_ranges(lost)} "
            f"{'was' if len(lost) == 1 else 'were'} lost to corrupt records; on the robot the "
            "goals would jump across the gap: replay it in simulation (--sim) instead"
        )
    goals = logged_goals(log)
    if goals.shape[1] != description.num_joints or not np.all(np.isfinite(goals)):
        raise ValueError(
            f"{log.path}: the logged goals are not {description.num_joints} finite joint angles"
        )


@dataclass
class _ReplayProgress:
    """What a replay on a robot has done so far (the footer's numbers)."""

    errors: list[np.ndarray] = field(
        default_factory=list
    )  # |replayed − logged positions| per tick (rad)
    lateness_s: list[float] = field(default_factory=list)
    overruns: int = 0


def _replay_ease_in(
    log: EpisodeLog,
    robot: Robot,
    out: EpisodeLogWriter,
    cfg: RobotReplayConfig,
    stop_requested: Callable[[], bool],
) -> float:
    """Ease in to the goal in force when logged tick 0 began; return tick 0's deadline (one control
    period after the last ease-in goal)."""
    d = robot.description
    if stop_requested():
        raise ReplayStopped("stop requested")
    period = control_period_s(log)
    move = ease_in(
        robot,
        np.clip(initial_goal(log), d.low, d.high),
        speed_rad_s=d.velocity_limit * cfg.ease_in_speed,
        period_s=period,
        stop_requested=stop_requested,
    )
    if move.stopped:
        raise ReplayStopped("stop requested")
    out.event("ease_in", ticks=move.ticks, start=move.start, target=move.target)
    return move.timer.next_deadline


def _replay_ticks(
    log: EpisodeLog,
    robot: Robot,
    out: EpisodeLogWriter,
    cfg: RobotReplayConfig,
    t0: float,
    progress: _ReplayProgress,
    stop_requested: Callable[[], bool],
    status: Callable[[str], None] | None,
) -> None:
    """Tick ``i`` at ``t0`` + its logged time: read the joints, send
    the logged goal, log the tick."""
    goals = logged_goals(log)
    positions = logged_positions(log)
    period = control_period_s(log)
    times = tick_times(log)
    for i, tick in enumerate(log.ticks):
        if stop_requested():
            raise ReplayStopped("stop requested")
        lateness = sleep_until(t0 + times[i])
        t_tick = time.perf_counter()
        progress.lateness_s.append(lateness)
        if lateness > period:
            progress.overruns += 1
            out.event("overrun", tick=i, lateness_s=lateness)
            if progress.overruns > cfg.overrun_budget:
                raise ReplayStopped(f"more than {cfg.overrun_budget} overruns")
        state = robot.read_state()
        sent = robot.command(goals[i])
        error = np.abs(state.positions - positions[i])
        progress.errors.append(error)
        out.tick(
            {
                **tick_record(i, t_tick, lateness, state),
                "policy": None,
                "goal": goals[i],
                "sent": sent,
                "replay_of_tick": tick["tick"],
                "tracking_error_rad": float(error.max()),
            }
        )
        if status and i % 10 == 0:
            status(
                f"tick {i + 1}/{len(log.ticks)}  tracking error {error.max():.3f} rad  "
                f"lateness {lateness * 1e3:5.2f} ms"
            )


def _replay_summary(
    log: EpisodeLog,
    robot: Robot,
    out: EpisodeLogWriter,
    cfg: RobotReplayConfig,
    progress: _ReplayProgress,
    reason: str,
) -> dict[str, Any]:
    """The replay log's footer: ticks, stop reason, bus counters and the tracking error."""
    errors = progress.errors
    err = np.array(errors) if errors else np.zeros((0, robot.description.num_joints))
    lateness_s = progress.lateness_s
    summary: dict[str, Any] = {
        "replay_of": str(log.path),
        "log": str(out.path),
        "ticks": len(errors),
        "logged_ticks": len(log.ticks),
        "overruns": progress.overruns,
        "jitter_p99_ms": float(np.percentile(lateness_s, 99) * 1e3) if lateness_s else None,
    }
    tolerance = robot.description.replay_tolerance
    summary.update(tracking_stats(err, tolerance))
    summary.update(
        {
            "tolerance": None if tolerance is None else tolerance.describe(),
            "stop_reason": reason,
            "config": asdict(cfg),
        }
    )
    summary.update(getattr(robot, "stats", {}) or {})
    return summary


def replay_on_robot(
    log: EpisodeLog,
    robot: Robot,
    out: EpisodeLogWriter,
    config: RobotReplayConfig | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Send a log's goals to a connected robot with their logged timing; log the replay to ``out``.

    1. Ease in: from the current pose to the goal in force when the logged tick 0 began (the logged
       ease-in's target), at ``ease_in_speed`` of the velocity limit, as ``slac-run`` does.
    2. Tick ``i`` starts at the logged start of tick ``i`` (relative to tick 0, absolute deadlines):
       read the joints, then send the logged goal through ``robot.command`` (so the driver clips it
       exactly as in ``slac-run``), and log the tick in ``slac-run``'s format.
    3. Afterwards the robot holds its pose; leaving the driver's ``with`` block relaxes or holds it.

    ``stop_requested`` is polled every tick (a signal handler sets it): the replay stops after the
    current tick. ``out`` is always closed with a footer: ticks, stop reason, bus counters, and the
    tracking error |replayed − logged positions| (rad; max, mean, per joint). Returns the footer.
    """
    cfg = config or RobotReplayConfig()
    check_replayable(log, robot.description)
    progress = _ReplayProgress()
    reason = ""
    try:
        t0 = _replay_ease_in(log, robot, out, cfg, stop_requested)
        _replay_ticks(log, robot, out, cfg, t0, progress, stop_requested, status)
        reason = "replay complete"
        robot.hold()
    except ReplayStopped as e:
        reason = str(e)
        out.event("stop", reason=reason)
    except BaseException as e:  # bus errors: record why, then let the caller's driver stop safely
        reason = f"{type(e).__name__}: {e}"
        out.event("error", reason=reason)
        raise
    finally:
        summary = _replay_summary(log, robot, out, cfg, progress, reason)
        out.close(summary)
    return summary
