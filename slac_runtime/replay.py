"""Reading logged episodes back: summaries, videos with joint plots, and policy re-runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slac_runtime.episode_log import EpisodeLog
from slac_runtime.policy import OnnxPolicy


def summarize(log: EpisodeLog) -> dict[str, Any]:
    """Duration, ticks, timing and robot statistics of one logged episode."""
    ticks = log.ticks
    out: dict[str, Any] = {"log": str(log.path), "ticks": len(ticks), "truncated": log.truncated}
    if ticks:
        out["duration_s"] = ticks[-1]["t"] - ticks[0]["t"]
        lateness = np.array([t["lateness_s"] for t in ticks]) * 1e3
        out["jitter_p50_ms"] = float(np.percentile(lateness, 50))
        out["jitter_p99_ms"] = float(np.percentile(lateness, 99))
        out["jitter_max_ms"] = float(lateness.max())
    policy = log.policy_ticks()
    out["policy_steps"] = len(policy)
    if policy:
        out["frame_age_p50_ms"] = float(np.percentile([p["policy"]["frame_age_s"] for p in policy], 50) * 1e3)
        out["inference_p99_ms"] = float(np.percentile([p["policy"]["inference_s"] for p in policy], 99) * 1e3)
    out["overruns"] = sum(1 for e in log.events if e.get("event") == "overrun")
    out["stale_holds"] = sum(1 for e in log.events if e.get("event") == "hold")
    footer = log.footer or {}
    for key in ("retries", "failures", "drops", "stop_reason", "success"):
        if key in footer:
            out[key] = footer[key]
    if "success" not in out and ticks and "success" in ticks[-1]:
        out["success"] = ticks[-1]["success"]
    return out


def policy_differences(log: EpisodeLog, policy_path: str | Path) -> np.ndarray:
    """Re-run a policy on the logged frames and actions; per policy step, max |action difference|.

    The policy sees exactly what the logged run's policy saw: the same frames, the same previous
    actions and the same noise draws. Zero for the policy that produced the log.
    """
    policy = OnnxPolicy(policy_path)
    steps = log.policy_ticks()
    if not steps:
        raise ValueError(f"{log.path} has no policy steps to re-run")
    diffs = []
    previous = None
    for tick in steps:
        p = tick["policy"]
        if p["frame_seq"] not in log.frames:
            raise ValueError(f"{log.path}: frame {p['frame_seq']} was not logged (run with frame logging)")
        frame = log.frames[p["frame_seq"]][1]
        deterministic = p.get("noise") is None
        noise = None if deterministic else np.asarray(p["noise"], dtype=np.float32)
        if previous is None:
            out = policy.reset(frame, deterministic, noise)
        else:
            out = policy.step(frame, previous, deterministic, noise)
        logged = np.asarray(p["action"], dtype=np.float32)
        diffs.append(float(np.max(np.abs(out.action - logged))))
        previous = logged
    return np.array(diffs)


def _plot_panel(positions: np.ndarray, goals: np.ndarray, cursor: int, size: tuple[int, int]) -> np.ndarray:
    """Joint positions (solid) and goals (thin) over the episode, one row per finger, with a cursor."""
    import cv2

    h, w = size
    panel = np.full((h, w, 3), 255, np.uint8)
    n_ticks, n_joints = positions.shape
    rows = 3 if n_joints % 3 == 0 else 1
    per_row = n_joints // rows
    colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]
    lo = min(positions.min(), goals.min()) - 0.1
    hi = max(positions.max(), goals.max()) + 0.1
    row_h = h // rows
    xs = np.linspace(4, w - 4, max(n_ticks, 2)).astype(np.int32)
    for r in range(rows):
        top = r * row_h
        cv2.rectangle(panel, (2, top + 2), (w - 3, top + row_h - 3), (200, 200, 200), 1)
        for j in range(per_row):
            k = r * per_row + j
            for series, thick in ((goals[:, k], 1), (positions[:, k], 2)):
                ys = (top + row_h - 4 - (series - lo) / (hi - lo) * (row_h - 8)).astype(np.int32)
                pts = np.stack([xs[:n_ticks], ys], axis=1).reshape(-1, 1, 2)
                cv2.polylines(panel, [pts], False, colors[j % 3], thick)
    x = int(xs[min(cursor, n_ticks - 1)])
    cv2.line(panel, (x, 0), (x, h - 1), (0, 0, 0), 1)
    return panel


def write_video(log: EpisodeLog, out: str | Path, scale: int = 4) -> tuple[Path, int]:
    """An mp4 of the logged camera frames beside plots of joint positions and goals.

    One video frame per policy step (at the policy rate); returns the path and the frame count.
    """
    import cv2

    steps = [t for t in log.policy_ticks() if t["policy"]["frame_seq"] in log.frames]
    if not steps:
        raise ValueError(f"{log.path} has no logged frames to make a video of")
    positions = log.array("positions")
    goals = np.array([t.get("sent", t.get("goal")) for t in log.ticks])
    first = log.frames[steps[0]["policy"]["frame_seq"]][1]
    fh, fw = first.shape[0] * scale, first.shape[1] * scale
    period = log.header.get("policy_metadata", {})
    fps = 1.0 / (period.get("control_period_s", 0.05) * period.get("action_repeat", 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (fw * 2, fh))
    if not writer.isOpened():
        raise OSError(f"OpenCV could not open {out} for writing")
    tick_index = {t["tick"]: i for i, t in enumerate(log.ticks)}
    try:
        for t in steps:
            image = log.frames[t["policy"]["frame_seq"]][1]
            big = cv2.resize(image, (fw, fh), interpolation=cv2.INTER_NEAREST)
            panel = _plot_panel(positions, goals, tick_index[t["tick"]], (fh, fw))
            canvas = np.concatenate([big, panel], axis=1)
            cv2.putText(canvas, f"step {t['policy']['step']}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (255, 255, 255), 1, cv2.LINE_AA)
            writer.write(np.ascontiguousarray(canvas[..., ::-1]))  # OpenCV writes BGR
    finally:
        writer.release()
    return out, len(steps)
