"""A pixel task at its control period, and the Gymnasium environment that adds action repeat.

Every suite (DM Control, Gymnasium MuJoCo, D'Claw) implements :class:`PixelTask`: one simulator
step per ``step()`` with no rendering, and ``render()`` for the 64x64 RGB frame. :class:`PixelEnv`
turns that into the agent's environment: ``action_repeat`` simulator steps per agent step, rewards
summed, early stop on termination, and exactly one render per agent step.
"""

from __future__ import annotations

import abc
from typing import Any

import gymnasium as gym
import numpy as np


class PixelTask(abc.ABC):
    """One task at its environment control period.

    ``step`` returns ``(reward, terminated, truncated, info)``; truncation at the task's time limit
    is the task's job. ``render`` returns a fresh ``uint8[H, W, 3]`` RGB array.
    """

    action_dim: int
    control_period_s: float  # seconds of simulated time per environment step
    image_size: int

    @abc.abstractmethod
    def reset(self, rng: np.random.Generator) -> dict[str, Any]:
        """Start an episode with randomness drawn from ``rng``; return an info dict."""

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> tuple[float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (in [-1, 1]) for one control period."""

    @abc.abstractmethod
    def render(self) -> np.ndarray: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class PixelEnv(gym.Env):
    """Gymnasium environment over a :class:`PixelTask` with action repeat.

    ``info["env_steps"]`` is the number of simulator steps the agent step consumed, so that
    counters can report simulator steps as the paper's plots do.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self, task: PixelTask, task_name: str, action_repeat: int, seed: int | None = None
    ):
        if action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        self.task = task
        self.task_name = task_name
        self.action_repeat = int(action_repeat)
        self.render_mode = "rgb_array"
        # One frame per agent step: a video of the observations plays in real time at this rate.
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.agent_period_s, 3)}
        size = task.image_size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (task.action_dim,), dtype=np.float32)
        self._seed = seed
        self._rng: np.random.Generator | None = None
        self._last_obs: np.ndarray | None = None
        self._needs_reset = True

    @property
    def control_period_s(self) -> float:
        return self.task.control_period_s

    @property
    def agent_period_s(self) -> float:
        return self.task.control_period_s * self.action_repeat

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        elif self._rng is None:
            self._rng = np.random.default_rng(self._seed)
        info = dict(self.task.reset(self._rng))
        info["env_steps"] = 0
        self._needs_reset = False
        self._last_obs = self.task.render()
        return self._last_obs, info

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError(
                f"{self.task_name}: step() called before reset() or after the episode ended"
            )
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(
                f"{self.task_name}: expected an action of shape {self.action_space.shape}, "
                f"got {action.shape}"
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(f"{self.task_name}: action contains NaN or inf: {action}")
        action = np.clip(action, -1.0, 1.0)
        total_reward = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        env_steps = 0
        for _ in range(self.action_repeat):
            reward, terminated, truncated, info = self.task.step(action)
            total_reward += float(reward)
            env_steps += 1
            if terminated or truncated:
                break
        info = dict(info)
        info["env_steps"] = env_steps
        self._needs_reset = terminated or truncated
        self._last_obs = self.task.render()
        return self._last_obs, total_reward, terminated, truncated, info

    def render(self):
        return None if self._last_obs is None else self._last_obs.copy()

    def close(self):
        self.task.close()
