"""A tiny pixel task for the SLAC learner's tests: no simulator, a frame in microseconds.

A point moves on a line under a first-order velocity model; the frame shows it as a bright square
on a gradient. Registered (and removed again) by the :func:`toy_task` context manager.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from slac_train.envs import PixelTask, TaskSpec
from slac_train.envs import registry as task_registry

TOY_TASK = "slac-toy-point"


class ToyPointTask(PixelTask):
    action_dim = 2
    control_period_s = 0.05

    def __init__(
        self, image_size: int = 64, length: int = 24, terminate_at_edge: bool = False
    ) -> None:
        self.image_size = image_size
        self.length = length
        self.terminate_at_edge = terminate_at_edge
        ramp = np.linspace(20, 90, image_size, dtype=np.float32)
        self._background = np.stack(
            np.broadcast_arrays(ramp[:, None], ramp[None, :], 60.0), -1
        ).astype(np.uint8)

    def reset(self, rng: np.random.Generator) -> dict:
        self.pos = rng.uniform(-0.8, 0.8, size=2)
        self.vel = np.zeros(2)
        self.t = 0
        return {}

    def step(self, action: np.ndarray) -> tuple[float, bool, bool, dict]:
        self.vel = 0.7 * self.vel + 0.3 * np.asarray(action, dtype=np.float64)
        self.pos = self.pos + 0.15 * self.vel
        self.t += 1
        terminated = bool(self.terminate_at_edge and np.any(np.abs(self.pos) >= 1.0))
        self.pos = np.clip(self.pos, -1.0, 1.0)
        reward = float(1.0 - np.abs(self.pos).mean())
        return (
            reward,
            terminated,
            self.t >= self.length,
            {"success": float(np.abs(self.pos).max() < 0.2)},
        )

    def render(self) -> np.ndarray:
        frame = self._background.copy()
        size = self.image_size
        r, c = ((self.pos + 1.0) / 2.0 * (size - 8)).astype(int)
        frame[r : r + 8, c : c + 8] = (250, 230, 40)
        return frame


@contextmanager
def toy_task(
    name: str = TOY_TASK, action_repeat: int = 2, length: int = 24, terminate_at_edge: bool = False
):
    """Register the toy task under ``name`` for the duration of the block."""
    spec = TaskSpec(
        name=name,
        suite="test",
        action_repeat=action_repeat,
        episode_env_steps=length,
        make_task=lambda image_size=64, **kw: ToyPointTask(
            image_size, length, terminate_at_edge, **kw
        ),
        description="test-only point mass",
    )
    task_registry.register_task(spec)
    try:
        yield spec
    finally:
        task_registry.unregister_task(name)
