"""A stop anywhere resumes exactly: in the middle of a collection episode, of a training episode
and of an evaluation, the resumed run ends with the same weights, counters, evaluations, replay
buffer and logged training metrics as a run that was never stopped.

The stop is requested as SIGTERM's handler requests it, at a chosen simulator step, so that each
case is hit every time (``test_train_signals.py`` sends real signals to a real process).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from slac_toy_task import TOY_TASK, toy_task  # noqa: E402
from test_resume import assert_same_run  # noqa: E402

from slac_train.checkpoint import load_checkpoint  # noqa: E402
from slac_train.trainer import Trainer, TrainingInterrupted  # noqa: E402
from tests.train_configs import small_test_config  # noqa: E402

# Toy episodes are 12 agent steps (24 env steps at action repeat 2); 20 collection steps end at the
# second episode's end, so collection steps 3-23 and training steps from 24 on are available.
TOY = dict(
    task=TOY_TASK,
    total_env_steps=168,
    initial_collection_steps=20,
    model_pretrain_steps=5,
    eval_every_env_steps=48,
    checkpoint_every_env_steps=1000,
    eval_video=False,
    reconstruction_video=False,
    log_every_updates=4,
)


def request_stop_after(trainer: Trainer, env_name: str, calls: int) -> None:
    """Ask ``trainer`` to stop (as SIGTERM does) once ``trainer.<env_name>.step`` has run
    ``calls`` times."""
    env = getattr(trainer, env_name)
    step, count = env.step, [0]

    def counted(action):
        count[0] += 1
        if count[0] == calls:
            trainer._stop.requested = True
            trainer._stop.signum = signal.SIGTERM
        return step(action)

    env.step = counted


def stop_and_resume(config, tmp_path: Path, env_name: str, calls: int) -> tuple[Trainer, dict]:
    first = Trainer(config.replace(run_dir=str(tmp_path / "resumed")))
    request_stop_after(first, env_name, calls)
    with first, pytest.raises(TrainingInterrupted) as stopped:
        first.train()
    assert stopped.value.written and stopped.value.signum == signal.SIGTERM
    state = load_checkpoint(tmp_path / "resumed")
    torch.manual_seed(12345)  # the checkpoint, not the process, must define what happens next
    np.random.seed(999)
    with Trainer.resume(tmp_path / "resumed") as resumed:
        resumed.train()
    return resumed, state


@pytest.mark.parametrize(
    ("where", "env_name", "calls", "phase"),
    [
        ("collection episode", "env", 17, "collect"),
        ("training episode", "env", 41, "train"),
        ("evaluation", "eval_env", 30, "train"),
    ],
)
def test_a_stop_anywhere_resumes_exactly(tmp_path, capsys, where, env_name, calls, phase):
    with toy_task(action_repeat=2, length=24):
        config = small_test_config(**TOY)
        resumed, state = stop_and_resume(config, tmp_path, env_name, calls)
        straight = Trainer(config.replace(run_dir=str(tmp_path / "straight")))
        with straight:
            straight.train()

    assert state["counters"]["phase"] == phase
    if where == "evaluation":
        # the evaluation was abandoned: not in the checkpoint, run again on resume
        assert state["counters"]["next_eval_env_step"] <= state["counters"]["env_step"]
        assert len(state["eval_history"]) < len(straight.eval_history)
    else:
        episode = state["episode"]
        assert episode is not None and 0 < episode["agent_steps"] < 12
        assert "the interrupted episode was replayed" in capsys.readouterr().out
    assert_same_run(straight, resumed)


def test_an_episode_that_does_not_replay_starts_afresh(tmp_path, capsys):
    """A simulator that does not reproduce the recorded frame is not trusted: new episode, note."""
    with toy_task(action_repeat=2, length=24):
        config = small_test_config(**TOY)
        first = Trainer(config.replace(run_dir=str(tmp_path / "run")))
        request_stop_after(first, "env", 17)
        with first, pytest.raises(TrainingInterrupted):
            first.train()
        path = sorted((tmp_path / "run" / "checkpoints").glob("ckpt-*.pt"))[-1]
        state = torch.load(path, weights_only=False)
        state["episode"]["last_frame"] = 255 - state["episode"]["last_frame"]
        torch.save(state, path)
        with Trainer.resume(tmp_path / "run") as resumed:
            assert resumed.needs_reset
            resumed.train()
        assert resumed.counters["phase"] == "done"
    assert "did not replay to its recorded last frame" in capsys.readouterr().out


@pytest.mark.parametrize("task", ["cartpole-swingup", "dclaw-pose-fixed"])
def test_mujoco_tasks_replay_an_episode_to_the_same_frame(tmp_path, task):
    """The resume's premise on the real simulators: same seed and actions, same frames."""
    config = small_test_config(
        task=task, initial_collection_steps=10_000, total_env_steps=10_000, eval_episodes=0
    )
    first = Trainer(config.replace(run_dir=str(tmp_path / "run")))
    request_stop_after(first, "env", 9)
    with first, pytest.raises(TrainingInterrupted):
        first.train()
    episode = load_checkpoint(tmp_path / "run")["episode"]
    assert episode["agent_steps"] == 9
    with Trainer.resume(tmp_path / "run", total_env_steps=10_000) as resumed:
        assert not resumed.needs_reset
        np.testing.assert_array_equal(resumed._last_obs, episode["last_frame"])
        np.testing.assert_array_equal(resumed.history.items[-1], episode["last_frame"])


def test_a_finished_run_resumed_with_a_larger_budget_goes_on(tmp_path):
    """(as a re-run sweep with a larger --env-steps does): the same as one run to the larger
    budget, when the first budget ends on an evaluation at an episode's end."""
    with toy_task(action_repeat=2, length=24):
        config = small_test_config(**TOY)
        with Trainer(config.replace(run_dir=str(tmp_path / "resumed"), total_env_steps=96)) as t:
            assert t.train()["phase"] == "done"
        with Trainer.resume(tmp_path / "resumed", total_env_steps=168) as resumed:
            assert resumed.counters["phase"] == "train"
            resumed.train()
        straight = Trainer(config.replace(run_dir=str(tmp_path / "straight")))
        with straight:
            straight.train()
    assert resumed.counters["env_step"] == 168
    assert_same_run(straight, resumed)
