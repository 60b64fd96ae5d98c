"""Distil a state-based teacher into the encoder + actor that the robot runs (behaviour cloning).

    slac-imitate --task dclaw-turn --teacher dclaw-turn-table --run-dir runs/turn-bc
    slac-export runs/turn-bc --output turn.onnx

The defaults are a short run (about 20 minutes on one CPU core: 300 episodes, 3,000 updates of
batch 32). The shipped ``robots/dclaw/policies/turn.onnx`` came from (4,000 episodes recorded in
two halves side by side, 13 minutes, as ``--seed 0`` and ``--seed 1`` runs of ``--episodes 2000
--updates 0 --save-dataset ft-2000-sN.npz``; then 87 minutes of training on two threads)::

    slac-imitate --teacher dclaw-turn-follow-tables --dataset ft-2000-s0.npz ft-2000-s1.npz \
        --updates 40000 --lr-schedule cosine --ema 0.999 --val-episodes 50 --num-threads 2 \
        --run-dir runs/turn-bc-ft-4000-cos

SLAC learns Turn from pixels only with a GPU-sized budget (shared/specs/slac.md). This command
gives the runtime a policy that works today: a scripted teacher that reads the simulator's state
(``robots.dclaw.scripted``; ``dclaw-turn-table`` by default; ``dclaw-turn-mount-tables`` adds a
table for low mounts, ``dclaw-turn-follow-tables`` also predicts every stroke after the first from
where the last one left the claw, the best teacher here; ``dclaw-turn-search`` also tries its
strokes in a copy of the simulator first; ``dclaw-turn-table-search`` does so only where the table
would rest short of the target) drives the task while it is recorded
from the task camera, and the pixel policy -- the very ``Encoder`` + ``TanhGaussianActor`` of a
SLAC agent, with the same 8-frame / 7-action history -- is trained to output the teacher's action.

* Covariate shift is handled by noise injection (DART): the teacher's actions are executed with
  Gaussian noise of several scales while the label stays the clean action, so the data holds the
  states a slightly-off student visits and what to do there.
* And, with ``--dagger-rounds``, by DAgger in its take-over form: the stroke teachers keep a plan,
  so they cannot label each step a student takes (a fresh plan's first step is always "go to the
  stroke's start"). Instead each DAgger episode lets the student drive for a random number of
  steps, then hands the episode to the teacher (``take_over``: a fresh plan from that state) for
  the rest of it; the student's own steps stay in the history windows but carry no label. The
  data then holds the states the student itself reaches -- its near misses, its slow progress --
  and what the teacher does from there. Each round records ``--dagger-episodes`` such episodes
  with the current student and trains ``--dagger-updates`` more updates on all the data.
  The teacher takes over where the student rests short of the target (``--dagger-switch rest``,
  the default: its near misses), the one state in which a fresh plan agrees with what the teacher
  itself would do; ``random`` hands over at a random step, which lands mid-stroke, where the fresh
  plan's labels contradict the plan the recorded teacher episodes continue (measured: it ruined
  the nominal task).
* Randomisation: every collected episode draws its own visuals, image noise, frame age (the
  task's ``observation_latency``) and (optionally) dynamics, through the task's own switches.
* Loss: squared error of ``tanh(mean)`` against the label, plus the Gaussian negative
  log-likelihood of the label's pre-tanh value for ``log_std`` (mean detached), so the stochastic
  policy is the teacher plus the spread of its imitation error.
* Output: a run directory with ``config.json``, ``metrics.jsonl`` and a checkpoint in the SLAC
  format (critic and latent model untrained), so ``slac-export`` and ``load_agent`` read it as
  they read any run; the checkpoint's counters say how many teacher steps were recorded. A
  checkpoint is also written every ``--checkpoint-every`` updates and on Ctrl-C (or SIGTERM) during
  training, so a long run stopped early can still be exported; the recorded episodes live in memory
  until ``--save-dataset`` writes them (once recorded, or on a stop while recording: the episodes
  completed so far), and ``--dataset`` trains on them again without recording.
* Long runs: ``--lr-schedule cosine`` anneals the learning rate to 0, ``--ema`` checkpoints and
  exports an exponential moving average of the weights, and ``--val-episodes`` runs every
  checkpoint on randomised episodes of seeds used nowhere else and keeps the best as
  ``checkpoints/best.pt`` (``slac-export RUN/checkpoints/best.pt``).
* ``--augment-shift PIXELS`` moves each training window (all 8 frames alike) by a random whole number
  of pixels, up to PIXELS along each axis, with the edge repeated (DrQ's random shift). Tried
  because the shipped student's squared error on another seed's episodes is 2.3 times that on its
  own; with 3 pixels it did not raise the randomised success (benchmarks/learning/notes.md, session 12).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slac_runtime.history import ACTOR_FRAMES, padded_window_indices
from slac_train.checkpoint import save_checkpoint
from slac_train.config import TrainConfig
from slac_train.envs import get_task_spec, make_env
from slac_train.networks import PixelPolicy
from slac_train.slac_agent import SlacAgent

VALIDATION_SEED0 = 5_000_000  # --val-episodes: not recording (seed * 100,000 + i), DAgger, final evaluation (10,000,000) or turn_policy.py (20,000 on)
LABEL_CLIP = 0.97  # labels at +-1 have no finite pre-tanh value
AUX_TARGETS = ("mount_height", "servo_gain")  # the dynamics draw's auxiliary targets (--aux-weight)


def dynamics_targets(reset_info) -> np.ndarray:
    """``[mount height offset / 1 cm, mean servo gain - 2 N m/rad]`` of a reset's dynamics draw (about
    -1 ... 1 each, the spans of the D'Claw's randomisation), NaN without a draw: the auxiliary targets
    that ask the encoder to see what the teacher reads from the simulator."""
    dynamics = reset_info.get("dynamics")
    if not dynamics or "mount_offset_m" not in dynamics or "actuator_kp" not in dynamics:
        return np.full(len(AUX_TARGETS), np.nan, np.float32)
    height = float(np.asarray(dynamics["mount_offset_m"]).reshape(3)[2])
    return np.array([height / 0.01, float(np.mean(dynamics["actuator_kp"])) - 2.0], np.float32)


def _turn_strokes(**kwargs):
    from robots.dclaw.scripted import TurnStrokeController

    return TurnStrokeController(**kwargs)


def _turn_table(**kwargs):
    from robots.dclaw.scripted import TurnTableController

    return TurnTableController(**kwargs)


def _turn_mount_tables(**kwargs):
    from robots.dclaw.scripted import MOUNT_TABLES, TurnTableController

    return TurnTableController(height_tables=MOUNT_TABLES, **kwargs)


def _turn_follow_tables(**kwargs):
    from robots.dclaw.scripted import FOLLOW_TABLES, MOUNT_TABLES, TurnTableController

    return TurnTableController(height_tables=MOUNT_TABLES, follow_tables=FOLLOW_TABLES, **kwargs)


def _turn_search(**kwargs):
    from robots.dclaw.scripted import TurnSearchController

    return TurnSearchController(**kwargs)


def _turn_table_search(**kwargs):
    from robots.dclaw.scripted import TurnSearchController

    return TurnSearchController(near_miss_only=True, **kwargs)


def _knows_mount(draw):
    return {"mount_offset_m": draw["mount_offset_m"]}


def _knows_nothing(draw):
    return {}


# --search-knows: what the search teachers' rollouts know of the episode's dynamics draw
SEARCH_KNOWLEDGE: dict[str, dict[str, Any]] = {
    "all": {},  # the exact simulator
    "mount": {"knows": _knows_mount},  # the mount's offset; nominal servos, damping and friction
    "nothing": {"knows": _knows_nothing, "compensate_mount": False},  # the nominal model, poses uncompensated
}

# teacher name -> (task families it drives, factory of an object with reset(), act_on(info) and
# take_over(reset_info, step, joint_goals))
TEACHERS: dict[str, tuple[tuple[str, ...], Callable[..., Any]]] = {
    "dclaw-turn-search": (("dclaw-turn",), _turn_search),
    "dclaw-turn-table-search": (("dclaw-turn",), _turn_table_search),
    "dclaw-turn-table": (("dclaw-turn",), _turn_table),
    "dclaw-turn-mount-tables": (("dclaw-turn",), _turn_mount_tables),
    "dclaw-turn-follow-tables": (("dclaw-turn",), _turn_follow_tables),
    "dclaw-turn-strokes": (("dclaw-turn",), _turn_strokes),
}


class Dataset:
    """Recorded episodes: frames, executed actions, teacher labels; windows as the actor sees them."""

    def __init__(self, frame_shape: tuple[int, ...], action_dim: int) -> None:
        self.frames: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []  # executed (what the history shows)
        self.labels: list[np.ndarray] = []  # the teacher's clean action at that frame (NaN: none)
        self.starts: list[int] = []  # per frame: index of its episode's first frame
        self.aux: list[np.ndarray] = []  # per frame: its episode's dynamics draw (dynamics_targets)
        self.frame_shape, self.action_dim = frame_shape, action_dim

    def __len__(self) -> int:
        return len(self.frames)

    def add_episode(self, frames: list[np.ndarray], actions: list[np.ndarray], labels: list[np.ndarray],
                    aux: np.ndarray | None = None) -> None:
        start = len(self.frames)
        aux = np.full(len(AUX_TARGETS), np.nan, np.float32) if aux is None else np.asarray(aux, np.float32)
        self.aux += [aux] * len(frames)
        self.frames += frames
        self.actions += actions
        self.labels += labels
        self.starts += [start] * len(frames)

    def save(self, path: Path, meta: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Write the episodes (uncompressed .npz, ~12 kB a frame) with ``meta`` (JSON) beside them;
        written to a temporary name and renamed, so a stop while writing leaves no half file.
        ``arrays``: this dataset's :meth:`arrays`, where the caller has them already (not stacked twice)."""
        path = Path(path)
        arrays = self.arrays() if arrays is None else arrays
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{k: arrays[k] for k in ("frames", "actions", "labels", "starts", "aux")},
                 meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> tuple[Dataset, dict]:
        with np.load(path) as f:
            stored = {k: f[k] for k in f.files}
        missing = {"frames", "actions", "labels", "starts", "aux", "meta"} - set(stored)
        if missing:
            raise ValueError(f"{path} is not a dataset written by slac-imitate --save-dataset "
                             f"(no {', '.join(sorted(missing))})")
        data = cls(stored["frames"].shape[1:], stored["actions"].shape[1])
        data.frames, data.actions, data.labels = list(stored["frames"]), list(stored["actions"]), list(stored["labels"])
        data.starts, data.aux = stored["starts"].tolist(), list(stored["aux"])
        return data, json.loads(str(stored["meta"]))

    def extend(self, other: Dataset) -> None:
        """Append another dataset's episodes (of the same frame and action shapes)."""
        if other.frame_shape != self.frame_shape or other.action_dim != self.action_dim:
            raise ValueError(f"cannot join datasets of frames {self.frame_shape} / {other.frame_shape}, "
                             f"actions {self.action_dim} / {other.action_dim}")
        offset = len(self.frames)
        self.frames += other.frames
        self.actions += other.actions
        self.labels += other.labels
        self.aux += other.aux
        self.starts += [start + offset for start in other.starts]

    def arrays(self) -> dict[str, np.ndarray]:
        n = len(self.starts)  # appended last: an episode cut short while being added (a stop) is left out
        labels = np.stack(self.labels[:n])
        return {
            "frames": np.stack(self.frames[:n]).astype(np.uint8),
            "actions": np.stack(self.actions[:n]).astype(np.float32),
            "labels": np.clip(labels, -LABEL_CLIP, LABEL_CLIP).astype(np.float32),
            "starts": np.asarray(self.starts, dtype=np.int64),
            "labelled": np.flatnonzero(~np.isnan(labels).any(-1)),
            "aux": np.stack(self.aux[:n]).astype(np.float32),
        }


REST_STEPS = 4  # a student whose action has not moved for this many steps rests (a stroke holds a pose <= 3)
REST_MOTION = 0.1  # largest change of any action component between two steps of a rest


def collect(env, teacher, episodes: int, noise_stds: list[float], rng: np.random.Generator, data: Dataset,
            seed0: int, student: SlacAgent | None = None, switch_at: str = "start",
            progress: Callable[[int, float, float], None] | None = None) -> dict[str, float]:
    """Record ``episodes`` episodes (seeds ``seed0 + i``) into ``data``: every frame with the executed
    action and the teacher's clean label (NaN where the teacher did not act). The teacher's actions
    are executed with Gaussian noise whose std cycles through ``noise_stds`` (DART).

    ``switch_at="start"``: the teacher drives whole episodes. With a ``student`` (DAgger by
    take-over), the student (deterministic, as deployed) drives first and the teacher takes over:
    ``"random"`` at a uniformly drawn step; ``"rest"`` once the student has rested (its action
    still for ``REST_STEPS`` steps) with the valve further from the target than the teacher's
    tolerance -- its near misses, where the teacher's fresh plan is what the teacher itself would do
    after resting; episodes where that never happens are not kept.

    ``progress(episodes_done, success_rate_so_far, return_mean_so_far)`` is called after every episode.
    """
    from slac_runtime.history import History

    if switch_at not in ("start", "random", "rest") or (switch_at != "start") != (student is not None):
        raise ValueError(f"switch_at must be 'start' without a student, 'random' or 'rest' with one, not {switch_at!r}")
    successes, returns, handed_over = [], [], []
    if hasattr(teacher, "attach"):  # a teacher that reads the simulator itself
        teacher.attach(env)
    unlabelled = np.full(env.action_space.shape, np.nan, dtype=np.float32)
    horizon = env.task.episode_env_steps // env.action_repeat
    for episode in range(episodes):
        noise = noise_stds[episode % len(noise_stds)]
        obs, info = env.reset(seed=seed0 + episode)
        reset_info = info
        history = History(env.action_space.shape[0], obs.shape, length=ACTOR_FRAMES, dtype=np.uint8)
        history.reset(obs)
        teacher.reset()
        switch = 0 if switch_at == "start" else int(rng.integers(0, horizon)) if switch_at == "random" else horizon
        frames, actions, labels, done, step, total = [], [], [], False, 0, 0.0
        while not done:
            if switch_at == "rest" and REST_STEPS <= step < switch and \
                    abs(float(info["angle_error"])) > teacher.tolerance and \
                    np.abs(np.diff(np.stack(actions[-REST_STEPS:]), axis=0)).max() < REST_MOTION:
                switch = step
            if step < switch:
                label, action = unlabelled, student.act(history, deterministic=True)
            else:
                if step == switch and step > 0:
                    teacher.take_over(reset_info, step, info["joint_goals"])
                label = teacher.act_on(info)
                action = np.clip(label + rng.normal(0.0, noise, label.shape), -1.0, 1.0).astype(np.float32)
            frames.append(obs)
            labels.append(label)
            actions.append(action)
            obs, reward, terminated, truncated, info = env.step(action)
            if student is not None:
                history.append(action, obs)
            total += reward
            done = terminated or truncated
            step += 1
        if switch < horizon:
            data.add_episode(frames, actions, labels, dynamics_targets(reset_info))
            handed_over.append(switch)
        returns.append(total)
        successes.append(float(info.get("success", 0.0)))
        if progress is not None:
            progress(episode + 1, float(np.mean(successes)), float(np.mean(returns)))
    return {"return_mean": float(np.mean(returns)), "success_rate": float(np.mean(successes)),
            "episodes_kept": len(handed_over),
            "switch_step_mean": float(np.mean(handed_over)) if handed_over else float("nan")}


def collect_dagger(env, teacher, agent: SlacAgent, episodes: int, noise_stds: list[float], rng: np.random.Generator,
                   data: Dataset, seed0: int, switch_at: str = "random") -> dict[str, float]:
    """DAgger by take-over (:func:`collect` with a student): only the teacher's steps are labelled."""
    return collect(env, teacher, episodes, noise_stds, rng, data, seed0, student=agent, switch_at=switch_at)


def sample_batch(arrays: dict[str, np.ndarray], batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    last = arrays["labelled"][rng.integers(0, len(arrays["labelled"]), batch_size)]
    frame_idx, action_idx, valid = padded_window_indices(last, arrays["starts"][last], ACTOR_FRAMES)
    prev_actions = arrays["actions"][action_idx] * valid[..., None]
    return {"frames": arrays["frames"][frame_idx], "prev_actions": prev_actions.astype(np.float32),
            "labels": arrays["labels"][last], "aux": arrays["aux"][last]}


def random_shift(frames: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Each window of ``frames[B, T, H, W, C]`` moved by a random whole number of pixels in
    ``-pad ... pad`` along each axis (the same for all of a window's frames, as a camera mounted a little
    off would move them), the edge pixels repeated into the gap (DrQ's augmentation)."""
    if pad <= 0:
        return frames
    batch, _, height, width, _ = frames.shape
    dy, dx = rng.integers(-pad, pad + 1, (2, batch))
    out = np.empty_like(frames)
    for i in range(batch):  # two takes per window: a third of the time of one fancy index over the batch
        rows = np.clip(np.arange(height) + dy[i], 0, height - 1)
        cols = np.clip(np.arange(width) + dx[i], 0, width - 1)
        out[i] = frames[i].take(rows, axis=1).take(cols, axis=2)
    return out


def bc_loss(policy: PixelPolicy, batch: dict[str, torch.Tensor], aux_head: torch.nn.Module | None = None,
            aux_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    x = policy.actor_inputs(batch["frames"], batch["prev_actions"])
    mean, log_std = policy.actor(x)
    labels = batch["labels"]
    mse = (torch.tanh(mean) - labels).pow(2).sum(-1).mean()
    pre_tanh = torch.atanh(labels)
    nll = (0.5 * ((pre_tanh - mean.detach()) * torch.exp(-log_std)).pow(2) + log_std).sum(-1).mean()
    loss = mse + 0.01 * nll
    parts = {"mse": float(mse.detach()), "nll": float(nll.detach()), "std": float(log_std.detach().exp().mean())}
    if aux_head is not None and aux_weight > 0:
        # the dynamics draw from the actor's input (a linear read-out: the encoder must carry it)
        target = batch["aux"]
        known = torch.isfinite(target)
        if known.any():
            aux = (aux_head(x) - torch.nan_to_num(target)).pow(2)[known].mean()
            loss = loss + aux_weight * aux
            parts["aux_mse"] = float(aux.detach())
    return loss, parts


class WeightAverage:
    """Exponential moving average of parameters (Polyak averaging), the weights a run exports.

    With a constant learning rate the last weights of a long run sit wherever the last noisy steps
    left them (measured: an 8,000-episode student whose last checkpoint failed the nominal task);
    the average over the last ~1/(1 - decay) updates does not. The decay is warmed up as
    ``min(decay, (1 + t) / (10 + t))`` so the first updates are not averaged with the initial weights.
    """

    def __init__(self, params: list[torch.nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        self.params, self.decay, self.updates = list(params), decay, 0
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for a, p in zip(self.average, self.params):
            a.lerp_(p.detach(), 1.0 - decay)
        self.updates += 1

    @torch.no_grad()
    def copy_in(self) -> None:
        for a, p in zip(self.average, self.params):
            p.copy_(a)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The averaged weights in the model for the block (a checkpoint, a validation), then the trained ones again."""
        saved = [p.detach().clone() for p in self.params]
        self.copy_in()
        try:
            yield
        finally:
            with torch.no_grad():
                for s, p in zip(saved, self.params):
                    p.copy_(s)


def lr_factor(schedule: str, update: int, total: int) -> float:
    """Learning-rate multiplier before update ``update`` (0-based) of ``total``: 1, or a cosine from 1 to 0."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(update, total) / max(1, total)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}: constant or cosine")


def evaluate(agent: SlacAgent, env, episodes: int, seed0: int, deterministic: bool) -> dict[str, float]:
    from slac_train.evaluation import run_episode

    results = [run_episode(env, agent, seed0 + episode, deterministic) for episode in range(episodes)]
    errors = [r.final_info.get("angle_error", r.final_info.get("pose_error", np.nan)) for r in results]
    return {"return_mean": float(np.mean([r.episode_return for r in results])),
            "success_rate": float(np.mean([r.success or 0.0 for r in results])),
            "final_error_abs_mean": float(np.mean(np.abs(errors)))}


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A kill (SIGTERM) stops training as Ctrl-C does: with a checkpoint of what was learnt so far."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slac-imitate", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="dclaw-turn")
    p.add_argument("--teacher", default="dclaw-turn-table", choices=sorted(TEACHERS))
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=300, help="teacher episodes recorded")
    p.add_argument("--teacher-tolerance", type=float, default=None, metavar="RAD",
                   help="valve error (rad) at which the teacher stops turning (default: the teacher's own)")
    p.add_argument("--search-slack", type=float, default=None, metavar="RAD",
                   help="search teachers only: keep the table's choice among strokes within RAD of the best")
    p.add_argument("--search-knows", default="all", choices=sorted(SEARCH_KNOWLEDGE),
                   help="search teachers only: what their rollouts know of the episode's dynamics (all: the "
                        "exact simulator; mount: its offset only; nothing: the nominal model)")
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.15],
                   help="action-noise stds the episodes cycle through (DART)")
    p.add_argument("--visual-randomization", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--dynamics-randomization", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--image-noise", type=float, default=4.0, help="pixel noise std (grey levels) while recording")
    p.add_argument("--observation-latency", type=float, nargs=2, default=[0.0, 0.08], metavar=("LOW", "HIGH"),
                   help="range (s) of the per-episode age of the frames while recording, as the robot's camera has")
    p.add_argument("--updates", type=int, default=3000)
    p.add_argument("--dagger-rounds", type=int, default=0,
                   help="DAgger rounds after the first training (student drives, then the teacher takes over)")
    p.add_argument("--dagger-episodes", type=int, default=100, help="episodes recorded per DAgger round")
    p.add_argument("--dagger-updates", type=int, default=1000, help="updates on all the data after each DAgger round")
    p.add_argument("--dagger-switch", default="rest", choices=("rest", "random"),
                   help="when the teacher takes over: where the student rests short of the target, or at a random "
                        "step (which lands mid-stroke and measured far worse)")
    p.add_argument("--dagger-teacher", default=None, choices=sorted(TEACHERS),
                   help="teacher that takes over in DAgger episodes (default: --teacher)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"),
                   help="cosine: anneal the learning rate to 0 over all the run's updates (DAgger rounds included)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="checkpoint, validate and export the exponential moving average of the weights (e.g. 0.999; "
                        "0: the last weights)")
    p.add_argument("--val-episodes", type=int, default=0, metavar="N",
                   help="at every checkpoint, run the student on N randomised episodes of seeds the recording and the "
                        "final evaluation do not use; the best is kept as checkpoints/best.pt")
    p.add_argument("--save-dataset", type=Path, default=None, metavar="NPZ",
                   help="write the recorded teacher episodes here (~0.5 MB an episode) for --dataset")
    p.add_argument("--dataset", type=Path, nargs="+", default=None, metavar="NPZ",
                   help="train on episodes written by --save-dataset (one file or several, joined) instead of "
                        "recording new ones")
    p.add_argument("--augment-shift", type=int, default=0, metavar="PIXELS",
                   help="move each training window by up to PIXELS pixels in x and y (0: no augmentation)")
    p.add_argument("--aux-weight", type=float, default=0.0,
                   help="weight of an auxiliary loss: predict the episode's mount height and servo gain "
                        "(what the teacher reads from the simulator) linearly from the actor's input")
    p.add_argument("--encoder-base-channels", type=int, default=16)
    p.add_argument("--feature-dim", type=int, default=128)
    p.add_argument("--actor-hidden", type=int, default=256)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=5000, metavar="UPDATES",
                   help="write a checkpoint every UPDATES updates (one is always written at the end and on Ctrl-C)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = get_task_spec(args.task)
    except KeyError as e:
        print(f"slac-imitate: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    for teacher in dict.fromkeys([args.teacher] + ([args.dagger_teacher] if args.dagger_teacher else [])):
        families = TEACHERS[teacher][0]
        if not any(spec.name == f or spec.name.startswith(f + "-") for f in families):
            print(f"slac-imitate: teacher {teacher} drives {', '.join(families)} tasks, not {spec.name}", file=sys.stderr)
            return 2
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    run_dir = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)

    def log(record: dict) -> None:
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()), flush=True)

    switches = {"visual_randomization": args.visual_randomization, "dynamics_randomization": args.dynamics_randomization,
                "image_noise": args.image_noise, "observation_latency": tuple(args.observation_latency)}
    env = make_env(spec.name, seed=args.seed, **switches)
    config = TrainConfig(task=spec.name, seed=args.seed, encoder_base_channels=args.encoder_base_channels,
                         feature_dim=args.feature_dim, actor_critic_hidden=args.actor_hidden,
                         run_dir=str(run_dir), device="cpu").resolved(env.action_repeat)
    config.save_json(run_dir / "config.json")
    (run_dir / "imitation.json").write_text(json.dumps(vars(args) | {"run_dir": str(run_dir)}, indent=2, default=str))

    teacher_options = {} if args.teacher_tolerance is None else {"tolerance": args.teacher_tolerance}
    search_options = ({} if args.search_slack is None else {"slack": args.search_slack}) | SEARCH_KNOWLEDGE[args.search_knows]

    def teacher_named(name: str):
        return TEACHERS[name][1](**teacher_options, **(search_options if name.endswith("-search") else {}))

    started = time.monotonic()
    data = Dataset(env.observation_space.shape, env.action_space.shape[0])
    every = max(1, args.episodes // 20)

    so_far = {"success_rate": float("nan"), "return_mean": float("nan")}

    def collect_progress(done: int, success: float, return_mean: float) -> None:
        so_far.update(success_rate=success, return_mean=return_mean)
        if done % every == 0 and done < args.episodes:
            print(f"collecting: {done}/{args.episodes} teacher episodes, teacher success {success:.0%}, "
                  f"{time.monotonic() - started:.0f} s", flush=True)

    def dataset_meta(episodes: int, stats: dict) -> dict:  # what --save-dataset writes beside the episodes
        return {"task": spec.name, "teacher": args.teacher, "episodes": episodes, "seed": args.seed,
                "noise": args.noise, **switches, "teacher_stats": stats}

    if args.dataset:
        parts = []
        for path in args.dataset:
            try:
                part, recorded = Dataset.load(path)
            except (OSError, ValueError) as e:
                print(f"slac-imitate: cannot read the dataset {path}: {e}", file=sys.stderr)
                return 2
            if part.frame_shape != env.observation_space.shape or part.action_dim != env.action_space.shape[0]:
                print(f"slac-imitate: {path} holds frames {part.frame_shape} and actions of {part.action_dim}, "
                      f"but {spec.name} has {env.observation_space.shape} and {env.action_space.shape[0]}: "
                      f"record it again for this task", file=sys.stderr)
                return 2
            parts.append((part, recorded))
        data = parts[0][0]
        for part, _ in parts[1:]:
            data.extend(part)
        episodes = [r["episodes"] for _, r in parts]
        teacher_stats = {k: float(np.average([r["teacher_stats"][k] for _, r in parts], weights=episodes))
                         for k in ("return_mean", "success_rate")}
        log({"kind": "collect", "frames": len(data), "episodes": sum(episodes),
             "dataset": " ".join(str(p) for p in args.dataset),
             "recorded_by": " ".join(dict.fromkeys(r["teacher"] for _, r in parts)),
             "teacher_return": teacher_stats["return_mean"], "teacher_success": teacher_stats["success_rate"],
             "elapsed_s": time.monotonic() - started})
    else:
        try:
            with _sigterm_as_interrupt():
                teacher_stats = collect(env, teacher_named(args.teacher), args.episodes, args.noise, rng, data,
                                        seed0=args.seed * 100_000, progress=collect_progress)
        except KeyboardInterrupt:
            env.close()
            episodes = len(set(data.starts))
            if args.save_dataset is None or episodes == 0:
                print(f"slac-imitate: interrupted while recording, after {episodes} episodes; nothing was written "
                      f"(--save-dataset keeps the episodes recorded before a stop)", file=sys.stderr)
            else:
                data.save(args.save_dataset, dataset_meta(episodes, so_far))
                print(f"slac-imitate: interrupted while recording; the {episodes} episodes recorded are in "
                      f"{args.save_dataset}: train on them with --dataset {args.save_dataset}", file=sys.stderr)
            return 130
        log({"kind": "collect", "frames": len(data), "episodes": args.episodes,
             "teacher_return": teacher_stats["return_mean"], "teacher_success": teacher_stats["success_rate"],
             "elapsed_s": time.monotonic() - started})
    arrays = data.arrays()
    if not args.dataset and args.save_dataset is not None:
        data.save(args.save_dataset, dataset_meta(args.episodes, teacher_stats), arrays)
        print(f"dataset: {args.save_dataset}", flush=True)

    agent = SlacAgent(config, data.action_dim)
    policy = agent.policy()
    # trained with the policy, not exported: the robot's policy stays encoder + actor
    aux_head = torch.nn.Linear(policy.actor.net[0].in_features, len(AUX_TARGETS)) if args.aux_weight > 0 else None
    params = list(policy.parameters()) + (list(aux_head.parameters()) if aux_head is not None else [])
    optimizer = torch.optim.Adam(params, lr=args.lr)
    total_updates = args.updates + args.dagger_rounds * args.dagger_updates
    average = WeightAverage(list(policy.parameters()), args.ema) if args.ema > 0 else None
    done_updates = 0
    val_env, best = None, None

    def train(updates: int) -> bool:
        nonlocal done_updates
        for i in range(updates):
            lr = args.lr * lr_factor(args.lr_schedule, done_updates, total_updates)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = sample_batch(arrays, args.batch_size, rng)
            batch["frames"] = random_shift(batch["frames"], args.augment_shift, rng)
            batch = {k: torch.from_numpy(v) for k, v in batch.items()}
            loss, parts = bc_loss(policy, batch, aux_head, args.aux_weight)
            if not torch.isfinite(loss):
                print(f"slac-imitate: non-finite loss at update {done_updates + 1}: {parts}", file=sys.stderr)
                return False
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update()
            done_updates += 1  # counted once applied: a checkpoint on Ctrl-C says what it holds
            if done_updates % 250 == 0 or i == updates - 1:
                log({"kind": "train", "update": done_updates, **parts, "lr": lr,
                     "elapsed_s": time.monotonic() - started})
            if args.checkpoint_every > 0 and done_updates % args.checkpoint_every == 0 and i < updates - 1:
                validate(checkpoint())
        return True

    def exported_weights():
        return average.swapped_in() if average is not None else nullcontext()

    def checkpoint() -> Path:
        counters = {"agent_steps": len(data), "env_steps": len(data) * env.action_repeat, "bc_updates": done_updates}
        with exported_weights():
            state = {"config": config.to_dict(), "action_dim": data.action_dim, "agent": agent.state_dict(),
                     "counters": counters, "imitation": {"teacher": args.teacher, **switches, "ema": args.ema}}
            return save_checkpoint(run_dir, f"ckpt-bc-{done_updates:08d}", state)

    def validate(path: Path) -> None:
        """Closed-loop success of the checkpoint at ``path``; the best so far is copied to checkpoints/best.pt."""
        nonlocal val_env, best
        if args.val_episodes <= 0:
            return
        if val_env is None:
            val_env = make_env(spec.name, seed=args.seed + 2, **switches)
        with exported_weights():
            result = evaluate(agent, val_env, args.val_episodes, seed0=VALIDATION_SEED0, deterministic=True)
        log({"kind": "val", "update": done_updates, **result, "elapsed_s": time.monotonic() - started})
        score = (result["success_rate"], -result["final_error_abs_mean"])
        if best is None or score >= best[0]:
            best = (score, done_updates)
            tmp = path.with_name("best.pt.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, path.with_name("best.pt"))

    try:
        with _sigterm_as_interrupt():
            if not train(args.updates):
                return 1
            dagger_teacher = teacher_named(args.dagger_teacher or args.teacher)
            for round_ in range(1, args.dagger_rounds + 1):
                stats = collect_dagger(env, dagger_teacher, agent, args.dagger_episodes, args.noise, rng, data,
                                       seed0=args.seed * 100_000 + 50_000 + round_ * 1_000,
                                       switch_at=args.dagger_switch)
                arrays = data.arrays()
                log({"kind": "dagger", "round": round_, "frames": len(data), "labelled": len(arrays["labelled"]),
                     **stats, "elapsed_s": time.monotonic() - started})
                if not train(args.dagger_updates):
                    return 1
    except KeyboardInterrupt:
        path = checkpoint()
        print(f"slac-imitate: interrupted after {done_updates} updates; checkpoint written to {path}\n"
              f"export it with: slac-export {run_dir} --output policy.onnx", file=sys.stderr)
        env.close()
        if val_env is not None:
            val_env.close()
        return 130

    if average is not None:
        average.copy_in()  # from here on the model is what is exported
    final = checkpoint()
    print(f"checkpoint: {final}", flush=True)
    validate(final)
    if best is not None:
        print(f"best validation: update {best[1]}, success {best[0][0]:.0%} over {args.val_episodes} episodes: "
              f"slac-export {final.parent / 'best.pt'}", flush=True)
    if val_env is not None:
        val_env.close()

    results = {}
    for name, kwargs in (("nominal", {}), ("randomized", switches)):
        eval_env = make_env(spec.name, seed=args.seed + 1, **kwargs)
        try:
            results[name] = evaluate(agent, eval_env, args.eval_episodes, seed0=10_000_000, deterministic=True)
        finally:
            eval_env.close()
        log({"kind": "eval", "setting": name, **results[name]})
    env.close()
    (run_dir / "eval.json").write_text(json.dumps({"teacher": teacher_stats, "student": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
