"""Print the table of learning results for docs/results.md from the experiment JSON files.

    python benchmarks/learning/write_results.py [--results benchmarks/learning/results]

Reads every ``*.json`` that ``run_experiment.py`` wrote (the files with ``env_steps``) and prints
one Markdown row per experiment: task, the latent model's learning rate, the environment steps
reached, the final evaluation return as mean ± standard deviation over seeds, the seeds, a
uniformly random policy's return, the paper's return at 100k steps, the hardware and the wall
clock per seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = (
    "| task | model lr | env steps | return | seeds | random policy | paper at 100k | hardware | "
    "wall clock per seed |",
    "|---|---|---|---|---|---|---|---|---|",
)


def model_lr(result: dict) -> str:
    """The latent model's learning rate of the run: the last ``--lr-model`` of its first command."""
    words = next(iter(result["commands"].values())).split("  &&  ")[0].split()
    values = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--lr-model"]
    return values[-1] if values else "1e-4"


def row(result: dict) -> str:
    """One table row: the seeds' final returns as mean ± std (population, as the JSON holds it)."""
    seeds = [str(s) for s in result["seeds"]]
    finals = [
        result["evaluations"][s][-1]["return_mean"] for s in seeds if result["evaluations"].get(s)
    ]
    steps = max(
        int(result["evaluations"][s][-1]["env_step"]) for s in seeds if result["evaluations"].get(s)
    )
    mean = sum(finals) / len(finals)
    std = (sum((f - mean) ** 2 for f in finals) / len(finals)) ** 0.5
    ret = f"{mean:.0f} ± {std:.0f}" if len(finals) > 1 else f"{mean:.0f}"
    rnd = result["random_policy"]  # None: the runs collected no random episodes
    random_cell = f"{rnd['return_mean']:.0f} ± {rnd['return_std']:.0f}" if rnd else "-"
    paper = result.get("paper_100k")
    hw = result["hardware"].get("gpu") or f"{result['hardware']['cores']}-core CPU"
    wall = (
        sum(v for k, v in result["wall_clock_s"].items() if k.split("_")[0] in seeds)
        / len(seeds)
        / 60
    )
    return (
        f"| {result['task']} | {model_lr(result)} | {steps:,} | {ret} | {', '.join(seeds)} "
        f"| {random_cell} | {'-' if paper is None else paper} "
        f"| {hw} | {wall:.0f} min |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--results",
        type=Path,
        default=Path("benchmarks/learning/results"),
        help="folder of run_experiment.py's JSON results",
    )
    args = p.parse_args()
    results = [json.loads(f.read_text()) for f in sorted(args.results.glob("*.json"))]
    results = [r for r in results if isinstance(r, dict) and "env_steps" in r]
    print("\n".join(COLUMNS))
    for r in sorted(results, key=lambda r: (model_lr(r) != "1e-3", r["task"])):
        print(row(r))


if __name__ == "__main__":
    main()
