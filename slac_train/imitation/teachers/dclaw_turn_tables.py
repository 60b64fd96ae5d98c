"""Build the stroke tables of the D'Claw Turn table teacher
(:class:`~slac_train.imitation.teachers.dclaw_turn.TurnTableController`).

    python -m slac_train.imitation.teachers.dclaw_turn_tables           # turn_strokes.npz
    python -m slac_train.imitation.teachers.dclaw_turn_tables --mount-height-mm -4
                                                                        # turn_strokes_mount-4mm.npz
    python -m slac_train.imitation.teachers.dclaw_turn_tables --follow  # turn_strokes_follow.npz
    python -m slac_train.imitation.teachers.dclaw_turn_tables --follow --mount-height-mm -4

These four commands build the four tables shipped in ``slac_train/imitation/teachers/assets/``
(written there by default; a table is about 2 minutes of simulation, a follow-on table about 9).
A table holds ``rotation[draw, phase, b0, b1]``: the valve's rotation (rad) after one stroke that
lowers the fingertips at top-joint angle b0 and sweeps them to b1 (-0.40 ... 0.40 rad in steps of
0.05), from every phase of the valve (24 bins of its 120 degrees between spokes), in the nominal
simulation or with the mount moved and the poses compensated for it. A follow-on table starts
every stroke where an earlier stroke to each of ``FOLLOW_STARTS`` left the claw, instead of the
reset pose.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from robots.dclaw.description import DCLAW, RESET_POSE
from slac_runtime.options import OneLineParser, finite_float, int_at_least, run_command
from slac_train.imitation.teachers.dclaw_turn import (
    FOLLOW_STARTS,
    FOLLOW_TABLES,
    MOUNT_TABLES,
    STROKE_TABLE,
    TurnStrokeController,
    mount_compensated_pose,
    servo_goal_sequence,
    stroke_poses,
)


def build_stroke_table(
    phases: int = 24,
    sweeps: np.ndarray | None = None,
    dynamics_draws: int = 0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    dynamics: Mapping | None = None,
    lifted=TurnStrokeController.lifted,
    lowered=TurnStrokeController.lowered,
    after_stroke_to: float | None = None,
) -> dict[str, np.ndarray]:
    """Simulate every stroke from every phase; ``rotation[draw, phase, b0, b1]`` (rad, draw 0
    nominal).

    Each stroke starts from the reset pose at rest, runs its goals through the runtime's action
    mapping (``DCLAW.action_to_joint_goal``, the Turn task's action repeat) and reads the valve's
    rotation. ``dynamics`` (a :meth:`DClawSim.apply_dynamics` draw, e.g. ``{"actuator_kp": 1.5}``)
    replaces the nominal model of draw 0; ``lifted`` and ``lowered`` the stroke's (middle, bottom)
    poses (e.g. :func:`mount_compensated_pose` for a drawn mount height). With ``after_stroke_to``
    (rad) every stroke starts where an earlier stroke that swept to that top-joint angle leaves
    the claw (:func:`stroke_end_goals`) instead of the reset pose.
    """
    from robots.dclaw.sim import DClawSim

    sweeps = (
        np.round(np.arange(-0.40, 0.401, 0.05), 2)
        if sweeps is None
        else np.asarray(sweeps, dtype=np.float64)
    )
    angles = np.arange(phases) * (2 * math.pi / 3) / phases
    rotation = np.zeros((1 + dynamics_draws, phases, len(sweeps), len(sweeps)))
    rng = np.random.default_rng(seed)
    start = (
        np.array(RESET_POSE, dtype=np.float64)
        if after_stroke_to is None
        else stroke_end_goals(after_stroke_to, lifted, lowered)
    )
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
                        for goal in servo_goal_sequence(
                            stroke_poses(b0, b1, lifted, lowered), start
                        ):
                            sim.set_joint_goals(goal)
                            sim.step()
                        rotation[draw, p, j, k] = sim.valve_angle() - theta
                if progress:
                    progress(
                        f"draw {draw} phase {p + 1}/{phases}  {time.monotonic() - started:.0f} s"
                    )
    return {"rotation": rotation.astype(np.float32), "phases": angles, "sweeps": sweeps}


def stroke_end_goals(
    b1: float, lifted=TurnStrokeController.lifted, lowered=TurnStrokeController.lowered
) -> np.ndarray:
    """The servo goals (within the joint ranges) at the end of a stroke that swept to ``b1``,
    after earlier strokes.

    The velocity limit (0.21 rad an agent step) keeps the goals from reaching a stroke's poses:
    the middle joints need six steps from lifted to lowered and get three, so a stroke ends with
    the fingers about half lifted (middle joints near -0.18 rad, not the lifted -0.60), lower
    than the reset pose (-1.05) a first stroke starts from.
    """
    goals = [np.array(RESET_POSE, dtype=np.float64)]
    for plan in (stroke_poses(0.0, 0.3, lifted, lowered), stroke_poses(-0.3, b1, lifted, lowered)):
        goals += list(servo_goal_sequence(plan, goals[-1]))
    return np.clip(goals[-1], DCLAW.low, DCLAW.high)


def build_follow_table(
    starts=FOLLOW_STARTS, progress: Callable[[str], None] | None = None, **options
) -> dict[str, np.ndarray]:
    """:func:`build_stroke_table` once per ``starts`` angle (``after_stroke_to``), stacked:
    ``rotation[start, phase, b0, b1]``, with ``starts``."""
    tables = []
    for b in starts:
        tables.append(build_stroke_table(after_stroke_to=float(b), **options))
        if progress:
            progress(f"after a stroke to {b:+.2f}: done")
    return {
        "rotation": np.concatenate([t["rotation"][:1] for t in tables]),
        "phases": tables[0]["phases"],
        "sweeps": tables[0]["sweeps"],
        "starts": np.asarray(starts, dtype=np.float64),
    }


def mount_table_options(height_m: float) -> dict:
    """:func:`build_stroke_table` options for a mount ``height_m`` higher than nominal: the mount
    moved, the stroke's poses compensated for it (:func:`mount_compensated_pose`) as the
    controller's are; nominal for 0."""
    if not height_m:
        return {}
    return {
        "dynamics": {"mount_offset_m": [0.0, 0.0, float(height_m)]},
        "lifted": mount_compensated_pose(TurnStrokeController.lifted, height_m),
        "lowered": mount_compensated_pose(TurnStrokeController.lowered, height_m),
    }


def default_output(mount_height_mm: float, follow: bool) -> Path | None:
    """Where the package keeps the table of these options (None: not one it ships)."""
    tables = dict(FOLLOW_TABLES) if follow else {0.0: STROKE_TABLE, **MOUNT_TABLES}
    return next(
        (path for height, path in tables.items() if abs(height * 1e3 - mount_height_mm) < 1e-9),
        None,
    )


PROG = "python -m slac_train.imitation.teachers.dclaw_turn_tables"


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    p = OneLineParser(
        prog=PROG, description="Build the stroke tables of the D'Claw Turn table teacher."
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the table (default: the shipped table of these options, in assets/)",
    )
    p.add_argument(
        "--phases",
        type=int_at_least(1),
        default=24,
        help="phase bins of the valve's 120 degrees between spokes",
    )
    p.add_argument(
        "--dynamics-draws",
        type=int_at_least(0),
        default=0,
        help="also tabulate this many dynamics randomisation draws "
        "(the controller takes the worst case)",
    )
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the dynamics draws")
    p.add_argument(
        "--mount-height-mm",
        type=finite_float,
        default=0.0,
        help="build for the mount this much higher than nominal, "
        "the stroke's poses compensated for it "
        "(the package ships tables for 0 and -4)",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="build the follow-on table: strokes that start where an earlier stroke to each of "
        f"{', '.join(f'{b:+.1f}' for b in FOLLOW_STARTS)} rad left the claw (about 9 minutes)",
    )
    args = p.parse_args(argv)
    output = args.output or default_output(args.mount_height_mm, args.follow)
    if output is None:
        p.error(
            f"no table for a mount {args.mount_height_mm:+g} mm high is shipped: "
            "name the file with --output"
        )
    if args.follow and args.dynamics_draws:
        p.error("--follow tables are built for one model: leave out --dynamics-draws")
    progress = lambda line: print(line, flush=True)  # noqa: E731
    options = mount_table_options(args.mount_height_mm * 1e-3)
    if args.follow:
        table = build_follow_table(phases=args.phases, progress=progress, **options)
    else:
        table = build_stroke_table(
            args.phases,
            dynamics_draws=args.dynamics_draws,
            seed=args.seed,
            progress=progress,
            **options,
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **table)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
