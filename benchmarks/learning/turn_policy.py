"""Success of the shipped D'Claw Turn policy and of its scripted teacher, in simulation.

    python benchmarks/learning/turn_policy.py --episodes 30 --out benchmarks/learning/results
    python benchmarks/learning/turn_policy.py --episodes 600 --no-teachers \
        --settings visual+dynamics visual+dynamics+latency      # the shipped policy's 600 seeds

Runs the ONNX policy through onnxruntime (deterministic, as ``make demo`` runs it) and the
state-based teachers (:mod:`slac_train.imitation.teachers.dclaw_turn`: the search teacher, the
table teacher with and without its mount-height compensation, with its second table for low mounts
and with its follow-on tables, the stroke teacher) on the same seeds of ``dclaw-turn`` (valve 0 ->
pi) under four settings: nominal; visual
randomisation + image noise; visual + dynamics randomisation + image noise; and that with frames
up to 80 ms old (the sim-to-real setting). Success is the task's
(|error| < 0.1 rad at the episode's end); "held" success asks for it over the last 5 steps (0.5 s),
which a policy that lands its last stroke just as the episode ends does not have. Writes
``turn-policy.json``, with success by the drawn mount height under dynamics randomisation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from slac_train.envs.dclaw import mount_height_mm, success_by_mount_height

SETTINGS = {
    "nominal": {},
    "visual": {"visual_randomization": True, "image_noise": 4.0},
    "visual+dynamics": {
        "visual_randomization": True,
        "dynamics_randomization": True,
        "image_noise": 4.0,
    },
    "visual+dynamics+latency": {
        "visual_randomization": True,
        "dynamics_randomization": True,
        "image_noise": 4.0,
        "observation_latency": (0.0, 0.08),
    },
}
HELD_STEPS = 5
# the state-based teachers (slac_train.imitation.teachers.dclaw_turn); "table", "mount-tables",
# "follow-tables", "search" and "strokes" are slac-imitate's dclaw-turn-* teachers of those names
TEACHERS = ("search", "table", "mount-tables", "follow-tables", "table-uncompensated", "strokes")


def policy_errors(env, policy, seed: int) -> tuple[np.ndarray, float | None]:
    """|angle error| (rad) after each step of one episode of the ONNX policy, streamed as slac-run
    streams it, and the episode's mount height (mm)."""
    frame, reset_info = env.reset(seed=seed)
    out = policy.reset(frame, deterministic=True)
    errors = []
    while True:
        frame, _, terminated, truncated, info = env.step(out.action)
        errors.append(abs(float(info["angle_error"])))
        if terminated or truncated:
            return np.asarray(errors), mount_height_mm(reset_info)
        out = policy.step(frame, out.action, deterministic=True)


def teacher_errors(env, teacher, seed: int) -> tuple[np.ndarray, float | None]:
    """|angle error| (rad) after each step of one episode of a state-based
    teacher, and the mount height (mm)."""
    if hasattr(teacher, "attach"):  # reads the simulator itself
        teacher.attach(env)
    _, info = env.reset(seed=seed)
    height = mount_height_mm(info)
    teacher.reset()
    errors = []
    while True:
        _, _, terminated, truncated, info = env.step(teacher.act_on(info))
        errors.append(abs(float(info["angle_error"])))
        if terminated or truncated:
            return np.asarray(errors), height


def summary(episodes: list[tuple[np.ndarray, float | None]]) -> dict:
    final = np.asarray([e[-1] for e, _ in episodes])
    held = np.asarray([np.all(e[-HELD_STEPS:] < 0.1) for e, _ in episodes])
    result = {
        "success_rate": float(np.mean(final < 0.1)),
        "held_success_rate": float(held.mean()),
        "final_error_abs_mean": float(final.mean()),
        "final_error_abs_median": float(np.median(final)),
        "episodes": len(final),
    }
    heights = np.asarray([np.nan if h is None else h for _, h in episodes])
    if not np.isnan(heights).any():  # dynamics randomisation: success by the drawn mount height
        result["success_by_mount_height"] = success_by_mount_height(heights, final < 0.1)
    return result


def make_teacher(name: str):
    """One of :data:`TEACHERS`: slac-imitate's registered teacher of that name, or the table
    teacher without its mount compensation."""
    from slac_train.imitation.teachers import TeacherOptions, get_teacher
    from slac_train.imitation.teachers.dclaw_turn import TurnTableController

    if name == "table-uncompensated":
        return TurnTableController(compensate_mount=False)
    return get_teacher(f"dclaw-turn-{name}").make(TeacherOptions())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--policy", type=Path, default=None, help="default: the D'Claw package's shipped policy"
    )
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument(
        "--first-seed",
        type=int,
        default=20_000,
        help=(
            "seeds first-seed, first-seed + 1, ... (20,000 on: not the seeds the policies "
            "were trained on)"
        ),
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/learning/results"))
    p.add_argument(
        "--settings",
        nargs="+",
        default=list(SETTINGS),
        choices=list(SETTINGS),
        help="evaluate in these settings only (default: all four)",
    )
    p.add_argument(
        "--no-teachers",
        action="store_true",
        help="the policy only (a student's evaluation: the teachers' numbers do not change)",
    )
    p.add_argument(
        "--teachers",
        nargs="+",
        default=list(TEACHERS),
        choices=list(TEACHERS),
        help=(
            "evaluate these teachers only (default: all; the search teacher takes ~2 s an episode)"
        ),
    )
    args = p.parse_args()

    from robots.dclaw import ROBOT
    from slac_runtime.policy import OnnxPolicy
    from slac_train.envs import make_env

    path = args.policy or ROBOT.default_policy()
    if path is None:
        print("no policy given and none shipped", file=sys.stderr)
        return 2
    policy = OnnxPolicy(path)
    teachers = {} if args.no_teachers else {name: make_teacher(name) for name in args.teachers}
    seeds = np.arange(args.episodes) + args.first_seed
    result = {
        "policy": str(path),
        "metadata": {
            "training_env_steps": policy.metadata.training_env_steps,
            "created_at": policy.metadata.created_at,
        },
        "seeds": [int(seeds[0]), int(seeds[-1])],
        "settings": {},
    }
    started = time.monotonic()
    for name in args.settings:
        switches = SETTINGS[name]
        env = make_env("dclaw-turn", seed=0, **switches)
        try:
            student = summary([policy_errors(env, policy, int(seed)) for seed in seeds])
            scripted = {
                k: summary([teacher_errors(env, t, int(seed)) for seed in seeds])
                for k, t in teachers.items()
            }
        finally:
            env.close()
        result["settings"][name] = {"policy": student, "teachers": scripted, "switches": switches}
        line = "   ".join(
            f"{who} {r['success_rate']:.0%} held {r['held_success_rate']:.0%} (|err| "
            f"{r['final_error_abs_median']:.2f})"
            for who, r in {"policy": student, **scripted}.items()
        )
        print(f"{name:24s} {line}", flush=True)
    result["wall_clock_s"] = time.monotonic() - started
    result["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "turn-policy.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
