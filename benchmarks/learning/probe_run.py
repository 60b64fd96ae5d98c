"""What a SLAC run has learned, measured on its own replay buffer: is the latent state useful yet?

    python benchmarks/learning/probe_run.py runs/learning/cartpole-balance-cpu-small-100k-s0

Loads the run's latest checkpoint and the replay buffer saved with it, samples windows, and
reports:

- **reward explained**: 1 - MSE / variance of the model's reward prediction p(r_t | z_t, a_t,
  z_{t+1}) on the last transition of each window. Near 0 means the model predicts only the mean
  reward, i.e. its latent state does not (yet) carry what the reward depends on.
- **probe explained** (``--probe-steps`` > 0): the same fraction for a fresh MLP trained for that
  many Adam steps on the detached latent samples (z_t, z_{t+1}, a_t) and tested on other windows.
  This separates "the reward head has not caught up" from "the information is not in z".
- **critic action range**: max - min over 11 actions in [-1, 1] of min(Q1, Q2)(z_t, a), averaged
  over windows, next to the mean Q. A critic whose values barely depend on the action gives the
  actor nothing to follow.
- the mean posterior std of z1 and the KL of the model on the sample.

Writes the numbers as JSON to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slac_train.checkpoint import checkpoint_dir, load_agent
from slac_train.networks import mlp
from slac_train.replay_buffer import ReplayBuffer
from slac_train.slac_agent import Batch


def _explained(prediction: torch.Tensor, target: torch.Tensor) -> tuple[float, float, float]:
    mse = float((prediction - target).pow(2).mean())
    var = float(target.var(unbiased=False))
    return (1.0 - mse / var if var > 1e-12 else 0.0), mse, var


def probe(run_dir: Path, windows: int, probe_steps: int, seed: int) -> dict:
    agent, state = load_agent(run_dir)
    buffer_file = state.get("buffer_file")
    if not buffer_file or not (checkpoint_dir(run_dir) / buffer_file).is_file():
        raise FileNotFoundError(
            f"{run_dir}: the latest checkpoint has no saved replay buffer (train with "
            "save_buffer on)"
        )
    buffer = ReplayBuffer.load(checkpoint_dir(run_dir) / buffer_file)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = agent.model
    model.eval()

    def latents(n: int):
        batch = Batch.from_numpy(buffer.sample(n, rng), agent.device)
        with torch.no_grad():
            features = agent.encoder(batch.images()).reshape(n, batch.frames.shape[1], -1)
            post = model.sample_posterior(features, batch.actions)
        return batch, post

    batch, post = latents(windows)
    with torch.no_grad():
        reward_mean, _ = model.reward_distribution(post.z, batch.actions)
        z_now = post.z[:, -2]
        grid = torch.linspace(-1.0, 1.0, 11, device=agent.device)
        q = torch.stack(
            [
                torch.min(
                    *agent.critic(
                        z_now,
                        torch.full((windows, agent.action_dim), float(g), device=agent.device),
                    )
                )
                for g in grid
            ],
            dim=1,
        )
        _, metrics = model.loss(batch.images(), batch.actions, batch.rewards, batch.action_valid)
    explained, mse, var = _explained(reward_mean[:, -1], batch.rewards[:, -1])
    result = {
        "run_dir": str(run_dir),
        "checkpoint": Path(state["path"]).name,
        "updates": int(state["counters"]["updates"]),
        "pretrain_updates": int(state["counters"].get("pretrain_updates", 0)),
        "env_step": int(state["counters"]["env_step"]),
        "windows": windows,
        "reward_variance": var,
        "reward_model_mse": mse,
        "reward_explained": explained,
        "critic_mean_q": float(q.mean()),
        "critic_action_range": float((q.max(1).values - q.min(1).values).mean()),
        "z1_posterior_std": float(post.z1_post_std.mean()),
        "model_kl": float(metrics["model/kl"]),
        "model_image_mse": float(metrics["model/image_mse"]),
    }

    if probe_steps > 0:

        def inputs(b, p):
            return torch.cat([p.z[:, -2], p.z[:, -1], b.actions[:, -1]], dim=-1)

        head = mlp(inputs(batch, post).shape[-1], 1, 128, nn.ReLU).to(agent.device)
        optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
        for _ in range(probe_steps):
            b, p = latents(64)
            loss = (head(inputs(b, p)).squeeze(-1) - b.rewards[:, -1]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        b, p = latents(windows)  # fresh windows: the probe is tested on data it was not fitted to
        with torch.no_grad():
            result["probe_explained"], _, _ = _explained(
                head(inputs(b, p)).squeeze(-1), b.rewards[:, -1]
            )
        result["probe_steps"] = probe_steps
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+", type=Path)
    p.add_argument("--windows", type=int, default=1024, help="windows sampled for the measurements")
    p.add_argument(
        "--probe-steps",
        type=int,
        default=600,
        help="Adam steps of the fresh reward probe (0: skip)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for run_dir in args.run_dirs:
        try:
            r = probe(run_dir, args.windows, args.probe_steps, args.seed)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        results.append(r)
        probe_text = f", fresh probe {r['probe_explained']:.2f}" if "probe_explained" in r else ""
        print(
            f"{run_dir.name}: {r['pretrain_updates']:,} pre-training + {r['updates']:,} training "
            f"updates, reward explained {r['reward_explained']:.2f}{probe_text} (variance "
            f"{r['reward_variance']:.4f}); critic: mean Q {r['critic_mean_q']:.2f}, action range "
            f"{r['critic_action_range']:.3f}; z1 posterior std {r['z1_posterior_std']:.2f}, KL "
            f"{r['model_kl']:.1f}",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
