"""What limits the state-based D'Claw Turn teachers under dynamics randomisation.

    python benchmarks/learning/turn_teachers.py --episodes 120 --search-episodes 60 \
        --out benchmarks/learning/results

The pixel students imitate teachers that read the simulator
(:mod:`slac_train.imitation.teachers.dclaw_turn`). This
study asks how good a teacher can be with the knowledge a student could have, on the same seeds of
``dclaw-turn`` (valve 0 -> pi) under visual + dynamics randomisation + image noise (the evaluation
setting of ``turn_policy.py``). Success is the task's (|error| < 0.1 rad at the episode's end).

- ``mount``: the table teacher compensating its poses for a mount height other than the drawn
  one: exact; with an error (Gaussian, as a student reading the height from the frame would
  have); shrunk towards nominal (as a regression on an uncertain reading); a fixed guess (blind).
  Success is also given by the drawn height's bin.
- ``mount-tables``: the table teacher with a second stroke table, built with the mount 4 mm low,
  for mounts more than 2 mm low (``slac-imitate --teacher dclaw-turn-mount-tables``), its height
  read exactly or with an error.
- ``follow-tables``: the mount tables plus follow-on tables that predict every stroke after the
  first from where the previous stroke left the claw (``slac-imitate --teacher
  dclaw-turn-follow-tables``), its height read exactly, with an error, or not at all (nominal).
- ``adaptive``: blind, but switching its compensation once a stroke has turned the valve by less
  than 30% of what the table predicted (the stroke missed the spokes or jammed): a choice a
  student could make from what it sees.
- ``gains``: tables built with every servo at gain 1.0 ... 3.0 N·m/rad, the one nearest the
  episode's mean gain chosen (privileged), against the nominal table.
- ``knowledge``: the search teacher (it tries the table's best 96 strokes in a simulator before
  each stroke) with its rollouts in the exact simulator, in one that knows only the mount's
  offset, and in the nominal one (with its poses compensated for the drawn mount, and blind).

Writes ``turn-teachers.json`` (adding to the variants already there: ``--studies`` reruns some);
prints one line per variant.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from slac_train.envs.dclaw import success_by_mount_height
from slac_train.imitation.teachers.dclaw_turn import (
    FOLLOW_TABLES,
    MOUNT_TABLES,
    SEARCH_KNOWLEDGE,
    TurnSearchController,
    TurnTableController,
    stroke_poses,
)
from slac_train.imitation.teachers.dclaw_turn_tables import build_stroke_table

SETTING = {"visual_randomization": True, "dynamics_randomization": True, "image_noise": 4.0}


class GuessingTable(TurnTableController):
    """The table teacher compensating for a mount height of ``scale * drawn + bias + N(0, sd)``,
    or for a fixed ``guess`` (m) whatever was drawn."""

    def __init__(
        self,
        scale: float = 1.0,
        bias: float = 0.0,
        sd: float = 0.0,
        guess: float | None = None,
        seed: int = 0,
        **kwargs,
    ):
        self.scale, self.bias, self.sd, self.guess = scale, bias, sd, guess
        self.rng = np.random.default_rng(seed)
        super().__init__(**kwargs)

    def _read_dynamics(self, info) -> None:
        dynamics = info.get("dynamics")
        if dynamics is None:
            return
        height = float(np.asarray(dynamics["mount_offset_m"])[2])
        if self.guess is not None:
            height = self.guess
        else:
            height = (
                self.scale * height
                + self.bias
                + (self.rng.normal(0.0, self.sd) if self.sd else 0.0)
            )
        self.set_mount_offset([0.0, 0.0, height])


class SwitchingTable(TurnTableController):
    """Blind: compensates for height ``first`` (m) until a stroke turns the valve by less than
    ``fraction`` of the table's prediction, then for ``second``."""

    def __init__(
        self,
        first: float,
        second: float,
        fraction: float = 0.3,
        min_predicted: float = 0.25,
        **kwargs,
    ):
        self.first, self.second = first, second
        self.fraction, self.min_predicted = fraction, min_predicted
        super().__init__(compensate_mount=False, **kwargs)

    def reset(self) -> None:
        super().reset()
        self.set_mount_offset([0.0, 0.0, self.first])
        self.switched = False
        self._pending: tuple[float, float] | None = (
            None  # (valve angle at the stroke's start, predicted rotation)
        )

    def _next_plan(self, valve_angle: float, angle_error: float) -> list[np.ndarray]:
        if self._pending is not None and not self.switched:
            start, predicted = self._pending
            turned = (valve_angle - start) * math.copysign(1.0, predicted)
            if abs(predicted) > self.min_predicted and turned < self.fraction * abs(predicted):
                self.switched = True
                self.set_mount_offset([0.0, 0.0, self.second])
        self._pending = None
        b0, b1, left = self.choose(valve_angle, angle_error)
        if left >= abs(angle_error):
            return [self._last]
        phase = self.phase(valve_angle)
        j, k = int(np.argmin(np.abs(self.sweeps - b0))), int(np.argmin(np.abs(self.sweeps - b1)))
        centre = self._outcomes.shape[0] // 2  # the unshifted copy among the neighbourhood's
        self._pending = (valve_angle, float(self._outcomes[centre, phase, j, k]))
        return stroke_poses(b0, b1, self.lifted, self.lowered)


class GainTables:
    """One table teacher per servo gain; each episode uses the one nearest its mean drawn gain."""

    def __init__(self, tables: dict[float, dict], nominal_only: bool = False):
        self.teachers = {kp: TurnTableController(table) for kp, table in tables.items()}
        self.nominal_only = nominal_only
        self.current = self.teachers[2.0]

    def reset(self) -> None:
        self.current.reset()

    def act_on(self, info):
        dynamics = info.get("dynamics")
        if dynamics is not None:
            kp = 2.0 if self.nominal_only else float(np.mean(dynamics["actuator_kp"]))
            self.current = self.teachers[min(self.teachers, key=lambda k: abs(k - kp))]
            self.current.reset()
        return self.current.act_on(info)


def run_episodes(env, teacher, seeds) -> list[dict]:
    episodes = []
    for seed in seeds:
        if hasattr(teacher, "attach"):
            teacher.attach(env)
        _, info = env.reset(seed=int(seed))
        dynamics = info["dynamics"]
        teacher.reset()
        while True:
            _, _, terminated, truncated, info = env.step(teacher.act_on(info))
            if terminated or truncated:
                break
        episodes.append(
            {
                "seed": int(seed),
                "height_mm": float(dynamics["mount_offset_m"][2]) * 1000,
                "mean_kp": float(np.mean(dynamics["actuator_kp"])),
                "final_error": abs(float(info["angle_error"])),
                "switched": bool(getattr(teacher, "switched", False)),
            }
        )
    return episodes


def summarise(episodes: list[dict]) -> dict:
    heights = np.array([e["height_mm"] for e in episodes])
    ok = np.array([e["final_error"] < 0.1 for e in episodes])
    by_height = success_by_mount_height(heights, ok)
    return {
        "success_rate": float(ok.mean()),
        "episodes": len(ok),
        "success_by_mount_height": by_height,
        "switched": float(np.mean([e["switched"] for e in episodes])),
    }


STUDIES = ("mount", "mount-tables", "follow-tables", "adaptive", "gains", "knowledge")


def study_variants(studies: list[str]) -> dict[str, tuple[str, object]]:
    """variant name -> (its study, its teacher), for the ``studies`` asked for."""
    mm = 1e-3
    variants: dict[str, tuple[str, object]] = {}
    if "mount" in studies:
        variants |= {
            "table, exact mount height": ("mount", GuessingTable()),
            "table, height read with sd 4 mm": ("mount", GuessingTable(sd=4 * mm)),
            "table, height read with sd 6 mm": ("mount", GuessingTable(sd=6 * mm)),
            "table, height read as 0.56 x drawn": ("mount", GuessingTable(scale=0.56)),
            "table, height guessed -3 mm": ("mount", GuessingTable(guess=-3 * mm)),
            "table, height guessed 0 (nominal)": ("mount", GuessingTable(guess=0.0)),
            "table, height guessed +3 mm": ("mount", GuessingTable(guess=3 * mm)),
            "table, height guessed +8 mm": ("mount", GuessingTable(guess=8 * mm)),
        }
    if "mount-tables" in studies:
        variants |= {
            "mount tables (-4 mm table below -2 mm), exact height": (
                "mount-tables",
                GuessingTable(height_tables=MOUNT_TABLES),
            ),
            "mount tables, height read with sd 4 mm": (
                "mount-tables",
                GuessingTable(sd=4 * mm, height_tables=MOUNT_TABLES),
            ),
            "mount tables, height read with sd 6 mm": (
                "mount-tables",
                GuessingTable(sd=6 * mm, height_tables=MOUNT_TABLES),
            ),
        }
    if "follow-tables" in studies:
        tables = {"height_tables": MOUNT_TABLES, "follow_tables": FOLLOW_TABLES}
        variants |= {
            "follow tables, exact height": ("follow-tables", GuessingTable(**tables)),
            "follow tables, height read with sd 4 mm": (
                "follow-tables",
                GuessingTable(sd=4 * mm, **tables),
            ),
            "follow tables, height read with sd 6 mm": (
                "follow-tables",
                GuessingTable(sd=6 * mm, **tables),
            ),
            "follow tables, height guessed 0 (nominal)": (
                "follow-tables",
                GuessingTable(guess=0.0, **tables),
            ),
        }
    if "adaptive" in studies:
        variants |= {
            "switching, -3 then +8 mm": ("adaptive", SwitchingTable(-3 * mm, 8 * mm)),
            "switching, +8 then -3 mm": ("adaptive", SwitchingTable(8 * mm, -3 * mm)),
        }
    if "gains" in studies:
        started = time.monotonic()
        tables = {
            kp: build_stroke_table(dynamics={"actuator_kp": kp}) for kp in (1.0, 1.5, 2.0, 2.5, 3.0)
        }
        print(f"built 5 stroke tables in {time.monotonic() - started:.0f} s", flush=True)
        variants |= {
            "gain tables, nearest the mean gain": ("gains", GainTables(tables)),
            "gain tables, nominal only": ("gains", GainTables(tables, nominal_only=True)),
        }
    if "knowledge" in studies:
        nominal_rollouts = SEARCH_KNOWLEDGE["nothing"]["knows"]
        variants |= {
            "search, exact simulator": (
                "knowledge",
                TurnSearchController(**SEARCH_KNOWLEDGE["all"]),
            ),
            "search, knows the mount only": (
                "knowledge",
                TurnSearchController(**SEARCH_KNOWLEDGE["mount"]),
            ),
            "search, mount-compensated poses, nominal simulator": (
                "knowledge",
                TurnSearchController(knows=nominal_rollouts),
            ),
            "search, knows nothing": (
                "knowledge",
                TurnSearchController(**SEARCH_KNOWLEDGE["nothing"]),
            ),
        }
    return variants


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=120)
    p.add_argument(
        "--search-episodes", type=int, default=60, help="the search teachers take ~2 s an episode"
    )
    p.add_argument("--studies", nargs="+", default=list(STUDIES), choices=STUDIES)
    p.add_argument("--out", type=Path, default=Path("benchmarks/learning/results"))
    args = p.parse_args()

    from slac_train.envs import make_env

    variants = study_variants(args.studies)
    path = args.out / "turn-teachers.json"
    result = {"setting": SETTING, "first_seed": 20_000, "variants": {}}
    if path.exists():
        result["variants"] = json.loads(path.read_text())["variants"]
    env = make_env("dclaw-turn", seed=0, **SETTING)
    try:
        for name, (study, teacher) in variants.items():
            n = args.search_episodes if study == "knowledge" else args.episodes
            t0 = time.monotonic()
            episodes = run_episodes(env, teacher, np.arange(n) + 20_000)
            summary = summarise(episodes) | {"study": study, "seconds": time.monotonic() - t0}
            result["variants"][name] = summary
            bins = "  ".join(
                f"{k}: {v[0]:.2f}"
                for k, v in summary["success_by_mount_height"].items()
                if v[0] is not None
            )
            print(
                f"{name:40s} {summary['success_rate']:4.0%} of {n}   by height {bins}", flush=True
            )
    finally:
        env.close()
    result["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
