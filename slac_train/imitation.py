"""Distil a state-based teacher into the encoder + actor that the robot runs (behaviour cloning).

    slac-imitate --task dclaw-turn --teacher dclaw-turn-table --run-dir runs/turn-bc
    slac-export runs/turn-bc --output turn.onnx

The defaults are the settings of the shipped ``robots/dclaw/policies/turn.onnx`` (about 20 minutes
on one CPU core: 3 minutes of recording, 3,000 updates of batch 32).

SLAC learns Turn from pixels only with a GPU-sized budget (shared/specs/slac.md). This command
gives the runtime a policy that works today: a scripted teacher that reads the simulator's state
(``robots.dclaw.scripted``; ``dclaw-turn-table`` by default; ``dclaw-turn-search`` also tries its
strokes in a copy of the simulator first) drives the task while it is recorded
from the task camera, and the pixel policy -- the very ``Encoder`` + ``TanhGaussianActor`` of a
SLAC agent, with the same 8-frame / 7-action history -- is trained to output the teacher's action.

* Covariate shift is handled by noise injection (DART): the teacher's actions are executed with
  Gaussian noise of several scales while the label stays the clean action, so the data holds the
  states a slightly-off student visits and what to do there. (DAgger's relabelling needs a
  stateless teacher; the stroke controllers keep a plan.)
* Randomisation: every collected episode draws its own visuals, image noise, frame age (the
  task's ``observation_latency``) and (optionally) dynamics, through the task's own switches.
* Loss: squared error of ``tanh(mean)`` against the label, plus the Gaussian negative
  log-likelihood of the label's pre-tanh value for ``log_std`` (mean detached), so the stochastic
  policy is the teacher plus the spread of its imitation error.
* Output: a run directory with ``config.json``, ``metrics.jsonl`` and a checkpoint in the SLAC
  format (critic and latent model untrained), so ``slac-export`` and ``load_agent`` read it as
  they read any run; the checkpoint's counters say how many teacher steps were recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slac_runtime.history import ACTOR_FRAMES, padded_window_indices
from slac_train.checkpoint import save_checkpoint
from slac_train.config import TrainConfig
from slac_train.envs import get_task_spec, make_env
from slac_train.slac_agent import SlacAgent

LABEL_CLIP = 0.97  # labels at +-1 have no finite pre-tanh value


def _turn_strokes(**kwargs):
    from robots.dclaw.scripted import TurnStrokeController

    return TurnStrokeController(**kwargs)


def _turn_table(**kwargs):
    from robots.dclaw.scripted import TurnTableController

    return TurnTableController(**kwargs)


def _turn_search(**kwargs):
    from robots.dclaw.scripted import TurnSearchController

    return TurnSearchController(**kwargs)


# teacher name -> (task families it drives, factory of an object with reset() and act_on(info))
TEACHERS: dict[str, tuple[tuple[str, ...], Callable[..., Any]]] = {
    "dclaw-turn-search": (("dclaw-turn",), _turn_search),
    "dclaw-turn-table": (("dclaw-turn",), _turn_table),
    "dclaw-turn-strokes": (("dclaw-turn",), _turn_strokes),
}


class Dataset:
    """Recorded episodes: frames, executed actions, teacher labels; windows as the actor sees them."""

    def __init__(self, frame_shape: tuple[int, ...], action_dim: int) -> None:
        self.frames: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []  # executed (what the history shows)
        self.labels: list[np.ndarray] = []  # the teacher's clean action at that frame
        self.starts: list[int] = []  # per frame: index of its episode's first frame
        self.frame_shape, self.action_dim = frame_shape, action_dim

    def __len__(self) -> int:
        return len(self.frames)

    def add_episode(self, frames: list[np.ndarray], actions: list[np.ndarray], labels: list[np.ndarray]) -> None:
        start = len(self.frames)
        self.frames += frames
        self.actions += actions
        self.labels += labels
        self.starts += [start] * len(frames)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "frames": np.stack(self.frames).astype(np.uint8),
            "actions": np.stack(self.actions).astype(np.float32),
            "labels": np.clip(np.stack(self.labels), -LABEL_CLIP, LABEL_CLIP).astype(np.float32),
            "starts": np.asarray(self.starts, dtype=np.int64),
        }


def collect(env, teacher, episodes: int, noise_stds: list[float], rng: np.random.Generator,
            data: Dataset, seed0: int) -> dict[str, float]:
    """Run the teacher with action noise for ``episodes`` episodes (noise std cycling through
    ``noise_stds``) and record every frame with the executed action and the clean label."""
    successes, returns = [], []
    if hasattr(teacher, "attach"):  # a teacher that reads the simulator itself
        teacher.attach(env)
    for episode in range(episodes):
        noise = noise_stds[episode % len(noise_stds)]
        obs, info = env.reset(seed=seed0 + episode)
        teacher.reset()
        frames, actions, labels, done, total = [], [], [], False, 0.0
        while not done:
            label = teacher.act_on(info)
            action = np.clip(label + rng.normal(0.0, noise, label.shape), -1.0, 1.0).astype(np.float32)
            frames.append(obs)
            labels.append(label)
            actions.append(action)
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            done = terminated or truncated
        data.add_episode(frames, actions, labels)
        returns.append(total)
        successes.append(float(info.get("success", 0.0)))
    return {"return_mean": float(np.mean(returns)), "success_rate": float(np.mean(successes))}


def sample_batch(arrays: dict[str, np.ndarray], batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    last = rng.integers(0, len(arrays["frames"]), batch_size)
    frame_idx, action_idx, valid = padded_window_indices(last, arrays["starts"][last], ACTOR_FRAMES)
    prev_actions = arrays["actions"][action_idx] * valid[..., None]
    return {"frames": arrays["frames"][frame_idx], "prev_actions": prev_actions.astype(np.float32),
            "labels": arrays["labels"][last]}


def bc_loss(policy: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    mean, log_std = policy(batch["frames"], batch["prev_actions"])
    labels = batch["labels"]
    mse = (torch.tanh(mean) - labels).pow(2).sum(-1).mean()
    pre_tanh = torch.atanh(labels)
    nll = (0.5 * ((pre_tanh - mean.detach()) * torch.exp(-log_std)).pow(2) + log_std).sum(-1).mean()
    return mse + 0.01 * nll, {"mse": float(mse.detach()), "nll": float(nll.detach()), "std": float(log_std.detach().exp().mean())}


def evaluate(agent: SlacAgent, env, episodes: int, seed0: int, deterministic: bool) -> dict[str, float]:
    from slac_train.evaluation import run_episode

    results = [run_episode(env, agent, seed0 + episode, deterministic) for episode in range(episodes)]
    errors = [r.final_info.get("angle_error", r.final_info.get("pose_error", np.nan)) for r in results]
    return {"return_mean": float(np.mean([r.episode_return for r in results])),
            "success_rate": float(np.mean([r.success or 0.0 for r in results])),
            "final_error_abs_mean": float(np.mean(np.abs(errors)))}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slac-imitate", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="dclaw-turn")
    p.add_argument("--teacher", default="dclaw-turn-table", choices=sorted(TEACHERS))
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=300, help="teacher episodes recorded")
    p.add_argument("--teacher-tolerance", type=float, default=None, metavar="RAD",
                   help="valve error (rad) at which the teacher stops turning (default: the teacher's own)")
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.15],
                   help="action-noise stds the episodes cycle through (DART)")
    p.add_argument("--visual-randomization", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--dynamics-randomization", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--image-noise", type=float, default=4.0, help="pixel noise std (grey levels) while recording")
    p.add_argument("--observation-latency", type=float, nargs=2, default=[0.0, 0.08], metavar=("LOW", "HIGH"),
                   help="range (s) of the per-episode age of the frames while recording, as the robot's camera has")
    p.add_argument("--updates", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--encoder-base-channels", type=int, default=16)
    p.add_argument("--feature-dim", type=int, default=128)
    p.add_argument("--actor-hidden", type=int, default=256)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--num-threads", type=int, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    families, make_teacher = TEACHERS[args.teacher]
    try:
        spec = get_task_spec(args.task)
    except KeyError as e:
        print(f"slac-imitate: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    if not any(spec.name == f or spec.name.startswith(f + "-") for f in families):
        print(f"slac-imitate: teacher {args.teacher} drives {', '.join(families)} tasks, not {spec.name}", file=sys.stderr)
        return 2
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    run_dir = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)

    def log(record: dict) -> None:
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()), flush=True)

    switches = {"visual_randomization": args.visual_randomization, "dynamics_randomization": args.dynamics_randomization,
                "image_noise": args.image_noise, "observation_latency": tuple(args.observation_latency)}
    env = make_env(spec.name, seed=args.seed, **switches)
    config = TrainConfig(task=spec.name, seed=args.seed, encoder_base_channels=args.encoder_base_channels,
                         feature_dim=args.feature_dim, actor_critic_hidden=args.actor_hidden,
                         run_dir=str(run_dir), device="cpu").resolved(env.action_repeat)
    config.save_json(run_dir / "config.json")
    (run_dir / "imitation.json").write_text(json.dumps(vars(args) | {"run_dir": str(run_dir)}, indent=2, default=str))

    teacher_options = {} if args.teacher_tolerance is None else {"tolerance": args.teacher_tolerance}
    started = time.monotonic()
    data = Dataset(env.observation_space.shape, env.action_space.shape[0])
    teacher_stats = collect(env, make_teacher(**teacher_options), args.episodes, args.noise, rng, data, seed0=args.seed * 100_000)
    arrays = data.arrays()
    log({"kind": "collect", "frames": len(data), "episodes": args.episodes, "teacher_return": teacher_stats["return_mean"],
         "teacher_success": teacher_stats["success_rate"], "elapsed_s": time.monotonic() - started})

    agent = SlacAgent(config, data.action_dim)
    policy = agent.policy()
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.lr)
    for update in range(1, args.updates + 1):
        batch = {k: torch.from_numpy(v) for k, v in sample_batch(arrays, args.batch_size, rng).items()}
        loss, parts = bc_loss(policy, batch)
        if not torch.isfinite(loss):
            print(f"slac-imitate: non-finite loss at update {update}: {parts}", file=sys.stderr)
            return 1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if update % 250 == 0 or update == args.updates:
            log({"kind": "train", "update": update, **parts, "elapsed_s": time.monotonic() - started})

    counters = {"agent_steps": len(data), "env_steps": len(data) * env.action_repeat, "bc_updates": args.updates}
    state = {"config": config.to_dict(), "action_dim": data.action_dim, "agent": agent.state_dict(),
             "counters": counters, "imitation": {"teacher": args.teacher, **switches}}
    path = save_checkpoint(run_dir, f"ckpt-bc-{args.updates:08d}", state)
    print(f"checkpoint: {path}", flush=True)

    results = {}
    for name, kwargs in (("nominal", {}), ("randomized", switches)):
        eval_env = make_env(spec.name, seed=args.seed + 1, **kwargs)
        try:
            results[name] = evaluate(agent, eval_env, args.eval_episodes, seed0=10_000_000, deterministic=True)
        finally:
            eval_env.close()
        log({"kind": "eval", "setting": name, **results[name]})
    env.close()
    (run_dir / "eval.json").write_text(json.dumps({"teacher": teacher_stats, "student": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
