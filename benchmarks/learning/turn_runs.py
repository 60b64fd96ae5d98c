"""Success rates of D'Claw training runs against wall clock, beside the imitation student's.

    python benchmarks/learning/turn_runs.py \
        --run "SLAC from demonstrations, residual on the student=runs/turn-residual-s0" \
        --run "SLAC from scratch, dclaw-turn-fixed=runs/turn-fixed-s0" \
        --reference "imitation student (300 test seeds)=0.83" \
        --out benchmarks/learning/results/turn-slac --title "D'Claw Turn on a 2-core CPU"

Reads each run directory's ``eval.csv`` and ``config.json`` (``slac-train`` writes both) and writes
``OUT.json`` (each run's command settings and evaluations: environment steps, wall clock,
deterministic and stochastic success, returns) and ``OUT.png``: the deterministic policy's success
rate (what ``slac-run`` runs) on the y-axis against wall-clock hours, with the run's environment
steps on a second x-axis when one run is drawn. References are horizontal lines.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

CONFIG_KEYS = (
    "task",
    "randomization",
    "seed",
    "init_policy",
    "demos",
    "demo_ratio",
    "residual_actor",
    "residual_scale",
    "reward_scale",
    "num_critics",
    "critic_target_subset",
    "actor_q",
    "critic_layer_norm",
    "critic_n_step",
    "freeze_encoder",
    "actor_warmup_updates",
    "bc_weight",
    "bc_decay_updates",
    "model_pretrain_steps",
    "initial_collection_steps",
    "updates_per_step",
    "batch_size_actor_critic",
    "batch_size_model",
    "actor_critic_hidden",
    "feature_dim",
)


def read_run(run_dir: Path) -> dict:
    """A run's settings and evaluations, from its ``config.json`` and ``eval.csv``."""
    config = json.loads((run_dir / "config.json").read_text())
    with open(run_dir / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    evaluations = [
        {
            "env_step": int(float(r["env_step"])),
            "wall_time_s": round(float(r["wall_time_s"]), 1),
            "deterministic_success": float(r["deterministic_success_rate"]),
            "success": float(r["success_rate"]),
            "deterministic_return": round(float(r["deterministic_return_mean"]), 1),
            "return": round(float(r["return_mean"]), 1),
            "episodes": int(r["episodes"]),
        }
        for r in rows
    ]
    return {
        "run_dir": str(run_dir),
        "config": {k: config.get(k) for k in CONFIG_KEYS if k in config},
        "evaluations": evaluations,
    }


def plot(runs: dict[str, dict], references: dict[str, float], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, run in runs.items():
        hours = [e["wall_time_s"] / 3600 for e in run["evaluations"]]
        success = [e["deterministic_success"] for e in run["evaluations"]]
        ax.plot(hours, success, marker="o", markersize=3, label=label)
    for i, (label, value) in enumerate(references.items()):
        ax.axhline(value, color="grey", linestyle=(":", "--", "-.")[i % 3], label=label)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("wall clock (hours, evaluations included)")
    ax.set_ylabel("success rate (deterministic policy)")
    if len(runs) == 1:  # the run's environment steps on the top axis
        evaluations = next(iter(runs.values()))["evaluations"]
        hours = [e["wall_time_s"] / 3600 for e in evaluations]
        steps = [e["env_step"] for e in evaluations]
        if len(hours) > 1:
            import numpy as np

            top = ax.secondary_xaxis(
                "top",
                functions=(
                    lambda h: np.interp(h, hours, steps),
                    lambda s: np.interp(s, steps, hours),
                ),
            )
            top.set_xlabel("environment steps")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


def labelled(text: str, what: str) -> tuple[str, str]:
    label, sep, value = text.rpartition("=")
    if not sep or not label:
        raise SystemExit(f"{what} {text!r}: write LABEL=VALUE")
    return label, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", default=[], help="LABEL=RUN_DIR (repeatable)")
    p.add_argument(
        "--reference", action="append", default=[], help="LABEL=SUCCESS_RATE (repeatable)"
    )
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.png")
    p.add_argument("--title", default="D'Claw Turn")
    p.add_argument("--note", default=None, help="what the runs measured, kept in the JSON")
    args = p.parse_args()
    runs = {}
    for text in args.run:
        label, run_dir = labelled(text, "--run")
        runs[label] = read_run(Path(run_dir))
    references = {}
    for text in args.reference:
        label, value = labelled(text, "--reference")
        references[label] = float(value)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"title": args.title, "runs": runs, "references": references}
    if args.note:
        result["note"] = args.note
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    plot(runs, references, args.out.with_suffix(".png"), args.title)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
