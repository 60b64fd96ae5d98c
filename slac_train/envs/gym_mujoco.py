"""Gymnasium MuJoCo tasks from pixels (the SLAC paper's HalfCheetah, Walker2d, Hopper, Ant).

The tasks keep Gymnasium's termination semantics (an unhealthy Hopper, Walker2d or Ant terminates
the episode; the 1000-step time limit truncates it). The agent sees Gymnasium's own tracking
camera, rendered at 64x64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slac_train.envs.base import PixelTask
from slac_train.envs.registry import TaskSpec, register_task

# name -> (Gymnasium id, action repeat from the SLAC paper)
GYM_TASKS = {
    "halfcheetah": ("HalfCheetah-v5", 1),
    "walker2d": ("Walker2d-v5", 4),
    "hopper": ("Hopper-v5", 2),
    "ant": ("Ant-v5", 4),
}
EPISODE_ENV_STEPS = 1000


class GymMujocoTask(PixelTask):
    def __init__(self, env_id: str, image_size: int = 64, fast_render: bool = True):
        import gymnasium as gym

        self._env = gym.make(
            env_id,
            render_mode="rgb_array",
            width=image_size,
            height=image_size,
            max_episode_steps=EPISODE_ENV_STEPS,
        )
        space = self._env.action_space
        self._low = space.low.astype(np.float64)
        self._high = space.high.astype(np.float64)
        self.action_dim = int(space.shape[0])
        self.control_period_s = float(self._env.unwrapped.dt)
        self.image_size = image_size
        self.fast_render = fast_render
        self._flags_set = False

    def reset(self, rng: np.random.Generator) -> dict[str, Any]:
        self._env.reset(seed=int(rng.integers(2**31 - 1)))
        return {}

    def step(self, action: np.ndarray) -> tuple[float, bool, bool, dict[str, Any]]:
        scaled = self._low + (np.asarray(action, dtype=np.float64) + 1.0) * 0.5 * (
            self._high - self._low
        )
        _, reward, terminated, truncated, _ = self._env.step(scaled)
        return float(reward), bool(terminated), bool(truncated), {}

    def render(self) -> np.ndarray:
        if self.fast_render and not self._flags_set:
            self._disable_shadows()
        return np.array(self._env.render(), dtype=np.uint8, copy=True)

    def _disable_shadows(self) -> None:
        import mujoco

        renderer = self._env.unwrapped.mujoco_renderer
        viewer = renderer._get_viewer(
            "rgb_array"
        )  # Gymnasium's offscreen viewer (public since 0.27)
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._flags_set = True

    def close(self) -> None:
        self._env.close()


def _register() -> None:
    for name, (env_id, repeat) in GYM_TASKS.items():

        def make_task(image_size: int = 64, _id=env_id, **kwargs: Any) -> GymMujocoTask:
            return GymMujocoTask(_id, image_size=image_size, **kwargs)

        register_task(
            TaskSpec(
                name=name,
                suite="gym",
                make_task=make_task,
                action_repeat=repeat,
                episode_env_steps=EPISODE_ENV_STEPS,
                description=f"Gymnasium {env_id} from pixels",
                tags=("paper",),
            )
        )


_register()
