"""One learning experiment: a ``slac-sweep`` of one task over seeds, then a JSON result and a curve
PNG in the format of benchmarks/learning/results (read by write_results.py).

    python benchmarks/learning/run_experiment.py --task cartpole-swingup --preset cpu-small \
        --env-steps 100000 --seeds 0 --out benchmarks/learning/results

Presets are slac-train's (``slac-train --preset``, :data:`slac_train.config.PRESETS`): ``paper``
(the paper's networks and schedule) and ``cpu-small`` (narrower networks, smaller batches and a
short pre-training, for runs of about two hours on a 2-core CPU). The seeds run as one slac-sweep
in ``<runs-root>/<task>-<preset>-<N>k[-label]/`` (a trial per seed, scheduled by Ray; ``--threads``
CPUs each); running the same command again skips finished seeds and resumes the others from their
checkpoints (so a run can be done in chunks, each stopped with Ctrl-C). The result JSON holds the
exact commands, the hardware, the wall-clock time, every evaluation and the return of a uniformly
random policy on the same task (the runs' own random-collection episodes); the PNG is the sweep
report's curve (:mod:`slac_train.sweep.report`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from slac_runtime.options import signal_handlers
from slac_train.config import PRESETS
from slac_train.sweep.grid import PUBLISHED, Trial
from slac_train.sweep.report import plot_task, summarise


def run_sweep(cmd: list[str]) -> int:
    """Run slac-sweep; on Ctrl-C or SIGTERM wait for its trials to write their checkpoints.

    A terminal's Ctrl-C, ``timeout -s INT`` and ``kill -INT -<process group>`` signal the whole
    process group: slac-sweep gets the same SIGINT and stops its trials at their next safe point. A
    SIGTERM to this script (``timeout``, ``docker stop``) is passed on to slac-sweep, which does
    the same and exits 143.
    """
    proc = subprocess.Popen(cmd)
    with signal_handlers((signal.SIGTERM,), lambda signum, frame: proc.send_signal(signum)):
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                print(
                    "run_experiment: waiting for the trials to write their checkpoints",
                    file=sys.stderr,
                    flush=True,
                )


def hardware() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    p.add_argument("--env-steps", type=int, default=100_000)
    p.add_argument("--eval-every", type=int, default=10_000, help="env steps between evaluations")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    p.add_argument("--out", type=Path, default=Path("benchmarks/learning/results"))
    p.add_argument("--runs-root", type=Path, default=Path("runs/learning"))
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the JSON and PNG from the run directories as they stand (e.g. a run stopped "
        "with Ctrl-C before --env-steps), without training",
    )
    p.add_argument(
        "--label",
        default="",
        help="appended to the experiment's name (<task>-<preset>-<N>k[-label]) to keep a variant's "
        "run directory and result apart from an earlier run with the same task, preset and budget",
    )
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more slac-train options")
    return p


def extra_values(extra: list[str]) -> dict:
    """The TrainConfig values of slac-train options (``--lr-model 1e-3 --no-eval-video``)."""
    from slac_train.cli import build_parser as train_parser

    values = vars(train_parser().parse_args(extra))
    return {k: v for k, v in values.items() if k not in ("list_tasks", "resume")}


def sweep_command(args: argparse.Namespace, sweep_dir: Path) -> list[str]:
    """The slac-sweep command: the task x the seeds, one sweep directory per experiment."""
    sets = [f"eval_every_env_steps={args.eval_every}"]
    sets += [f"{k}={json.dumps(v)}" for k, v in extra_values(args.extra).items()]
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    cmd = [
        sys.executable, "-m", "slac_train.sweep.cli",
        "--tasks", args.task,
        "--seeds", *map(str, args.seeds),
        "--preset", args.preset,
        "--env-steps", str(args.env_steps),
        "--cpus-per-trial", str(args.threads or 1),
        "--gpus-per-trial", "1" if device.startswith("cuda") else "0",
        "--sweep-dir", str(sweep_dir),
    ]  # fmt: skip
    for item in sets:
        cmd += ["--set", item]
    return cmd


def train_command(args: argparse.Namespace, seed: int) -> list[str]:
    """The slac-train command a seed's trial is equivalent to (what write_results.py reads)."""
    return [
        "slac-train", "--task", args.task, "--seed", str(seed),
        "--total-env-steps", str(args.env_steps), "--eval-every-env-steps", str(args.eval_every),
        "--preset", args.preset, *args.extra,
    ]  # fmt: skip


def trial_history(sweep_dir: Path, run_dir: Path) -> str:
    """Every slac-train command the trial has run, in order (slac-sweep's log of the trial)."""
    log = sweep_dir / "logs" / f"{run_dir.name}.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    return "  &&  ".join(line[2:] for line in lines if line.startswith("$ "))


def experiment_row(args: argparse.Namespace, sweep_dir: Path) -> dict:
    """The sweep report's row of the experiment: every seed's evaluations and the random policy."""
    trials = [
        Trial(
            args.task,
            seed,
            {},
            {"run_dir": str(run_dir(args, sweep_dir, seed)), "total_env_steps": args.env_steps},
        )
        for seed in args.seeds
    ]
    (row,) = summarise(trials, [args.env_steps])
    return row


def run_dir(args: argparse.Namespace, sweep_dir: Path, seed: int) -> Path:
    return sweep_dir / "runs" / f"{args.task}-s{seed}"


def build_result(args: argparse.Namespace, commands, row: dict, wall, stopped) -> dict:
    """The experiment's JSON: commands, hardware, evaluations, a random policy and the paper."""
    evaluations = row["evaluations"]
    finals = [ev[-1]["return_mean"] for ev in evaluations.values() if ev]
    published = PUBLISHED.get(args.task)
    paper = (published[100_000][0], published[500_000][0]) if published else None
    random_policy = row["random_policy"]
    return {
        "task": args.task,
        "preset": args.preset,
        "env_steps": args.env_steps,
        "seeds": args.seeds,
        "stopped_at_env_step": stopped or None,
        "commands": commands,
        "wall_clock_s": wall,
        "hardware": hardware(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "final_return_mean": float(np.mean(finals)) if finals else None,
        "final_return_std": float(np.std(finals)) if finals else None,
        "random_policy": random_policy
        and {
            "return_mean": random_policy["mean"],
            "return_std": random_policy["std"],
            "episodes": random_policy["n"],
        },
        "paper_100k": paper[0] if paper else None,
        "paper_500k": paper[1] if paper else None,
        "evaluations": evaluations,
    }


def main() -> int:
    args = build_parser().parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{args.task}-{args.preset}-{args.env_steps // 1000}k" + (
        f"-{args.label}" if args.label else ""
    )
    sweep_dir = args.runs_root / name
    code = 0
    if not args.report_only:
        cmd = sweep_command(args, sweep_dir)
        print("$ " + " ".join(cmd), flush=True)
        code = run_sweep(cmd)
    row = experiment_row(args, sweep_dir)
    commands, wall, stopped = {}, {}, {}
    for seed in args.seeds:
        evaluations = row["evaluations"][str(seed)]
        if not evaluations:
            print(f"{run_dir(args, sweep_dir, seed)}: no evaluations to report", file=sys.stderr)
            return code or 2
        history = trial_history(sweep_dir, run_dir(args, sweep_dir, seed))
        commands[seed] = " ".join(train_command(args, seed)) + "  &&  " + history
        last = evaluations[-1]
        wall[seed] = float(last["wall_time_s"])
        if last["env_step"] < args.env_steps:
            stopped[seed] = int(last["env_step"])
            commands[seed] += f"   (stopped after {stopped[seed]:,} env steps)"
    result = build_result(args, commands, row, wall, stopped)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    plot_task(args.task, [row], args.out / f"{name}.png")
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("task", "preset", "env_steps", "final_return_mean", "random_policy")
            }
        )
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
