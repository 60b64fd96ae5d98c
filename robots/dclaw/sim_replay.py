"""Replaying a logged D'Claw episode in simulation (``slac-replay LOG --sim``).

The logged goals (``sent``: what the driver actually sent) are applied tick by tick to a
:class:`~robots.dclaw.sim.DClawSim` of the valve scene that starts at the logged first joint
positions, with the goal the logged ease-in ended on. Each tick the simulation advances by the
logged time to the next tick (one 0.05 s control period when the run kept its rate). Before tick
``i``'s goal is applied the simulated joints are compared with the positions logged at tick ``i``
(which the control loop read before sending that goal): the tracking error says how well the
simulator predicts the robot under the same commands.

The video shows, per tick, the camera frame the policy last saw (left) beside the simulated
task-camera frame (right), both upscaled, with the tracking error printed.

MuJoCo is imported inside :func:`replay_in_sim`, after the OpenGL backend is chosen, so that the
entry point can be looked up without loading the simulator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slac_runtime.episode_log import EpisodeLog
from slac_runtime.replay import (
    control_period_s,
    initial_goal,
    logged_goals,
    logged_positions,
    open_video,
    put_label,
    tick_times,
    tracking_stats,
)

VIDEO_SCALE = 4  # each 64x64 frame becomes 256x256


def replay_in_sim(
    log: EpisodeLog, video_path: str | Path, scale: int = VIDEO_SCALE, valve_angle: float = 0.0
) -> dict[str, Any]:
    """Apply the logged goals to the simulated D'Claw; write the side-by-side video; return stats.

    Stats: ``ticks``; ``max_tracking_error_rad``, ``p95_tracking_error_rad`` (of each tick's largest
    joint error), ``mean_tracking_error_rad`` (over ticks and joints) and
    ``max_tracking_error_per_joint_rad`` of |logged − simulated joint positions|; the final
    simulated valve angle, ``video`` and ``frames`` (one per tick). The valve's angle is not logged:
    it starts at ``valve_angle``.
    """
    from robots.mujoco_gl import select_gl_backend

    select_gl_backend()
    import cv2

    from robots.dclaw.sim import DClawSim

    if not log.ticks:
        raise ValueError(f"{log.path} holds no ticks to replay")
    positions = logged_positions(log)
    goals = logged_goals(log)
    times = tick_times(log)
    period = control_period_s(log)
    meta = log.header.get("policy_metadata", {})
    if log.frames:
        height, width = next(iter(log.frames.values()))[1].shape[:2]
    else:
        height, width = int(meta.get("image_height", 64)), int(meta.get("image_width", 64))
    fh, fw = height * scale, width * scale
    blank = np.zeros((height, width, 3), np.uint8)

    sim = DClawSim("valve", render_size=height, show_goal=False)
    errors = []
    video_path = Path(video_path)
    writer = open_video(video_path, 1.0 / period, 2 * fw, fh)
    try:
        sim.reset(joint_positions=positions[0], valve_angle=valve_angle)
        sim.set_joint_goals(initial_goal(log))
        camera = None  # the newest logged frame at this tick: what the policy last saw
        for i, tick in enumerate(log.ticks):
            error = np.abs(sim.joint_positions() - positions[i])
            errors.append(error)
            if tick.get("policy") is not None and log.policy_frame(tick) is not None:
                camera = log.policy_frame(tick)
            left = cv2.resize(
                blank if camera is None else camera, (fw, fh), interpolation=cv2.INTER_NEAREST
            )
            right = cv2.resize(
                sim.render(height=height, width=width), (fw, fh), interpolation=cv2.INTER_NEAREST
            )
            put_label(left, f"logged  tick {tick['tick']}", (6, 18))
            if camera is None:
                put_label(left, "no frame logged yet", (6, fh // 2))
            put_label(right, "simulation", (6, 18))
            put_label(
                right, f"error max {error.max():.3f} mean {error.mean():.3f} rad", (6, fh - 10), 0.4
            )
            canvas = np.concatenate([left, right], axis=1)
            writer.write(np.ascontiguousarray(canvas[..., ::-1]))  # OpenCV writes BGR
            sim.set_joint_goals(goals[i])
            dt = times[i + 1] - times[i] if i + 1 < len(times) else period
            sim.step(max(1, round(dt / sim.model.opt.timestep)))
        valve = sim.valve_angle()
        warnings = sim.warnings()
    finally:
        writer.release()
        sim.close()
    return {
        "ticks": len(errors),
        **tracking_stats(np.array(errors)),
        "final_valve_angle_rad": valve,
        "mujoco_warnings": warnings or None,
        "video": str(video_path),
        "frames": len(errors),
    }
