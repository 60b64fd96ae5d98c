"""The table of one logged episode: timing, frames, camera faults, goal error, how it ended."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from slac_runtime.episode_log import EpisodeLog
from slac_runtime.log_series import control_period_s, tick_times


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
