"""Milliseconds of one SLAC update pair (model + actor-critic) in each update structure.

Paper-size networks and batches by default: 256 windows for the actor-critic and 32 for the model,
each of 9 frames of 64x64x3 and 8 actions, as in training. The structures
(``TrainConfig.update_structure``):

- ``separate-batches``: a model update on its own batch of 32 windows, then an actor-critic update
  on a batch of 256 (2304 + 288 frames encoded);
- ``single-batch`` (the official structure): one batch of 256 windows encoded once, the model
  trained on its first 32 with the posterior samples the critic uses (2304 frames encoded);
- ``baseline`` (``--baseline``): separate batches in plain fp32 eager -- NCHW tensors, the encoder's
  no-grad pass through autograd's ordinary forward.

One JSON line per (device, structure), then one with the ratios. The structures are measured in
interleaved rounds; the headline numbers are the best of the rounds (a shared machine's other load
only ever adds time), medians are reported beside them. Each line also gives the FLOPs of the
update pair (paper size: about 61 + 85 GFLOP separate, fewer single) and the rate achieved, to
compare with the machine's peak (on an AVX2 core, 2 FMA units x 8 fp32 lanes x 2 = 32 FLOP per
cycle).

At paper size a round takes several seconds on a 2-core CPU, so the default 2 + 5 rounds take
about a minute; ``--size cpu-small`` measures the ``cpu-small`` preset's networks and batches.

    python benchmarks/update_speed.py                     # CPU, and CUDA when present
    python benchmarks/update_speed.py --device cpu --repeats 5 --threads 2
    python benchmarks/update_speed.py --device cpu --size cpu-small --baseline
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from slac_train.config import PRESETS, TrainConfig
from slac_train.slac_agent import Batch, SlacAgent

ACTION_DIM = 6  # cheetah-run
STRUCTURES = ("separate-batches", "single-batch")
SIZE_FIELDS = (
    "encoder_base_channels",
    "feature_dim",
    "z1_dim",
    "z2_dim",
    "model_hidden",
    "actor_critic_hidden",
    "batch_size_actor_critic",
    "batch_size_model",
)


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


def make_agent(device: torch.device, variant: str, sizes: dict) -> SlacAgent:
    config = TrainConfig(
        task="cheetah-run",
        device=device.type,
        fast_encoder=variant != "baseline",
        update_structure="single-batch" if variant == "single-batch" else "separate-batches",
        **sizes,
    ).resolved(4)
    torch.manual_seed(0)
    agent = SlacAgent(config, ACTION_DIM, device)
    if variant == "baseline":
        agent.model.to(memory_format=torch.contiguous_format)
    return agent


def update_pair(agent: SlacAgent, variant: str, rng: np.random.Generator, device: torch.device):
    """The function that runs one update pair of ``variant`` on fixed random batches."""
    c = agent.config
    plain = variant == "baseline"
    ac_batch = random_batch(c.batch_size_actor_critic, device, rng, plain)
    if variant == "single-batch":
        return lambda: agent.update(ac_batch)
    model_batch = random_batch(c.batch_size_model, device, rng, plain)
    return lambda: (agent.update_model(model_batch), agent.update_actor_critic(ac_batch))


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
    device: torch.device, variants: list[str], sizes: dict, repeats: int, warmup: int
) -> dict[str, dict]:
    """Interleaved rounds (every variant once per round), so that load from other processes on a
    shared machine hits all variants alike; reports the minimum (best case) and the median."""
    rng = np.random.default_rng(0)
    jobs = {v: update_pair(make_agent(device, v, sizes), v, rng, device) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(warmup + repeats):
        for variant in variants:
            ms = run_once(jobs[variant], device)
            if round_ >= warmup:
                times[variant].append(ms)
    return {
        variant: {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "structure": variant,
            "batch_actor_critic": sizes["batch_size_actor_critic"],
            "batch_model": sizes["batch_size_model"],
            "pair_ms": round(min(times[variant]), 1),
            "median_pair_ms": round(statistics.median(times[variant]), 1),
            "repeats": repeats,
        }
        for variant in variants
    }


def count_gflop(device: torch.device, variant: str, sizes: dict) -> float:
    """GFLOP of one update pair, counted by ``torch.utils.flop_counter`` at an eighth of the
    batches and scaled (every op's cost is linear in the batch). The fused no-grad convolutions
    are invisible to the counter, so the count runs with ``fast_encoder`` off."""
    from torch.utils.flop_counter import FlopCounterMode

    scale = 8
    small = dict(
        sizes,
        batch_size_actor_critic=max(1, sizes["batch_size_actor_critic"] // scale),
        batch_size_model=max(1, sizes["batch_size_model"] // scale),
    )
    agent = make_agent(device, variant, small)
    agent.config = agent.config.replace(fast_encoder=False)
    fn = update_pair(agent, variant, np.random.default_rng(0), device)
    with FlopCounterMode(display=False) as counter:
        fn()
    return (
        counter.get_total_flops()
        / 1e9
        * sizes["batch_size_actor_critic"]
        / (small["batch_size_actor_critic"])
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--repeats", type=int, default=5, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument(
        "--size",
        choices=["paper", "cpu-small"],
        default="paper",
        help="networks and batches: the paper's (TrainConfig defaults) or the cpu-small preset's",
    )
    parser.add_argument(
        "--baseline", action="store_true", help="also time separate batches in plain fp32 eager"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS[args.size] if args.size != "paper" else {}
    defaults = TrainConfig()
    sizes = {name: preset.get(name, getattr(defaults, name)) for name in SIZE_FIELDS}
    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            raise SystemExit("no CUDA device visible to torch")
    variants = list(STRUCTURES) + (["baseline"] if args.baseline else [])
    if args.size == "paper" and any(d.type == "cpu" for d in devices):
        print(
            "note: paper-size updates on a CPU take seconds each; "
            f"{args.warmup + args.repeats} rounds x {len(variants)} structures follow",
            file=sys.stderr,
            flush=True,
        )
    for device in devices:
        results = measure(device, variants, sizes, args.repeats, args.warmup)
        for variant in variants:
            r = results[variant]
            gflop = count_gflop(device, variant, sizes)
            r["gflop_pair"] = round(gflop, 1)
            r["achieved_gflop_per_s"] = round(gflop / (r["pair_ms"] / 1000), 1)
            print(json.dumps(r), flush=True)
        separate, single = results["separate-batches"], results["single-batch"]
        ratios = {
            "device": str(device),
            "separate_over_single_pair": round(separate["pair_ms"] / single["pair_ms"], 2),
            "separate_over_single_median": round(
                separate["median_pair_ms"] / single["median_pair_ms"], 2
            ),
        }
        if "baseline" in results:
            ratios["baseline_over_single_pair"] = round(
                results["baseline"]["pair_ms"] / single["pair_ms"], 2
            )
        print(json.dumps(ratios), flush=True)


if __name__ == "__main__":
    main()
