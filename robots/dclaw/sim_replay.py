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

import math
from pathlib import Path
from typing import Any

import numpy as np

from robots.dclaw.description import DCLAW
from slac_runtime.angles import wrap_angle
from slac_runtime.episode_log import EpisodeLog
from slac_runtime.log_series import (
    control_period_s,
    initial_goal,
    logged_goals,
    logged_positions,
    tick_times,
)
from slac_runtime.robot_replay import tracking_stats
from slac_runtime.video import VideoWriter, put_label

VIDEO_SCALE = 4  # each 64x64 frame becomes 256x256
# The valve's target where the logged task fixes one (ROBEL's Turn-Fixed: valve 0 -> pi). The
# episode log holds no valve angle (the runtime reads only the joints), so the simulation's valve
# is the only one a replay can show.
FIXED_VALVE_TARGETS_RAD = {"dclaw-turn": math.pi, "dclaw-turn-fixed": math.pi}


def replay_in_sim(
    log: EpisodeLog,
    video_path: str | Path,
    scale: int = VIDEO_SCALE,
    valve_angle: float = 0.0,
    valve_target: float | None = None,
) -> dict[str, Any]:
    """Apply the logged goals to the simulated D'Claw; write the side-by-side video; return stats.

    Stats: ``ticks``; ``max_tracking_error_rad``, ``p95_tracking_error_rad`` (of each tick's largest
    joint error), ``mean_tracking_error_rad`` (over ticks and joints) and
    ``max_tracking_error_per_joint_rad`` of |logged − simulated joint positions|; the final
    simulated valve angle (and, with a target, its wrapped error wrap(target − valve)), ``video``
    and ``frames`` (one per tick). The valve's angle is not logged: it starts at ``valve_angle``.
    ``valve_target`` defaults to the logged task's fixed target, where it has one.
    """
    from robots.mujoco_gl import select_gl_backend

    select_gl_backend()
    from robots.dclaw.sim import DClawSim

    if not log.ticks:
        raise ValueError(f"{log.path} holds no ticks to replay")
    positions = logged_positions(log)
    goals = logged_goals(log)
    times = tick_times(log)
    period = control_period_s(log)
    meta = log.header.get("policy_metadata", {})
    if valve_target is None:
        valve_target = FIXED_VALVE_TARGETS_RAD.get(meta.get("task"))
    if log.frames:
        height, width = next(iter(log.frames.values()))[1].shape[:2]
    else:
        height, width = int(meta.get("image_height", 64)), int(meta.get("image_width", 64))

    sim = DClawSim("valve", render_size=height, show_goal=False)
    errors = []
    video_path = Path(video_path)
    try:
        sim.reset(joint_positions=positions[0], valve_angle=valve_angle)
        sim.set_joint_goals(initial_goal(log))
        camera = None  # the newest logged frame at this tick: what the policy last saw
        with VideoWriter(video_path, 1.0 / period) as writer:
            for i, tick in enumerate(log.ticks):
                error = np.abs(sim.joint_positions() - positions[i])
                errors.append(error)
                if tick.get("policy") is not None and log.policy_frame(tick) is not None:
                    camera = log.policy_frame(tick)
                view = sim.render(height=height, width=width)
                writer.write(
                    _canvas(tick, camera, view, error, sim.valve_angle(), valve_target, scale)
                )
                sim.set_joint_goals(goals[i])
                dt = times[i + 1] - times[i] if i + 1 < len(times) else period
                sim.step(max(1, round(dt / sim.model.opt.timestep)))
        valve = sim.valve_angle()
        warnings = sim.warnings()
    finally:
        sim.close()
    valve_report = {"final_valve_angle_rad": valve}
    if valve_target is not None:
        valve_report["valve_target_rad"] = valve_target
        valve_report["final_valve_error_rad"] = wrap_angle(valve_target - valve)
    return {
        "ticks": len(errors),
        **tracking_stats(np.array(errors), DCLAW.replay_tolerance),
        **valve_report,
        "mujoco_warnings": warnings or None,
        "video": str(video_path),
        "frames": len(errors),
    }


def _canvas(
    tick: dict[str, Any],
    camera: np.ndarray | None,
    view: np.ndarray,
    error: np.ndarray,
    valve: float,
    target: float | None,
    scale: int,
) -> np.ndarray:
    """One video frame: the logged camera frame | the simulated view, upscaled, with labels."""
    import cv2

    fh, fw = view.shape[0] * scale, view.shape[1] * scale
    left = cv2.resize(
        np.zeros_like(view) if camera is None else camera, (fw, fh), interpolation=cv2.INTER_NEAREST
    )
    right = cv2.resize(view, (fw, fh), interpolation=cv2.INTER_NEAREST)
    put_label(left, f"logged  tick {tick['tick']}", (6, 18))
    if camera is None:
        put_label(left, "no frame logged yet", (6, fh // 2))
    put_label(right, "simulation", (6, 18))
    put_label(right, f"valve {valve:+.2f} rad", (6, 36), 0.4)
    if target is not None:
        put_label(
            right,
            f"target {target:+.2f}, error {wrap_angle(target - valve):+.2f} rad",
            (6, 52),
            0.4,
        )
    put_label(
        right, f"joint error max {error.max():.3f} mean {error.mean():.3f} rad", (6, fh - 10), 0.38
    )
    return np.concatenate([left, right], axis=1)
