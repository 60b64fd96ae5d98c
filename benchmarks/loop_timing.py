"""slac-run against the virtual D'Claw for a while: tick jitter, inference time and frame age.

    python benchmarks/loop_timing.py --duration 60      # paper-size policy with random weights
    python benchmarks/loop_timing.py --policy p.onnx

The virtual D'Claw (:class:`robots.dclaw.virtual.VirtualDClaw`) simulates in this process, its bus
in a process of its own, and slac-run drives it from a third (as on a 2-core robot computer with
the simulator standing in for the hardware). Prints one JSON line with the loop's statistics: the
episode log's summary (:func:`slac_runtime.log_summary.summarize`) and the spread of tick intervals.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slac_runtime.episode_log import read_episode_log  # noqa: E402
from slac_runtime.log_summary import summarize  # noqa: E402

POLICY_PERIOD_S = 0.1  # the Turn task: 0.05 s control period x action repeat 2
REPORTED = (
    "ticks",
    "overruns",
    "stale_ticks",
    "jitter_p50_ms",
    "jitter_p99_ms",
    "jitter_max_ms",
    "inference_p50_ms",
    "inference_p99_ms",
    "frame_age_p50_ms",
    "frame_age_p99_ms",
)


def drive_virtual_dclaw(
    policy: Path, steps: int, threads: int, workdir: Path
) -> tuple[Path, float]:
    """slac-run driving a virtual D'Claw for ``steps`` policy steps: its episode log, wall time."""
    from robots.dclaw.virtual import VirtualDClaw

    log_dir = workdir / "logs"
    with VirtualDClaw(workdir / "tty", f"ipc://{workdir}/camera") as robot:
        cmd = robot.slac_run_command(
            policy, log_dir, "--episode-steps", str(steps), "--threads", str(threads)
        )
        started = time.monotonic()
        run = subprocess.run(cmd, capture_output=True, text=True)
        wall_s = time.monotonic() - started
    if run.returncode != 0:
        raise SystemExit(f"slac-run failed: {run.stderr}")
    return next(log_dir.glob("*/episode-000.slaclog")), wall_s


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
        steps = int(args.duration / POLICY_PERIOD_S)
        path, wall_s = drive_virtual_dclaw(policy, steps, args.threads, tmp)
        log = read_episode_log(path)
    summary = summarize(log)
    intervals_ms = np.diff([t["t"] for t in log.ticks]) * 1e3
    report = {"wall_s": round(wall_s, 1), **{k: summary[k] for k in REPORTED}}
    report["tick_interval_p1_p99_ms"] = [
        round(float(np.percentile(intervals_ms, q)), 3) for q in (1, 99)
    ]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}))


if __name__ == "__main__":
    main()
