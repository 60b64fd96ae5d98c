"""Pictures of the D'Claw tasks: what the agent sees, and a wide view of the valve scene.

    python docs/make_dclaw_pictures.py            # writes the three PNGs next to this script

* ``dclaw_pose_task.png``, ``dclaw_valve_task.png``: the 64x64 task-camera frame at reset of the
  Fixed, Random and RandomDynamics variants (Pose; Turn), each enlarged 4x with nearest-neighbour
  pixels, left to right.
* ``dclaw_valve_wide.png``: the valve scene at 480x360 from the "wide" camera, with shadows, the
  fingers lowered between the spokes, and the green marker spoke short of the goal bar (the Turn
  target, pi).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SCALE = 4  # 64 -> 256 pixels
GAP = 4  # pixels of white between panels


def enlarge(frame: np.ndarray, scale: int = SCALE) -> np.ndarray:
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def side_by_side(frames: list[np.ndarray]) -> np.ndarray:
    gap = np.full((frames[0].shape[0], GAP, 3), 255, dtype=np.uint8)
    parts = []
    for frame in frames:
        parts += [frame, gap]
    return np.concatenate(parts[:-1], axis=1)


def task_views(task: str, seed: int) -> np.ndarray:
    from slac_train.envs import make_env

    frames = []
    for variant in ("fixed", "random", "random-dynamics"):
        env = make_env(f"dclaw-{task}-{variant}", seed=seed)
        try:
            obs, _ = env.reset()
            frames.append(enlarge(obs))
        finally:
            env.close()
    return side_by_side(frames)


def wide_view() -> np.ndarray:
    from robots.dclaw.sim import DClawSim

    with DClawSim("valve", fast_render=False, show_goal=True) as sim:
        sim.reset(joint_positions=np.array([-0.3, 0.2, 0.0] * 3), valve_angle=2.4)
        sim.set_goal_angle(np.pi)
        return sim.render("wide", height=360, width=480)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from slac_train.envs import select_gl_backend

    select_gl_backend()  # before anything imports mujoco
    import imageio.v3 as iio

    args.out.mkdir(parents=True, exist_ok=True)
    pictures = {
        "dclaw_pose_task.png": task_views("pose", args.seed),
        "dclaw_valve_task.png": task_views("turn", args.seed),
        "dclaw_valve_wide.png": wide_view(),
    }
    for name, image in pictures.items():
        path = args.out / name
        iio.imwrite(path, image)
        print(f"wrote {path} ({image.shape[1]}x{image.shape[0]})")


if __name__ == "__main__":
    main()
