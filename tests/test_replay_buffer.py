"""Replay windows: alignment, episode boundaries, start-of-episode padding (same
as History), ring eviction."""

from __future__ import annotations

import numpy as np
import pytest

from slac_runtime.history import WINDOW_FRAMES, History
from slac_train.replay_buffer import ReplayBuffer

SHAPE = (64, 64, 3)
A = 2


def frame(episode: int, t: int) -> np.ndarray:
    """A frame that says which episode and step it is."""
    f = np.zeros(SHAPE, dtype=np.uint8)
    f[0, 0, 0], f[0, 0, 1] = episode, t
    f[1:, :, :] = (episode * 7 + t) % 251
    return f


def action(episode: int, t: int) -> np.ndarray:
    return np.array([episode, t + 1], dtype=np.float32)


def reward(episode: int, t: int) -> float:
    return 1000.0 * episode + t


def fill(
    buffer: ReplayBuffer, lengths: list[int], terminal_last: bool = False, first_episode: int = 0
) -> None:
    for i, length in enumerate(lengths):
        ep = first_episode + i
        buffer.start_episode(frame(ep, 0))
        for t in range(length):
            buffer.add(
                action(ep, t), reward(ep, t), terminal_last and t == length - 1, frame(ep, t + 1)
            )


def decode(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return frames[..., 0, 0, 0].astype(int), frames[..., 0, 0, 1].astype(int)


def test_windows_line_up_and_never_cross_episodes():
    buffer = ReplayBuffer(1_000, SHAPE, A)
    fill(buffer, [3, 12, 30, 1, 9], terminal_last=True)
    batch = buffer.sample(512, np.random.default_rng(0))
    assert batch["frames"].shape == (512, WINDOW_FRAMES, *SHAPE)
    assert batch["actions"].shape == (512, 8, A) and batch["rewards"].shape == (512, 8)
    episodes, steps = decode(batch["frames"])
    assert np.all(episodes == episodes[:, :1]), "a window mixes two episodes"
    assert np.all(batch["action_valid"][:, -1]), (
        "the last action of a window is always a real transition"
    )
    for b in range(512):
        ep, t = int(episodes[b, 0]), steps[b]
        valid = batch["action_valid"][b]
        # padded frames repeat the first frame; real ones advance one step per action
        assert np.all(np.diff(t) == valid.astype(int))
        for j in range(8):
            if valid[j]:
                np.testing.assert_array_equal(batch["actions"][b, j], action(ep, t[j]))
                assert batch["rewards"][b, j] == reward(ep, t[j])
            else:
                assert (
                    t[j] == 0
                    and np.all(batch["actions"][b, j] == 0)
                    and batch["rewards"][b, j] == 0
                )
        lengths = {0: 3, 1: 12, 2: 30, 3: 1, 4: 9}
        assert batch["terminated"][b, :-1].sum() == 0
        assert batch["terminated"][b, -1] == (t[-1] == lengths[ep])
    # uniform over windows: every transition can end a window
    assert buffer.num_windows() == 3 + 12 + 30 + 1 + 9
    ends = set(zip(*decode(buffer.sample(4000, np.random.default_rng(1))["frames"][:, -1])))
    assert len(ends) == buffer.num_windows()


def test_padding_equals_history_for_the_same_episode_prefix():
    buffer = ReplayBuffer(500, SHAPE, A)
    fill(buffer, [14], first_episode=5)
    start = buffer._starts[0]
    for last_t in range(1, 15):
        window = buffer.windows(np.array([start + last_t]), np.array([start]))
        history = History(A, SHAPE, length=WINDOW_FRAMES)
        history.reset(frame(5, 0))
        for t in range(last_t):
            history.append(action(5, t), frame(5, t + 1))
        np.testing.assert_array_equal(window["frames"][0], history.items)
        np.testing.assert_array_equal(window["actions"][0], history.actions)


def test_ring_eviction_keeps_only_whole_windows():
    capacity = 60
    buffer = ReplayBuffer(capacity, SHAPE, A)
    fill(buffer, [20, 20, 20, 20])  # 84 frames through 60 slots
    assert len(buffer) == capacity
    assert buffer.num_episodes == 3  # episode 0 is completely overwritten
    oldest = buffer.oldest
    rng = np.random.default_rng(0)
    batch = buffer.sample(3000, rng)
    episodes, steps = decode(batch["frames"])
    assert np.all(episodes == episodes[:, :1])
    assert set(np.unique(episodes)) == {1, 2, 3}
    # episode 1 lost its beginning: only windows whose 9 frames are all still stored
    first_kept_t = oldest - buffer._starts[0]
    ep1 = episodes[:, 0] == 1
    assert np.all(steps[ep1, 0] >= first_kept_t) and np.all(batch["action_valid"][ep1])
    assert np.all(np.diff(steps[ep1], axis=1) == 1)
    assert buffer.num_windows() == (20 - (first_kept_t + 8) + 1) + 20 + 20
    with pytest.raises(ValueError, match="not stored"):
        buffer.windows(np.array([buffer._starts[0] + 3]), np.array([buffer._starts[0]]))
    # keep adding: the ring keeps turning and content stays consistent
    fill(buffer, [7] * 10, first_episode=10)
    episodes, steps = decode(buffer.sample(500, rng)["frames"])
    assert np.all(episodes == episodes[:, :1])


def test_save_and_load_round_trip(tmp_path):
    buffer = ReplayBuffer(60, SHAPE, A)
    fill(buffer, [25, 25, 25])
    buffer.start_episode(frame(9, 0))
    buffer.add(action(9, 0), reward(9, 0), False, frame(9, 1))
    buffer.save(tmp_path / "buffer.npz")
    loaded = ReplayBuffer.load(tmp_path / "buffer.npz")
    assert loaded.version == buffer.version and len(loaded) == len(
        buffer
    )  # checkpoints name buffers by version
    a = buffer.sample(200, np.random.default_rng(3))
    b = loaded.sample(200, np.random.default_rng(3))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # both continue identically
    for buf in (buffer, loaded):
        buf.add(action(9, 1), reward(9, 1), True, frame(9, 2))
    for key, value in buffer.sample(100, np.random.default_rng(4)).items():
        np.testing.assert_array_equal(value, loaded.sample(100, np.random.default_rng(4))[key])


def test_bad_use_is_explained():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(10, SHAPE, A)
    buffer = ReplayBuffer(100, SHAPE, A)
    with pytest.raises(RuntimeError, match="start_episode"):
        buffer.add(action(0, 0), 0.0, False, frame(0, 1))
    with pytest.raises(ValueError, match="uint8"):
        buffer.start_episode(np.zeros(SHAPE, dtype=np.float32))
    buffer.start_episode(frame(0, 0))
    with pytest.raises(RuntimeError, match="no complete transition"):
        buffer.sample(4, np.random.default_rng(0))
    assert "MiB" in buffer.describe()
