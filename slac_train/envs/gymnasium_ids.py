"""Every task of the registry under a Gymnasium id, for Gymnasium-based code (SB3, CleanRL, ...).

Id rule: ``slac/<task>-v0`` for each task name of ``slac-train --list-tasks`` --
``slac/cheetah-run-v0``, ``slac/walker2d-v0``, ``slac/dclaw-turn-v0``,
``slac/dclaw-turn-random-dynamics-v0``. The version goes up when a task's dynamics, reward or
observation change in a way that makes old results incomparable.

Importing :mod:`slac_train.envs` registers the ids (again and again at no cost). Gymnasium 1.x
has no plugin loading, so code that cannot import us names the module in the id and Gymnasium
imports it: ``gymnasium.make("slac_train.envs:slac/dclaw-turn-v0")`` (handy for a script that takes
``--env-id``).

``gymnasium.make(id, **kwargs)`` passes ``seed`` (used by ``reset()`` without a seed; ``None``
draws fresh entropy, as Gymnasium environments do), ``action_repeat``, ``image_size`` and the task's
own switches to :func:`slac_train.envs.make_env`. The observation is ``uint8[image_size,
image_size, 3]`` RGB, 64x64 by default; the action is ``float32`` in [-1, 1].

``env.spec.max_episode_steps`` is the task's episode length in agent steps at its default action
repeat, so Gymnasium's ``TimeLimit`` truncates exactly where the task itself does. With another
``action_repeat=`` the episode has another number of agent steps: pass ``max_episode_steps=-1``
as well and the task's own limit (its length in simulator steps) ends the episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from slac_train.envs.base import PixelEnv
from slac_train.envs.registry import get_task_spec, task_names

NAMESPACE = "slac"
VERSION = 0
ENTRY_POINT = "slac_train.envs.gymnasium_ids:make_gymnasium_env"


def gymnasium_id(task: str) -> str:
    """The Gymnasium id of registry task ``task``: ``slac/<task>-v0``."""
    return f"{NAMESPACE}/{task}-v{VERSION}"


def make_gymnasium_env(
    task: str,
    seed: int | None = None,
    action_repeat: int | None = None,
    image_size: int = 64,
    render_mode: str | None = None,
    **task_kwargs: Any,
) -> PixelEnv:
    """Gymnasium's entry point for every ``slac/*`` id (``task`` comes from the id's spec).

    ``render_mode`` may be ``None`` or ``"rgb_array"``: ``render()`` always returns the last
    observation; Gymnasium adds its own wrappers for ``"rgb_array_list"`` and ``"human"``.
    """
    from slac_train.envs import make_env

    if render_mode not in (None, "rgb_array"):
        raise ValueError(
            f"{gymnasium_id(task)}: render_mode must be None or 'rgb_array', got {render_mode!r}"
        )
    return make_env(
        task, seed=seed, action_repeat=action_repeat, image_size=image_size, **task_kwargs
    )


# Read by gymnasium.make to choose render wrappers before it calls the entry point.
make_gymnasium_env.metadata = PixelEnv.metadata  # type: ignore[attr-defined]


def register_gymnasium_envs() -> list[str]:
    """Register every registry task with Gymnasium; return the ids. Safe to call repeatedly."""
    ids = []
    for task in task_names():
        env_id = gymnasium_id(task)
        ids.append(env_id)
        existing = gym.registry.get(env_id)
        if existing is not None and existing.entry_point == ENTRY_POINT:
            continue
        gym.register(
            id=env_id,
            entry_point=ENTRY_POINT,
            max_episode_steps=get_task_spec(task).episode_agent_steps,
            kwargs={"task": task},
        )
    return ids
