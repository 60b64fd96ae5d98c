"""Conformance of every registered task: spaces, RGB frames, determinism, action repeat, lengths."""

from __future__ import annotations

import numpy as np
import pytest

from slac_train.envs import UnknownTaskError, get_task_spec, make_env, task_names

ALL_TASKS = task_names()


def test_registry_has_the_paper_tasks():
    for name in [
        "cheetah-run",
        "walker-walk",
        "ball_in_cup-catch",
        "finger-spin",
        "cartpole-swingup",
        "reacher-easy",
        "halfcheetah",
        "walker2d",
        "hopper",
        "ant",
    ]:
        assert name in ALL_TASKS
    assert get_task_spec("cheetah-run").action_repeat == 4
    assert get_task_spec("finger-spin").action_repeat == 1
    assert get_task_spec("walker2d").action_repeat == 4


def _rollout(env, actions, seed):
    obs, _ = env.reset(seed=seed)
    frames, rewards = [obs], []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        frames.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return frames, rewards


@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_conformance(name):
    spec = get_task_spec(name)
    env = make_env(name, seed=0)
    try:
        size = 64
        assert env.observation_space.shape == (size, size, 3)
        assert env.observation_space.dtype == np.uint8
        assert env.action_space.low.min() == -1.0 and env.action_space.high.max() == 1.0
        assert env.action_repeat == spec.action_repeat

        rng = np.random.default_rng(123)
        actions = rng.uniform(-1, 1, size=(6, *env.action_space.shape)).astype(np.float32)

        # Same seed => same trajectory (frames and rewards).
        frames_a, rewards_a = _rollout(env, actions, seed=7)
        frames_b, rewards_b = _rollout(env, actions, seed=7)
        assert len(frames_a) == len(frames_b)
        for fa, fb in zip(frames_a, frames_b):
            np.testing.assert_array_equal(fa, fb)
        assert rewards_a == rewards_b
        # Different seeds => different resets.
        other, _ = env.reset(seed=8)
        assert not np.array_equal(frames_a[0], other), f"{name}: seeds 7 and 8 reset identically"

        # Frames: uint8 HxWx3, not blank, and consecutive observations share no memory.
        for f in frames_a:
            assert f.dtype == np.uint8 and f.shape == (size, size, 3)
        assert frames_a[0].std() > 1.0, f"{name}: the first frame is blank"
        for f0, f1 in zip(frames_a, frames_a[1:]):
            assert not np.shares_memory(f0, f1)

        # A whole episode: finite rewards, action repeat honoured, documented length.
        env.reset(seed=11)
        agent_steps = env_steps = 0
        while True:
            obs, r, term, trunc, info = env.step(env.action_space.sample() * 0.2)
            agent_steps += 1
            env_steps += info["env_steps"]
            assert np.isfinite(r)
            if not (term or trunc):
                assert info["env_steps"] == env.action_repeat
            if term or trunc:
                break
        if trunc:
            assert env_steps == spec.episode_env_steps, f"{name}: {env_steps} env steps"
            assert agent_steps == spec.episode_agent_steps
        else:  # only tasks with a termination condition may end early
            assert spec.suite == "gym", f"{name} terminated unexpectedly"
        with pytest.raises(RuntimeError, match="reset"):
            env.step(env.action_space.sample())
    finally:
        env.close()


def test_action_repeat_override_and_reward_sum():
    env1 = make_env("cartpole-swingup", seed=0, action_repeat=1)
    env3 = make_env("cartpole-swingup", seed=0, action_repeat=3)
    try:
        a = np.full(env1.action_space.shape, 0.5, dtype=np.float32)
        env1.reset(seed=5)
        env3.reset(seed=5)
        summed = sum(env1.step(a)[1] for _ in range(3))
        obs3, r3, _, _, info = env3.step(a)
        assert info["env_steps"] == 3
        assert r3 == pytest.approx(summed, rel=1e-9, abs=1e-12)
        np.testing.assert_array_equal(obs3, env1.render())
    finally:
        env1.close()
        env3.close()


def test_bad_input_is_explained():
    with pytest.raises(UnknownTaskError, match="cheetah-run"):
        make_env("cheetah-runn")
    with pytest.raises(ValueError, match="action_repeat"):
        make_env("cartpole-swingup", action_repeat=0)
    env = make_env("cartpole-swingup", seed=0)
    try:
        env.reset()
        with pytest.raises(ValueError, match="shape"):
            env.step(np.zeros(3, dtype=np.float32))
        with pytest.raises(ValueError, match="NaN"):
            env.step(np.array([np.nan], dtype=np.float32))
    finally:
        env.close()
