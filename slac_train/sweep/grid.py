"""What a sweep runs: named suites, the published returns, and the grid of trials.

A trial is one ``slac-train`` run: a task, a seed and a variant (a set of TrainConfig values that
the grid varies). Every trial of a sweep shares the sweep's preset, its ``--set`` values and its
budget; its full TrainConfig values are written once, to ``<sweep>/trials/<name>.json``, and the
first attempt starts ``slac-train --config`` with that file.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slac_train.config import field_value

# Published SLAC returns (mean, std over 10 seeds, stochastic policy) at 100k and 500k environment
# steps: the official SLAC code's NeurIPS 2020 result files (Lee et al. 2020).
PUBLISHED: dict[str, dict[int, tuple[float, float]]] = {
    "cheetah-run": {100_000: (413, 68), 500_000: (707, 46)},
    "walker-walk": {100_000: (529, 42), 500_000: (952, 10)},
    "ball_in_cup-catch": {100_000: (918, 21), 500_000: (967, 3)},
    "finger-spin": {100_000: (951, 32), 500_000: (983, 2)},
    "cartpole-swingup": {100_000: (328, 44), 500_000: (793, 44)},
    "reacher-easy": {100_000: (343, 97), 500_000: (795, 131)},
}


@dataclass(frozen=True)
class Suite:
    """A named grid: ``slac-sweep --suite NAME``."""

    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: str
    env_steps: int
    points: tuple[int, ...]
    values: dict[str, Any] = field(default_factory=dict)
    description: str = ""


SUITES: dict[str, Suite] = {
    "paper-dmc": Suite(
        tasks=tuple(PUBLISHED),
        seeds=tuple(range(10)),
        preset="paper",
        env_steps=500_000,
        points=(100_000, 500_000),
        description="the paper's table: 6 DM Control tasks x 10 seeds, paper preset, 500k env "
        "steps, returns at 100k and 500k",
    ),
    "cpu-small": Suite(
        tasks=("walker-stand", "dclaw-pose-fixed"),
        seeds=(0, 1),
        preset="cpu-small",
        env_steps=100_000,
        points=(50_000, 100_000),
        values={"eval_every_env_steps": 10_000},
        description="a CPU check: walker-stand and dclaw-pose-fixed x 2 seeds, cpu-small preset",
    ),
}


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, true/false, null), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def parse_assignments(items: list[str], what: str) -> dict[str, str]:
    """``key=value`` strings as a dict (``-`` in keys read as ``_``); ValueError on a bad one."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} takes key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def variants(vary: dict[str, str]) -> list[dict[str, Any]]:
    """Every combination of the ``--vary key=v1,v2`` values (one empty variant when none), each
    value as its TrainConfig field takes it (``1e4`` for an integer field is 10000)."""
    keys = sorted(vary)
    choices = [[field_value(k, parse_value(v)) for v in vary[k].split(",")] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*choices)]


def variant_label(variant: dict[str, Any]) -> str:
    """A variant as it appears in trial names and tables: ``lr_model=0.001`` ('' for none)."""
    return ",".join(f"{k}={v}" for k, v in sorted(variant.items()))


@dataclass(frozen=True)
class Trial:
    """One slac-train run of the sweep."""

    task: str
    seed: int
    variant: dict[str, Any]
    values: dict[str, Any]  # the run's TrainConfig values (preset, --set, variant, budget)

    @property
    def label(self) -> str:
        return variant_label(self.variant)

    @property
    def name(self) -> str:
        middle = re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.label.replace(",", "_"))
        return f"{self.task}-{middle}-s{self.seed}" if middle else f"{self.task}-s{self.seed}"


def build_trials(
    tasks: list[str],
    seeds: list[int],
    base_values: dict[str, Any],
    vary: dict[str, str],
    sweep_dir: Path,
) -> list[Trial]:
    """The grid tasks x variants x seeds; each trial's run directory lies under ``sweep_dir``."""
    trials = []
    for task, variant, seed in itertools.product(tasks, variants(vary), seeds):
        trial = Trial(task, seed, variant, {})
        values = {**base_values, **variant, "task": task, "seed": seed}
        values["run_dir"] = str((sweep_dir / "runs" / trial.name).resolve())
        trials.append(Trial(task, seed, variant, values))
    return trials
