"""The shared history (docs/architecture.md §1): padding rule, order, and
agreement with buffer windows."""

from __future__ import annotations

import numpy as np
import pytest

from slac_runtime.history import ACTOR_FRAMES, WINDOW_FRAMES, History, padded_window_indices


def _episode(n_frames: int, action_dim: int = 2):
    frames = np.arange(n_frames, dtype=np.uint8)[:, None, None, None] * np.ones(
        (1, 4, 4, 3), np.uint8
    )
    actions = (np.arange(n_frames)[:, None] + 1.0) * np.ones((1, action_dim), np.float32)
    return frames, actions  # action j leads from frame j to frame j + 1


def test_reset_repeats_first_frame_with_zero_actions():
    frames, _ = _episode(1)
    h = History(action_dim=2, item_shape=(4, 4, 3))
    h.reset(frames[0])
    assert h.items.shape == (ACTOR_FRAMES, 4, 4, 3)
    assert h.actions.shape == (ACTOR_FRAMES - 1, 2)
    assert (h.items == frames[0]).all()
    assert (h.actions == 0).all()


@pytest.mark.parametrize("t", [0, 1, 3, 7, 8, 12])
def test_history_equals_buffer_window(t):
    """Acting history after t steps == the buffer's padded window ending at frame t."""
    frames, actions = _episode(20)
    h = History(action_dim=2, item_shape=(4, 4, 3))
    h.reset(frames[0])
    for j in range(t):
        h.append(actions[j], frames[j + 1])
    # The same episode stored at an offset inside a flat buffer, after another episode.
    offset = 5
    flat_frames = np.concatenate([np.full((offset, 4, 4, 3), 99, np.uint8), frames])
    flat_actions = np.concatenate([np.full((offset, 2), -7.0, np.float32), actions])
    fi, ai, valid = padded_window_indices(np.array([offset + t]), np.array([offset]), ACTOR_FRAMES)
    window_frames = flat_frames[fi[0]]
    window_actions = np.where(valid[0, :, None], flat_actions[ai[0]], 0.0)
    np.testing.assert_array_equal(h.items, window_frames)
    np.testing.assert_array_equal(h.actions, window_actions)
    assert valid[0].sum() == min(t, ACTOR_FRAMES - 1)


def test_window_never_crosses_episode_start_and_is_vectorised():
    last = np.array([3, 10, 40])
    start = np.array([0, 9, 20])
    fi, ai, valid = padded_window_indices(last, start, WINDOW_FRAMES)
    assert fi.shape == (3, WINDOW_FRAMES) and ai.shape == (3, WINDOW_FRAMES - 1)
    assert (fi >= start[:, None]).all() and (fi <= last[:, None]).all()
    assert (fi[:, -1] == last).all()
    np.testing.assert_array_equal(valid[2], np.ones(WINDOW_FRAMES - 1, bool))
    np.testing.assert_array_equal(valid[1], [False] * 7 + [True])


def test_bad_input():
    h = History(action_dim=2, item_shape=(4, 4, 3))
    with pytest.raises(RuntimeError, match="reset"):
        h.append(np.zeros(2), np.zeros((4, 4, 3), np.uint8))
    h.reset(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="action"):
        h.append(np.zeros(3), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        h.append(np.zeros(2), np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        padded_window_indices(np.array([2]), np.array([3]), 4)
