"""Pixel environments for SLAC: DM Control suite, Gymnasium MuJoCo image tasks, D'Claw tasks.

``make_env(task, seed)`` returns a Gymnasium environment whose observation is the 64x64x3 uint8
RGB camera image and whose action space is Box(-1, 1).

Importing this package also registers every task with Gymnasium as ``slac/<task>-v0``
(:mod:`slac_train.envs.gymnasium_ids`), so that ``gymnasium.make("slac/cheetah-run-v0")`` works.
"""

from __future__ import annotations

from typing import Any

from slac_train.envs.base import PixelEnv, PixelTask
from slac_train.envs.gymnasium_ids import gymnasium_id, register_gymnasium_envs
from slac_train.envs.registry import (
    TaskSpec,
    UnknownTaskError,
    describe_tasks,
    get_task_spec,
    register_task,
    task_names,
)
from slac_train.envs.rendering import select_gl_backend


def make_env(
    task: str,
    seed: int | None = 0,
    action_repeat: int | None = None,
    image_size: int = 64,
    **task_kwargs: Any,
) -> PixelEnv:
    """Build the registered ``task`` as a :class:`PixelEnv`.

    ``action_repeat=None`` uses the paper's default for the task; ``task_kwargs`` go to the task
    (e.g. ``fast_render=False``, or D'Claw randomisation switches).
    """
    spec = get_task_spec(task)
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    repeat = spec.action_repeat if action_repeat is None else int(action_repeat)
    if repeat < 1:
        raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
    select_gl_backend()
    pixel_task = spec.make_task(image_size=image_size, **task_kwargs)
    return PixelEnv(pixel_task, task_name=spec.name, action_repeat=repeat, seed=seed)


register_gymnasium_envs()


__all__ = [
    "PixelEnv",
    "PixelTask",
    "TaskSpec",
    "UnknownTaskError",
    "describe_tasks",
    "get_task_spec",
    "gymnasium_id",
    "make_env",
    "register_gymnasium_envs",
    "register_task",
    "task_names",
]
