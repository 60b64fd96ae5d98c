"""slac-run against the virtual D'Claw for a while: tick jitter, inference time and frame age.

    python benchmarks/loop_timing.py --duration 60      # paper-size policy with random weights
    python benchmarks/loop_timing.py --policy p.onnx

The virtual D'Claw runs in its own process beside slac-run (as on a 2-core robot computer with the
simulator standing in for the hardware). Prints one JSON line with the loop's statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slac_runtime.episode_log import read_episode_log  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of control")
    parser.add_argument("--policy", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        policy = args.policy
        if policy is None:
            from policy_latency import make_paper_policy

            policy = tmp / "paper.onnx"
            make_paper_policy(policy)
        port, camera = tmp / "tty", f"ipc://{tmp}/camera"
        virtual = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "robots.virtual_cli",
                "--robot",
                "dclaw",
                "--port-link",
                str(port),
                "--camera-bind",
                camera,
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl")),
        )
        try:
            line = virtual.stdout.readline()
            if "servo port" not in line:
                raise SystemExit(f"the virtual D'Claw did not start: {line}")
            steps = int(args.duration / 0.1)  # policy steps of 0.1 s (Turn: 0.05 s x 2)
            started = time.monotonic()
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "slac_runtime.run_cli",
                    "--robot",
                    "dclaw",
                    "--camera",
                    camera,
                    "--port",
                    str(port),
                    "--policy",
                    str(policy),
                    "--allow-uncalibrated",
                    "--quiet",
                    "--episode-steps",
                    str(steps),
                    "--log-dir",
                    str(tmp / "logs"),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
            )
            wall = time.monotonic() - started
            if run.returncode != 0:
                raise SystemExit(f"slac-run failed: {run.stderr}")
        finally:
            virtual.terminate()
            virtual.wait(timeout=10)
        log = read_episode_log(next((tmp / "logs").glob("*/episode-000.slaclog")))
    lateness = np.array([t["lateness_s"] for t in log.ticks]) * 1e3
    intervals = np.diff([t["t"] for t in log.ticks]) * 1e3
    policy_ticks = log.policy_ticks()
    inference = np.array([t["policy"]["inference_s"] for t in policy_ticks]) * 1e3
    age = np.array([t["policy"]["frame_age_s"] for t in policy_ticks]) * 1e3
    print(
        json.dumps(
            {
                "ticks": len(log.ticks),
                "wall_s": round(wall, 1),
                "tick_jitter_p50_ms": round(float(np.percentile(lateness, 50)), 3),
                "tick_jitter_p99_ms": round(float(np.percentile(lateness, 99)), 3),
                "tick_jitter_max_ms": round(float(lateness.max()), 3),
                "tick_interval_p1_p99_ms": [
                    round(float(np.percentile(intervals, 1)), 3),
                    round(float(np.percentile(intervals, 99)), 3),
                ],
                "overruns": log.footer["overruns"],
                "inference_p50_ms": round(float(np.percentile(inference, 50)), 3),
                "inference_p99_ms": round(float(np.percentile(inference, 99)), 3),
                "frame_age_p50_ms": round(float(np.percentile(age, 50)), 2),
                "frame_age_p99_ms": round(float(np.percentile(age, 99)), 2),
                "stale_ticks": log.footer["stale_ticks"],
            }
        )
    )


if __name__ == "__main__":
    main()
