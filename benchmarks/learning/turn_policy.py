"""Success of the shipped D'Claw Turn policy and of its scripted teacher, in simulation.

    python benchmarks/learning/turn_policy.py --episodes 30 --out benchmarks/learning/results

Runs the ONNX policy through onnxruntime (deterministic, as ``make demo`` runs it) and the
state-based teachers (``robots.dclaw.scripted``: the search teacher, the table teacher with and
without its mount-height compensation, the stroke teacher) on the same seeds of ``dclaw-turn`` (valve 0 -> pi)
under four settings: nominal; visual randomisation + image noise; visual + dynamics randomisation +
image noise; and that with frames up to 80 ms old (the sim-to-real setting). Success is the task's
(|error| < 0.1 rad at the episode's end); "held" success asks for it over the last 5 steps (0.5 s),
which a policy that lands its last stroke just as the episode ends does not have. Writes
``turn-policy.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

SETTINGS = {
    "nominal": {},
    "visual": {"visual_randomization": True, "image_noise": 4.0},
    "visual+dynamics": {"visual_randomization": True, "dynamics_randomization": True, "image_noise": 4.0},
    "visual+dynamics+latency": {"visual_randomization": True, "dynamics_randomization": True, "image_noise": 4.0,
                                "observation_latency": (0.0, 0.08)},
}
HELD_STEPS = 5


def policy_errors(env, policy, seed: int) -> np.ndarray:
    """|angle error| (rad) after each step of one episode of the ONNX policy, streamed as slac-run streams it."""
    frame, _ = env.reset(seed=seed)
    out = policy.reset(frame, deterministic=True)
    errors = []
    while True:
        frame, _, terminated, truncated, info = env.step(out.action)
        errors.append(abs(float(info["angle_error"])))
        if terminated or truncated:
            return np.asarray(errors)
        out = policy.step(frame, out.action, deterministic=True)


def teacher_errors(env, teacher, seed: int) -> np.ndarray:
    """|angle error| (rad) after each step of one episode of a state-based teacher."""
    if hasattr(teacher, "attach"):  # reads the simulator itself
        teacher.attach(env)
    _, info = env.reset(seed=seed)
    teacher.reset()
    errors = []
    while True:
        _, _, terminated, truncated, info = env.step(teacher.act_on(info))
        errors.append(abs(float(info["angle_error"])))
        if terminated or truncated:
            return np.asarray(errors)


def summary(episodes: list[np.ndarray]) -> dict:
    final = np.asarray([e[-1] for e in episodes])
    held = np.asarray([np.all(e[-HELD_STEPS:] < 0.1) for e in episodes])
    return {"success_rate": float(np.mean(final < 0.1)), "held_success_rate": float(held.mean()),
            "final_error_abs_mean": float(final.mean()), "final_error_abs_median": float(np.median(final)),
            "episodes": len(final)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", type=Path, default=None, help="default: the D'Claw package's shipped policy")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--first-seed", type=int, default=20_000,
                   help="seeds first-seed, first-seed + 1, ... (20,000 on: not the seeds the policies were trained on)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/learning/results"))
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                   help="evaluate in these settings only (default: all four)")
    p.add_argument("--no-teachers", action="store_true",
                   help="the policy only (a student's evaluation: the teachers' numbers do not change)")
    args = p.parse_args()

    from robots.dclaw import ROBOT
    from robots.dclaw.scripted import (
        TurnSearchController,
        TurnStrokeController,
        TurnTableController,
    )
    from slac_runtime.policy import OnnxPolicy
    from slac_train.envs import make_env

    path = args.policy or ROBOT.default_policy()
    if path is None:
        print("no policy given and none shipped", file=sys.stderr)
        return 2
    policy = OnnxPolicy(path)
    teachers = {"search": TurnSearchController(), "table": TurnTableController(),
                "table-uncompensated": TurnTableController(compensate_mount=False), "strokes": TurnStrokeController()}
    if args.no_teachers:
        teachers = {}
    seeds = np.arange(args.episodes) + args.first_seed
    result = {"policy": str(path), "metadata": {"training_env_steps": policy.metadata.training_env_steps,
                                                  "created_at": policy.metadata.created_at},
              "seeds": [int(seeds[0]), int(seeds[-1])], "settings": {}}
    started = time.monotonic()
    for name in args.settings:
        switches = SETTINGS[name]
        env = make_env("dclaw-turn", seed=0, **switches)
        try:
            student = summary([policy_errors(env, policy, int(seed)) for seed in seeds])
            scripted = {k: summary([teacher_errors(env, t, int(seed)) for seed in seeds]) for k, t in teachers.items()}
        finally:
            env.close()
        result["settings"][name] = {"policy": student, "teachers": scripted, "switches": switches}
        line = "   ".join(f"{who} {r['success_rate']:.0%} held {r['held_success_rate']:.0%} (|err| {r['final_error_abs_median']:.2f})"
                           for who, r in {"policy": student, **scripted}.items())
        print(f"{name:24s} {line}", flush=True)
    result["wall_clock_s"] = time.monotonic() - started
    result["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "turn-policy.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
