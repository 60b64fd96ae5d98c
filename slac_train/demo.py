"""A random-policy rollout of a task, saved as an mp4 and a PNG contact sheet.

python -m slac_train.demo --task dclaw-turn --out out/demo
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slac_runtime.options import (
    UsageError,
    command_parser,
    int_at_least,
    option,
    parse_config,
    run_command,
)
from slac_train.envs import UnknownTaskError, make_env, task_names
from slac_train.rollout_media import contact_sheet, write_png, write_video

PROG = "python -m slac_train.demo"


@dataclass
class RolloutConfig:
    """The demo rollout's options."""

    task: str | None = option(None, "task name (default: dclaw-turn)")
    seed: int = option(0, "seed of the environment and the random actions", parse=int_at_least(0))
    max_steps: int | None = option(
        None, "agent steps (default: one episode)", parse=int_at_least(1)
    )
    out: Path = option(Path("out/demo"), "folder the video and the contact sheet go to")
    json: bool = option(False, "print the result as one JSON line")


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
    return run_command(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    parser = command_parser(PROG, RolloutConfig, __doc__.splitlines()[0])
    args = parse_config(parser, RolloutConfig, argv)
    task = args.task or default_task()
    try:
        frames, total, info, fps = rollout(task, args.seed, args.max_steps)
    except UnknownTaskError as e:
        raise UsageError(str(e)) from e
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
