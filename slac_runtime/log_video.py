"""A video of a logged episode: the camera frames the policy used beside plots of the joints.

H.264 through :class:`~slac_runtime.video.VideoWriter`; drawing with OpenCV, imported when a
video is made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from slac_runtime.episode_log import EpisodeLog
from slac_runtime.log_series import logged_goals, logged_positions, policy_period_s
from slac_runtime.video import VideoWriter, put_label

# RGB, by a joint's place in its row: blue, orange, green, red, purple, brown.
_JOINT_COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
]
_LEGEND_ENTRY_W = 40  # px per joint name in a row's legend
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


def _rows(n_joints: int, joint_groups: tuple[int, ...]) -> list[range]:
    """The joints of each plotted row: one row per group (a finger, a leg) when the groups cover
    the joints, else one row of all of them."""
    if sum(joint_groups) != n_joints:
        return [range(n_joints)]
    starts = np.cumsum((0, *joint_groups))
    return [range(a, b) for a, b in zip(starts[:-1], starts[1:])]


def _plot_panel(
    positions: np.ndarray,
    goals: np.ndarray,
    cursor: int,
    size: tuple[int, int],
    joint_names: list[str] | None = None,
    joint_groups: tuple[int, ...] = (),
) -> np.ndarray:
    """Joint positions (thick) and goals (thin) over the episode, one box per joint group (the
    robot's limbs; one box without them), with a rad scale, a legend of joint names (coloured as
    their lines) where it fits, and a cursor at tick ``cursor``.

    ``positions``/``goals`` are ``[T, J]`` (rad); the panel is ``uint8[h, w, 3]`` RGB.
    """
    import cv2

    h, w = size
    panel = np.full((h, w, 3), 255, np.uint8)
    n_ticks, n_joints = positions.shape
    rows = _rows(n_joints, joint_groups)
    names = list(joint_names or []) or [f"joint {k}" for k in range(n_joints)]
    lo = float(min(positions.min(), goals.min())) - 0.1
    hi = float(max(positions.max(), goals.max())) + 0.1
    row_h = (h - 12) // len(rows)  # the bottom 12 px hold the key
    xs = np.linspace(_MARGIN + 3, w - 5, max(n_ticks, 2)).astype(np.int32)[:n_ticks]
    for r, joints in enumerate(rows):
        top = r * row_h

        def to_y(v, top=top):  # the plot spans top + 16 .. top + row_h - 5
            return top + row_h - 5 - (v - lo) / (hi - lo) * (row_h - 21)

        _row_scale(panel, top, row_h, lo, hi, to_y)
        legend = _MARGIN + 4 + len(joints) * _LEGEND_ENTRY_W <= w
        for j, k in enumerate(joints):
            colour = _JOINT_COLOURS[j % len(_JOINT_COLOURS)]
            for series, thick in ((goals[:, k], 1), (positions[:, k], 2)):
                pts = np.stack([xs, to_y(series).astype(np.int32)], axis=1).reshape(-1, 1, 2)
                cv2.polylines(panel, [pts], False, colour, thick, cv2.LINE_AA)
            if legend:  # the joint's name in its line's colour
                _text(panel, names[k], (_MARGIN + 4 + j * _LEGEND_ENTRY_W, top + 10), colour, 0.36)
    x = int(xs[min(cursor, n_ticks - 1)])
    cv2.line(panel, (x, 0), (x, len(rows) * row_h - 1), (0, 0, 0), 1)
    _text(panel, "rad; thick: position, thin: goal", (4, h - 3))
    return panel


def write_video(
    log: EpisodeLog, out: str | Path, scale: int = 4, joint_groups: tuple[int, ...] = ()
) -> tuple[Path, int]:
    """An H.264 mp4 of the logged camera frames (upscaled ``scale`` times) beside plots of the joint
    positions and goals, a row per joint group of the robot (``joint_groups``, its
    description's), with a cursor at the frame's tick.

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
    fps = 1.0 / policy_period_s(log)
    joint_names = list(meta.get("joint_names") or [])
    tick_index = {t["tick"]: i for i, t in enumerate(log.ticks)}
    out = Path(out)
    with VideoWriter(out, fps) as writer:
        for t in steps:
            image = log.policy_frame(t)
            big = cv2.resize(image, (fw, fh), interpolation=cv2.INTER_NEAREST)
            panel = _plot_panel(
                positions, goals, tick_index[t["tick"]], (fh, fw), joint_names, joint_groups
            )
            canvas = np.ascontiguousarray(np.concatenate([big, panel], axis=1))
            put_label(canvas, f"step {t['policy']['step']}  tick {t['tick']}", (6, 18))
            writer.write(canvas)
    return out, len(steps)
