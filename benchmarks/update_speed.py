"""Milliseconds of one SLAC model update and one actor-critic update, paper-size networks.

Batches of 32 (model) and 256 (actor-critic) windows of 9 frames of 64x64x3 and 8 actions, as in
training. One JSON line per (device, variant), and one with the baseline/optimised time ratios. The
variants are measured in interleaved rounds; the headline numbers are the best of the rounds (a
shared machine's other load only ever adds time), medians are reported beside them.

- ``baseline``: plain fp32 eager -- NCHW tensors, the encoder's no-grad passes through autograd's
  ordinary forward, one pass over all 2304 frames;
- ``optimised``: what training runs -- channels-last convolutions, fused conv + leaky ReLU in cache-
  sized chunks for the no-grad encoder pass (CPU), and the settings of ``TrainConfig``.

Each line also gives the FLOPs of the two updates (about 61 + 85 GFLOP: the actor-critic update
encodes 256 x 9 frames) and the rate achieved, to compare with the machine's peak (on an AVX2 core,
2 FMA units x 8 fp32 lanes x 2 = 32 FLOP per cycle).

    python benchmarks/update_speed.py                     # CPU, and CUDA when present
    python benchmarks/update_speed.py --device cpu --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from slac_train.config import TrainConfig
from slac_train.slac_agent import Batch, SlacAgent

ACTION_DIM = 6  # cheetah-run


class PlainBatch(Batch):
    """A batch whose images are plain NCHW (the baseline's layout)."""

    def images(self) -> torch.Tensor:
        return super().images().contiguous()


def random_batch(size: int, device: torch.device, rng: np.random.Generator, plain: bool) -> Batch:
    arrays = {
        "frames": rng.integers(0, 256, (size, 9, 64, 64, 3), dtype=np.uint8),
        "actions": rng.uniform(-1, 1, (size, 8, ACTION_DIM)).astype(np.float32),
        "rewards": rng.uniform(0, 1, (size, 8)).astype(np.float32),
        "action_valid": np.ones((size, 8), dtype=bool),
        "terminated": np.zeros((size, 8), dtype=np.float32),
    }
    batch = Batch.from_numpy(arrays, device)
    if plain:
        batch = PlainBatch(**vars(batch))
    return batch


def make_agent(device: torch.device, variant: str) -> SlacAgent:
    config = TrainConfig(
        task="cheetah-run", device=device.type, fast_encoder=variant != "baseline"
    ).resolved(4)
    torch.manual_seed(0)
    agent = SlacAgent(config, ACTION_DIM, device)
    if variant == "baseline":
        agent.model.to(memory_format=torch.contiguous_format)
    return agent


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return 1000.0 * (time.perf_counter() - start)


def measure(
    device: torch.device, variants: list[str], repeats: int, warmup: int
) -> dict[str, dict]:
    """Interleaved rounds (every variant once per round), so that load from other processes on a
    shared machine hits all variants alike; reports the minimum (best case) and the median."""
    rng = np.random.default_rng(0)
    jobs = {}
    for variant in variants:
        agent = make_agent(device, variant)
        plain = variant == "baseline"
        model_batch = random_batch(32, device, rng, plain)
        ac_batch = random_batch(256, device, rng, plain)
        jobs[variant] = {
            "model": lambda a=agent, b=model_batch: a.update_model(b),
            "actor_critic": lambda a=agent, b=ac_batch: a.update_actor_critic(b),
        }
    times = {v: {"model": [], "actor_critic": []} for v in variants}
    for round_ in range(warmup + repeats):
        for variant in variants:
            for part in ("model", "actor_critic"):
                ms = run_once(jobs[variant][part], device)
                if round_ >= warmup:
                    times[variant][part].append(ms)
    results = {}
    for variant in variants:
        model_ms, ac_ms = times[variant]["model"], times[variant]["actor_critic"]
        results[variant] = {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "variant": variant,
            "model_update_ms": round(min(model_ms), 1),
            "actor_critic_update_ms": round(min(ac_ms), 1),
            "pair_ms": round(min(model_ms) + min(ac_ms), 1),
            "median_model_update_ms": round(statistics.median(model_ms), 1),
            "median_actor_critic_update_ms": round(statistics.median(ac_ms), 1),
            "repeats": repeats,
        }
    return results


def count_gflop(device: torch.device) -> dict[str, float]:
    """GFLOP of one model update (batch 32) and one actor-critic update (batch 256), counted by
    ``torch.utils.flop_counter`` on the baseline path (the fused no-grad convolutions are invisible
    to the counter) at batches 4 / 16 and scaled: every op's cost is linear in the batch."""
    from torch.utils.flop_counter import FlopCounterMode

    rng = np.random.default_rng(0)
    agent = make_agent(device, "baseline")
    counts = {}
    for part, fn, small, full in (
        ("model", agent.update_model, 4, 32),
        ("actor_critic", agent.update_actor_critic, 16, 256),
    ):
        batch = random_batch(small, device, rng, plain=True)
        with FlopCounterMode(display=False) as counter:
            fn(batch)
        counts[part] = counter.get_total_flops() / 1e9 * full / small
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the plain fp32 eager baseline"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            raise SystemExit("no CUDA device visible to torch")
    for device in devices:
        variants = ["optimised"] if args.no_baseline else ["baseline", "optimised"]
        results = measure(device, variants, args.repeats, args.warmup)
        gflop = count_gflop(device)
        for variant in variants:
            r = results[variant]
            r["gflop_model"], r["gflop_actor_critic"] = (
                round(gflop["model"], 1),
                round(gflop["actor_critic"], 1),
            )
            r["achieved_gflop_per_s"] = round(
                (gflop["model"] + gflop["actor_critic"]) / (r["pair_ms"] / 1000), 1
            )
            print(json.dumps(r), flush=True)
        if "baseline" in results:
            base, fast = results["baseline"], results["optimised"]
            print(
                json.dumps(
                    {
                        "device": str(device),
                        "speedup_model": round(
                            base["model_update_ms"] / fast["model_update_ms"], 2
                        ),
                        "speedup_actor_critic": round(
                            base["actor_critic_update_ms"] / fast["actor_critic_update_ms"], 2
                        ),
                        "speedup_pair": round(base["pair_ms"] / fast["pair_ms"], 2),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
