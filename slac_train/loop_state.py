"""Where a SLAC run's loop stands, as the typed objects a checkpoint saves and a resume restores.

* :class:`LoopState`: the phase and the counters, in agent steps, simulator steps and updates,
  and when the next evaluation and checkpoint are due (a checkpoint's ``counters``);
* :class:`Episode`: the training episode in progress, with its seed and actions, so that a resume
  in its middle replays it in a fresh simulator (:meth:`Episode.replay`);
* :class:`RandomStreams`: the run's independent random streams;
* :class:`MetricMeans`: the training metrics summed since the last logged record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import torch

from slac_runtime.history import History
from slac_train.checkpoint import (
    capture_global_rng,
    generator_state,
    restore_global_rng,
    set_generator_state,
)
from slac_train.config import TrainConfig
from slac_train.slac_agent import metrics_to_floats


class Phase(str, Enum):
    """The loop's phases, in order: random collection, model pre-training, training, done (the
    budget is spent). Saved by value (``"collect"``...)."""

    COLLECT = "collect"
    PRETRAIN = "pretrain"
    TRAIN = "train"
    DONE = "done"


@dataclass
class LoopState:
    """The loop's phase and counters; a checkpoint's ``counters`` (:meth:`to_checkpoint`)."""

    phase: Phase = Phase.COLLECT
    agent_step: int = 0
    env_step: int = 0  # simulator steps: agent steps x action repeat
    episodes: int = 0
    updates: int = 0  # updates of the training phase
    pretrain_updates: int = 0  # latent-model updates of the pre-training phase
    next_eval_env_step: int = 0
    next_checkpoint_env_step: int = 0
    elapsed_s: float = 0.0  # the run's wall time, as of the last checkpoint
    # Not saved: set by a resume whose checkpoint has no replay buffer, which collects random
    # data up to this agent step again, then trains on.
    refill_target: int | None = None

    SAVED = (
        "phase",
        "agent_step",
        "env_step",
        "episodes",
        "updates",
        "pretrain_updates",
        "next_eval_env_step",
        "next_checkpoint_env_step",
        "elapsed_s",
    )

    @property
    def total_updates(self) -> int:
        """Updates of both phases (what a checkpoint's name and the logging cadence count)."""
        return self.updates + self.pretrain_updates

    def collection_target(self, initial_collection_steps: int) -> int:
        """The agent step at which random collection ends."""
        return self.refill_target if self.refill_target is not None else initial_collection_steps

    def describe(self) -> str:
        """``update 4 (agent step 25, env step 50, phase train)``."""
        return (
            f"update {self.total_updates} (agent step {self.agent_step}, "
            f"env step {self.env_step}, phase {self.phase.value})"
        )

    def phase_progress(self, config: TrainConfig) -> tuple[int, int, str]:
        """``(done, total, unit)`` of the phase in progress."""
        if self.phase is Phase.COLLECT:
            target = self.collection_target(config.initial_collection_steps)
            return self.agent_step, target, "agent steps"
        if self.phase is Phase.PRETRAIN:
            return self.pretrain_updates, config.model_pretrain_steps, "updates"
        return self.env_step, config.total_env_steps, "env steps"

    def reopen(self, config: TrainConfig) -> None:
        """(A resume) a finished run whose budget ``config`` raised goes on from where it
        finished."""
        if self.phase is Phase.DONE and self.env_step < config.total_env_steps:
            pretrained = self.pretrain_updates >= config.model_pretrain_steps
            self.phase = Phase.TRAIN if pretrained else Phase.COLLECT

    def collect_again(self, steps: int) -> None:
        """(A resume without its replay buffer) a training run collects ``steps`` agent steps of
        random data again, then trains on (pre-trained already)."""
        if self.phase is Phase.TRAIN:
            self.phase = Phase.COLLECT
            self.refill_target = self.agent_step + steps

    def to_dict(self) -> dict[str, Any]:
        """The saved counters as plain values (the phase by its name)."""
        values = {name: getattr(self, name) for name in self.SAVED}
        values["phase"] = self.phase.value
        return values

    def to_checkpoint(self) -> dict[str, Any]:
        """:meth:`to_dict` with ``agent_steps`` and ``env_steps``, the names ``slac-export``
        reads."""
        return dict(self.to_dict(), agent_steps=self.agent_step, env_steps=self.env_step)

    @classmethod
    def from_dict(cls, counters: Mapping[str, Any]) -> LoopState:
        """The state a checkpoint's ``counters`` saved (``elapsed_s`` may be missing)."""
        names = [name for name in cls.SAVED if name in counters]
        state = cls(**{name: counters[name] for name in names})
        state.phase = Phase(counters["phase"])
        return state


@dataclass
class Episode:
    """The training episode in progress: its seed and actions (enough to replay it), return and
    length in agent steps."""

    seed: int
    actions: list[np.ndarray] = field(default_factory=list)
    episode_return: float = 0.0
    agent_steps: int = 0

    def record(self, last_frame: np.ndarray, action_dim: int) -> dict[str, Any]:
        """What a checkpoint keeps of it for :meth:`replay` (tensors: checkpoints load with
        ``torch.load(weights_only=True)``)."""
        actions = np.stack(self.actions) if self.actions else np.zeros((0, action_dim))
        return {
            "seed": self.seed,
            "actions": torch.from_numpy(actions.astype(np.float32)),
            "return": self.episode_return,
            "agent_steps": self.agent_steps,
            "last_frame": torch.from_numpy(np.ascontiguousarray(last_frame)),
        }

    @classmethod
    def replay(cls, env, history: History, record: Mapping[str, Any]) -> Episode | None:
        """Stand in the middle of the episode a checkpoint was written in: reset ``env`` with the
        episode's seed, take its actions again and fill ``history`` on the way. The simulators are
        deterministic, so this ends on the recorded last frame; if it does not, None (with a note:
        a new episode starts)."""
        actions = np.asarray(record["actions"], dtype=np.float32)
        obs, _ = env.reset(seed=int(record["seed"]))
        history.reset(obs)
        ended = False
        for action in actions:
            if ended:
                break
            obs, _, terminated, truncated, _ = env.step(action)
            history.append(action, obs)
            ended = terminated or truncated
        if ended or not np.array_equal(obs, np.asarray(record["last_frame"])):
            print(
                "note: the interrupted episode did not replay to its recorded last frame (the "
                "simulator is not deterministic here); a new episode starts now"
            )
            return None
        episode = cls(
            int(record["seed"]), list(actions), float(record["return"]), int(record["agent_steps"])
        )
        print(
            f"the interrupted episode was replayed ({episode.agent_steps} agent steps); "
            "it continues where it stopped"
        )
        return episode


@dataclass
class RandomStreams:
    """The run's independent random streams; a checkpoint saves them with the global ones
    (Python's, NumPy's and torch's)."""

    action: np.random.Generator  # random-collection actions
    sample: np.random.Generator  # replay sampling
    episode: np.random.Generator  # training episode seeds
    eval: np.random.Generator  # evaluation episode seeds

    @classmethod
    def seeded(cls, seed: int) -> RandomStreams:
        return cls(*(np.random.default_rng([seed, k]) for k in (1, 2, 3, 4)))

    def state(self) -> dict[str, Any]:
        streams = {f.name: generator_state(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {"global": capture_global_rng(), **streams}

    def restore(self, state: Mapping[str, Any]) -> None:
        restore_global_rng(state["global"])
        for f in dataclasses.fields(self):
            set_generator_state(getattr(self, f.name), state[f.name])


class MetricMeans:
    """The training metrics summed since the last logged record, for their means over the
    ``log_every_updates`` updates between records; saved in checkpoints so that a resumed run logs
    the same means."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, metrics: Mapping[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach()
        self.count += 1

    def take(self) -> dict[str, float]:
        """The means since the last :meth:`take`, as floats; the sums start again."""
        values = metrics_to_floats({k: v / self.count for k, v in self.sums.items()})
        self.sums, self.count = {}, 0
        return values

    def state(self) -> dict[str, Any]:
        return {
            "metric_sums": {k: v.detach().cpu() for k, v in self.sums.items()},
            "metric_count": self.count,
        }

    def restore(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.sums = {k: v.to(device) for k, v in state.get("metric_sums", {}).items()}
        self.count = int(state.get("metric_count", 0))
