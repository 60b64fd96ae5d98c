"""Write docs/results.md from the experiment results (benchmarks/learning/results/*.json)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HEADER = """# Learning results

What our SLAC reaches, measured by `benchmarks/learning/run_experiment.py` (fixed seeds; each JSON
result in `benchmarks/learning/results/` holds the exact commands, the hardware and every
evaluation). Returns are evaluation returns of the stochastic policy (the paper's protocol), mean
over 5 episodes at the end of training; the deterministic `tanh(mean)` policy is in the plots.
Environment steps count simulator steps (agent steps × action repeat), as the paper's plots do.

"""


def model_lr(r: dict) -> str:
    """The latent model's learning rate the run used: the last ``--lr-model`` of its first command."""
    words = next(iter(r["commands"].values())).split("  &&  ")[0].split()
    values = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--lr-model"]
    return values[-1] if values else "1e-4"


def rows(r: dict) -> list[str]:
    """One table row for the experiment, or one per seed where its seeds stopped at different steps."""
    def fmt(v, digits=0):
        return "-" if v is None else f"{v:.{digits}f}"

    paper = r.get("paper_100k") if r["env_steps"] <= 150_000 else r.get("paper_500k")  # nearest published point
    hw = r["hardware"].get("gpu") or f"{r['hardware']['cores']}-core CPU"
    rnd = r["random_policy"]
    stopped = {str(k): v for k, v in (r.get("stopped_at_env_step") or {}).items()}
    seeds = [str(s) for s in r["seeds"]]
    steps = {s: stopped.get(s, r["env_steps"]) for s in seeds}
    groups = [seeds] if len(set(steps.values())) == 1 else [[s] for s in seeds]
    lines = []
    for group in groups:
        finals = [r["evaluations"][s][-1]["return_mean"] for s in group if r["evaluations"].get(s)]
        final = sum(finals) / len(finals) if finals else None
        # a seed's wall clock, with any parts recorded by hand beside it ("0_first_part_approx")
        wall = sum(v for k, v in r["wall_clock_s"].items() if k.split("_")[0] in group) / len(group) / 60
        lines.append(f"| {r['task']} | {r['preset']} | {model_lr(r)} | {steps[group[0]]:,} | {fmt(final)} "
                     f"| {fmt(rnd['return_mean'])} | {fmt(paper)} | {', '.join(group)} | {hw} | {wall:.0f} min |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=Path, default=Path("benchmarks/learning/results"))
    p.add_argument("--out", type=Path, default=Path("docs/results.md"))
    p.add_argument("--notes", type=Path, default=Path("benchmarks/learning/notes.md"),
                   help="hand-written discussion appended after the table")
    args = p.parse_args()
    files = [f for f in sorted(args.results.glob("*.json")) if "env_steps" in json.loads(f.read_text())]
    results = [json.loads(f.read_text()) for f in files]  # learning runs (turn-policy.json is not one)
    pictures = args.out.parent / "results"
    pictures.mkdir(parents=True, exist_ok=True)
    lines = [HEADER, "| task | preset | model lr | env steps | our return | random policy | paper at 100k (500k) "
             "| seeds | hardware | wall clock |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [line for r in results for line in rows(r)]
    lines.append("")
    for f in files:
        r = json.loads(f.read_text())
        png = f.with_suffix(".png")
        if png.exists():
            shutil.copy(png, pictures / png.name)
            lines.append(f"![{r['task']}](results/{png.name})")
        for seed, command in r["commands"].items():
            lines.append(f"\nSeed {seed}: `{command}`")
        lines.append("")
    if args.notes.exists():
        lines.append(args.notes.read_text())
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
