"""A random-policy rollout of a task, saved as an mp4 and a PNG contact sheet.

python -m slac_train.demo --task dclaw-turn --out out/demo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from slac_train.envs import UnknownTaskError, make_env, task_names
from slac_train.rollout_media import contact_sheet, write_png, write_video


def default_task() -> str:
    return "dclaw-turn" if "dclaw-turn" in task_names() else "cartpole-swingup"


def rollout(
    task: str, seed: int, max_steps: int | None
) -> tuple[list[np.ndarray], float, dict, float]:
    env = make_env(task, seed=seed)
    rng = np.random.default_rng(seed)
    try:
        obs, info = env.reset()
        frames, total = [obs], 0.0
        steps = 0
        while max_steps is None or steps < max_steps:
            action = rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            frames.append(obs)
            total += reward
            steps += 1
            if terminated or truncated:
                break
        return frames, total, info, 1.0 / env.agent_period_s
    finally:
        env.close()


def describe(summary: dict) -> str:
    """The rollout's result as a line a person reads."""
    text = (
        f"random rollout of {summary['task']}: {summary['agent_steps']} agent steps, "
        f"return {summary['return']:.2f}"
    )
    if "success" in summary:
        text += ", success" if summary["success"] else ", no success"
    return f"{text}\n  video {summary['video']}\n  contact sheet {summary['contact_sheet']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=None, help="task name (default: dclaw-turn)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-steps", type=int, default=None, help="agent steps (default: one episode)"
    )
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    task = args.task or default_task()
    try:
        frames, total, info, fps = rollout(task, args.seed, args.max_steps)
    except UnknownTaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    video = write_video(args.out / f"{task}-random.mp4", frames, fps=fps)
    sheet = write_png(args.out / f"{task}-random.png", contact_sheet(frames))
    summary = {
        "task": task,
        "agent_steps": len(frames) - 1,
        "return": round(total, 3),
        "video": str(video),
        "contact_sheet": str(sheet),
    }
    summary.update({k: v for k, v in info.items() if k in ("success", "score")})
    print(json.dumps(summary) if args.json else describe(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
