"""State-based D'Claw Turn teachers: the controllers a pixel Turn policy imitates.

They see the state (the valve's angle), not pixels, so they cannot run on the robot as they are;
``slac-imitate`` distils one into the encoder + actor the runtime runs. They read the info dict of a
Turn step (``act_on(info)``): :class:`TurnStrokeController` only ``angle_error``,
:class:`TurnTableController` also ``valve_angle`` and, from a reset under dynamics randomisation,
the mount offset drawn (``info["dynamics"]["mount_offset_m"]``); :class:`TurnSearchController`
also tries its strokes from the task's present state (``attach(env)``; the task's
:meth:`~slac_train.envs.dclaw.DClawValveTask.valve_rollouts`) before it makes one.

The gait, all three fingers together, is a stroke::

    lifted at b0  ->  lowered at b0  ->  swept to b1 (the fingertips push the spokes)
                  ->  lifted at b1

with ``b0``, ``b1`` the top (abduction) joint's angles. :class:`TurnStrokeController` sweeps from
``-a`` to ``+a``, ``a`` signed by the direction the valve must turn and scaled with the remaining
error, and goes to the reset pose once the error is within its tolerance; its poses and step counts
come from a search over the nominal simulation (valve 0 -> pi) for success under action noise and
dynamics randomisation. :class:`TurnTableController` picks each stroke from tables of what every
stroke does to the valve (:mod:`slac_train.imitation.teachers.dclaw_turn_tables` builds them;
``assets/`` holds the ones shipped). The teachers register with ``slac-imitate`` through the
``slac.teachers`` entry point group (:data:`TEACHERS`). Their success rates are in docs/results.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robots.dclaw.description import CONTROL_PERIOD_S, DCLAW, RESET_POSE
from slac_train.imitation.teachers import TeacherOptions, TeacherSpec

TASK = "dclaw-turn"  # the task family these teachers drive (dclaw-turn and dclaw-turn-*)
ASSETS = Path(__file__).with_name("assets")
STROKE_TABLE = ASSETS / "turn_strokes.npz"
# stroke tables built for other mount heights (m), with the poses compensated for them
MOUNT_TABLES = {-0.004: ASSETS / "turn_strokes_mount-4mm.npz"}
# follow-on stroke tables (strokes that start where an earlier stroke left the claw), per mount
# height
FOLLOW_TABLES = {
    0.0: ASSETS / "turn_strokes_follow.npz",
    -0.004: ASSETS / "turn_strokes_follow_mount-4mm.npz",
}
FOLLOW_STARTS = tuple(i / 10 for i in range(-4, 5))  # top-joint angles an earlier stroke ended at


@functools.lru_cache(maxsize=1)
def turn_action_repeat() -> int:
    """Control periods per Turn policy step, as the task registry gives it."""
    from slac_train.envs import get_task_spec

    return get_task_spec(TASK).action_repeat


@dataclass
class TurnStrokeController:
    """Strokes from ``-a`` to ``+a``, ``a = gain * |error|`` within ``[min_amplitude, amplitude]``
    and signed by the direction the valve must turn, so that the last strokes are short; once
    ``|error| < tolerance`` at a stroke's start the claw goes to the reset pose and waits."""

    amplitude: float = 0.35  # rad, largest top-joint sweep (each side of 0)
    lowered: tuple[float, float] = (
        0.65,
        0.81,
    )  # (middle, bottom) joints with the tip among the spokes
    lifted: tuple[float, float] = (
        -0.60,
        1.48,
    )  # (middle, bottom) joints with the tip above/outside them
    steps: tuple[int, int, int, int] = (3, 3, 2, 3)  # agent steps: to -a lifted, lower, sweep, lift
    gain: float = 0.87  # stroke amplitude per rad of error
    min_amplitude: float = 0.05  # rad
    tolerance: float = 0.06  # rad of valve error at which the claw stops turning
    _plan: list = field(default_factory=list, repr=False)

    def reset(self) -> None:
        self._plan = []

    def take_over(self, reset_info: Mapping, step: int, joint_goals) -> None:
        """Start afresh mid-episode (DAgger): a new stroke, or the reset pose if on target."""
        self.reset()

    def _stroke(self, error: float) -> list[np.ndarray]:
        sign = 1.0 if error < 0 else -1.0  # +a sweeps turn the valve clockwise (negative)
        a = sign * float(np.clip(self.gain * abs(error), self.min_amplitude, self.amplitude))
        return stroke_poses(-a, a, self.lifted, self.lowered, self.steps)

    def joint_targets(self, angle_error: float) -> np.ndarray:
        """The nine joint targets (rad) for this step, from ``wrap(target - valve)`` (rad)."""
        if not self._plan:
            self._plan = (
                [np.array(RESET_POSE)]
                if abs(angle_error) < self.tolerance
                else self._stroke(angle_error)
            )
        return self._plan.pop(0)

    def act(self, angle_error: float) -> np.ndarray:
        """The action in [-1, 1] (the inverse of ``DCLAW.action_to_joint_goal``'s linear map)."""
        return DCLAW.joint_target_to_action(self.joint_targets(angle_error))

    def act_on(self, info: Mapping) -> np.ndarray:
        return self.act(float(info["angle_error"]))


def stroke_poses(
    b0: float,
    b1: float,
    lifted=TurnStrokeController.lifted,
    lowered=TurnStrokeController.lowered,
    steps=TurnStrokeController.steps,
) -> list[np.ndarray]:
    """The per-step joint targets of one stroke: lifted at b0, lowered at b0, swept to b1,
    lifted."""
    corners = ((b0, *lifted), (b0, *lowered), (b1, *lowered), (b1, *lifted))
    plan: list[np.ndarray] = []
    for corner, n in zip(corners, steps):
        plan += [np.array(corner * 3, dtype=np.float64)] * int(n)
    return plan


def servo_goal_sequence(
    plan: list[np.ndarray],
    goal: np.ndarray,
    action_repeat: int | None = None,
    steps: int | None = None,
) -> Iterator[np.ndarray]:
    """The servo goals a plan of per-step joint targets makes, control period by control period
    (the runtime's action mapping: the goal chases the target at the joints' velocity limit).
    ``steps``: agent steps to run, holding the plan's last pose after its end (default: the
    plan's)."""
    repeat = turn_action_repeat() if action_repeat is None else int(action_repeat)
    goal = np.asarray(goal, dtype=np.float64)
    for i in range(len(plan) if steps is None else steps):
        action = DCLAW.joint_target_to_action(plan[min(i, len(plan) - 1)])
        for _ in range(repeat):
            goal = DCLAW.action_to_joint_goal(action, goal, CONTROL_PERIOD_S)
            yield goal


@functools.lru_cache(maxsize=1)
def _finger_kinematics():
    import mujoco

    from robots.dclaw.sim import load_model

    model = load_model("valve")
    qpos = [model.joint(name).qposadr[0] for name in DCLAW.joint_names[:3]]
    return model, mujoco.MjData(model), qpos, model.site("FF_tip").id


def _fingertip(middle: float, bottom: float) -> np.ndarray:
    """World position of the first finger's tip with its top joint at 0 (nominal mount)."""
    import mujoco

    model, data, qpos, site = _finger_kinematics()
    data.qpos[:] = 0.0
    data.qpos[qpos] = (0.0, middle, bottom)
    mujoco.mj_kinematics(model, data)
    return data.site_xpos[site].copy()


def mount_compensated_pose(
    pose: tuple[float, float], height_offset_m: float
) -> tuple[float, float]:
    """(middle, bottom) joint angles that put the fingertip where ``pose`` puts it with the mount
    nominal.

    With the mount ``height_offset_m`` higher, the tip must be that much lower relative to the
    mount. Solved by Gauss-Newton on the finger's forward kinematics in its plane (two joints, two
    coordinates: the tip's height and its distance along the finger's swing).
    """
    nominal = _fingertip(*pose)
    target = nominal - np.array([0.0, 0.0, height_offset_m])
    x = np.array(pose, dtype=np.float64)
    eps = 1e-5
    for _ in range(10):
        tip = _fingertip(*x)
        jacobian = np.stack(
            [(_fingertip(*(x + step)) - tip) / eps for step in np.eye(2) * eps], axis=1
        )
        x = x + np.linalg.lstsq(jacobian, target - tip, rcond=None)[0]
    return float(x[0]), float(x[1])


def _load_table(table: str | Path | Mapping) -> Mapping:
    if isinstance(table, Mapping):
        return table
    path = Path(table)
    if not path.exists():
        raise FileNotFoundError(
            f"no stroke table at {path}; build one with "
            f"`python -m slac_train.imitation.teachers.dclaw_turn_tables --output {path}`"
        )
    return dict(np.load(path))


def _neighbourhood(table: np.ndarray, phase_radius: int, sweep_radius: int) -> np.ndarray:
    """Every cell's neighbours: shifted copies over phase (circular) and b0, b1 (clamped at the
    edges)."""
    n_sweeps = table.shape[-1]
    copies = []
    for dp in range(-phase_radius, phase_radius + 1):
        rolled = np.roll(table, dp, axis=-3)
        for dj in range(-sweep_radius, sweep_radius + 1):
            rows = np.take(rolled, np.clip(np.arange(n_sweeps) + dj, 0, n_sweeps - 1), axis=-2)
            for dk in range(-sweep_radius, sweep_radius + 1):
                copies.append(
                    np.take(rows, np.clip(np.arange(n_sweeps) + dk, 0, n_sweeps - 1), axis=-1)
                )
    return np.stack(copies)


class TurnTableController:
    """Strokes chosen from the stroke table for the valve's phase and the remaining error.

    What a stroke (b0, b1) does to the valve depends on where the spokes are when the fingertips
    come down, i.e. on the valve's phase (its angle modulo the 120 degrees between spokes), in a way
    too irregular to write down but repeatable: so it is tabulated. A table
    (:func:`~slac_train.imitation.teachers.dclaw_turn_tables.build_stroke_table`) holds the valve's
    rotation after one stroke in the nominal simulation for every phase bin, b0 and b1. The
    controller picks the stroke whose rotation is closest to the remaining error in the worst case
    over the neighbouring table cells (``phase_radius``, ``sweep_radius``: a stroke that works only
    on a knife's edge of phase or sweep fails under noise and randomisation), and once the error is
    within ``tolerance`` rests with the fingers lifted where the last stroke left them, so the
    valve stays turned.

    The mount's height is the one dynamics draw that defeats a nominal table: a centimetre higher
    or lower and the lowered fingertips miss the spokes or jam on them. So the controller reads the
    mount offset a reset drew (``info["dynamics"]``, privileged state like the valve angle) and
    moves its lowered and lifted poses so that the fingertips are where they are in the nominal
    model (:func:`mount_compensated_pose`; ``compensate_mount``). Compensated poses still turn the
    valve differently, so ``height_tables`` (mount height in m -> a table built for that height,
    poses compensated for it) adds tables for other heights: a drawn mount uses the nearest one
    (``table`` counts as height 0; :data:`MOUNT_TABLES` ships one for 4 mm low).

    A table's strokes start from the reset pose, which only an episode's first stroke does: the
    servo goals chase a stroke's poses at the velocity limit and do not reach them, so a stroke ends
    with the fingers about half lifted. ``follow_tables`` (mount height in m -> a follow-on table
    of strokes started where a stroke to each of :data:`FOLLOW_STARTS` left the claw) predicts every
    stroke after the first, from the table for the nearest height and the start nearest the claw's
    top joints (:data:`FOLLOW_TABLES`).
    """

    def __init__(
        self,
        table: str | Path | Mapping = STROKE_TABLE,
        tolerance: float = 0.05,
        phase_radius: int = 1,
        sweep_radius: int = 1,
        compensate_mount: bool = True,
        height_tables: Mapping[float, str | Path | Mapping] | None = None,
        follow_tables: Mapping[float, str | Path | Mapping] | None = None,
    ):
        table = _load_table(table)
        self.phases, self.sweeps = (
            len(table["phases"]),
            np.asarray(table["sweeps"], dtype=np.float64),
        )
        # per mount height (m; ``table`` is the nominal one, 0): (draws x neighbours, phase, b0,
        # b1), the outcomes a chosen stroke may have
        tables = {0.0: table} | {float(h): _load_table(t) for h, t in (height_tables or {}).items()}
        self._outcomes_by_height = {}
        for height, t in sorted(tables.items()):
            self._check_like_nominal(
                t, f"the stroke table for mount height {height * 1000:+.0f} mm"
            )
            rotation = np.asarray(t["rotation"], dtype=np.float64)
            rotation = rotation[None] if rotation.ndim == 3 else rotation
            self._outcomes_by_height[height] = np.concatenate(
                [_neighbourhood(r, phase_radius, sweep_radius) for r in rotation]
            )
        # per mount height: (the angles earlier strokes ended at, (start, neighbours, phase, b0,
        # b1))
        self._follow_by_height = {}
        for height, t in sorted((follow_tables or {}).items()):
            t = _load_table(t)
            self._check_like_nominal(
                t, f"the follow-on stroke table for mount height {float(height) * 1000:+.0f} mm"
            )
            rotation = np.asarray(t["rotation"], dtype=np.float64)
            self._follow_by_height[float(height)] = (
                np.asarray(t["starts"], dtype=np.float64),
                np.stack([_neighbourhood(r, phase_radius, sweep_radius) for r in rotation]),
            )
        self.tolerance = float(tolerance)
        self.compensate_mount = bool(compensate_mount)
        self.reset()

    def _check_like_nominal(self, table: Mapping, what: str) -> None:
        sweeps = np.asarray(table["sweeps"], dtype=np.float64)
        if (
            len(table["phases"]) != self.phases
            or sweeps.shape != self.sweeps.shape
            or not np.allclose(sweeps, self.sweeps)
        ):
            raise ValueError(
                f"{what} has other phases or sweeps than the nominal one; "
                "build both with the same options"
            )

    def reset(self) -> None:
        self._plan: list[np.ndarray] = []
        self._last = np.array(RESET_POSE, dtype=np.float64)
        self.lowered, self.lifted = TurnStrokeController.lowered, TurnStrokeController.lifted
        self._outcomes = self._outcomes_by_height[0.0]
        self._follow = self._nearest(self._follow_by_height, 0.0)
        self._stroked = False  # a stroke made: the next starts where it left the claw

    @staticmethod
    def _nearest(by_height: Mapping, height: float):
        return by_height[min(by_height, key=lambda h: abs(h - height))] if by_height else None

    def set_mount_offset(self, offset_m) -> None:
        """Move the stroke's poses for a mount displaced by ``offset_m`` (x, y, z in m) from
        nominal, and use the stroke table built for the nearest mount height."""
        height = float(np.asarray(offset_m, dtype=np.float64).reshape(3)[2])
        self.lowered = mount_compensated_pose(TurnStrokeController.lowered, height)
        self.lifted = mount_compensated_pose(TurnStrokeController.lifted, height)
        self._outcomes = self._nearest(self._outcomes_by_height, height)
        self._follow = self._nearest(self._follow_by_height, height)

    def phase(self, valve_angle: float) -> int:
        """The table's phase bin of a valve angle (its angle modulo the 120 degrees between
        spokes)."""
        return (
            int(round((valve_angle % (2 * math.pi / 3)) / (2 * math.pi / 3) * self.phases))
            % self.phases
        )

    def _table_outcomes(self) -> np.ndarray:
        """The outcomes the next stroke may have: the first stroke's table, or after a stroke the
        follow-on table for where the claw is (its top joints' goal)."""
        if self._stroked and self._follow is not None:
            starts, outcomes = self._follow
            return outcomes[int(np.argmin(np.abs(starts - self._last[0])))]
        return self._outcomes

    def _worst_left(self, valve_angle: float, angle_error: float) -> np.ndarray:
        """Per stroke (b0, b1): the worst-case |error left| over the table cells around this valve
        angle."""
        return np.abs(angle_error - self._table_outcomes()[:, self.phase(valve_angle)]).max(axis=0)

    def choose(self, valve_angle: float, angle_error: float) -> tuple[float, float, float]:
        """(b0, b1, worst-case |error left|) of the best stroke from this valve angle."""
        worst = self._worst_left(valve_angle, angle_error)
        j, k = np.unravel_index(int(np.argmin(worst)), worst.shape)
        return float(self.sweeps[j]), float(self.sweeps[k]), float(worst[j, k])

    def _next_plan(self, valve_angle: float, angle_error: float) -> list[np.ndarray]:
        """The next stroke's poses, or resting (fingers lifted where the last stroke left them)."""
        b0, b1, left = self.choose(valve_angle, angle_error)
        return (
            stroke_poses(b0, b1, self.lifted, self.lowered)
            if left < abs(angle_error)
            else [self._last]
        )

    def joint_targets(self, valve_angle: float, angle_error: float) -> np.ndarray:
        if not self._plan:
            on_target = abs(angle_error) < self.tolerance
            self._plan = [self._last] if on_target else self._next_plan(valve_angle, angle_error)
            self._stroked |= len(self._plan) > 1
        self._last = self._plan.pop(0)
        return self._last

    def _read_dynamics(self, info: Mapping) -> None:
        """A reset's dynamics draw (``info["dynamics"]``) moves the poses for the mount's offset."""
        dynamics = info.get("dynamics")
        if self.compensate_mount and dynamics is not None and "mount_offset_m" in dynamics:
            self.set_mount_offset(dynamics["mount_offset_m"])

    def take_over(self, reset_info: Mapping, step: int, joint_goals) -> None:
        """Start afresh from the middle of an episode someone else drove (DAgger's relabelling).

        ``reset_info`` is the episode's reset info (its dynamics draw sets the poses), ``step`` the
        agent steps taken so far and ``joint_goals`` the servo goals now: the claw rests there until
        the first stroke, so a teacher that finds nothing to do keeps the fingers where they are.
        """
        self.reset()
        self._read_dynamics(reset_info)
        self._last = np.array(joint_goals, dtype=np.float64)
        self._stroked = not np.allclose(
            self._last, RESET_POSE, atol=1e-3
        )  # the claw has moved: someone stroked

    def act_on(self, info: Mapping) -> np.ndarray:
        """The action for a Turn step's (or reset's) info; a reset's dynamics draw sets the
        poses."""
        self._read_dynamics(info)
        # clipped: a mount-compensated pose may lie a little outside the joint range (the runtime's
        # action mapping clips the goal to it anyway)
        return np.clip(
            DCLAW.joint_target_to_action(
                self.joint_targets(float(info["valve_angle"]), float(info["angle_error"]))
            ),
            -1.0,
            1.0,
        )


class TurnSearchController(TurnTableController):
    """The table teacher, checking its candidate strokes from the task's present state.

    The table predicts a stroke's rotation from the nominal simulation; under dynamics randomisation
    (weak or strong servos, damping, friction, the mount's position) the same stroke turns the
    valve by more or less, or pushes it back. Before each stroke this teacher takes the
    ``candidates`` strokes the table rates best for the remaining error, runs each from the task's
    present state (:meth:`DClawValveTask.valve_rollouts`: the same servo goals and velocity limit as
    the task's own steps) up to the stroke's end or the episode's, and executes the one that leaves
    the smallest error -- or rests, if none does better than resting. It reads the simulator
    (privileged, like the valve angle): :meth:`attach` gives it the env it acts in.
    """

    def __init__(
        self,
        candidates: int = 96,
        slack: float = 0.0,
        near_miss_only: bool = False,
        knows: Callable[[Mapping], Mapping] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # what the rollouts know of the episode's dynamics draw: None, all of it (they run in the
        # task's own model); else a function of the draw giving the draw they assume, e.g.
        # ``lambda d: {}`` (the nominal model) or
        # ``lambda d: {"mount_offset_m": d["mount_offset_m"]}``
        self.knows = knows
        self.candidates = int(candidates)
        self.slack = float(slack)
        # search only where the table would rest short of the target (its worst case beats no
        # stroke), keeping the table's strokes everywhere else
        self.near_miss_only = bool(near_miss_only)
        self._task = None
        self._rollouts = None
        self._episode_steps = 0
        self._action_repeat = turn_action_repeat()

    def attach(self, env) -> None:
        """Act in ``env`` (a :class:`PixelEnv` of a D'Claw Turn task): its task's servo goals and
        rollouts, and its episode length and action repeat."""
        from slac_train.envs import get_task_spec

        if self._rollouts is not None:
            self._rollouts.close()
        self._task = env.task
        self._rollouts = env.task.valve_rollouts(own_model=self.knows is None)
        self._action_repeat = env.action_repeat
        self._episode_steps = get_task_spec(env.task_name).episode_env_steps // env.action_repeat

    def _read_dynamics(self, info: Mapping) -> None:
        super()._read_dynamics(info)
        dynamics = info.get("dynamics")
        if self.knows is not None and self._rollouts is not None and dynamics is not None:
            # a reset's draw: the model the rollouts assume is what ``knows`` passes on of it
            self._rollouts.assume_dynamics(self.knows(dynamics))

    def reset(self) -> None:
        super().reset()
        self._step = 0

    def take_over(self, reset_info: Mapping, step: int, joint_goals) -> None:
        super().take_over(reset_info, step, joint_goals)
        self._step = int(step)  # the rollouts stop where the episode will

    def _rollout(self, plan: list[np.ndarray], goal: np.ndarray, horizon: int) -> float:
        """The valve's angle after running ``plan`` (then holding its last pose) for ``horizon``
        steps."""
        return self._rollouts.valve_angle_after(
            servo_goal_sequence(plan, goal, self._action_repeat, horizon)
        )

    def _next_plan(self, valve_angle: float, angle_error: float) -> list[np.ndarray]:
        if self.near_miss_only:
            plan = super()._next_plan(valve_angle, angle_error)
            if len(plan) > 1:  # the table strokes
                return plan
        return self._search(valve_angle, angle_error, self._task.servo_goals)

    def _search(self, valve_angle: float, angle_error: float, goal: np.ndarray) -> list[np.ndarray]:
        order = np.argsort(self._worst_left(valve_angle, angle_error).ravel())[: self.candidates]
        remaining = max(self._episode_steps - self._step, 1)
        target = valve_angle + angle_error
        plans = [[self._last]]  # rest: fingers held where they are
        for flat in order:
            j, k = np.unravel_index(int(flat), (len(self.sweeps), len(self.sweeps)))
            plans.append(
                stroke_poses(
                    float(self.sweeps[j]), float(self.sweeps[k]), self.lifted, self.lowered
                )
            )
        steps = sum(TurnStrokeController.steps)
        left = np.array(
            [abs(target - self._rollout(plan, goal, min(steps, remaining))) for plan in plans]
        )
        if left[0] <= left[1:].min() + self.slack:
            return plans[0]
        # the table's favourite among the strokes within `slack` of the best: the choice stays the
        # table's (smooth in the valve's angle, which a student can imitate) unless it fails here
        return plans[1 + int(np.flatnonzero(left[1:] <= left[1:].min() + self.slack)[0])]

    def act_on(self, info: Mapping) -> np.ndarray:
        if self._rollouts is None:
            raise RuntimeError(
                "TurnSearchController needs the env it acts in: call attach(env) first"
            )
        action = super().act_on(info)
        self._step += 1
        return action


# --search-knows: what the search teachers' rollouts know of the episode's dynamics draw
SEARCH_KNOWLEDGE: dict[str, dict[str, Any]] = {
    "all": {},  # the exact simulator
    "mount": {
        "knows": lambda draw: {"mount_offset_m": draw["mount_offset_m"]}
    },  # nominal servos, damping, friction
    "nothing": {
        "knows": lambda draw: {},
        "compensate_mount": False,
    },  # the nominal model, poses uncompensated
}


def _table_options(options: TeacherOptions) -> dict[str, Any]:
    return {} if options.tolerance is None else {"tolerance": options.tolerance}


def _search_options(options: TeacherOptions) -> dict[str, Any]:
    if options.search_knows not in SEARCH_KNOWLEDGE:
        raise ValueError(
            f"search_knows must be one of {', '.join(SEARCH_KNOWLEDGE)}, "
            f"not {options.search_knows!r}"
        )
    slack = {} if options.search_slack is None else {"slack": options.search_slack}
    return _table_options(options) | slack | SEARCH_KNOWLEDGE[options.search_knows]


def _strokes(options: TeacherOptions) -> TurnStrokeController:
    return TurnStrokeController(**_table_options(options))


def _table(options: TeacherOptions) -> TurnTableController:
    return TurnTableController(**_table_options(options))


def _mount_tables(options: TeacherOptions) -> TurnTableController:
    return TurnTableController(height_tables=MOUNT_TABLES, **_table_options(options))


def _follow_tables(options: TeacherOptions) -> TurnTableController:
    return TurnTableController(
        height_tables=MOUNT_TABLES, follow_tables=FOLLOW_TABLES, **_table_options(options)
    )


def _search(options: TeacherOptions) -> TurnSearchController:
    return TurnSearchController(**_search_options(options))


def _table_search(options: TeacherOptions) -> TurnSearchController:
    return TurnSearchController(near_miss_only=True, **_search_options(options))


# The D'Claw's teachers (entry point ``dclaw`` of the ``slac.teachers`` group).
TEACHERS = (
    TeacherSpec(
        "dclaw-turn-table",
        (TASK,),
        _table,
        "strokes from the nominal stroke table, poses compensated for the drawn mount height",
    ),
    TeacherSpec(
        "dclaw-turn-mount-tables",
        (TASK,),
        _mount_tables,
        "the table teacher with a second table for mounts more than 2 mm low",
    ),
    TeacherSpec(
        "dclaw-turn-follow-tables",
        (TASK,),
        _follow_tables,
        "the mount tables, every stroke after the first predicted from where the last one "
        "left the claw",
    ),
    TeacherSpec(
        "dclaw-turn-search",
        (TASK,),
        _search,
        "the table's best strokes tried from the task's present state before each stroke",
    ),
    TeacherSpec(
        "dclaw-turn-table-search",
        (TASK,),
        _table_search,
        "the table teacher, searching only where the table would rest short of the target",
    ),
    TeacherSpec(
        "dclaw-turn-strokes",
        (TASK,),
        _strokes,
        "fixed strokes scaled with the remaining error (no table)",
    ),
)
