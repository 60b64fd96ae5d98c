"""Every task under a Gymnasium id: made by ``gymnasium.make``, checked by Gymnasium's own
checker."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from slac_train.envs import get_task_spec, gymnasium_id, register_gymnasium_envs, task_names

TRAINING_DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"
ALL_IDS = register_gymnasium_envs()


def _wrapper_types(env) -> list[type]:
    types = []
    while isinstance(env, gym.Wrapper):
        types.append(type(env))
        env = env.env
    return types


def test_every_task_has_a_namespaced_versioned_id():
    assert ALL_IDS == [gymnasium_id(t) for t in task_names()]
    assert "slac/dclaw-turn-v0" in ALL_IDS and "slac/cheetah-run-v0" in ALL_IDS
    for env_id in ALL_IDS:
        namespace, name, version = gym.envs.registration.parse_env_id(env_id)
        assert (namespace, version) == ("slac", 0)
        assert get_task_spec(name).name == name


def test_registering_again_changes_nothing():
    before = {i: gym.registry[i] for i in ALL_IDS}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Gymnasium warns when an id is overridden
        assert register_gymnasium_envs() == ALL_IDS
    assert all(gym.registry[i] is before[i] for i in ALL_IDS)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_make_passes_the_env_checker(env_id):
    task = get_task_spec(env_id.removeprefix("slac/").removesuffix("-v0"))
    env = gym.make(env_id, image_size=16)  # the smallest frame make_env allows: fast checks
    try:
        assert env.spec.id == env_id
        assert env.spec.max_episode_steps == task.episode_agent_steps
        assert env.spec.kwargs["image_size"] == 16
        assert _wrapper_types(env).count(gym.wrappers.TimeLimit) == 1
        assert env.observation_space.shape == (16, 16, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the checker reports problems as warnings
            check_env(env.unwrapped)
    finally:
        env.close()


def _episode_length(env) -> int:
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        steps += 1
    assert env.unwrapped._needs_reset  # the task itself ended the episode at this step
    env.close()
    return steps


def test_the_time_limit_is_where_the_task_ends_its_episode():
    env = gym.make("slac/dclaw-turn-v0", image_size=16)
    assert env.spec.max_episode_steps == 40
    assert _episode_length(env) == 40  # 80 simulator steps at action repeat 2


def test_another_action_repeat_runs_to_the_tasks_own_limit():
    env = gym.make("slac/dclaw-turn-v0", image_size=16, action_repeat=1, max_episode_steps=-1)
    assert gym.wrappers.TimeLimit not in _wrapper_types(env)
    assert _episode_length(env) == 80


def test_make_kwargs_reach_the_task():
    env = gym.make("slac/dclaw-turn-random-v0", image_size=32, action_repeat=1, seed=7)
    try:
        assert env.unwrapped.action_repeat == 1
        assert env.unwrapped.task.image_size == 32
        assert env.spec.kwargs == {
            "task": "dclaw-turn-random",
            "image_size": 32,
            "action_repeat": 1,
            "seed": 7,
        }
        first, _ = env.reset()  # the seed given to make
        again, _ = env.reset(seed=7)
        np.testing.assert_array_equal(first, again)
        _, _, _, _, info = env.step(np.zeros(9, np.float32))
        assert info["env_steps"] == 1
    finally:
        env.close()
    with (
        pytest.warns(UserWarning, match="render_mode"),
        pytest.raises(ValueError, match="render_mode"),
    ):
        gym.make("slac/dclaw-turn-v0", render_mode="depth_array")


def test_reset_without_a_seed_draws_fresh_starts():
    envs = [gym.make("slac/dclaw-turn-random-v0", image_size=16) for _ in range(2)]
    first, second = (env.reset()[0] for env in envs)
    assert not np.array_equal(first, second)
    for env in envs:
        env.close()


def test_a_fresh_interpreter_makes_an_id_by_naming_the_module():
    code = textwrap.dedent(
        """
        import sys
        import gymnasium as gym

        assert "slac_train" not in sys.modules
        env = gym.make("slac_train.envs:slac/dclaw-turn-v0")
        obs, info = env.reset(seed=0)
        print(env.spec.id, env.spec.max_episode_steps, obs.shape, obs.dtype)
        env.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["slac/dclaw-turn-v0", "40", "(64,", "64,", "3)", "uint8"]


def _documented_gymnasium_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", TRAINING_DOC.read_text(), flags=re.DOTALL)
    snippets = [b for b in blocks if 'gym.make("slac/' in b]
    assert len(snippets) == 1, (
        'docs/training.md should show one Gymnasium snippet (gym.make("slac/..."))'
    )
    return snippets[0]


def test_the_documented_gymnasium_snippet_runs(capsys):
    exec(compile(_documented_gymnasium_snippet(), "docs/training.md", "exec"), {})
    assert "(64, 64, 3) uint8" in capsys.readouterr().out
