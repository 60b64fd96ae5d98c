"""State-based teachers for ``slac-imitate``, registered per robot.

A teacher reads the simulator's state through a task's ``info`` (and, for some, the task's public
teacher interface, e.g. :meth:`slac_train.envs.dclaw.DClawValveTask.valve_rollouts`) and answers
with an action; ``slac-imitate`` records it from the task camera and trains the pixel policy to
copy it. A teacher is an object with::

    reset()                                   a new episode starts
    act_on(info) -> action[A] in [-1, 1]      the action for a step's (or reset's) info
    take_over(reset_info, step, joint_goals)  drive from the middle of an episode someone else drove
    tolerance                                 the error at which it stops (rad, the task's unit)
    attach(env)                               optional: it reads the env's task itself

Robots publish theirs as :class:`TeacherSpec` sequences in the ``slac.teachers`` entry point group
(``pyproject.toml``: ``dclaw = "slac_train.imitation.teachers.dclaw_turn:TEACHERS"``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "slac.teachers"


@dataclass(frozen=True)
class TeacherOptions:
    """What ``slac-imitate`` passes to every teacher factory; each uses what applies to it."""

    tolerance: float | None = None  # error at which the teacher stops turning; None: its own
    search_slack: float | None = (
        None  # search teachers: keep the table's stroke within this of the best
    )
    search_knows: str = "all"  # search teachers: what their rollouts know of the dynamics draw


@dataclass(frozen=True)
class TeacherSpec:
    """A registered teacher: its name, the task families it drives (``"dclaw-turn"`` covers
    ``dclaw-turn`` and every ``dclaw-turn-*``), a factory and one line for ``--help``."""

    name: str
    tasks: tuple[str, ...]
    make: Callable[[TeacherOptions], Any]
    description: str = ""

    def drives(self, task: str) -> bool:
        return any(task == family or task.startswith(family + "-") for family in self.tasks)


class UnknownTeacherError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def registered_teachers() -> dict[str, TeacherSpec]:
    """Every teacher of every installed robot, by name."""
    teachers: dict[str, TeacherSpec] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        for spec in entry.load():
            if spec.name in teachers:
                raise ValueError(
                    f"teacher {spec.name!r} is registered twice (entry point {entry.name!r})"
                )
            teachers[spec.name] = spec
    return teachers


def get_teacher(name: str) -> TeacherSpec:
    """The teacher registered as ``name``; an unknown name raises :class:`UnknownTeacherError`
    naming the closest matches."""
    teachers = registered_teachers()
    if name in teachers:
        return teachers[name]
    close = difflib.get_close_matches(name, teachers, n=3)
    hint = (
        f"; did you mean {' or '.join(close)}?"
        if close
        else f"; teachers: {', '.join(sorted(teachers))}"
    )
    raise UnknownTeacherError(f"unknown teacher {name!r}{hint}")
