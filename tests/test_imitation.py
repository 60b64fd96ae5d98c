"""The scripted Turn teacher and slac-imitate (behaviour cloning into the encoder + actor)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robots.dclaw.description import DCLAW, RESET_POSE
from robots.dclaw.scripted import TurnStrokeController
from slac_train.envs import make_env
from slac_train.imitation import Dataset, main, sample_batch


def run_teacher(env, teacher, seed):
    obs, info = env.reset(seed=seed)
    teacher.reset()
    done = False
    while not done:
        action = teacher.act(info["angle_error"])
        assert action.shape == (9,) and np.all(np.abs(action) <= 1.0)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return info


def test_teacher_turns_the_valve_in_nominal_simulation():
    env = make_env("dclaw-turn-fixed", seed=0)
    try:
        errors = [run_teacher(env, TurnStrokeController(), seed)["angle_error"] for seed in range(3)]
    finally:
        env.close()
    # from pi away at the start; the success threshold is 0.1 rad
    assert np.mean(np.abs(errors) < 0.1) >= 2 / 3, errors


def test_teacher_waits_at_the_reset_pose_when_on_target():
    teacher = TurnStrokeController()
    teacher.reset()
    target = DCLAW.low + (teacher.act(0.0).astype(np.float64) + 1.0) * 0.5 * (DCLAW.high - DCLAW.low)
    np.testing.assert_allclose(target, RESET_POSE, atol=1e-5)
    # a large error starts a stroke away from the reset pose, mirrored for the other direction
    a = TurnStrokeController().act(-1.0)
    b = TurnStrokeController().act(+1.0)
    assert not np.allclose(a, b) and np.allclose(a[1:3], b[1:3])


def test_windows_line_up_labels_and_pad_actions_at_episode_start():
    data = Dataset((2, 2, 3), 1)
    for episode in range(2):
        n = 5
        frames = [np.full((2, 2, 3), 10 * episode + t, np.uint8) for t in range(n)]
        actions = [np.array([100 * episode + t], np.float32) for t in range(n)]
        labels = [np.array([0.01 * (10 * episode + t)], np.float32) for t in range(n)]
        data.add_episode(frames, actions, labels)
    arrays = data.arrays()
    batch = sample_batch(arrays, 64, np.random.default_rng(0))
    for frames, prev, label in zip(batch["frames"], batch["prev_actions"], batch["labels"]):
        newest = int(frames[-1, 0, 0, 0])
        episode, t = divmod(newest, 10)
        assert label[0] == pytest.approx(0.01 * newest)
        # frames t-7..t clamped to the episode's first frame; actions t-7..t-1, zero before it
        expected_frames = [10 * episode + max(0, t - 7 + k) for k in range(8)]
        assert frames[:, 0, 0, 0].tolist() == expected_frames
        expected_actions = [100 * episode + (t - 7 + k) if t - 7 + k >= 0 else 0 for k in range(7)]
        assert prev[:, 0].tolist() == expected_actions


def test_slac_imitate_writes_a_run_that_exports(tmp_path):
    from slac_train.checkpoint import load_agent
    from slac_train.export_cli import export_run

    run_dir = tmp_path / "bc"
    code = main(["--run-dir", str(run_dir), "--episodes", "2", "--updates", "4", "--batch-size", "4",
                 "--encoder-base-channels", "4", "--feature-dim", "16", "--actor-hidden", "16",
                 "--eval-episodes", "1", "--noise", "0", "0.2"])
    assert code == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["collect", "train", "eval", "eval"]
    assert records[0]["frames"] == 2 * 40
    agent, state = load_agent(run_dir)
    assert state["counters"]["agent_steps"] == 80 and state["imitation"]["teacher"] == "dclaw-turn-strokes"
    path, metadata = export_run(run_dir, tmp_path / "bc.onnx")
    assert path.exists() and metadata.task == "dclaw-turn" and metadata.training_agent_steps == 80


def test_slac_imitate_refuses_a_task_its_teacher_cannot_drive(tmp_path, capsys):
    assert main(["--task", "dclaw-pose", "--run-dir", str(tmp_path / "x")]) == 2
    assert "drives dclaw-turn" in capsys.readouterr().err
    assert main(["--task", "dclaw-trun", "--run-dir", str(tmp_path / "y")]) == 2
    assert "dclaw-turn" in capsys.readouterr().err  # the close match
