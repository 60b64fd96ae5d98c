"""Per-step latency of an exported policy: full vs streaming form,
1 and 2 threads, vs PyTorch eager.

    python benchmarks/policy_latency.py                      # paper-size networks, random weights
    python benchmarks/policy_latency.py --policy p.onnx      # an exported policy (ONNX rows only)

Prints one JSON line per configuration with p50/p99 in milliseconds. The streaming form encodes
only the newest frame (N = 1) and reuses the cached features of the previous seven.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def percentiles(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1e3
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "mean_ms": round(float(a.mean()), 4),
    }


def make_paper_policy(path: Path) -> None:
    """Export randomly initialised paper-size encoder + actor (timing
    does not depend on weights)."""
    import torch

    from robots.dclaw import DCLAW
    from slac_runtime.policy_metadata import PolicyMetadata
    from slac_train.export import export_onnx
    from slac_train.networks import Encoder, TanhGaussianActor

    torch.manual_seed(0)
    encoder, actor = Encoder(32, 256), TanhGaussianActor(8 * 256 + 7 * 9, 9, 256)
    metadata = PolicyMetadata(
        task="dclaw-turn",
        robot="dclaw",
        image_height=64,
        image_width=64,
        channel_order="RGB",
        history_length=8,
        action_dim=9,
        feature_dim=256,
        joint_names=DCLAW.joint_names,
        joint_ranges=DCLAW.joint_ranges,
        velocity_limit=DCLAW.velocity_limit,
        control_period_s=0.05,
        action_repeat=2,
        training_agent_steps=0,
        training_env_steps=0,
        checkpoint_sha256="random",
        created_at="benchmark",
        package_version="benchmark",
    )
    export_onnx(encoder, actor, metadata, path)
    torch.save(
        {"encoder": encoder.state_dict(), "actor": actor.state_dict()}, path.with_suffix(".pt")
    )


def bench_onnx(path: Path, threads: int, steps: int, warmup: int = 50) -> list[dict]:
    from slac_runtime.policy import OnnxPolicy

    policy = OnnxPolicy(path, threads=threads, seed=0)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (steps + warmup + 1, 64, 64, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (steps + warmup + 1, policy.metadata.action_dim)).astype(
        np.float32
    )
    rows = []
    # Streaming: what slac-run does every policy step (wall time of OnnxPolicy.step).
    policy.reset(frames[0])
    samples = []
    for t in range(1, steps + warmup + 1):
        t0 = time.perf_counter()
        policy.step(frames[t], actions[t - 1])
        if t > warmup:
            samples.append(time.perf_counter() - t0)
    rows.append({"form": "onnx streaming (N=1)", "threads": threads, **percentiles(samples)})
    # Full: re-encode the whole 8-frame history every step.
    samples = []
    history, prev = frames[:8], actions[:7]
    for t in range(steps + warmup):
        t0 = time.perf_counter()
        policy.run_full(history, prev)
        if t >= warmup:
            samples.append(time.perf_counter() - t0)
    rows.append({"form": "onnx full (N=8)", "threads": threads, **percentiles(samples)})
    return rows


def bench_torch(weights: Path, threads: int, steps: int, warmup: int = 20) -> dict:
    import torch

    from slac_train.networks import Encoder, PixelPolicy, TanhGaussianActor

    torch.set_num_threads(threads)
    state = torch.load(weights, weights_only=True)
    encoder, actor = Encoder(32, 256), TanhGaussianActor(8 * 256 + 7 * 9, 9, 256)
    encoder.load_state_dict(state["encoder"])
    actor.load_state_dict(state["actor"])
    policy = PixelPolicy(encoder, actor).eval()
    frames = torch.randint(0, 256, (1, 8, 64, 64, 3), dtype=torch.uint8)
    actions = torch.rand(1, 7, 9)
    samples = []
    with torch.no_grad():
        for t in range(steps + warmup):
            t0 = time.perf_counter()
            policy(frames, actions)
            if t >= warmup:
                samples.append(time.perf_counter() - t0)
    return {"form": "pytorch eager full (N=8)", "threads": threads, **percentiles(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument(
        "--policy", type=Path, default=None, help="an exported policy (default: paper-size, random)"
    )
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.policy
        if path is None:
            path = Path(tmp) / "paper.onnx"
            make_paper_policy(path)
        for threads in (1, 2):
            for row in bench_onnx(path, threads, args.steps):
                print(json.dumps(row), flush=True)
            if args.policy is None:
                print(
                    json.dumps(
                        bench_torch(path.with_suffix(".pt"), threads, max(200, args.steps // 5))
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
