"""Replay of whole episodes, sampled as SLAC training windows (9 frames, 8 actions).

Storage is flat and frames are stored once: episode frames are contiguous, and the action taken at
frame j (with its reward and termination flag) sits at the same position as frame j, as
:func:`slac_runtime.history.padded_window_indices` expects. Positions are *virtual* (they grow for
ever); a ring of ``capacity`` slots holds virtual position v at slot ``v % capacity``. When the ring
wraps, the oldest frames are overwritten: windows that would need an overwritten frame (including
the start-of-episode padding of an episode whose first frames are gone) are no longer sampled.

A window ending at frame ``e`` of an episode starting at ``s`` is sampled only if ``e > s`` (its
last action is a real transition, which the critic learns from).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from slac_runtime.history import WINDOW_FRAMES, padded_window_indices


def frame_validity(action_valid: np.ndarray) -> np.ndarray:
    """bool[B, T+1] from ``action_valid[B, T]``: frame t is padding exactly when action t is (the
    padded frames come before the episode's first, whose action is real), and the last frame of a
    sampled window is always real."""
    valid = np.asarray(action_valid, dtype=bool)
    return np.concatenate([valid, np.ones_like(valid[:, :1])], axis=1)


class ReplayBuffer:
    """Episodes of uint8 frames, actions, rewards and termination flags, in a ring of ``capacity``
    slots.

    Use: ``start_episode(first_frame)``, then ``add(action, reward, terminated, next_frame)`` per
    agent step; a new ``start_episode`` ends the previous episode. ``capacity`` counts frames, one
    per agent step plus one first frame per episode.
    """

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, ...],
        action_dim: int,
        window: int = WINDOW_FRAMES,
    ):
        if capacity < 2 * window:
            raise ValueError(
                f"replay capacity must be at least {2 * window} frames, got {capacity}"
            )
        self.capacity = int(capacity)
        self.frame_shape = tuple(frame_shape)
        self.action_dim = int(action_dim)
        self.window = int(window)
        self.frames = np.zeros((capacity, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros((capacity, action_dim), dtype=np.float32)
        self.rewards = np.zeros((capacity,), dtype=np.float32)
        self.terminated = np.zeros((capacity,), dtype=bool)
        self._next = 0  # virtual position of the next frame to write
        self._starts: list[int] = []  # virtual first frame of each stored episode, oldest first
        self._ends: list[int] = []  # virtual last frame written of each stored episode
        self.num_transitions_added = 0
        self.version = (
            0  # changes with every write (a checkpoint re-saves the buffer only if it changed)
        )

    # ------------------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return (
            self.frames.nbytes + self.actions.nbytes + self.rewards.nbytes + self.terminated.nbytes
        )

    def describe(self) -> str:
        return (
            f"replay buffer: {self.capacity:,} frames of "
            f"{'x'.join(map(str, self.frame_shape))} uint8 "
            f"+ actions/rewards = {self.nbytes / 2**20:,.1f} MiB"
        )

    @property
    def oldest(self) -> int:
        """Virtual position of the oldest frame still stored."""
        return max(0, self._next - self.capacity)

    def __len__(self) -> int:
        """Frames currently stored."""
        return self._next - self.oldest

    @property
    def num_episodes(self) -> int:
        return len(self._starts)

    # ------------------------------------------------------------------------------------------
    def start_episode(self, first_frame: np.ndarray) -> None:
        self._write_frame(first_frame)
        self._starts.append(self._next - 1)
        self._ends.append(self._next - 1)
        self._evict()

    def add(
        self, action: np.ndarray, reward: float, terminated: bool, next_frame: np.ndarray
    ) -> None:
        """Record the transition from the episode's last frame: ``action`` -> ``reward``,
        ``next_frame``."""
        if not self._starts or self._ends[-1] != self._next - 1:
            raise RuntimeError("ReplayBuffer.add() before start_episode()")
        slot = (self._next - 1) % self.capacity
        self.actions[slot] = np.asarray(action, dtype=np.float32).reshape(self.action_dim)
        self.rewards[slot] = reward
        self.terminated[slot] = bool(terminated)
        self._write_frame(next_frame)
        self._ends[-1] = self._next - 1
        self.num_transitions_added += 1
        self._evict()

    def _write_frame(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise ValueError(
                f"expected a uint8 frame of shape {self.frame_shape}, "
                f"got {frame.dtype} {frame.shape}"
            )
        slot = self._next % self.capacity
        self.frames[slot] = frame
        # The slot's action belongs to the new frame now; clear what an evicted frame left there.
        self.actions[slot] = 0.0
        self.rewards[slot] = 0.0
        self.terminated[slot] = False
        self._next += 1
        self.version += 1

    def _evict(self) -> None:
        oldest = self.oldest
        while self._ends and self._ends[0] < oldest:
            self._starts.pop(0)
            self._ends.pop(0)

    # ------------------------------------------------------------------------------------------
    def _valid_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per episode: start, lowest and highest valid window end (virtual positions)."""
        starts = np.asarray(self._starts, dtype=np.int64)
        ends = np.asarray(self._ends, dtype=np.int64)
        lowest = starts + 1
        cut = starts < self.oldest  # the episode's beginning was overwritten: no padding possible
        lowest[cut] = np.maximum(lowest[cut], self.oldest + self.window - 1)
        return starts, lowest, ends

    def num_windows(self) -> int:
        if not self._starts:
            return 0
        _, lowest, ends = self._valid_ranges()
        return int(np.maximum(ends - lowest + 1, 0).sum())

    def sample_window_ends(
        self, batch_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform over valid windows: ``(last_frame[B], episode_start[B])`` in virtual
        positions."""
        if not self._starts:
            raise RuntimeError("the replay buffer is empty")
        starts, lowest, ends = self._valid_ranges()
        counts = np.maximum(ends - lowest + 1, 0)
        cumulative = np.cumsum(counts)
        total = int(cumulative[-1])
        if total == 0:
            raise RuntimeError("the replay buffer holds no complete transition yet")
        draw = rng.integers(0, total, size=batch_size)
        episode = np.searchsorted(cumulative, draw, side="right")
        offset = draw - (cumulative[episode] - counts[episode])
        return lowest[episode] + offset, starts[episode]

    def windows(self, last: np.ndarray, episode_start: np.ndarray) -> dict[str, np.ndarray]:
        """The windows ending at virtual positions ``last``, padded as ``slac_runtime.history``
        pads.

        frames uint8[B, 9, H, W, 3], actions float32[B, 8, A] (zero where padding), rewards
        float32[B, 8], action_valid bool[B, 8], terminated bool[B, 8], frame_valid bool[B, 9]
        (False where a frame is start-of-episode padding, a copy of the episode's first frame;
        the model learns from no such frame unless ``model_loss_on_padding``).
        """
        frame_idx, action_idx, valid = padded_window_indices(last, episode_start, self.window)
        if np.any(frame_idx < self.oldest) or np.any(frame_idx >= self._next):
            raise ValueError(
                "a window reaches frames that are not stored (overwritten or not yet written)"
            )
        frame_slots = frame_idx % self.capacity
        action_slots = action_idx % self.capacity
        frames = self.frames[frame_slots]
        return {
            "frames": frames,
            "actions": self.actions[action_slots] * valid[..., None],
            "rewards": self.rewards[action_slots] * valid,
            "action_valid": valid,
            "terminated": self.terminated[action_slots] & valid,
            "frame_valid": frame_validity(valid),
        }

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        last, start = self.sample_window_ends(batch_size, rng)
        return self.windows(last, start)

    # ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the stored part to ``path`` (.npz) atomically (temp file + rename)."""
        path = Path(path)
        count = len(self)
        positions = np.arange(self.oldest, self._next, dtype=np.int64)
        slots = positions % self.capacity
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(
                f,
                capacity=np.int64(self.capacity),
                frame_shape=np.asarray(self.frame_shape, dtype=np.int64),
                action_dim=np.int64(self.action_dim),
                window=np.int64(self.window),
                next=np.int64(self._next),
                count=np.int64(count),
                starts=np.asarray(self._starts, dtype=np.int64),
                ends=np.asarray(self._ends, dtype=np.int64),
                num_transitions_added=np.int64(self.num_transitions_added),
                version=np.int64(self.version),
                frames=self.frames[slots],
                actions=self.actions[slots],
                rewards=self.rewards[slots],
                terminated=self.terminated[slots],
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> ReplayBuffer:
        with np.load(path) as data:
            buffer = cls(
                int(data["capacity"]),
                tuple(int(v) for v in data["frame_shape"]),
                int(data["action_dim"]),
                int(data["window"]),
            )
            nxt, count = int(data["next"]), int(data["count"])
            slots = np.arange(nxt - count, nxt, dtype=np.int64) % buffer.capacity
            buffer.frames[slots] = data["frames"]
            buffer.actions[slots] = data["actions"]
            buffer.rewards[slots] = data["rewards"]
            buffer.terminated[slots] = data["terminated"]
            buffer._next = nxt
            buffer._starts = [int(v) for v in data["starts"]]
            buffer._ends = [int(v) for v in data["ends"]]
            buffer.num_transitions_added = int(data["num_transitions_added"])
            buffer.version = int(data["version"])
        return buffer
