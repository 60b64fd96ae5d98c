"""Agent steps per second with rendering, per task: one JSON line each.

Also splits an agent step into its parts -- physics (``action_repeat`` simulator steps) and one
64x64 render -- so that one can check the goal: agent step = physics x repeat + exactly one render.

    python benchmarks/env_speed.py                 # the paper's tasks and the D'Claw tasks
    python benchmarks/env_speed.py --tasks cheetah-run dclaw-turn --steps 500
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from slac_train.envs import get_task_spec, make_env, task_names


def default_tasks() -> list[str]:
    names = [n for n in task_names() if "paper" in get_task_spec(n).tags]
    return names + task_names(suite="dclaw")


def measure(name: str, steps: int, seed: int = 0) -> dict:
    env = make_env(name, seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, size=(steps, *env.action_space.shape)).astype(np.float32)
    try:
        env.reset()
        env_steps = 0
        t0 = time.perf_counter()
        for a in actions:
            _, _, term, trunc, info = env.step(a)
            env_steps += info["env_steps"]
            if term or trunc:
                env.reset()
        total = time.perf_counter() - t0

        # The parts: simulator steps alone, then renders alone.
        env.reset()
        task = env.task
        t0 = time.perf_counter()
        n_physics = 0
        for a in actions:
            _, term, trunc, _ = task.step(a)
            n_physics += 1
            if term or trunc:
                env.reset()
        physics_ms = (time.perf_counter() - t0) / n_physics * 1e3
        t0 = time.perf_counter()
        for _ in range(steps):
            task.render()
        render_ms = (time.perf_counter() - t0) / steps * 1e3
    finally:
        env.close()
    agent_ms = total / steps * 1e3
    predicted = physics_ms * env.action_repeat + render_ms
    return {
        "task": name,
        "action_repeat": env.action_repeat,
        "agent_steps_per_s": round(steps / total, 1),
        "env_steps_per_s": round(env_steps / total, 1),
        "agent_step_ms": round(agent_ms, 3),
        "physics_step_ms": round(physics_ms, 3),
        "render_ms": round(render_ms, 3),
        "agent_step_over_physics_x_repeat_plus_render": round(agent_ms / predicted, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", nargs="*", default=None, help="task names (default: paper + D'Claw)"
    )
    parser.add_argument("--steps", type=int, default=300, help="agent steps per task")
    args = parser.parse_args()
    for name in args.tasks or default_tasks():
        print(json.dumps(measure(name, args.steps)), flush=True)


if __name__ == "__main__":
    main()
