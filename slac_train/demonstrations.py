"""Demonstrations for ``slac-train --demos``: teacher episodes in a replay buffer of their own.

RLPD's recipe (Ball et al. 2023) on SLAC's windows: the demonstrations sit in a
:class:`DemoBuffer` that online data never writes to, and every batch -- the latent model's
pre-training included -- takes ``round(demo_ratio x batch)`` of its windows from it and the rest
from the online replay buffer, in a random order (:func:`sample_mixed`). Until the online buffer
holds a complete transition, a batch is all demonstrations (a run may start learning from them
before it has acted).

The episodes come from ``slac-imitate --save-dataset`` files of format 2 (frames, executed
actions, rewards, termination flags, each episode's final frame and the teacher's clean labels;
:mod:`slac_train.imitation.dataset`). A new run copies them into ``<run>/demos/`` and records
their SHA-256 in every checkpoint; a resumed run reads the copies again (the same windows, in the
same order), so it keeps its demonstrations even when the original files move.
"""

from __future__ import annotations

import math
import os
import shutil
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slac_runtime.history import WINDOW_FRAMES
from slac_runtime.policy_metadata import file_sha256
from slac_train.imitation.dataset import Dataset
from slac_train.replay_buffer import ReplayBuffer

DEMO_DIR = "demos"  # inside a run directory: the copies of the run's demonstration files


class DemoBuffer(ReplayBuffer):
    """Whole demonstration episodes, written once: the capacity is their frame count, so the ring
    never wraps and nothing is ever overwritten.

    Its windows (:meth:`windows`) are the replay buffer's (the same start-of-episode padding,
    slac_runtime.history §1) plus ``demo`` (1.0) and ``bc_target[B, A]``: the demonstrated action
    of the window's last step, the teacher's clean label where it has one, else the executed action.
    """

    def __init__(self, capacity: int, frame_shape: tuple[int, ...], action_dim: int) -> None:
        # (the ring's smallest size; the windows need no more than the episodes' frames)
        super().__init__(max(int(capacity), 2 * WINDOW_FRAMES), frame_shape, action_dim)
        self.labels = np.zeros((self.capacity, action_dim), dtype=np.float32)

    def add_episode(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        labels: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        final_frame: np.ndarray,
    ) -> None:
        """One episode: ``frames[i]`` is the observation before ``actions[i]`` (label, reward and
        flag alike); ``final_frame`` the observation after the last action."""
        if len(self) + len(frames) + 1 > self.capacity:
            raise ValueError("the demonstration buffer is full: its capacity is fixed when built")
        self.start_episode(frames[0])
        nexts = list(frames[1:]) + [final_frame]
        for action, label, reward, done, frame in zip(actions, labels, rewards, terminated, nexts):
            slot = (self._next - 1) % self.capacity
            self.add(action, float(reward), bool(done), frame)
            self.labels[slot] = label

    def windows(self, last: np.ndarray, episode_start: np.ndarray) -> dict[str, np.ndarray]:
        out = super().windows(last, episode_start)
        out["bc_target"] = self.labels[(np.asarray(last) - 1) % self.capacity]
        out["demo"] = np.ones(len(last), dtype=np.float32)
        return out


@dataclass(frozen=True)
class DemoSource:
    """One demonstration file as a run records it (config, log, checkpoints)."""

    path: str
    sha256: str
    episodes: int
    transitions: int
    teacher: str | None
    task: str | None


def demo_count(batch_size: int, ratio: float) -> int:
    """Demonstration windows in a batch of ``batch_size``: ratio x batch, to the nearest whole."""
    return int(math.floor(ratio * batch_size + 0.5))


def sample_mixed(
    online: ReplayBuffer,
    demos: DemoBuffer,
    batch_size: int,
    ratio: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """A batch of windows: :func:`demo_count` from ``demos``, the rest from ``online`` (all from
    ``demos`` while ``online`` holds no complete transition), shuffled together, so that the
    model's part of a single-batch update (its first windows) is mixed alike.

    Online windows carry ``demo`` 0 and a zero ``bc_target``.
    """
    n_demo = demo_count(batch_size, ratio) if online.num_windows() > 0 else batch_size
    parts = []
    if n_demo > 0:
        parts.append(demos.sample(n_demo, rng))
    if batch_size > n_demo:
        part = online.sample(batch_size - n_demo, rng)
        part["demo"] = np.zeros(batch_size - n_demo, dtype=np.float32)
        part["bc_target"] = np.zeros((batch_size - n_demo, online.action_dim), dtype=np.float32)
        parts.append(part)
    order = rng.permutation(batch_size)
    return {key: np.concatenate([p[key] for p in parts])[order] for key in parts[0]}


def _read(path: str | Path) -> tuple[Dataset, dict[str, Any]]:
    """A dataset file with SLAC's transitions; ValueError in the command line's words."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"--demos {path}: no such file (record one with slac-imitate --save-dataset)"
        )
    try:
        data, meta = Dataset.load(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"--demos {path} cannot be read as a dataset: {error}") from None
    if not data.has_transitions:
        raise ValueError(
            f"--demos {path} holds no rewards (a dataset of format 1): record it again with "
            "slac-imitate --save-dataset"
        )
    return data, meta


class Demonstrations:
    """The run's demonstration buffer and the files it was built from."""

    def __init__(self, buffer: DemoBuffer, sources: list[DemoSource], metas: list[dict]) -> None:
        self.buffer = buffer
        self.sources = sources
        self.metas = metas

    @classmethod
    def load(
        cls,
        paths: tuple[str, ...] | list[str],
        frame_shape: tuple[int, ...],
        action_dim: int,
        action_repeat: int,
        read_from: list[Path] | None = None,
    ) -> Demonstrations:
        """The episodes of ``paths``, in order, checked against the task's frames, actions and
        action repeat. ``read_from``: where to read each file instead (a run's copies); the sources
        keep the names in ``paths``."""
        datasets, sources, metas = [], [], []
        for path, where in zip(paths, read_from or [Path(p) for p in paths]):
            data, meta = _read(where)
            if tuple(data.frame_shape) != tuple(frame_shape) or data.action_dim != action_dim:
                raise ValueError(
                    f"--demos {path} holds frames {tuple(data.frame_shape)} and {data.action_dim} "
                    f"actions, but this task has {tuple(frame_shape)} and {action_dim}: record "
                    "them for this task"
                )
            repeat = meta.get("action_repeat")
            if repeat is not None and int(repeat) != action_repeat:
                raise ValueError(
                    f"--demos {path} was recorded at action repeat {repeat} and this run acts at "
                    f"{action_repeat}: pass --action-repeat {repeat} or record them again"
                )
            datasets.append(data)
            metas.append(meta)
            sources.append(
                DemoSource(
                    path=str(path),
                    sha256=file_sha256(where),
                    episodes=data.num_episodes,
                    transitions=len(data),
                    teacher=meta.get("teacher"),
                    task=meta.get("task"),
                )
            )
        frames = sum(len(d) + d.num_episodes for d in datasets)
        buffer = DemoBuffer(frames, tuple(frame_shape), action_dim)
        for data in datasets:
            _fill(buffer, data)
        return cls(buffer, sources, metas)

    @classmethod
    def reload(
        cls,
        run_dir: str | Path,
        recorded: list[dict[str, Any]],
        frame_shape: tuple[int, ...],
        action_dim: int,
        action_repeat: int,
    ) -> Demonstrations:
        """The demonstrations a checkpoint recorded: from the run's copies (else the original
        files), each checked against its recorded SHA-256."""
        paths = [r["path"] for r in recorded]
        copies = [copy_path(run_dir, i, p) for i, p in enumerate(paths)]
        where = [c if c.is_file() else Path(p) for c, p in zip(copies, paths)]
        demos = cls.load(paths, frame_shape, action_dim, action_repeat, read_from=where)
        for source, record, file in zip(demos.sources, recorded, where):
            if source.sha256 != record["sha256"]:
                raise ValueError(
                    f"{file} is not the demonstration file this run started with (its SHA-256 "
                    f"differs): put back the copy of {record['path']} in {Path(run_dir) / DEMO_DIR}"
                )
        return demos

    def copy_into(self, run_dir: str | Path) -> None:
        """Copy the demonstration files into ``<run_dir>/demos/`` (a resume reads them there)."""
        folder = Path(run_dir) / DEMO_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for i, source in enumerate(self.sources):
            target = copy_path(run_dir, i, source.path)
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(source.path, tmp)
            os.replace(tmp, target)

    def record(self) -> list[dict[str, Any]]:
        """The sources as plain values (checkpoints, metrics.jsonl)."""
        return [asdict(s) for s in self.sources]

    def describe(self) -> str:
        episodes = sum(s.episodes for s in self.sources)
        transitions = sum(s.transitions for s in self.sources)
        teachers = ", ".join(dict.fromkeys(str(s.teacher) for s in self.sources))
        return (
            f"demonstrations: {episodes:,} episodes, {transitions:,} transitions "
            f"({self.buffer.num_windows():,} windows) from {len(self.sources)} file(s), "
            f"teacher {teachers}"
        )

    def setting_notes(self, task: str, switches: dict[str, Any]) -> list[str]:
        """Sentences where a file was recorded on another task or under other randomisation
        switches than the run's (``switches``: the run's D'Claw switches; empty: the task's)."""
        notes = []
        for source, meta in zip(self.sources, self.metas):
            if source.task is not None and source.task != task:
                notes.append(f"{source.path} was recorded on {source.task}; this run is {task}")
            differ = {
                k: (meta[k], v)
                for k, v in switches.items()
                if k in meta and _as_setting(meta[k]) != _as_setting(v)
            }
            if differ:
                what = ", ".join(f"{k} {a} (run: {b})" for k, (a, b) in differ.items())
                notes.append(f"{source.path} was recorded with {what}")
        return notes


def _as_setting(value: Any) -> Any:
    """A randomisation switch comparable across JSON (lists) and Python (tuples, scalars)."""
    if isinstance(value, (list, tuple)):
        low, high = (float(v) for v in value)
        return (low, high)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return (float(value), float(value))
    return value


def copy_path(run_dir: str | Path, index: int, path: str) -> Path:
    """Where a run keeps its copy of demonstration file number ``index``."""
    return Path(run_dir) / DEMO_DIR / f"{index}-{Path(path).name}"


def _fill(buffer: DemoBuffer, data: Dataset) -> None:
    """Append ``data``'s episodes to ``buffer``, labels cleaned for cloning (NaN -> executed)."""
    arrays = data.arrays()
    starts = arrays["starts"]
    labels = arrays["labels"]
    missing = np.isnan(labels).any(-1)
    labels[missing] = np.clip(arrays["actions"][missing], -1.0, 1.0)
    firsts = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]])
    ends = np.r_[firsts[1:], len(starts)]
    for episode, (first, end) in enumerate(zip(firsts, ends)):
        buffer.add_episode(
            arrays["frames"][first:end],
            arrays["actions"][first:end],
            labels[first:end],
            arrays["rewards"][first:end],
            arrays["terminated"][first:end],
            arrays["final_frames"][episode],
        )
