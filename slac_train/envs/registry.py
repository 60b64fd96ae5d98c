"""The task registry: every environment SLAC can learn in, by short name.

Suites register :class:`TaskSpec` objects when their registration module is imported; no simulator
is imported until a task is made.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Modules whose import registers a suite's tasks (cheap: they import no simulator at module level).
_SUITE_MODULES = (
    "slac_train.envs.dmc",
    "slac_train.envs.gym_mujoco",
    "slac_train.envs.dclaw",
)


@dataclass(frozen=True)
class TaskSpec:
    """A registered task.

    ``make_task(image_size=..., **kwargs)`` builds the :class:`~slac_train.envs.base.PixelTask`;
    ``action_repeat`` is the paper's default; ``episode_env_steps`` the documented episode length in
    simulator (environment) steps.
    """

    name: str
    suite: str
    make_task: Callable[..., Any]
    action_repeat: int
    episode_env_steps: int
    description: str = ""
    robot: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def episode_agent_steps(self) -> int:
        return -(-self.episode_env_steps // self.action_repeat)


class UnknownTaskError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


_REGISTRY: dict[str, TaskSpec] = {}
_loaded = False


def register_task(spec: TaskSpec) -> None:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"task {spec.name!r} is registered twice")
    if spec.action_repeat < 1:
        raise ValueError(f"task {spec.name!r}: action_repeat must be >= 1")
    _REGISTRY[spec.name] = spec


def unregister_task(name: str) -> None:
    """Remove a task (tests register throw-away tasks and remove them again)."""
    _REGISTRY.pop(name, None)


def _load_suites() -> None:
    global _loaded
    if not _loaded:
        for module in _SUITE_MODULES:
            importlib.import_module(module)
        _loaded = True


def task_names(suite: str | None = None) -> list[str]:
    _load_suites()
    return sorted(n for n, s in _REGISTRY.items() if suite is None or s.suite == suite)


def get_task_spec(name: str) -> TaskSpec:
    _load_suites()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"did you mean: {', '.join(close)}?" if close else "no close match"
        raise UnknownTaskError(
            f"unknown task {name!r} ({hint}); `slac-train --list-tasks` lists all "
            f"{len(_REGISTRY)} tasks"
        ) from None


def describe_tasks() -> list[dict[str, Any]]:
    """One row per task, for ``slac-train --list-tasks``."""
    rows = []
    for name in task_names():
        s = _REGISTRY[name]
        rows.append(
            {
                "task": name,
                "suite": s.suite,
                "action_repeat": s.action_repeat,
                "episode_env_steps": s.episode_env_steps,
                "episode_agent_steps": s.episode_agent_steps,
                "description": s.description,
            }
        )
    return rows
