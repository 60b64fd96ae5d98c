"""Success of the shipped D'Claw Turn policy and of its scripted teacher, in simulation.

    python benchmarks/learning/turn_policy.py --episodes 30 --out benchmarks/learning/results

Runs the ONNX policy through onnxruntime (deterministic, as ``make demo`` runs it) and the
state-based teacher (``robots.dclaw.scripted``) on the same seeds of ``dclaw-turn`` (valve 0 -> pi)
under three settings: nominal; visual randomisation + image noise; visual + dynamics randomisation
+ image noise (the sim-to-real setting). Writes ``turn-policy.json``.
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
}


def policy_error(env, policy, seed: int) -> float:
    """Final |angle error| (rad) of one episode of the ONNX policy, streamed as slac-run streams it."""
    frame, _ = env.reset(seed=seed)
    out = policy.reset(frame, deterministic=True)
    while True:
        frame, _, terminated, truncated, info = env.step(out.action)
        if terminated or truncated:
            return abs(float(info["angle_error"]))
        out = policy.step(frame, out.action, deterministic=True)


def teacher_error(env, teacher, seed: int) -> float:
    """Final |angle error| (rad) of one episode of the state-based teacher."""
    _, info = env.reset(seed=seed)
    teacher.reset()
    while True:
        _, _, terminated, truncated, info = env.step(teacher.act(info["angle_error"]))
        if terminated or truncated:
            return abs(float(info["angle_error"]))


def summary(errors: list[float]) -> dict:
    errors = np.asarray(errors)
    return {"success_rate": float(np.mean(errors < 0.1)), "final_error_abs_mean": float(errors.mean()),
            "final_error_abs_median": float(np.median(errors)), "episodes": len(errors)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", type=Path, default=None, help="default: the D'Claw package's shipped policy")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("benchmarks/learning/results"))
    args = p.parse_args()

    from robots.dclaw import ROBOT
    from robots.dclaw.scripted import TurnStrokeController
    from slac_runtime.policy import OnnxPolicy
    from slac_train.envs import make_env

    path = args.policy or ROBOT.default_policy()
    if path is None:
        print("no policy given and none shipped", file=sys.stderr)
        return 2
    policy = OnnxPolicy(path)
    teacher = TurnStrokeController()
    seeds = np.arange(args.episodes) + 20_000  # not the seeds the policy was trained on
    result = {"policy": str(path), "metadata": {"training_env_steps": policy.metadata.training_env_steps,
                                                  "created_at": policy.metadata.created_at},
              "seeds": [int(seeds[0]), int(seeds[-1])], "settings": {}}
    started = time.monotonic()
    for name, switches in SETTINGS.items():
        env = make_env("dclaw-turn", seed=0, **switches)
        try:
            student = summary([policy_error(env, policy, int(seed)) for seed in seeds])
            scripted = summary([teacher_error(env, teacher, int(seed)) for seed in seeds])
        finally:
            env.close()
        result["settings"][name] = {"policy": student, "teacher": scripted, "switches": switches}
        print(f"{name:16s} policy {student['success_rate']:.0%} (|err| {student['final_error_abs_mean']:.2f} rad)   "
              f"teacher {scripted['success_rate']:.0%} (|err| {scripted['final_error_abs_mean']:.2f} rad)", flush=True)
    result["wall_clock_s"] = time.monotonic() - started
    result["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "turn-policy.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
