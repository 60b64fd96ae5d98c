"""The one configuration of a ``slac-imitate`` run: :class:`ImitationConfig`.

Every field is an option of ``slac-imitate`` (``--episodes 2000``, ``--no-dynamics-randomization``,
...), built from the field's help and default by :func:`slac_runtime.options.add_options`, as
``slac-train`` builds its options from :class:`slac_train.config.TrainConfig`. The config is saved
as ``config.json`` beside the run and inside every checkpoint (``checkpoint["imitation"]``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slac_runtime.options import (
    check_options,
    finite_float,
    int_at_least,
    non_negative_float,
    option,
)

NOISE_STDS = (0.0, 0.05, 0.1, 0.15)
LATENCY_RANGE_S = (0.0, 0.08)
# fields given as several values on the command line (``--noise 0 0.1``): name -> (count, metavar)
MULTI_VALUE_FIELDS = {
    "noise": ("+", "STD"),
    "observation_latency": (2, ("LOW", "HIGH")),
    "dataset": ("+", "NPZ"),
}


@dataclass
class ImitationConfig:
    """Everything that defines a behaviour-cloning run. Units: agent steps (one policy decision)
    and radians unless a name says otherwise."""

    # --- task and teacher -----------------------------------------------------------------------
    task: str = option("dclaw-turn", "registered task name (slac-train --list-tasks)")
    teacher: str = option(
        "dclaw-turn-table",
        "registered teacher that drives the task (see --list-teachers)",
        metavar="NAME",
    )
    seed: int = option(
        0,
        "seed of networks, sampling and the recorded episodes (seeds seed * 100,000 + i)",
        parse=int_at_least(0),
    )
    episodes: int = option(
        300, "teacher episodes recorded (unless --dataset)", parse=int_at_least(1)
    )
    teacher_tolerance: float | None = option(
        None,
        "valve error (rad) at which the teacher stops turning (default: the teacher's own)",
        parse=non_negative_float,
        metavar="RAD",
    )
    search_slack: float | None = option(
        None,
        "search teachers only: keep the table's choice among strokes within RAD of the best",
        parse=non_negative_float,
        metavar="RAD",
    )
    search_knows: str = option(
        "all",
        "search teachers only: what their rollouts know of the episode's dynamics (all: the exact "
        "simulator; mount: its offset only; nothing: the nominal model)",
        choices=("all", "mount", "nothing"),
    )
    noise: tuple[float, ...] = option(
        NOISE_STDS, "action-noise stds the recorded episodes cycle through (DART)", cli=False
    )

    # --- randomisation while recording ----------------------------------------------------------
    visual_randomization: bool = option(
        True, "randomise lights, colours and the camera pose per episode"
    )
    dynamics_randomization: bool = option(
        True, "randomise damping, friction, servo gains and the mount per episode"
    )
    image_noise: float = option(
        4.0, "pixel noise std (grey levels) while recording", parse=non_negative_float
    )
    observation_latency: tuple[float, float] = option(
        LATENCY_RANGE_S,
        "range (s) of the per-episode age of the frames while recording, as the robot's camera has",
        cli=False,
    )

    # --- data -----------------------------------------------------------------------------------
    save_dataset: str | None = option(
        None,
        "write the recorded teacher episodes here (~0.5 MB an episode) for --dataset",
        metavar="NPZ",
    )
    dataset: tuple[str, ...] | None = option(
        None,
        "train on episodes written by --save-dataset (one file or several, joined) "
        "instead of recording",
        cli=False,
    )

    # --- training -------------------------------------------------------------------------------
    updates: int = option(3000, "updates on the recorded episodes", parse=int_at_least(0))
    batch_size: int = option(32, "windows per update", parse=int_at_least(1))
    lr: float = option(3e-4, "Adam learning rate", parse=non_negative_float)
    lr_schedule: str = option(
        "constant",
        "cosine: anneal the learning rate to 0 over all the run's updates (DAgger rounds included)",
        choices=("constant", "cosine"),
    )
    ema: float = option(
        0.0,
        "checkpoint, validate and export the exponential moving average of the weights "
        "(e.g. 0.999; 0: the last weights)",
        metavar="DECAY",
        parse=finite_float,
    )
    augment_shift: int = option(
        0,
        "move each training window by up to PIXELS pixels in x and y (0: no augmentation)",
        metavar="PIXELS",
        parse=int_at_least(0),
    )
    aux_weight: float = option(
        0.0,
        "weight of an auxiliary loss: predict the episode's mount height and servo "
        "gain (what the teacher reads from the simulator) linearly from the actor's input",
        parse=non_negative_float,
    )
    log_every_updates: int = option(
        250, "write the training loss every this many updates", parse=int_at_least(1)
    )

    # --- DAgger ---------------------------------------------------------------------------------
    dagger_rounds: int = option(
        0,
        "DAgger rounds after the first training (the student drives, then the teacher takes over)",
        parse=int_at_least(0),
    )
    dagger_episodes: int = option(100, "episodes recorded per DAgger round", parse=int_at_least(1))
    dagger_updates: int = option(
        1000, "updates on all the data after each DAgger round", parse=int_at_least(0)
    )
    dagger_switch: str = option(
        "rest",
        "when the teacher takes over: where the student rests short of the "
        "target, or at a random step (mid-stroke)",
        choices=("rest", "random"),
    )
    dagger_teacher: str | None = option(
        None, "teacher that takes over in DAgger episodes (default: --teacher)", metavar="NAME"
    )

    # --- networks (the SLAC agent's encoder and actor) ------------------------------------------
    encoder_base_channels: int = option(
        16, "first conv width; the encoder is c, 2c, 4c, 8c, feature_dim", parse=int_at_least(1)
    )
    feature_dim: int = option(128, "encoder feature size", parse=int_at_least(1))
    actor_hidden: int = option(256, "units of the actor's two hidden layers", parse=int_at_least(1))

    # --- evaluation and checkpoints -------------------------------------------------------------
    eval_episodes: int = option(
        10, "episodes of the final evaluation, nominal and randomised", parse=int_at_least(0)
    )
    val_episodes: int = option(
        0,
        "at every checkpoint, run the student on N randomised episodes of seeds used "
        "nowhere else; the best is kept as checkpoints/best.pt",
        metavar="N",
        parse=int_at_least(0),
    )
    checkpoint_every: int = option(
        5000,
        "write a checkpoint every UPDATES updates (and at the end, and on Ctrl-C or SIGTERM)",
        metavar="UPDATES",
        parse=int_at_least(0),
    )
    keep_checkpoints: int = option(
        2,
        "checkpoints kept on disk (oldest deleted first; best.pt is kept apart)",
        parse=int_at_least(1),
    )

    # --- system ---------------------------------------------------------------------------------
    num_threads: int | None = option(
        None,
        "torch CPU threads; default: torch's choice",
        flag="threads",
        aliases=["num-threads"],
        parse=int_at_least(1),
    )
    runs_root: str = option("runs", "folder under which run directories are created")
    run_dir: str | None = option(
        None, "exact run directory; default: <runs_root>/<task>-<timestamp>-s<seed>"
    )
    progress: bool = option(True, "print progress while recording")

    def __post_init__(self) -> None:
        self.noise = tuple(float(x) for x in self.noise)
        self.observation_latency = tuple(float(x) for x in self.observation_latency)
        self.dataset = None if self.dataset is None else tuple(str(p) for p in self.dataset)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a sentence a user understands if a value cannot work."""
        check_options(self)
        if not self.noise or min(self.noise) < 0:
            raise ValueError(
                f"argument --noise: must be one or more stds of at least 0, got {list(self.noise)}"
            )
        low, high = self.observation_latency if len(self.observation_latency) == 2 else (1.0, 0.0)
        if not 0.0 <= low <= high:
            raise ValueError(
                "argument --observation-latency: must be LOW HIGH seconds with 0 <= LOW <= HIGH, "
                f"got {list(self.observation_latency)}"
            )
        if self.ema and not 0.0 < self.ema < 1.0:
            raise ValueError(
                f"argument --ema: must be 0 (off) or a decay in (0, 1), got {self.ema}"
            )

    @property
    def randomization(self) -> dict[str, Any]:
        """The task's switches while recording (and in validation and the randomised evaluation)."""
        return {
            "visual_randomization": self.visual_randomization,
            "dynamics_randomization": self.dynamics_randomization,
            "image_noise": self.image_noise,
            "observation_latency": tuple(self.observation_latency),
        }

    @property
    def total_updates(self) -> int:
        """Updates of the whole run, DAgger rounds included (the cosine schedule's length)."""
        return self.updates + self.dagger_rounds * self.dagger_updates

    def replace(self, **changes: Any) -> ImitationConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
