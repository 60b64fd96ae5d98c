"""Scripted, state-based Turn controllers: the teachers a pixel Turn policy imitates.

They see the state (the valve's angle), not pixels, so they cannot run on the robot as they are;
``slac_train.imitation`` distils one into the encoder + actor the runtime runs. They read the info
dict of a Turn step (``act_on(info)``): :class:`TurnStrokeController` only ``angle_error``,
:class:`TurnTableController` also ``valve_angle`` and, from a reset under dynamics randomisation,
the mount offset drawn (``info["dynamics"]["mount_offset_m"]``); :class:`TurnSearchController`
also reads the simulator itself (``attach(env)``) to try the table's strokes before it makes one.

TurnStrokeController
--------------------

The gait, all three fingers together, is a stroke:

    lifted at -a  ->  lowered at -a  ->  swept to +a (the fingertips push the spokes)  ->  lifted at +a

where ``a`` is the top (abduction) joint's angle, signed by the direction the valve must turn and
scaled with the remaining error (``gain * |error|``, within ``[min_amplitude, amplitude]``) so
that the last strokes are short. Once ``|error| < tolerance`` at a stroke's start the claw goes
to the reset pose and waits. The poses and step counts come from a random search over the nominal
simulation (valve 0 -> pi), refined by a local search for success under action noise and dynamics
randomisation; docs/results.md gives its success rates.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robots.dclaw.description import CONTROL_PERIOD_S, DCLAW, RESET_POSE

STROKE_TABLE = Path(__file__).with_name("assets") / "turn_strokes.npz"
# stroke tables built for other mount heights (m), with the poses compensated for them
MOUNT_TABLES = {-0.004: Path(__file__).with_name("assets") / "turn_strokes_mount-4mm.npz"}
# follow-on stroke tables (strokes that start where an earlier stroke left the claw), per mount height
FOLLOW_TABLES = {0.0: Path(__file__).with_name("assets") / "turn_strokes_follow.npz",
                 -0.004: Path(__file__).with_name("assets") / "turn_strokes_follow_mount-4mm.npz"}
FOLLOW_STARTS = tuple(i / 10 for i in range(-4, 5))  # top-joint angles an earlier stroke ended at
ACTION_REPEAT = 2  # control periods per Turn policy step


@dataclass
class TurnStrokeController:
    amplitude: float = 0.35  # rad, largest top-joint sweep (each side of 0)
    lowered: tuple[float, float] = (0.65, 0.81)  # (middle, bottom) joints with the tip among the spokes
    lifted: tuple[float, float] = (-0.60, 1.48)  # (middle, bottom) joints with the tip above/outside them
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
            self._plan = [np.array(RESET_POSE)] if abs(angle_error) < self.tolerance else self._stroke(angle_error)
        return self._plan.pop(0)

    def act(self, angle_error: float) -> np.ndarray:
        """The action in [-1, 1] (the inverse of ``DCLAW.action_to_joint_goal``'s linear map)."""
        return DCLAW.joint_target_to_action(self.joint_targets(angle_error))

    def act_on(self, info: Mapping) -> np.ndarray:
        return self.act(float(info["angle_error"]))


# -- TurnTableController ---------------------------------------------------------------------------
#
# A stroke lowers the three fingertips at top-joint angle b0 and sweeps them to b1 (the poses and
# step counts of TurnStrokeController). What it does to the valve depends on where the spokes are
# when the fingertips come down, i.e. on the valve's phase (its angle modulo the 120 degrees between
# spokes), in a way too irregular to write down, but repeatable: so it is tabulated. The shipped
# table (``assets/turn_strokes.npz``, built by ``python -m robots.dclaw.scripted`` in about 2
# minutes) holds the valve's rotation after one stroke in the nominal simulation for every phase (24
# bins), b0 and b1 (-0.40 ... 0.40 rad in steps of 0.05). The controller picks the stroke whose
# rotation is closest to the remaining error in the worst case over the neighbouring table cells (a
# stroke that works only on a knife's edge of phase or sweep fails under noise and randomisation:
# without the neighbourhood, nominal success fell from 100% to 0-87%), and rests with the fingers
# lifted where the last stroke left them once the error is within tolerance -- so the valve stays
# turned, instead of the last stroke landing just as the episode ends. Tabulating dynamics
# randomisation draws too (``--dynamics-draws``) and taking the worst case over them made the
# controller more timid and less successful under randomisation (3 draws: 30% against 50% over 30
# randomised episodes), so the shipped table is nominal only.
#
# Under dynamics randomisation the one draw that defeats the table is the mount's height: with the
# claw 1 cm higher or lower than nominal, the lowered fingertips miss the spokes or jam on them and
# the teacher fails every episode (x or y offsets of 1 cm: 100% success). Leaving out one factor
# of the randomisation at a time over 30 episodes: all factors 50%, all but the mount position
# 93%, all but the servo gains 70%, all but damping, friction loss or contact friction 47-53%.
# So the controller reads the mount offset the simulator drew (``info["dynamics"]``, privileged
# state, as the valve angle is) and moves its lowered and lifted poses so that the fingertips are
# where they are in the nominal model (:func:`mount_compensated_pose`): 73% instead of 50%.
#
# Compensated poses do not make the strokes turn the valve as in the nominal model, though: the
# fingertips reach the same points at other angles. With the mount low the nominal table's
# predictions fail (50% success with the mount 6-10 mm low against 76-92% above it), so a second
# table, built with the mount 4 mm low and the poses compensated for it
# (``--mount-height-mm -4``), serves every mount more than 2 mm low: 79% -> 83% over 240 randomised
# episodes (:data:`MOUNT_TABLES`, ``slac-imitate --teacher dclaw-turn-mount-tables``). Tables for
# high mounts did worse than the nominal one there (+4 and +8 mm tables: 28-35% against 76-92%),
# and tables every 2 mm below nominal no better than the one at -4 mm.
#
# Those tables start every stroke from the reset pose, which only the first stroke of an episode
# does. The servo goals chase a stroke's poses at the joints' velocity limit (0.21 rad an agent
# step) and do not reach them: the middle joints get three steps for the 1.25 rad between lifted
# and lowered, so a stroke ends with the fingers about half lifted (middle joints near -0.18 rad,
# where the reset pose has -1.05) and the next stroke's swing back drags them over the spokes. The
# table's predictions for the second and later strokes were off, most of all under weak servos and
# with the mount off nominal: the valve often went backwards. Follow-on tables
# (:func:`build_follow_table`, :data:`FOLLOW_TABLES`) start every stroke from where a stroke to
# b_prev leaves the claw (:func:`stroke_end_goals`), for b_prev every 0.1 rad in -0.4 ... 0.4, at
# the nominal height and 4 mm low; after its first stroke the controller predicts from the one for
# the nearest height and the claw's top joints. Over 600 randomised episodes: 90.7% success (held
# 87.2%) against 83.2% (76.8%), every height bin 94-98% but the lowest (-10..-6 mm: 68%, was 64%).
# Five starts every 0.2 rad did as well (90.5%); tables for -8 mm did not help the lowest bin.


def stroke_poses(b0: float, b1: float, lifted=TurnStrokeController.lifted, lowered=TurnStrokeController.lowered,
                 steps=TurnStrokeController.steps) -> list[np.ndarray]:
    """The per-step joint targets of one stroke: lifted at b0, lowered at b0, swept to b1, lifted."""
    corners = ((b0, *lifted), (b0, *lowered), (b1, *lowered), (b1, *lifted))
    plan: list[np.ndarray] = []
    for corner, n in zip(corners, steps):
        plan += [np.array(corner * 3, dtype=np.float64)] * int(n)
    return plan


def build_stroke_table(phases: int = 24, sweeps: np.ndarray | None = None, dynamics_draws: int = 0, seed: int = 0,
                       progress: Callable[[str], None] | None = None,
                       dynamics: Mapping | None = None, lifted=TurnStrokeController.lifted,
                       lowered=TurnStrokeController.lowered, after_stroke_to: float | None = None) -> dict[str, np.ndarray]:
    """Simulate every stroke from every phase; ``rotation[draw, phase, b0, b1]`` (rad, draw 0 nominal).

    Each stroke starts from the reset pose at rest, runs its goals through the runtime's action
    mapping (``DCLAW.action_to_joint_goal``, action repeat 2) and reads the valve's rotation.
    ``dynamics`` (a :meth:`DClawSim.apply_dynamics` draw, e.g. ``{"actuator_kp": 1.5}``) replaces
    the nominal model of draw 0; ``lifted`` and ``lowered`` the stroke's (middle, bottom) poses (e.g.
    :func:`mount_compensated_pose` for a drawn mount height). With ``after_stroke_to`` (rad) every
    stroke starts where an earlier stroke that swept to that top-joint angle leaves the claw
    (:func:`stroke_end_goals`) instead of the reset pose.
    """
    from robots.dclaw.sim import DClawSim

    sweeps = np.round(np.arange(-0.40, 0.401, 0.05), 2) if sweeps is None else np.asarray(sweeps, dtype=np.float64)
    angles = np.arange(phases) * (2 * math.pi / 3) / phases
    rotation = np.zeros((1 + dynamics_draws, phases, len(sweeps), len(sweeps)))
    rng = np.random.default_rng(seed)
    start = (np.array(RESET_POSE, dtype=np.float64) if after_stroke_to is None
             else stroke_end_goals(after_stroke_to, lifted, lowered))
    started = time.monotonic()
    with DClawSim("valve", render_size=16) as sim:
        for draw in range(1 + dynamics_draws):
            if draw == 0:
                sim.apply_dynamics(dict(dynamics or {}))
            else:
                sim.randomize_dynamics(rng)
            for p, theta in enumerate(angles):
                for j, b0 in enumerate(sweeps):
                    for k, b1 in enumerate(sweeps):
                        sim.reset(joint_positions=start, valve_angle=theta)
                        for goal in _goals(stroke_poses(b0, b1, lifted, lowered), start):
                            sim.set_joint_goals(goal)
                            sim.step()
                        rotation[draw, p, j, k] = sim.valve_angle() - theta
                if progress:
                    progress(f"draw {draw} phase {p + 1}/{phases}  {time.monotonic() - started:.0f} s")
    return {"rotation": rotation.astype(np.float32), "phases": angles, "sweeps": sweeps}


def _goals(plan: list[np.ndarray], goal: np.ndarray):
    """The servo goals a plan of per-step joint targets makes, control period by control period
    (the runtime's action mapping: the goal chases the target at the joints' velocity limit)."""
    goal = np.asarray(goal, dtype=np.float64)
    for pose in plan:
        action = DCLAW.joint_target_to_action(pose)
        for _ in range(ACTION_REPEAT):
            goal = DCLAW.action_to_joint_goal(action, goal, CONTROL_PERIOD_S)
            yield goal


def stroke_end_goals(b1: float, lifted=TurnStrokeController.lifted, lowered=TurnStrokeController.lowered) -> np.ndarray:
    """The servo goals (within the joint ranges) at the end of a stroke that swept to ``b1``, after earlier strokes.

    The velocity limit (0.21 rad an agent step) keeps the goals from reaching a stroke's poses:
    the middle joints need six steps from lifted to lowered and get three, so a stroke ends with
    the fingers about half lifted (middle joints near -0.18 rad, not the lifted -0.60), lower
    than the reset pose (-1.05) a first stroke starts from.
    """
    goals = [np.array(RESET_POSE, dtype=np.float64)]
    for plan in (stroke_poses(0.0, 0.3, lifted, lowered), stroke_poses(-0.3, b1, lifted, lowered)):
        goals += list(_goals(plan, goals[-1]))
    return np.clip(goals[-1], DCLAW.low, DCLAW.high)


def build_follow_table(starts=FOLLOW_STARTS, progress: Callable[[str], None] | None = None, **options) -> dict[str, np.ndarray]:
    """:func:`build_stroke_table` once per ``starts`` angle (``after_stroke_to``), stacked:
    ``rotation[start, phase, b0, b1]``, with ``starts``."""
    tables = []
    for b in starts:
        tables.append(build_stroke_table(after_stroke_to=float(b), **options))
        if progress:
            progress(f"after a stroke to {b:+.2f}: done")
    return {"rotation": np.concatenate([t["rotation"][:1] for t in tables]), "phases": tables[0]["phases"],
            "sweeps": tables[0]["sweeps"], "starts": np.asarray(starts, dtype=np.float64)}


def mount_table_options(height_m: float) -> dict:
    """:func:`build_stroke_table` options for a mount ``height_m`` higher than nominal: the mount
    moved, the stroke's poses compensated for it (:func:`mount_compensated_pose`) as the
    controller's are; nominal for 0."""
    if not height_m:
        return {}
    return {"dynamics": {"mount_offset_m": [0.0, 0.0, float(height_m)]},
            "lifted": mount_compensated_pose(TurnStrokeController.lifted, height_m),
            "lowered": mount_compensated_pose(TurnStrokeController.lowered, height_m)}


def _neighbourhood(table: np.ndarray, phase_radius: int, sweep_radius: int) -> np.ndarray:
    """Every cell's neighbours: shifted copies over phase (circular) and b0, b1 (clamped at the edges)."""
    n_sweeps = table.shape[-1]
    copies = []
    for dp in range(-phase_radius, phase_radius + 1):
        rolled = np.roll(table, dp, axis=-3)
        for dj in range(-sweep_radius, sweep_radius + 1):
            rows = np.take(rolled, np.clip(np.arange(n_sweeps) + dj, 0, n_sweeps - 1), axis=-2)
            for dk in range(-sweep_radius, sweep_radius + 1):
                copies.append(np.take(rows, np.clip(np.arange(n_sweeps) + dk, 0, n_sweeps - 1), axis=-1))
    return np.stack(copies)


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


def mount_compensated_pose(pose: tuple[float, float], height_offset_m: float) -> tuple[float, float]:
    """(middle, bottom) joint angles that put the fingertip where ``pose`` puts it with the mount nominal.

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
        jacobian = np.stack([(_fingertip(*(x + step)) - tip) / eps for step in np.eye(2) * eps], axis=1)
        x = x + np.linalg.lstsq(jacobian, target - tip, rcond=None)[0]
    return float(x[0]), float(x[1])


def _load_table(table: str | Path | Mapping) -> Mapping:
    if isinstance(table, Mapping):
        return table
    path = Path(table)
    if not path.exists():
        raise FileNotFoundError(f"no stroke table at {path}; build one with "
                                f"`python -m robots.dclaw.scripted --output {path}`")
    return dict(np.load(path))


class TurnTableController:
    """Strokes chosen from the stroke table for the valve's phase and the remaining error.

    ``height_tables`` (mount height in m -> table built with :func:`build_stroke_table` for that
    height, poses compensated for it) adds tables for other mount heights: a drawn mount uses the
    nearest one (``table`` counts as height 0). :data:`MOUNT_TABLES` is the one this package ships.
    ``follow_tables`` (mount height in m -> :func:`build_follow_table` table) predicts every stroke
    after the first, from the one built for the nearest height and the angle the last stroke
    ended at nearest the claw's (:data:`FOLLOW_TABLES`).
    """

    def __init__(self, table: str | Path | Mapping = STROKE_TABLE, tolerance: float = 0.05,
                 phase_radius: int = 1, sweep_radius: int = 1, compensate_mount: bool = True,
                 height_tables: Mapping[float, str | Path | Mapping] | None = None,
                 follow_tables: Mapping[float, str | Path | Mapping] | None = None):
        table = _load_table(table)
        self.phases, self.sweeps = len(table["phases"]), np.asarray(table["sweeps"], dtype=np.float64)
        # per mount height (m; ``table`` is the nominal one, 0): (draws x neighbours, phase, b0, b1),
        # the outcomes a chosen stroke may have
        tables = {0.0: table} | {float(h): _load_table(t) for h, t in (height_tables or {}).items()}
        self._outcomes_by_height = {}
        for height, t in sorted(tables.items()):
            self._check_like_nominal(t, f"the stroke table for mount height {height * 1000:+.0f} mm")
            rotation = np.asarray(t["rotation"], dtype=np.float64)
            rotation = rotation[None] if rotation.ndim == 3 else rotation
            self._outcomes_by_height[height] = np.concatenate(
                [_neighbourhood(r, phase_radius, sweep_radius) for r in rotation])
        # per mount height: (the angles earlier strokes ended at, (start, neighbours, phase, b0, b1))
        self._follow_by_height = {}
        for height, t in sorted((follow_tables or {}).items()):
            t = _load_table(t)
            self._check_like_nominal(t, f"the follow-on stroke table for mount height {float(height) * 1000:+.0f} mm")
            rotation = np.asarray(t["rotation"], dtype=np.float64)
            self._follow_by_height[float(height)] = (np.asarray(t["starts"], dtype=np.float64), np.stack(
                [_neighbourhood(r, phase_radius, sweep_radius) for r in rotation]))
        self.tolerance = float(tolerance)
        self.compensate_mount = bool(compensate_mount)
        self.reset()

    def _check_like_nominal(self, table: Mapping, what: str) -> None:
        sweeps = np.asarray(table["sweeps"], dtype=np.float64)
        if len(table["phases"]) != self.phases or sweeps.shape != self.sweeps.shape or not np.allclose(sweeps, self.sweeps):
            raise ValueError(f"{what} has other phases or sweeps than the nominal one; build both with the same options")

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
        """Move the stroke's poses for a mount displaced by ``offset_m`` (x, y, z in m) from nominal,
        and use the stroke table built for the nearest mount height."""
        height = float(np.asarray(offset_m, dtype=np.float64).reshape(3)[2])
        self.lowered = mount_compensated_pose(TurnStrokeController.lowered, height)
        self.lifted = mount_compensated_pose(TurnStrokeController.lifted, height)
        self._outcomes = self._nearest(self._outcomes_by_height, height)
        self._follow = self._nearest(self._follow_by_height, height)

    def phase(self, valve_angle: float) -> int:
        """The table's phase bin of a valve angle (its angle modulo the 120 degrees between spokes)."""
        return int(round((valve_angle % (2 * math.pi / 3)) / (2 * math.pi / 3) * self.phases)) % self.phases

    def _table_outcomes(self) -> np.ndarray:
        """The outcomes the next stroke may have: the first stroke's table, or after a stroke the
        follow-on table for where the claw is (its top joints' goal)."""
        if self._stroked and self._follow is not None:
            starts, outcomes = self._follow
            return outcomes[int(np.argmin(np.abs(starts - self._last[0])))]
        return self._outcomes

    def _worst_left(self, valve_angle: float, angle_error: float) -> np.ndarray:
        """Per stroke (b0, b1): the worst-case |error left| over the table cells around this valve angle."""
        return np.abs(angle_error - self._table_outcomes()[:, self.phase(valve_angle)]).max(axis=0)

    def choose(self, valve_angle: float, angle_error: float) -> tuple[float, float, float]:
        """(b0, b1, worst-case |error left|) of the best stroke from this valve angle."""
        worst = self._worst_left(valve_angle, angle_error)
        j, k = np.unravel_index(int(np.argmin(worst)), worst.shape)
        return float(self.sweeps[j]), float(self.sweeps[k]), float(worst[j, k])

    def _next_plan(self, valve_angle: float, angle_error: float) -> list[np.ndarray]:
        """The next stroke's poses, or resting (fingers lifted where the last stroke left them)."""
        b0, b1, left = self.choose(valve_angle, angle_error)
        return stroke_poses(b0, b1, self.lifted, self.lowered) if left < abs(angle_error) else [self._last]

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
        self._stroked = not np.allclose(self._last, RESET_POSE, atol=1e-3)  # the claw has moved: someone stroked

    def act_on(self, info: Mapping) -> np.ndarray:
        """The action for a Turn step's (or reset's) info; a reset's dynamics draw sets the poses."""
        self._read_dynamics(info)
        # clipped: a mount-compensated pose may lie a little outside the joint range (the runtime's
        # action mapping clips the goal to it anyway)
        return np.clip(DCLAW.joint_target_to_action(self.joint_targets(float(info["valve_angle"]),
                                                                       float(info["angle_error"]))), -1.0, 1.0)


class TurnSearchController(TurnTableController):
    """The table teacher, checking its candidate strokes in a copy of the simulator it acts in.

    The table predicts a stroke's rotation from the nominal simulation; under dynamics randomisation
    (weak or strong servos, damping, friction, the mount's position) the same stroke turns the
    valve by more or less, or pushes it back. Before each stroke this teacher takes the
    ``candidates`` strokes the table rates best for the remaining error, runs each from the
    simulator's exact state (``mujoco.mj_copyData`` into a scratch state, the same joint goals and
    velocity limit as :meth:`DClawTask.step`) up to the stroke's end or the episode's, and executes
    the one that leaves the smallest error -- or rests, if none does better than resting. It reads
    the simulator itself (privileged, like the valve angle): :meth:`attach` gives it the env.
    """

    def __init__(self, candidates: int = 96, slack: float = 0.0, near_miss_only: bool = False,
                 knows: Callable[[Mapping], Mapping] | None = None, **kwargs):
        super().__init__(**kwargs)
        # what the rollouts know of the episode's dynamics draw: None, all of it (they run in the
        # env's own model); else a function of the draw giving the draw they assume, e.g.
        # ``lambda d: {}`` (the nominal model) or ``lambda d: {"mount_offset_m": d["mount_offset_m"]}``
        self.knows = knows
        self._model_sim = None
        self.candidates = int(candidates)
        self.slack = float(slack)
        # search only where the table would rest short of the target (its worst case beats no
        # stroke), keeping the table's strokes everywhere else
        self.near_miss_only = bool(near_miss_only)
        self._sim = None
        self._scratch = None
        self._episode_steps = 0

    def attach(self, env) -> None:
        """Act in ``env`` (a :class:`PixelEnv` of a D'Claw Turn task): its simulator and episode length."""
        import mujoco

        task = env.task
        self._sim = task.sim
        if self.knows is not None and self._model_sim is None:
            from robots.dclaw.sim import DClawSim

            self._model_sim = DClawSim(self._sim.scene, render_size=16)
        self._scratch = mujoco.MjData(self._rollout_model)
        self._episode_steps = task.episode_env_steps // env.action_repeat

    @property
    def _rollout_model(self):
        """The model the rollouts step: the env's own, or the one holding what ``knows`` passes on."""
        return self._sim.model if self._model_sim is None else self._model_sim.model

    def _read_dynamics(self, info: Mapping) -> None:
        super()._read_dynamics(info)
        dynamics = info.get("dynamics")
        if self._model_sim is not None and dynamics is not None:
            # a reset's draw: the model the rollouts assume is what ``knows`` passes on of it
            self._model_sim.apply_dynamics(dict(self.knows(dynamics)))

    def reset(self) -> None:
        super().reset()
        self._step = 0

    def take_over(self, reset_info: Mapping, step: int, joint_goals) -> None:
        super().take_over(reset_info, step, joint_goals)
        self._step = int(step)  # the rollouts stop where the episode will

    def _rollout(self, plan: list[np.ndarray], goal: np.ndarray, horizon: int) -> float:
        """The valve's angle after running ``plan`` (then holding its last pose) for ``horizon`` steps."""
        import mujoco

        sim, scratch = self._sim, self._scratch
        model = self._rollout_model  # the same structure as the env's
        mujoco.mj_copyData(scratch, model, sim.data)
        goal = np.array(goal, dtype=np.float64)
        for i in range(horizon):
            action = DCLAW.joint_target_to_action(plan[min(i, len(plan) - 1)])
            for _ in range(ACTION_REPEAT):
                goal = DCLAW.action_to_joint_goal(action, goal, CONTROL_PERIOD_S)
                scratch.ctrl[:] = np.clip(goal, DCLAW.low, DCLAW.high)
                mujoco.mj_step(model, scratch, nstep=sim.substeps)
        return float(scratch.qpos[sim._valve_qpos])

    def _next_plan(self, valve_angle: float, angle_error: float) -> list[np.ndarray]:
        if self.near_miss_only:
            plan = super()._next_plan(valve_angle, angle_error)
            if len(plan) > 1:  # the table strokes
                return plan
        # the simulator's servo goals are the task's (velocity-limited, within the joint ranges)
        return self._search(valve_angle, angle_error, self._sim.data.ctrl)

    def _search(self, valve_angle: float, angle_error: float, goal: np.ndarray) -> list[np.ndarray]:
        order = np.argsort(self._worst_left(valve_angle, angle_error).ravel())[: self.candidates]
        remaining = max(self._episode_steps - self._step, 1)
        target = valve_angle + angle_error
        plans = [[self._last]]  # rest: fingers held where they are
        for flat in order:
            j, k = np.unravel_index(int(flat), (len(self.sweeps), len(self.sweeps)))
            plans.append(stroke_poses(float(self.sweeps[j]), float(self.sweeps[k]), self.lifted, self.lowered))
        steps = sum(TurnStrokeController.steps)
        left = np.array([abs(target - self._rollout(plan, goal, min(steps, remaining))) for plan in plans])
        if left[0] <= left[1:].min() + self.slack:
            return plans[0]
        # the table's favourite among the strokes within `slack` of the best: the choice stays the
        # table's (smooth in the valve's angle, which a student can imitate) unless it fails here
        return plans[1 + int(np.flatnonzero(left[1:] <= left[1:].min() + self.slack)[0])]

    def act_on(self, info: Mapping) -> np.ndarray:
        if self._sim is None:
            raise RuntimeError("TurnSearchController needs the env it acts in: call attach(env) first")
        action = super().act_on(info)
        self._step += 1
        return action


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build the stroke tables of TurnTableController.")
    p.add_argument("--output", type=Path, default=None,
                   help=f"default {STROKE_TABLE} (with --follow: {FOLLOW_TABLES[0.0]})")
    p.add_argument("--phases", type=int, default=24)
    p.add_argument("--dynamics-draws", type=int, default=0,
                   help="also tabulate this many dynamics randomisation draws (the controller takes the worst case)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mount-height-mm", type=float, default=0.0,
                   help="build for the mount this much higher than nominal, the stroke's poses compensated for it "
                        "(the package ships -4: --output robots/dclaw/assets/turn_strokes_mount-4mm.npz)")
    p.add_argument("--follow", action="store_true",
                   help="build the follow-on table: strokes that start where an earlier stroke to each of "
                        f"{', '.join(f'{b:+.1f}' for b in FOLLOW_STARTS)} rad left the claw (about 9 minutes)")
    args = p.parse_args(argv)
    progress = lambda line: print(line, flush=True)  # noqa: E731
    options = mount_table_options(args.mount_height_mm * 1e-3)
    if args.follow:
        if args.dynamics_draws:
            p.error("--follow tables are built for one model: leave out --dynamics-draws")
        table = build_follow_table(phases=args.phases, progress=progress, **options)
    else:
        table = build_stroke_table(args.phases, dynamics_draws=args.dynamics_draws, seed=args.seed,
                                   progress=progress, **options)
    output = args.output or (FOLLOW_TABLES[0.0] if args.follow else STROKE_TABLE)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **table)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
