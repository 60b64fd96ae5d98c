"""The observation/action history that the actor sees (docs/architecture.md §1).

Training (acting, evaluation, replay-buffer windows) and the robot runtime both build the actor's
input with this module, so that they feed the policy identical arrays.

Conventions, following the SLAC specification:
- frame ``j`` is the observation *before* action ``j``; the action ``j`` leads from frame ``j`` to
  frame ``j + 1``;
- the actor sees the last ``ACTOR_FRAMES = 8`` frames and the ``7`` actions between them, oldest
  first;
- a training window holds ``WINDOW_FRAMES = 9`` frames and ``8`` actions;
- before an episode has that many frames, the history is padded by **repeating the first frame and
  using zero actions** (never zero images).
"""

from __future__ import annotations

import numpy as np

ACTOR_FRAMES = 8  # frames (feature vectors) the actor sees
WINDOW_FRAMES = ACTOR_FRAMES + 1  # tau + 1 frames in a training window


def padded_window_indices(
    last_index: np.ndarray, episode_start: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a history window that ends at ``last_index`` inside an episode.

    Vectorised over a batch: ``last_index[B]`` is the index of the newest frame, and
    ``episode_start[B]`` the index of that episode's first frame, both in one flat storage where an
    episode's frames are contiguous and its action ``j`` sits at the same index as frame ``j``.

    Returns ``frame_idx[B, length]``, ``action_idx[B, length - 1]`` and
    ``action_valid[B, length - 1]`` (False where the action is start-of-episode padding and must be
    read as zero). Frame indices before the episode start are clamped to the first frame.
    """
    last_index = np.asarray(last_index, dtype=np.int64).reshape(-1)
    episode_start = np.asarray(episode_start, dtype=np.int64).reshape(-1)
    if np.any(last_index < episode_start):
        raise ValueError("a window cannot end before its episode starts")
    offsets = np.arange(-(length - 1), 1, dtype=np.int64)  # [length], oldest first
    raw = last_index[:, None] + offsets[None, :]  # [B, length]
    frame_idx = np.maximum(raw, episode_start[:, None])
    action_raw = raw[:, :-1]  # action j leads from frame j to frame j + 1
    action_valid = action_raw >= episode_start[:, None]
    action_idx = np.maximum(action_raw, episode_start[:, None])
    return frame_idx, action_idx, action_valid


class History:
    """A fixed-length history of items (frames or feature vectors) and the actions between them.

    ``items`` is ``[length, *item_shape]`` and ``actions`` is ``[length - 1, action_dim]``, oldest
    first. ``reset(first)`` fills the history with copies of the first item and zero actions;
    ``append(action, item)`` records the action just taken and the item observed after it.
    """

    def __init__(
        self,
        action_dim: int,
        item_shape: tuple[int, ...],
        length: int = ACTOR_FRAMES,
        dtype: np.dtype | type = np.uint8,
    ) -> None:
        if length < 1:
            raise ValueError(f"history length must be at least 1, got {length}")
        if action_dim < 1:
            raise ValueError(f"action_dim must be at least 1, got {action_dim}")
        self.length = length
        self.action_dim = action_dim
        self.item_shape = tuple(item_shape)
        self._items = np.zeros((length, *self.item_shape), dtype=dtype)
        self._actions = np.zeros((length - 1, action_dim), dtype=np.float32)
        self._started = False

    def reset(self, first_item: np.ndarray) -> None:
        first_item = self._check_item(first_item)
        self._items[:] = first_item
        self._actions[:] = 0.0
        self._started = True

    def append(self, action: np.ndarray, item: np.ndarray) -> None:
        if not self._started:
            raise RuntimeError("History.append() before reset(): call reset(first_item) first")
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (self.action_dim,):
            raise ValueError(f"expected an action of {self.action_dim} numbers, got {action.shape}")
        item = self._check_item(item)
        if self.length > 1:
            self._items[:-1] = self._items[1:]
            self._actions[:-1] = self._actions[1:]
            self._actions[-1] = action
        self._items[-1] = item

    @property
    def items(self) -> np.ndarray:
        """``[length, *item_shape]``, oldest first (a copy)."""
        return self._items.copy()

    @property
    def actions(self) -> np.ndarray:
        """``[length - 1, action_dim]`` float32, oldest first (a copy)."""
        return self._actions.copy()

    def _check_item(self, item: np.ndarray) -> np.ndarray:
        item = np.asarray(item)
        if item.shape != self.item_shape:
            raise ValueError(f"expected an item of shape {self.item_shape}, got {item.shape}")
        return item
