"""The sweep's results: mean +- std over seeds at the requested environment steps, beside the
published numbers, as ``results.md`` and ``results.json``, and one curve per task
(``curves/<task>.png``) with the published points marked.

A trial's return at a point P is its first evaluation at or after P environment steps (the
trainer evaluates at the first episode end after every ``eval_every_env_steps``); a trial that has
not reached P does not count there.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from slac_train.sweep.grid import PUBLISHED, Trial
from slac_train.sweep.trial import is_done


def read_evaluations(run_dir: Path) -> list[dict[str, float]]:
    """The rows of a run's ``eval.csv`` (numbers; empty cells left out)."""
    path = run_dir / "eval.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(f)
        ]


def random_policy_returns(run_dir: Path) -> list[float]:
    """The returns of a run's initial-collection episodes (uniformly random actions), from its
    ``metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    returns = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if record.get("kind") == "episode" and record.get("phase") == "collect":
                returns.append(float(record["train/episode_return"]))
    return returns


def value_at(evaluations: list[dict[str, float]], point: int, key: str) -> float | None:
    for row in evaluations:
        if row["env_step"] >= point and key in row:
            return row[key]
    return None


def _stats(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def summarise(trials: list[Trial], points: list[int]) -> list[dict[str, Any]]:
    """One row per (task, variant): our statistics at every point and the published ones."""
    groups: dict[tuple[str, str], list[Trial]] = {}
    for trial in trials:
        groups.setdefault((trial.task, trial.label), []).append(trial)
    rows = []
    for (task, label), members in groups.items():
        evaluations = {t.seed: read_evaluations(Path(t.values["run_dir"])) for t in members}
        row: dict[str, Any] = {
            "task": task,
            "variant": label,
            "seeds": [t.seed for t in members],
            "finished": sum(is_done(t.values) for t in members),
            "random_policy": _stats(
                [r for t in members for r in random_policy_returns(Path(t.values["run_dir"]))]
            ),
            "points": {},
        }
        for point in points:
            published = PUBLISHED.get(task, {}).get(point)
            row["points"][str(point)] = {
                "stochastic": _stats(
                    [
                        v
                        for ev in evaluations.values()
                        if (v := value_at(ev, point, "return_mean")) is not None
                    ]
                ),
                "deterministic": _stats(
                    [
                        v
                        for ev in evaluations.values()
                        if (v := value_at(ev, point, "deterministic_return_mean")) is not None
                    ]
                ),
                "published": {"mean": published[0], "std": published[1]} if published else None,
            }
        row["evaluations"] = {str(seed): ev for seed, ev in evaluations.items()}
        rows.append(row)
    return rows


def _cell(stats: dict[str, Any] | None, with_n: bool = True) -> str:
    if not stats:
        return "-"
    text = f"{stats['mean']:.0f} ± {stats['std']:.0f}"
    return f"{text} ({stats['n']})" if with_n and "n" in stats else text


def markdown(rows: list[dict[str, Any]], points: list[int], title: str) -> str:
    """The results table: per point, ours (seeds counted) beside the published value."""
    head = ["task", "variant", "finished", "random policy"]
    for point in points:
        name = f"{point // 1000}k" if point % 1000 == 0 else f"{point:,}"
        head += [f"{name} ours (n)", f"{name} published"]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["task"], row["variant"] or "-", f"{row['finished']}/{len(row['seeds'])}"]
        cells.append(_cell(row.get("random_policy"), with_n=False))
        for point in points:
            entry = row["points"][str(point)]
            cells += [_cell(entry["stochastic"]), _cell(entry["published"], with_n=False)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ours: mean ± std over seeds of the stochastic policy's evaluation return at the first "
        "evaluation at or after the point; (n) seeds that reached it. Published: SLAC's official "
        "NeurIPS 2020 result files, 10 seeds (Lee et al. 2020). Random policy: the uniformly "
        "random actions of the runs' initial collection, mean ± std over their episodes.",
    ]
    return "\n".join(lines) + "\n"


def plot_task(task: str, rows: list[dict[str, Any]], path: Path) -> None:
    """Every seed's curve of ``task`` (one colour per variant) and the published points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for index, row in enumerate(rows):
        colour = f"C{index % 10}"
        for seed, evaluations in row["evaluations"].items():
            steps = [e["env_step"] for e in evaluations]
            label = f"{row['variant'] or 'ours'}" if seed == str(row["seeds"][0]) else None
            ax.plot(
                steps,
                [e["return_mean"] for e in evaluations],
                color=colour,
                alpha=0.6,
                marker=".",
                label=label,
            )
    random_policy = rows[0].get("random_policy") if rows else None
    if random_policy:
        ax.axhline(random_policy["mean"], color="0.5", linestyle="--", label="random policy")
    published = PUBLISHED.get(task, {})
    if published:
        steps = sorted(published)
        ax.errorbar(
            steps,
            [published[s][0] for s in steps],
            yerr=[published[s][1] for s in steps],
            fmt="k*",
            markersize=10,
            capsize=4,
            label="published (10 seeds)",
        )
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (stochastic policy)")
    ax.set_title(f"SLAC on {task}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    sweep_dir: Path, trials: list[Trial], points: list[int], meta: dict[str, Any]
) -> dict[str, Path]:
    """Write results.md, results.json and curves/<task>.png into ``sweep_dir``; their paths."""
    rows = summarise(trials, points)
    title = f"slac-sweep {meta.get('suite') or sweep_dir.name}"
    paths = {"markdown": sweep_dir / "results.md", "json": sweep_dir / "results.json"}
    paths["markdown"].write_text(markdown(rows, points, title))
    paths["json"].write_text(json.dumps({**meta, "points": points, "rows": rows}, indent=1) + "\n")
    (sweep_dir / "curves").mkdir(exist_ok=True)
    for task in dict.fromkeys(row["task"] for row in rows):
        path = sweep_dir / "curves" / f"{task}.png"
        plot_task(task, [r for r in rows if r["task"] == task], path)
        paths[f"curve {task}"] = path
    return paths
