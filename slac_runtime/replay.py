"""Reading logged episodes back: summaries, videos with joint plots, policy re-runs, and replaying
the logged joint goals on a robot.

Everything here works on an :class:`~slac_runtime.episode_log.EpisodeLog` as
:func:`~slac_runtime.episode_log.read_episode_log` returns it, so a log cut off by a kill is used up
to its last complete tick, and a log with corrupt records is used without them (:func:`log_warning`
names their byte offsets and the ticks lost). Replaying in simulation needs MuJoCo and lives with
the robot (``RobotEntry.sim_replay``); this module stays numpy/onnxruntime/OpenCV (and
imageio-ffmpeg's encoder for videos) only.

Replay on a robot (:func:`replay_on_robot`) sends tick ``i``'s logged goal (``sent``, what the
driver actually sent) at the logged time of tick ``i`` (relative to tick 0, absolute deadlines),
reading the joints first as the control loop does, so that replay tick ``i``'s positions compare
with logged tick ``i``'s. The replay's tolerance, checked on the virtual D'Claw by
``tests/test_replay.py``: the largest joint error |replayed − logged position| is within
:data:`REPLAY_TOLERANCE_RAD` (0.1 rad) at 95 % of the ticks, and the error averaged over ticks and
joints is within :data:`REPLAY_MEAN_TOLERANCE_RAD` (0.03 rad). Both runs see the same goals at the
same times, but not the same bus and thread timing, nor the same start (the ease-in starts from
wherever the joints are): a goal moving at the velocity limit (0.105 rad per tick) turns a few
milliseconds of servo lag into a few hundredths of a radian, and a tick the simulation thread of the
virtual robot runs late (a loaded computer) into up to about a tenth. Measured on a loaded 2-core
machine: mean 0.005-0.014 rad, 95th percentile 0.03-0.06 rad, single-tick maxima 0.05-0.13 rad.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slac_runtime.ease_in import ease_in
from slac_runtime.episode_log import EpisodeLog, EpisodeLogWriter
from slac_runtime.policy import OnnxPolicy
from slac_runtime.robot import Robot, RobotDescription
from slac_runtime.timing import sleep_until
from slac_runtime.video import VideoWriter, put_label

# A replay on the virtual D'Claw stays this close to the logged joint positions (rad): the largest
# joint error at 95 % of the ticks, and the error averaged over ticks and joints.
REPLAY_TOLERANCE_RAD = 0.1
REPLAY_MEAN_TOLERANCE_RAD = 0.03
REPLAY_TOLERANCE_QUANTILE = 95  # percent of ticks
DEFAULT_CONTROL_PERIOD_S = 0.05  # for logs whose header lacks the policy metadata


# ------------------------------------------------------------------------------------------------
# What a log holds, tick by tick
def control_period_s(log: EpisodeLog) -> float:
    return float(
        log.header.get("policy_metadata", {}).get("control_period_s", DEFAULT_CONTROL_PERIOD_S)
    )


def logged_positions(log: EpisodeLog) -> np.ndarray:
    """Joint positions read at each tick (rad), ``[T, J]``."""
    return np.array([t["positions"] for t in log.ticks], dtype=np.float64).reshape(
        len(log.ticks), -1
    )


def logged_goals(log: EpisodeLog) -> np.ndarray:
    """The goal sent at each tick (rad), ``[T, J]``: ``sent``, else ``goal``, else the goal before.

    A tick logged just before a safe stop (stale camera) has no goal: the previous one stays
    (the first tick's fallback is the goal the ease-in ended on, or the logged positions).
    """
    goals = []
    previous = initial_goal(log)
    for tick in log.ticks:
        goal = tick.get("sent")
        if goal is None:
            goal = tick.get("goal")
        previous = previous if goal is None else np.asarray(goal, dtype=np.float64)
        goals.append(previous)
    return np.array(goals, dtype=np.float64).reshape(len(log.ticks), -1)


def initial_goal(log: EpisodeLog) -> np.ndarray:
    """The goal in force when tick 0 began: the ease-in's target, or tick 0's positions."""
    for event in log.events:
        if event.get("event") == "ease_in" and event.get("target") is not None:
            return np.asarray(event["target"], dtype=np.float64)
    if not log.ticks:
        raise ValueError(f"{log.path} holds no ticks")
    return np.asarray(log.ticks[0]["positions"], dtype=np.float64)


def tick_times(log: EpisodeLog) -> np.ndarray:
    """Each tick's start relative to tick 0 (s), from the logged monotonic clock."""
    period = control_period_s(log)
    times = [t.get("t") for t in log.ticks]
    if not times:
        return np.zeros(0)
    if any(t is None for t in times):
        return np.array([t["tick"] * period for t in log.ticks], dtype=np.float64)
    return np.asarray(times, dtype=np.float64) - times[0]


def log_warning(log: EpisodeLog) -> str | None:
    """A sentence for a log cut off by a kill (or a crash) or holding corrupt records, with the
    byte offset of each skipped stretch and the ticks lost; None for a whole log."""
    return log.diagnosis()


# ------------------------------------------------------------------------------------------------
# Summary
def _percentiles_ms(values: list[float], name: str) -> dict[str, float | None]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {f"{name}_p50_ms": None, f"{name}_p99_ms": None, f"{name}_max_ms": None}
    ms = np.asarray(values, dtype=np.float64) * 1e3
    return {
        f"{name}_p50_ms": float(np.percentile(ms, 50)),
        f"{name}_p99_ms": float(np.percentile(ms, 99)),
        f"{name}_max_ms": float(ms.max()),
    }


def stop_reason(log: EpisodeLog) -> str:
    """Why the episode ended: the footer's reason, else the last error event's, else 'cut off'."""
    if log.footer is not None and log.footer.get("stop_reason"):
        return str(log.footer["stop_reason"])
    for event in reversed(log.events):
        if event.get("event") in ("error", "safe_stop", "stop") and event.get("reason"):
            return str(event["reason"])
    if not log.truncated:
        return "-"
    end = log.skipped[-1] if log.skipped and log.skipped[-1].at_end else None
    if end is not None and end.whole:
        return "no footer (the log's last record is corrupt)"
    return "log cut off (no footer)"


def task_success(log: EpisodeLog) -> bool | None:
    """The task's success where the log knows it (footer, or the last
    tick's ``success``), else None."""
    if log.footer is not None and "success" in log.footer:
        return log.footer["success"]
    for tick in reversed(log.ticks):
        if "success" in tick:
            return tick["success"]
    return None


def _event_count(log: EpisodeLog, kind: str, count_key: str | None = None) -> int:
    """How many ``kind`` events the log holds (summing their ``count_key`` where they carry one)."""
    return sum(
        int(e.get(count_key, 1)) if count_key else 1 for e in log.events if e.get("event") == kind
    )


def summarize(log: EpisodeLog) -> dict[str, Any]:
    """The table of one logged episode: duration, ticks, overruns, jitter, frame age, the camera's
    clock offset, malformed camera messages, camera restarts, goal error (largest |reading − goal|
    per tick, rad), bus retries, stop
    reason and, where the log records it, task success (left out where the log does not know:
    ``slac-run`` reads the joints and the camera, not the task's state).

    Frame age is the age on the receiving computer's monotonic clock (from the moment the frame
    was received) of the frames the policy used; the camera clock offset is the median of receive
    wall time minus capture timestamp (transport latency plus the offset between the clocks).
    Counts come from the log's events, so a log cut off by a kill counts what happened up to then.
    """
    ticks = log.ticks
    meta = log.header.get("policy_metadata", {})
    period = control_period_s(log)
    policy = log.policy_ticks()
    footer = log.footer or {}
    out: dict[str, Any] = {
        "log": str(log.path),
        "task": meta.get("task"),
        "robot": log.header.get("robot"),
        "started_at": log.header.get("started_at"),
        "truncated": log.truncated,
        # stretches of the file skipped as corrupt, whole records after them (byte offsets)
        "corrupt_records": len(log.corrupt),
        "corrupt_offsets": ", ".join(str(s.offset) for s in log.corrupt) or None,
        "ticks_lost": len(log.lost_ticks()),
        # from the start of the first tick to the end of the last tick's control period
        "duration_s": float(tick_times(log)[-1] + period) if ticks else 0.0,
        "ticks": len(ticks),
        "policy_steps": len(policy),
        "frames_logged": len(log.frames),
        # overrun events are logged as they happen, so a cut-off log counts them too
        "overruns": sum(1 for e in log.events if e.get("event") == "overrun"),
        "stale_ticks": sum(1 for t in ticks if "stale_frame_age_s" in t),
    }
    out.update(_percentiles_ms([t.get("lateness_s") for t in ticks], "jitter"))
    out.update(_percentiles_ms([p["policy"].get("frame_age_s") for p in policy], "frame_age"))
    offsets = [p["policy"].get("frame_clock_offset_s") for p in policy]
    offsets = [v for v in offsets if v is not None and math.isfinite(v)]
    out["camera_clock_offset_ms"] = float(np.median(offsets) * 1e3) if offsets else None
    out["malformed_frames"] = _event_count(log, "malformed_frame", "count")
    out["camera_restarts"] = _event_count(log, "camera_restart", "count")
    out["no_new_frame_steps"] = sum(1 for t in ticks if t.get("no_new_frame"))
    errors = [t["goal_error_rad"] for t in ticks if t.get("goal_error_rad") is not None]
    out["goal_error_p99_rad"] = float(np.percentile(errors, 99)) if errors else None
    out["goal_error_max_rad"] = float(np.max(errors)) if errors else None
    out.update(
        {
            k: v
            for k, v in _percentiles_ms(
                [p["policy"].get("inference_s") for p in policy], "inference"
            ).items()
            if not k.endswith("max_ms")
        }
    )
    # Bus counters, where the run logged them (a replay's footer has them).
    for key in ("retries", "failures"):
        out[key] = footer.get(key)
    for key in ("max_tracking_error_rad", "p95_tracking_error_rad", "mean_tracking_error_rad"):
        if key in footer:
            out[key] = footer[key]
    out["stop_reason"] = stop_reason(log)
    success = task_success(log)
    if success is not None:  # a runtime that reads only the joints cannot tell (no valve sensor)
        out["success"] = success
    return out


# ------------------------------------------------------------------------------------------------
# Policy re-run
def policy_differences(log: EpisodeLog, policy_path: str | Path) -> np.ndarray:
    """Re-run a policy on the logged frames and actions; per policy step, max |action difference|.

    The policy sees exactly what the logged run's policy saw: the same frames, the same previous
    actions (the logged ones, not its own), the same noise draws (or the deterministic action,
    where the run was deterministic) and the same history restarts (a camera restart restarts the
    history). All zeros for the policy that produced the log.
    """
    policy = OnnxPolicy(policy_path)
    steps = log.policy_ticks()
    if not steps:
        raise ValueError(f"{log.path} has no policy steps to re-run")
    action_dim = len(steps[0]["policy"]["action"])
    if policy.metadata.action_dim != action_dim:
        raise ValueError(
            f"policy {policy_path} has {policy.metadata.action_dim} actions, "
            f"the log's policy had {action_dim}"
        )
    diffs = []
    previous = None
    for tick in steps:
        p = tick["policy"]
        frame = log.policy_frame(tick)
        if frame is None:
            why = (
                "the run did not log frames"
                if not log.frame_records
                else "its record is corrupt"
                if log.corrupt
                else "it was not logged"
            )
            raise ValueError(
                f"{log.path}: frame {p['frame_seq']} of policy step {p['step']} cannot be read "
                f"({why})"
            )
        deterministic = p.get("noise") is None
        noise = None if deterministic else np.asarray(p["noise"], dtype=np.float32)
        if previous is None or p.get("history_reset", False):
            out = policy.reset(frame, deterministic, noise)
        else:
            out = policy.step(frame, previous, deterministic, noise)
        logged = np.asarray(p["action"], dtype=np.float32)
        diffs.append(float(np.max(np.abs(out.action - logged))))
        previous = logged
    return np.array(diffs)


# ------------------------------------------------------------------------------------------------
# Video
_FINGER_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]  # RGB, one per joint of a finger
_GREY = (90, 90, 90)
_MARGIN = 34  # px left of the plots, for the rad scale


def _text(panel: np.ndarray, text: str, origin: tuple[int, int], colour=_GREY, scale=0.33) -> None:
    import cv2

    cv2.putText(panel, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _row_scale(
    panel: np.ndarray, top: int, row_h: int, lo: float, hi: float, to_y: Callable
) -> None:
    """A row's box (below its 12-px legend strip) and its rad scale: ticks at the ends and at 0."""
    import cv2

    w = panel.shape[1]
    cv2.rectangle(panel, (_MARGIN, top + 13), (w - 3, top + row_h - 2), (200, 200, 200), 1)
    for value in sorted({round(lo + 0.05, 1), 0.0, round(hi - 0.05, 1)}):
        if not lo <= value <= hi:
            continue
        y = int(to_y(value))
        cv2.line(panel, (_MARGIN - 3, y), (_MARGIN, y), _GREY, 1)
        _text(panel, f"{value:+.1f}", (2, y + 4))
        if value == 0.0:
            cv2.line(panel, (_MARGIN + 1, y), (w - 4, y), (230, 230, 230), 1)


def _plot_panel(
    positions: np.ndarray,
    goals: np.ndarray,
    cursor: int,
    size: tuple[int, int],
    joint_names: list[str] | None = None,
) -> np.ndarray:
    """Joint positions (thick) and goals (thin) over the episode, one box per finger, with a rad
    scale, a legend of joint names (coloured as their lines) and a cursor at tick ``cursor``.

    ``positions``/``goals`` are ``[T, J]`` (rad); the panel is ``uint8[h, w, 3]`` RGB.
    """
    import cv2

    h, w = size
    panel = np.full((h, w, 3), 255, np.uint8)
    n_ticks, n_joints = positions.shape
    rows = 3 if n_joints % 3 == 0 else 1
    per_row = n_joints // rows
    names = list(joint_names or []) or [f"joint {k}" for k in range(n_joints)]
    lo = float(min(positions.min(), goals.min())) - 0.1
    hi = float(max(positions.max(), goals.max())) + 0.1
    row_h = (h - 12) // rows  # the bottom 12 px hold the key
    xs = np.linspace(_MARGIN + 3, w - 5, max(n_ticks, 2)).astype(np.int32)[:n_ticks]
    for r in range(rows):
        top = r * row_h

        def to_y(v, top=top):  # the plot spans top + 16 .. top + row_h - 5
            return top + row_h - 5 - (v - lo) / (hi - lo) * (row_h - 21)

        _row_scale(panel, top, row_h, lo, hi, to_y)
        for j in range(per_row):
            k = r * per_row + j
            colour = _FINGER_COLOURS[k % 3]
            for series, thick in ((goals[:, k], 1), (positions[:, k], 2)):
                pts = np.stack([xs, to_y(series).astype(np.int32)], axis=1).reshape(-1, 1, 2)
                cv2.polylines(panel, [pts], False, colour, thick, cv2.LINE_AA)
            if per_row <= 3:  # a legend entry per joint of this finger, in its line's colour
                _text(panel, names[k], (_MARGIN + 4 + j * 40, top + 10), colour, 0.36)
    x = int(xs[min(cursor, n_ticks - 1)])
    cv2.line(panel, (x, 0), (x, rows * row_h - 1), (0, 0, 0), 1)
    _text(panel, "rad; thick: position, thin: goal", (4, h - 3))
    return panel


def write_video(log: EpisodeLog, out: str | Path, scale: int = 4) -> tuple[Path, int]:
    """An H.264 mp4 of the logged camera frames (upscaled ``scale`` times) beside plots of the joint
    positions and goals, with a cursor at the frame's tick.

    One video frame per policy step with a logged frame, played at the policy rate; the video is
    ``2 * W * scale`` wide and ``H * scale`` high for ``H x W`` frames. Returns (path, frame count).
    """
    import cv2

    steps = [t for t in log.policy_ticks() if log.policy_frame(t) is not None]
    if not steps:
        raise ValueError(f"{log.path} has no logged frames to make a video of")
    positions = logged_positions(log)
    goals = logged_goals(log)
    first = log.policy_frame(steps[0])
    fh, fw = first.shape[0] * scale, first.shape[1] * scale
    meta = log.header.get("policy_metadata", {})
    fps = 1.0 / (control_period_s(log) * meta.get("action_repeat", 1))
    joint_names = list(meta.get("joint_names") or [])
    tick_index = {t["tick"]: i for i, t in enumerate(log.ticks)}
    out = Path(out)
    with VideoWriter(out, fps) as writer:
        for t in steps:
            image = log.policy_frame(t)
            big = cv2.resize(image, (fw, fh), interpolation=cv2.INTER_NEAREST)
            panel = _plot_panel(positions, goals, tick_index[t["tick"]], (fh, fw), joint_names)
            canvas = np.ascontiguousarray(np.concatenate([big, panel], axis=1))
            put_label(canvas, f"step {t['policy']['step']}  tick {t['tick']}", (6, 18))
            writer.write(canvas)
    return out, len(steps)


# ------------------------------------------------------------------------------------------------
# Replay on a robot
@dataclass
class RobotReplayConfig:
    ease_in_speed: float = 0.5  # fraction of the velocity limit used to reach the starting goal
    overrun_budget: int = 20  # more ticks than this late by a whole period: safe stop


def tracking_stats(errors: np.ndarray) -> dict[str, Any]:
    """Statistics of |replayed − logged joint positions| ``errors[T, J]`` (rad), and whether they
    are within the replay tolerance (None when there are no ticks)."""
    if errors.size == 0:
        return {
            "max_tracking_error_rad": None,
            "p95_tracking_error_rad": None,
            "mean_tracking_error_rad": None,
            "max_tracking_error_per_joint_rad": None,
            "within_tolerance": None,
        }
    per_tick = errors.max(axis=1)
    p95 = float(np.percentile(per_tick, REPLAY_TOLERANCE_QUANTILE))
    mean = float(errors.mean())
    return {
        "max_tracking_error_rad": float(per_tick.max()),
        "p95_tracking_error_rad": p95,
        "mean_tracking_error_rad": mean,
        "max_tracking_error_per_joint_rad": errors.max(axis=0).round(4).tolist(),
        "within_tolerance": bool(p95 <= REPLAY_TOLERANCE_RAD and mean <= REPLAY_MEAN_TOLERANCE_RAD),
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
                "tick": i,
                "t": t_tick,
                "wall_time": time.time(),
                "lateness_s": lateness,
                "positions": state.positions,
                "velocities": state.velocities,
                "currents": state.currents,
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
    summary.update(tracking_stats(err))
    summary.update(
        {
            "tolerance": (
                f"p{REPLAY_TOLERANCE_QUANTILE} <= {REPLAY_TOLERANCE_RAD} rad, "
                f"mean <= {REPLAY_MEAN_TOLERANCE_RAD} rad"
            ),
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
