"""Exact resume: N steps straight == N/2 steps + checkpoint + resume + N/2 steps (CPU)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from slac_toy_task import TOY_TASK, toy_task  # noqa: E402

from slac_train.checkpoint import latest_checkpoint, load_agent, load_checkpoint  # noqa: E402
from slac_train.trainer import Trainer  # noqa: E402
from tests.train_configs import TOY_RUN, small_test_config  # noqa: E402


def flatten(state, prefix=""):
    """Every tensor / number in a nested state dict, by path."""
    out = {}
    if isinstance(state, dict):
        for k, v in state.items():
            out.update(flatten(v, f"{prefix}/{k}"))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            out.update(flatten(v, f"{prefix}/{i}"))
    else:
        out[prefix] = state
    return out


def assert_same_state(a: dict, b: dict) -> None:
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        x, y = fa[key], fb[key]
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y), f"{key} differs"
        else:
            assert x == y, f"{key}: {x} != {y}"


def train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    out = []
    for row in rows:
        if row["kind"] in ("train", "pretrain", "eval", "episode"):
            out.append({k: v for k, v in row.items() if "time" not in k and "seconds" not in k})
    return out


def assert_same_run(straight: Trainer, resumed: Trainer) -> None:
    assert_same_state(straight.agent.state_dict(), resumed.agent.state_dict())
    skip = {"elapsed_s"}
    assert {k: v for k, v in straight.counters.items() if k not in skip} == {
        k: v for k, v in resumed.counters.items() if k not in skip
    }
    for row_a, row_b in zip(straight.eval_history, resumed.eval_history, strict=True):
        assert {k: v for k, v in row_a.items() if k != "wall_time_s"} == {
            k: v for k, v in row_b.items() if k != "wall_time_s"
        }
    for key in ("frames", "actions", "rewards", "terminated"):
        np.testing.assert_array_equal(getattr(straight.buffer, key), getattr(resumed.buffer, key))
    assert straight.buffer._starts == resumed.buffer._starts
    assert train_rows(straight.run_dir) == train_rows(resumed.run_dir)


def test_resume_is_exact(tmp_path):
    total, half = 144, 96  # toy episodes are 24 env steps; the stop falls on an episode end
    with toy_task(action_repeat=2, length=24):
        config = small_test_config(task=TOY_TASK, **{**TOY_RUN, "total_env_steps": total})
        straight = Trainer(config.replace(run_dir=str(tmp_path / "straight")))
        with straight:
            straight.train()

        first = Trainer(config.replace(run_dir=str(tmp_path / "resumed")))
        with first:
            counters = first.train(stop_at_env_step=half)
        assert counters["env_step"] == half and counters["phase"] == "train"
        del first
        torch.manual_seed(12345)  # the checkpoint, not the process, must define what happens next
        np.random.seed(999)
        with Trainer.resume(tmp_path / "resumed") as resumed:
            assert resumed.counters["env_step"] == half
            resumed.train()

        assert_same_run(straight, resumed)

        # the final checkpoints carry the same weights, and an agent loads from a run directory
        agent, state = load_agent(tmp_path / "resumed")
        assert_same_state(agent.state_dict()["actor"], straight.agent.actor.state_dict())
        assert state["counters"]["env_steps"] == total
        assert (
            latest_checkpoint(tmp_path / "straight").name
            == latest_checkpoint(tmp_path / "resumed").name
        )
        assert load_checkpoint(tmp_path / "straight")["buffer_file"] is not None


def test_nan_loss_stops_the_run_naming_loss_and_step(tmp_path):
    from slac_train.trainer import TrainingFailed

    with toy_task(action_repeat=2, length=24):
        config = small_test_config(
            task=TOY_TASK,
            total_env_steps=144,
            initial_collection_steps=20,
            model_pretrain_steps=3,
            eval_every_env_steps=1000,
            eval_episodes=0,
            run_dir=str(tmp_path / "nan"),
        )
        with Trainer(config) as trainer:
            trainer.train(stop_at_env_step=48)
            good = latest_checkpoint(tmp_path / "nan")
            with torch.no_grad():  # poison the decoder: the next model loss is NaN
                trainer.agent.model.decoder.deconvs[-1].bias.fill_(float("nan"))
            try:
                trainer.train()
            except TrainingFailed as failure:
                message = str(failure)
            else:
                raise AssertionError("a NaN loss did not stop the run")
        assert "model/loss" in message and "update 4 " in message and "env step 50" in message
        assert str(good) in message
        assert latest_checkpoint(tmp_path / "nan") == good
        assert torch.isfinite(
            load_checkpoint(good)["agent"]["model"]["decoder.deconvs.4.bias"]
        ).all()


def test_a_checkpoint_from_before_the_parity_fields_resumes_with_its_old_behaviour(tmp_path):
    """A checkpoint whose config lacks the parity fields (written before they existed) resumes
    with the behaviour it was trained with: TrainConfig.LEGACY_DEFAULTS, not the new defaults."""
    from slac_train.config import LEGACY_DEFAULTS

    with toy_task(action_repeat=2, length=24):
        config = small_test_config(
            task=TOY_TASK,
            total_env_steps=96,
            eval_episodes=0,
            run_dir=str(tmp_path / "old"),
            **LEGACY_DEFAULTS,
        )
        with Trainer(config) as trainer:
            trainer.train(stop_at_env_step=48)
        path = latest_checkpoint(tmp_path / "old")
        state = torch.load(path, weights_only=True)
        for key in LEGACY_DEFAULTS:
            del state["config"][key]
        torch.save(state, path)
        with Trainer.resume(tmp_path / "old") as resumed:
            assert {k: getattr(resumed.config, k) for k in LEGACY_DEFAULTS} == LEGACY_DEFAULTS
            assert resumed.agent.model.decoder.output_activation == "linear"
            resumed.train()
            assert resumed.counters["env_step"] == 96
