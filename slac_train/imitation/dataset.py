"""Recorded teacher episodes and the training windows drawn from them.

A :class:`Dataset` holds, per frame, the uint8 frame ``[H, W, 3]``, the action executed after it,
the teacher's clean label (NaN where the teacher did not act: a student's steps in DAgger) and its
episode's dynamics draw (:func:`dynamics_targets`). :func:`sample_batch` cuts the 8-frame /
7-action windows the actor sees, with the runtime's start-of-episode padding
(:func:`slac_runtime.history.padded_window_indices`).

A dataset of format 2 (:data:`FORMAT`) also holds what SLAC learns from (``slac-train --demos``):
the reward and termination flag of every action, and each episode's last frame, the observation
after its last action. A dataset of format 1 (written without them) still trains ``slac-imitate``.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slac_runtime.history import ACTOR_FRAMES, padded_window_indices
from slac_runtime.options import UsageError

LABEL_CLIP = 0.97  # labels at +-1 have no finite pre-tanh value
AUX_TARGETS = ("mount_height", "servo_gain")  # the dynamics draw's auxiliary targets (aux_weight)
FORMAT = 2  # 2: with rewards, termination flags and final frames; 1: without
TRANSITION_ARRAYS = ("rewards", "terminated", "final_frames")  # what format 2 adds


def dynamics_targets(reset_info) -> np.ndarray:
    """``[mount height offset / 1 cm, mean servo gain - 2 N m/rad]`` of a reset's dynamics draw
    (about -1 ... 1 each, the spans of the D'Claw's randomisation), NaN without a draw: the
    auxiliary targets that ask the encoder to see what the teacher reads from the simulator."""
    dynamics = reset_info.get("dynamics")
    if not dynamics or "mount_offset_m" not in dynamics or "actuator_kp" not in dynamics:
        return np.full(len(AUX_TARGETS), np.nan, np.float32)
    height = float(np.asarray(dynamics["mount_offset_m"]).reshape(3)[2])
    return np.array([height / 0.01, float(np.mean(dynamics["actuator_kp"])) - 2.0], np.float32)


def check_dataset_file(path: str | Path) -> None:
    """Refuse, in one sentence, what cannot be a dataset: a missing file, a folder, a file that is
    not an ``.npz`` (``FileNotFoundError``, ``IsADirectoryError``, ``ValueError``)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a dataset (.npz)")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # an .npz is a zip archive
            raise ValueError(
                f"{path} is not a dataset written by slac-imitate --save-dataset (not an .npz)"
            )


class Dataset:
    """Recorded episodes: frames, executed actions, teacher labels; windows as the actor sees
    them."""

    def __init__(self, frame_shape: tuple[int, ...], action_dim: int) -> None:
        self.frames: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []  # executed (what the history shows)
        self.labels: list[np.ndarray] = []  # the teacher's clean action at that frame (NaN: none)
        self.starts: list[int] = []  # per frame: index of its episode's first frame
        self.aux: list[np.ndarray] = []  # per frame: its episode's dynamics draw (dynamics_targets)
        # SLAC's transitions (None: an episode recorded without them, as format 1 datasets are)
        self.rewards: list[float] | None = []  # per frame: the reward of the action taken there
        self.terminated: list[bool] | None = []  # per frame: that action ended the episode
        self.final_frames: list[np.ndarray] | None = []  # per episode: the frame after its last
        self.frame_shape, self.action_dim = frame_shape, action_dim

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def num_episodes(self) -> int:
        return len(set(self.starts))

    @property
    def has_transitions(self) -> bool:
        """Every episode holds its rewards, termination flags and final frame (what SLAC needs)."""
        return self.final_frames is not None

    def add_episode(
        self,
        frames: list[np.ndarray],
        actions: list[np.ndarray],
        labels: list[np.ndarray],
        aux: np.ndarray | None = None,
        rewards: list[float] | None = None,
        terminated: list[bool] | None = None,
        final_frame: np.ndarray | None = None,
    ) -> None:
        """One episode: ``frames[i]`` is the observation before ``actions[i]``; ``rewards``,
        ``terminated`` (one per action) and ``final_frame`` (the observation after the last action)
        are SLAC's transitions, given together or not at all."""
        start = len(self.frames)
        aux = (
            np.full(len(AUX_TARGETS), np.nan, np.float32)
            if aux is None
            else np.asarray(aux, np.float32)
        )
        given = [rewards is not None, terminated is not None, final_frame is not None]
        if any(given) and not all(given):
            raise ValueError("an episode's rewards, termination flags and final frame go together")
        if all(given) and not len(rewards) == len(terminated) == len(frames):
            raise ValueError(
                f"{len(frames)} frames need as many rewards and flags, got {len(rewards)} and "
                f"{len(terminated)}"
            )
        if all(given) and self.final_frames is not None:
            self.rewards += [float(r) for r in rewards]
            self.terminated += [bool(t) for t in terminated]
            self.final_frames.append(np.asarray(final_frame))
        else:
            self.rewards = self.terminated = self.final_frames = None
        self.aux += [aux] * len(frames)
        self.frames += frames
        self.actions += actions
        self.labels += labels
        self.starts += [start] * len(frames)

    def save(self, path: Path, meta: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Write the episodes (uncompressed .npz, ~12 kB a frame) with ``meta`` (JSON) beside them;
        written to a temporary name and renamed, so a stop while writing leaves no half file.
        ``arrays``: this dataset's :meth:`arrays`, where the caller has them already (not stacked
        twice)."""
        path = Path(path)
        arrays = self.arrays() if arrays is None else arrays
        names = ["frames", "actions", "labels", "starts", "aux"]
        if self.has_transitions:
            names += list(TRANSITION_ARRAYS)
        meta = {**meta, "format": FORMAT if self.has_transitions else 1}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{k: arrays[k] for k in names}, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> tuple[Dataset, dict]:
        check_dataset_file(path)
        try:
            with np.load(path) as f:
                stored = {k: f[k] for k in f.files}
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise ValueError(f"{path} is damaged or incomplete ({error})") from None
        missing = {"frames", "actions", "labels", "starts", "aux", "meta"} - set(stored)
        if missing:
            raise ValueError(
                f"{path} is not a dataset written by slac-imitate --save-dataset "
                f"(no {', '.join(sorted(missing))})"
            )
        problem = _inconsistency(stored)
        if problem:
            raise ValueError(
                f"{path} is not a dataset slac-imitate --save-dataset wrote: {problem}; record it "
                "again"
            )
        data = cls(stored["frames"].shape[1:], stored["actions"].shape[1])
        data.frames, data.actions, data.labels = (
            list(stored["frames"]),
            list(stored["actions"]),
            list(stored["labels"]),
        )
        data.starts, data.aux = stored["starts"].tolist(), list(stored["aux"])
        if set(TRANSITION_ARRAYS) <= set(stored):
            data.rewards = stored["rewards"].astype(float).tolist()
            data.terminated = stored["terminated"].astype(bool).tolist()
            data.final_frames = list(stored["final_frames"])
        else:
            data.rewards = data.terminated = data.final_frames = None
        return data, json.loads(str(stored["meta"]))

    def extend(self, other: Dataset) -> None:
        """Append another dataset's episodes (of the same frame and action shapes)."""
        if other.frame_shape != self.frame_shape or other.action_dim != self.action_dim:
            raise ValueError(
                f"cannot join datasets of frames {self.frame_shape} / {other.frame_shape}, "
                f"actions {self.action_dim} / {other.action_dim}"
            )
        offset = len(self.frames)
        if self.has_transitions and other.has_transitions:
            self.rewards += other.rewards
            self.terminated += other.terminated
            self.final_frames += other.final_frames
        else:
            self.rewards = self.terminated = self.final_frames = None
        self.frames += other.frames
        self.actions += other.actions
        self.labels += other.labels
        self.aux += other.aux
        self.starts += [start + offset for start in other.starts]

    def arrays(self) -> dict[str, np.ndarray]:
        n = len(
            self.starts
        )  # appended last: an episode cut short while being added (a stop) is left out
        labels = np.stack(self.labels[:n])
        arrays = {
            "frames": np.stack(self.frames[:n]).astype(np.uint8),
            "actions": np.stack(self.actions[:n]).astype(np.float32),
            "labels": np.clip(labels, -LABEL_CLIP, LABEL_CLIP).astype(np.float32),
            "starts": np.asarray(self.starts, dtype=np.int64),
            "labelled": np.flatnonzero(~np.isnan(labels).any(-1)),
            "aux": np.stack(self.aux[:n]).astype(np.float32),
        }
        if self.has_transitions:
            episodes = len(set(self.starts))
            arrays["rewards"] = np.asarray(self.rewards[:n], dtype=np.float32)
            arrays["terminated"] = np.asarray(self.terminated[:n], dtype=bool)
            arrays["final_frames"] = np.stack(self.final_frames[:episodes]).astype(np.uint8)
        return arrays


def _inconsistency(stored: dict[str, np.ndarray]) -> str | None:
    """What in a dataset file's arrays does not fit together (None where all does): frames
    ``uint8 [N, H, W, 3]``, per frame an executed action (finite), a label, its episode's first
    frame and dynamics draw, and in format 2 a finite reward, a flag and per episode a final frame;
    ``meta`` a JSON object."""
    frames, actions, labels, starts = (stored[k] for k in ("frames", "actions", "labels", "starts"))
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        return f"frames are {frames.dtype} {list(frames.shape)}, not uint8 [N, H, W, 3]"
    n = len(frames)
    if n == 0:
        return "it holds no episode"
    if actions.ndim != 2 or len(actions) != n or labels.shape != actions.shape:
        return (
            f"{n} frames need as many actions and labels [N, A], got {list(actions.shape)} and "
            f"{list(labels.shape)}"
        )
    if not np.issubdtype(actions.dtype, np.number) or not np.isfinite(actions).all():
        return "its actions are not all finite numbers"
    if starts.shape != (n,) or len(stored["aux"]) != n:
        return f"{n} frames need as many episode starts and dynamics draws"
    index = np.arange(n)
    if not np.issubdtype(starts.dtype, np.integer) or not (
        (starts >= 0).all() and (starts <= index).all() and (starts[starts] == starts).all()
    ):
        return "its episode starts do not mark the episodes' first frames"
    if set(TRANSITION_ARRAYS) <= set(stored):
        rewards, terminated, finals = (stored[k] for k in TRANSITION_ARRAYS)
        if rewards.shape != (n,) or terminated.shape != (n,):
            return f"{n} frames need as many rewards and termination flags"
        if not np.issubdtype(rewards.dtype, np.number) or not np.isfinite(rewards).all():
            return "its rewards are not all finite numbers"
        episodes = len(np.unique(starts))
        if finals.shape != (episodes, *frames.shape[1:]):
            return f"its {episodes} episodes need as many final frames {list(frames.shape[1:])}"
    try:
        meta = json.loads(str(stored["meta"]))
    except ValueError as error:
        return f"its meta is not JSON ({error})"
    if not isinstance(meta, dict):
        return "its meta is not a JSON object"
    return None


def load_datasets(
    paths: Sequence[str], frame_shape: tuple[int, ...], action_dim: int, task: str
) -> tuple[Dataset, str, dict[str, float]]:
    """The datasets at ``paths`` joined, for ``task``'s frames and actions: ``(dataset,
    recorded_by, teacher_stats)``, the teachers that recorded them and the teachers' return and
    success over all their episodes. UsageError for a file that cannot be read or does not fit
    the task."""
    parts = []
    for path in paths:
        try:
            part, recorded = Dataset.load(Path(path))
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read the dataset {path}: {e}") from None
        stats = recorded.get("teacher_stats")
        if not (
            {"teacher", "episodes"} <= set(recorded)
            and isinstance(stats, dict)
            and {"return_mean", "success_rate"} <= set(stats)
        ):
            raise UsageError(
                f"{path}'s meta does not name its teacher, episodes and teacher_stats: it is not a "
                "dataset slac-imitate --save-dataset wrote; record it again"
            )
        if part.frame_shape != frame_shape or part.action_dim != action_dim:
            raise UsageError(
                f"{path} holds frames {part.frame_shape} and actions of {part.action_dim}, but "
                f"{task} has {frame_shape} and {action_dim}: record it again for this task"
            )
        parts.append((part, recorded))
    data = parts[0][0]
    for part, _ in parts[1:]:
        data.extend(part)
    recorded_by = " ".join(dict.fromkeys(r["teacher"] for _, r in parts))
    episodes = [r["episodes"] for _, r in parts]
    stats = {
        k: float(np.average([r["teacher_stats"][k] for _, r in parts], weights=episodes))
        for k in ("return_mean", "success_rate")
    }
    return data, recorded_by, stats


def sample_batch(
    arrays: dict[str, np.ndarray], batch_size: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    last = arrays["labelled"][rng.integers(0, len(arrays["labelled"]), batch_size)]
    frame_idx, action_idx, valid = padded_window_indices(last, arrays["starts"][last], ACTOR_FRAMES)
    prev_actions = arrays["actions"][action_idx] * valid[..., None]
    return {
        "frames": arrays["frames"][frame_idx],
        "prev_actions": prev_actions.astype(np.float32),
        "labels": arrays["labels"][last],
        "aux": arrays["aux"][last],
    }


def random_shift(frames: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Each window of ``frames[B, T, H, W, C]`` moved by a random whole number of pixels in
    ``-pad ... pad`` along each axis (the same for all of a window's frames, as a camera mounted a
    little off would move them), the edge pixels repeated into the gap (DrQ's augmentation)."""
    if pad <= 0:
        return frames
    batch, _, height, width, _ = frames.shape
    dy, dx = rng.integers(-pad, pad + 1, (2, batch))
    out = np.empty_like(frames)
    for i in range(
        batch
    ):  # two takes per window: a third of the time of one fancy index over the batch
        rows = np.clip(np.arange(height) + dy[i], 0, height - 1)
        cols = np.clip(np.arange(width) + dx[i], 0, width - 1)
        out[i] = frames[i].take(rows, axis=1).take(cols, axis=2)
    return out
