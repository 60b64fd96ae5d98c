"""A logged episode in Rerun (``slac-replay LOG --rerun FILE.rrd``, ``--rerun-spawn``).

Rerun (https://rerun.io, the viewer LeRobot uses) shows camera frames and time series side by side
on a shared timeline. Every row written here sits on two timelines of the same ticks: ``time``
(the tick's start relative to tick 0, from the logged monotonic clock, s) and ``tick`` (the tick's
number in the log). The entities:

* ``camera``: the frame each policy step used (RGB), at policy steps;
* ``joints/position``: the joint positions read at the tick (rad), every tick;
* ``joints/goal``: the goal sent at the tick (rad), every tick;
* ``policy/action``, ``policy/mean``, ``policy/log_std``: the policy's action in [-1, 1], and the
  Gaussian's mean (before tanh) and log standard deviation, at policy steps;
* ``timing/lateness_ms`` (every tick: how late the tick started), ``timing/frame_age_ms`` (the age
  of the frame the policy used, from its receipt) and ``timing/inference_ms``, at policy steps;
* ``events``: the log's events that name a tick (overruns, ...).

``rerun-sdk`` is an optional extra (``pip install "slac-robot[viz]"``), imported only here and
only when an export is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slac_runtime.episode_log import EpisodeLog
from slac_runtime.log_series import logged_goals, logged_positions, tick_times

APPLICATION_ID = "slac-replay"


class RerunMissingError(RuntimeError):
    """``rerun-sdk`` is not installed."""


def import_rerun():
    """The ``rerun`` module, or RerunMissingError with the line that installs it."""
    try:
        import rerun
    except ImportError as e:
        raise RerunMissingError(
            'Rerun export needs rerun-sdk: pip install "slac-robot[viz]" (or pip install rerun-sdk)'
        ) from e
    return rerun


def _blueprint(rrb):
    """The viewer's layout: the camera beside the joints, the policy's outputs and the timing."""
    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Spatial2DView(origin="camera", name="camera"),
            rrb.Vertical(
                rrb.TimeSeriesView(origin="joints", name="joints (rad)"),
                rrb.TimeSeriesView(origin="policy", name="policy outputs"),
                rrb.TimeSeriesView(origin="timing", name="timing (ms)"),
            ),
            column_shares=[1, 2],
        ),
        collapse_panels=True,
    )


def _series_names(rr, rec, log: EpisodeLog, joints: int) -> None:
    """Static names for each multi-series entity, so that the legend reads ``FF10``, not ``0``."""
    names = list(log.header.get("policy_metadata", {}).get("joint_names") or [])
    if len(names) != joints:
        names = [f"joint {k}" for k in range(joints)]
    for entity in ("joints/position", "policy/action", "policy/mean", "policy/log_std"):
        rec.log(entity, rr.SeriesLines(names=names), static=True)
    rec.log("joints/goal", rr.SeriesLines(names=[f"{n} goal" for n in names]), static=True)


def _log_policy_step(rr, rec, log: EpisodeLog, tick: dict[str, Any]) -> bool:
    """The policy's inputs and outputs at a policy tick; True when its frame was logged."""
    p = tick["policy"]
    for key in ("action", "mean", "log_std"):
        if p.get(key) is not None:
            rec.log(f"policy/{key}", rr.Scalars(np.asarray(p[key], dtype=np.float64)))
    for key, entity in (("frame_age_s", "frame_age_ms"), ("inference_s", "inference_ms")):
        if p.get(key) is not None:
            rec.log(f"timing/{entity}", rr.Scalars(1e3 * float(p[key])))
    frame = log.policy_frame(tick)
    if frame is not None:
        rec.log("camera", rr.Image(frame))
    return frame is not None


def _log_ticks(rr, rec, log: EpisodeLog) -> dict[str, int]:
    """Every tick, its policy step and its events, on the ``time`` and ``tick`` timelines."""
    positions, goals, times = logged_positions(log), logged_goals(log), tick_times(log)
    events: dict[int, list[dict[str, Any]]] = {}
    for event in log.events:
        if isinstance(event.get("tick"), int):
            events.setdefault(event["tick"], []).append(event)
    counts = {"ticks": 0, "policy_steps": 0, "frames": 0, "events": 0}
    for i, tick in enumerate(log.ticks):
        rec.set_time("tick", sequence=int(tick.get("tick", i)))
        rec.set_time("time", duration=float(times[i]))
        rec.log("joints/position", rr.Scalars(positions[i]))
        rec.log("joints/goal", rr.Scalars(goals[i]))
        if tick.get("lateness_s") is not None:
            rec.log("timing/lateness_ms", rr.Scalars(1e3 * float(tick["lateness_s"])))
        if tick.get("policy") is not None:
            counts["policy_steps"] += 1
            counts["frames"] += _log_policy_step(rr, rec, log, tick)
        for event in events.get(tick["tick"], []):
            text = ", ".join(f"{k} {v}" for k, v in event.items() if k not in ("event", "tick"))
            rec.log("events", rr.TextLog(f"{event['event']}: {text}", level="WARN"))
            counts["events"] += 1
        counts["ticks"] += 1
    return counts


def export_rerun(log: EpisodeLog, path: str | Path | None = None, spawn: bool = False) -> dict:
    """Write ``log`` as a Rerun recording to ``path`` (.rrd) and/or stream it to a Rerun viewer
    started here (``spawn``); return what was written (ticks, policy steps, frames, events)."""
    if path is None and not spawn:
        raise ValueError(
            "a Rerun export needs a file (--rerun FILE.rrd) or a viewer (--rerun-spawn)"
        )
    if not log.ticks:
        raise ValueError(f"{log.path} holds no ticks to export")
    rr = import_rerun()
    import rerun.blueprint as rrb

    rec = rr.RecordingStream(APPLICATION_ID)
    rr.set_log_time_enabled(False, recording=rec)  # the episode's own clock is the timeline
    sinks = []
    if spawn:
        rec.spawn(connect=False, default_blueprint=_blueprint(rrb))
        sinks.append(rr.GrpcSink())
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sinks.append(rr.FileSink(str(path)))
    rec.set_sinks(*sinks, default_blueprint=_blueprint(rrb))
    rec.send_recording_name(Path(log.path).name)
    _series_names(rr, rec, log, logged_positions(log).shape[1])
    counts = _log_ticks(rr, rec, log)
    rec.flush()
    rec.disconnect()
    return {"rerun": str(path) if path is not None else None, "viewer": spawn, **counts}
