"""slac-train from demonstrations: teacher datasets with rewards, the demonstration buffer and its
batch ratio, starting from a policy file or an imitation run, the critic ensemble, the actor's
warm-up and cloning term, exact resume, and a D'Claw run end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from slac_toy_task import TOY_TASK, toy_task  # noqa: E402

from slac_runtime.history import History  # noqa: E402
from slac_train.config import PRESETS, TrainConfig  # noqa: E402
from slac_train.demonstrations import (  # noqa: E402
    Demonstrations,
    demo_count,
    sample_mixed,
)
from slac_train.envs import make_env  # noqa: E402
from slac_train.imitation.dataset import Dataset  # noqa: E402
from slac_train.policy_init import init_policy  # noqa: E402
from slac_train.replay_buffer import ReplayBuffer  # noqa: E402
from slac_train.slac_agent import Batch, SlacAgent  # noqa: E402
from slac_train.trainer import Trainer  # noqa: E402
from tests.conftest import TINY_TRAIN_ARGS  # noqa: E402
from tests.test_resume import assert_same_run  # noqa: E402
from tests.train_configs import TOY_RUN, small_test_config  # noqa: E402

TINY_IMITATION = [
    "--batch-size",
    "4",
    "--encoder-base-channels",
    "4",
    "--feature-dim",
    "16",
    "--actor-hidden",
    "16",
]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """slac-imitate with tiny networks: 2 teacher episodes saved as a dataset, 2 updates."""
    from slac_train.imitation.cli import main

    folder = tmp_path_factory.mktemp("teacher")
    dataset, run_dir = folder / "turn-demos.npz", folder / "bc"
    args = ["--run-dir", str(run_dir), "--episodes", "2", "--updates", "2", "--eval-episodes", "0"]
    code = main([*args, "--save-dataset", str(dataset), "--noise", "0", "0.1", *TINY_IMITATION])
    assert code == 0
    return dataset, run_dir


def toy_dataset(path: Path, episodes: int = 3, seed: int = 0, unlabelled: int = 1) -> Path:
    """Episodes of the toy task under random actions, with rewards, recorded as slac-imitate
    records a teacher (labels: half the executed action; the last ``unlabelled`` episodes have
    none, as a student's DAgger steps)."""
    env = make_env(TOY_TASK, seed=seed)
    rng = np.random.default_rng(seed)
    data = Dataset(env.observation_space.shape, env.action_space.shape[0])
    for episode in range(episodes):
        obs, _ = env.reset(seed=1000 * seed + episode)
        frames, actions, rewards, ends, done = [], [], [], [], False
        while not done:
            action = rng.uniform(-1, 1, 2).astype(np.float32)
            frames.append(obs)
            actions.append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            ends.append(terminated)
            done = terminated or truncated
        labelled = episode < episodes - unlabelled
        labels = [a * 0.5 if labelled else np.full(2, np.nan, np.float32) for a in actions]
        data.add_episode(frames, actions, labels, None, rewards, ends, obs)
    env.close()
    meta = {"task": TOY_TASK, "teacher": "random", "episodes": episodes, "action_repeat": 2}
    data.save(path, meta)
    return path


def toy_config(tmp_path: Path, **changes) -> TrainConfig:
    values = dict(
        task=TOY_TASK,
        **TOY_RUN,
        demos=(str(toy_dataset(tmp_path / "toy-demos.npz")),),
        demo_ratio=0.25,
    )
    return small_test_config(**{**values, **changes})


# -- datasets -------------------------------------------------------------------------------------
def test_teacher_episodes_are_recorded_with_their_rewards_and_episode_ends(teacher_run):
    dataset, _ = teacher_run
    data, meta = Dataset.load(dataset)
    assert meta["format"] == 2 and meta["action_repeat"] == 2 and data.has_transitions
    arrays = data.arrays()
    assert len(arrays["rewards"]) == len(arrays["frames"]) == 80
    assert arrays["final_frames"].shape == (2, 64, 64, 3) and not arrays["terminated"].any()
    # the recorded rewards and last frame are the environment's: replay the first episode
    env = make_env(
        "dclaw-turn",
        seed=0,
        **{k: meta[k] for k in ("visual_randomization", "dynamics_randomization", "image_noise")},
        observation_latency=tuple(meta["observation_latency"]),
    )
    try:
        obs, _ = env.reset(seed=0)  # slac-imitate --seed 0 records seeds 0, 1
        np.testing.assert_array_equal(obs, arrays["frames"][0])
        rewards = []
        for action in arrays["actions"][:40]:
            obs, reward, _, _, _ = env.step(action)
            rewards.append(reward)
    finally:
        env.close()
    np.testing.assert_allclose(rewards, arrays["rewards"][:40], rtol=1e-6)
    np.testing.assert_array_equal(obs, arrays["final_frames"][0])


def test_a_dataset_whose_arrays_do_not_fit_together_is_refused_in_one_sentence(tmp_path):
    from slac_runtime.options import UsageError
    from slac_train.imitation.dataset import load_datasets

    data = Dataset((8, 8, 3), 2)
    frames = [np.zeros((8, 8, 3), np.uint8)] * 4
    actions = [np.zeros(2, np.float32)] * 4
    data.add_episode(frames, actions, actions, None, [0.0] * 4, [False] * 4, frames[0])
    meta = {"teacher": "x", "episodes": 1, "teacher_stats": {"return_mean": 0, "success_rate": 0}}
    data.save(tmp_path / "good.npz", meta)
    good = dict(np.load(tmp_path / "good.npz"))
    damaged = {
        "nan rewards": dict(rewards=np.full(4, np.nan, np.float32)),
        "rewards cut short": dict(rewards=np.zeros(3, np.float32)),
        "actions cut short": dict(actions=np.zeros((3, 2), np.float32)),
        "actions of one number": dict(actions=np.zeros(4, np.float32)),
        "float frames": dict(frames=good["frames"].astype(np.float32)),
        "no episode": {k: v[:0] for k, v in good.items() if v.ndim},
        "starts out of order": dict(starts=np.array([0, 0, 3, 1])),
        "meta a list": dict(meta=np.array("[]")),
    }
    for change in damaged.values():  # (keyed by what is wrong)
        np.savez(tmp_path / "bad.npz", **{**good, **change})
        with pytest.raises(ValueError, match="is not a dataset slac-imitate --save-dataset wrote"):
            Demonstrations.load([str(tmp_path / "bad.npz")], (8, 8, 3), 2, 2)
        with pytest.raises(UsageError):  # slac-imitate --dataset
            load_datasets([str(tmp_path / "bad.npz")], (8, 8, 3), 2, "toy")
    cut = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(cut[: len(cut) // 2])
    with pytest.raises(UsageError, match="damaged or incomplete"):
        load_datasets([str(tmp_path / "cut.npz")], (8, 8, 3), 2, "toy")
    np.savez(tmp_path / "no-stats.npz", **{**good, "meta": np.array("{}")})
    with pytest.raises(UsageError, match="does not name its teacher"):
        load_datasets([str(tmp_path / "no-stats.npz")], (8, 8, 3), 2, "toy")
    assert len(Demonstrations.load([str(tmp_path / "good.npz")], (8, 8, 3), 2, 2).sources) == 1


def test_a_dataset_without_rewards_still_trains_imitation_but_is_refused_as_demonstrations(
    tmp_path, capsys
):
    from slac_train.cli import main

    old = Dataset((64, 64, 3), 2)
    frames = [np.zeros((64, 64, 3), np.uint8)] * 5
    old.add_episode(frames, [np.zeros(2, np.float32)] * 5, [np.zeros(2, np.float32)] * 5)
    old.save(tmp_path / "old.npz", {"task": TOY_TASK, "teacher": "x", "episodes": 1})
    loaded, meta = Dataset.load(tmp_path / "old.npz")
    assert meta["format"] == 1 and not loaded.has_transitions
    assert len(loaded.arrays()["labelled"]) == 5  # what slac-imitate trains on
    with toy_task():
        code = main(
            [
                "--task",
                TOY_TASK,
                *TINY_TRAIN_ARGS,
                "--demos",
                str(tmp_path / "old.npz"),
                "--run-dir",
                str(tmp_path / "run"),
            ]
        )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no rewards" in err and "--demos" in err


# -- the demonstration buffer and the batch ratio -------------------------------------------------
def test_demonstration_windows_survive_a_wrapping_online_buffer_and_fill_their_share(tmp_path):
    with toy_task():
        path = toy_dataset(tmp_path / "demos.npz", episodes=3)
        demos = Demonstrations.load([str(path)], (64, 64, 3), 2, 2)
        data = Dataset.load(path)[0].arrays()
    buffer = demos.buffer
    assert buffer.num_episodes == 3 and buffer.num_windows() == 36  # 12 transitions an episode
    online = ReplayBuffer(40, (64, 64, 3), 2)  # wraps 5 times over
    online.start_episode(np.full((64, 64, 3), 1, np.uint8))
    assert online.num_windows() == 0
    rng = np.random.default_rng(0)
    # until the online buffer holds a transition, a batch is all demonstrations
    assert sample_mixed(online, buffer, 16, 0.25, rng)["demo"].sum() == 16
    for step in range(200):
        online.add(np.zeros(2, np.float32), 0.0, False, np.full((64, 64, 3), 1, np.uint8))
        if step % 13 == 12:
            online.start_episode(np.full((64, 64, 3), 1, np.uint8))
    assert online.oldest > 0
    for _ in range(200):
        batch = sample_mixed(online, buffer, 16, 0.25, rng)
        demo = batch["demo"].astype(bool)
        assert demo.sum() == demo_count(16, 0.25) == 4  # exactly, every batch
        assert (batch["frames"][~demo] == 1).all() and (batch["frames"][demo] != 1).any()
    # the demonstration windows are what a replay buffer that recorded those episodes cuts
    reference = ReplayBuffer(200, (64, 64, 3), 2)
    starts = np.flatnonzero(np.r_[True, data["starts"][1:] != data["starts"][:-1]])
    for episode, (first, end) in enumerate(zip(starts, np.r_[starts[1:], len(data["starts"])])):
        reference.start_episode(data["frames"][first])
        nexts = [*data["frames"][first + 1 : end], data["final_frames"][episode]]
        for j, frame in zip(range(first, end), nexts):
            reference.add(data["actions"][j], data["rewards"][j], data["terminated"][j], frame)
    last, start = buffer.sample_window_ends(64, rng)
    got, want = buffer.windows(last, start), reference.windows(last, start)
    assert (start == last - 1).any()  # windows padded at the episode's start are among them
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, key)
    assert got["demo"].all()


def test_the_demonstrated_action_is_the_teachers_label_where_it_has_one(tmp_path):
    with toy_task():
        path = toy_dataset(tmp_path / "demos.npz", episodes=2, unlabelled=1)
        demos = Demonstrations.load([str(path)], (64, 64, 3), 2, 2)
    buffer = demos.buffer
    rng = np.random.default_rng(1)
    last, start = buffer.sample_window_ends(256, rng)
    windows = buffer.windows(last, start)
    labelled = start == 0  # the first episode has labels (half the executed action)
    np.testing.assert_allclose(
        windows["bc_target"][labelled], 0.5 * windows["actions"][labelled, -1], atol=1e-6
    )
    np.testing.assert_array_equal(
        windows["bc_target"][~labelled], windows["actions"][~labelled, -1]
    )
    assert labelled.any() and (~labelled).any()
    np.testing.assert_array_equal(windows["action_valid"][start == last - 1, :-1], False)  # padding


def test_a_run_with_demonstrations_keeps_them_while_its_online_buffer_wraps(tmp_path):
    with toy_task(action_repeat=2, length=24):
        config = toy_config(
            tmp_path,
            buffer_capacity=36,
            total_env_steps=96,
            eval_episodes=0,
            run_dir=str(tmp_path / "run"),
        )
        with Trainer(config) as trainer:
            before = {
                k: v.copy()
                for k, v in vars(trainer.demos.buffer).items()
                if isinstance(v, np.ndarray)
            }
            trainer.train()
            assert trainer.buffer.oldest > 0  # the online ring wrapped
            for key, value in before.items():
                np.testing.assert_array_equal(getattr(trainer.demos.buffer, key), value, key)
        records = [
            json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n") if x
        ]
        inputs = [r for r in records if r["kind"] == "inputs"]
        assert inputs[0]["demo_windows"] == 36 and inputs[0]["demos"][0]["episodes"] == 3
        assert (tmp_path / "run" / "demos" / "0-toy-demos.npz").is_file()


# -- resume ---------------------------------------------------------------------------------------
def test_a_resumed_run_keeps_its_demonstrations_and_ratio_exactly(tmp_path):
    with toy_task(action_repeat=2, length=24):
        config = toy_config(tmp_path, total_env_steps=96, eval_episodes=0)
        straight = Trainer(config.replace(run_dir=str(tmp_path / "straight")))
        with straight:
            straight.train()
        with Trainer(config.replace(run_dir=str(tmp_path / "resumed"))) as first:
            first.train(stop_at_env_step=72)
        os.rename(config.demos[0], tmp_path / "moved.npz")  # the run reads its own copy
        with pytest.raises(ValueError, match="demo_ratio"):
            Trainer.resume(tmp_path / "resumed", demo_ratio=0.5)
        with Trainer.resume(tmp_path / "resumed") as resumed:
            assert resumed.config.demo_ratio == 0.25 and resumed.counters["env_step"] == 72
            for key in ("frames", "actions", "rewards", "labels"):
                np.testing.assert_array_equal(
                    getattr(resumed.demos.buffer, key), getattr(straight.demos.buffer, key)
                )
            resumed.train()
        assert_same_run(straight, resumed)

        copy = tmp_path / "resumed" / "demos" / "0-toy-demos.npz"
        toy_dataset(copy, episodes=2)  # a different file in its place is refused
        with pytest.raises(ValueError, match="not the demonstration file this run started with"):
            Trainer.resume(tmp_path / "resumed", total_env_steps=192)


# -- starting from a policy -----------------------------------------------------------------------
def some_histories(action_dim: int, count: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        history = History(action_dim, (64, 64, 3), length=8, dtype=np.uint8)
        history.reset(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        for _ in range(int(rng.integers(0, 10))):
            history.append(
                rng.uniform(-1, 1, action_dim).astype(np.float32),
                rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            )
        yield history


def fresh_agent(config: TrainConfig, action_dim: int, seed: int = 7) -> SlacAgent:
    torch.manual_seed(seed)
    return SlacAgent(config.resolved(2), action_dim)


def assert_acts_as(agent: SlacAgent, reference, action_dim: int) -> None:
    for history in some_histories(action_dim):
        np.testing.assert_array_equal(
            agent.act(history, deterministic=True), reference.act(history, deterministic=True)
        )


def assert_runs_as_onnx(agent: SlacAgent, path: Path) -> None:
    """onnxruntime runs the file at ``path`` as ``agent`` acts (deterministic, 9 actions)."""
    from slac_runtime.policy import OnnxPolicy

    onnx_policy = OnnxPolicy(path)
    for history in some_histories(9):
        np.testing.assert_allclose(
            agent.act(history, deterministic=True),
            onnx_policy.run_full(history.items, history.actions).action,
            atol=1e-5,
        )


def test_a_policy_file_starts_the_encoder_and_actor_exactly(teacher_run, tmp_path):
    """The student exported as the shipped policy is: a fresh agent started from the file acts
    as the student does, bit for bit, and as onnxruntime runs the file."""
    import onnx

    from slac_train.checkpoint import load_agent
    from slac_train.export_cli import export_run

    _, run_dir = teacher_run
    student, _ = load_agent(run_dir)
    path, _ = export_run(run_dir, tmp_path / "student.onnx")
    training = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["training"])
    assert training["command"] == "slac-imitate" and training["teacher"] == "dclaw-turn-table"

    agent = fresh_agent(small_test_config(task="dclaw-turn"), 9)
    assert not torch.equal(agent.actor.net[0].weight, student.actor.net[0].weight)
    critic = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    init_policy(agent, path)
    assert_acts_as(agent, student, 9)  # the same weights, bit for bit: the same actions
    assert_runs_as_onnx(agent, path)
    assert all(torch.equal(v, agent.critic.state_dict()[k]) for k, v in critic.items())


def test_an_imitation_run_starts_the_encoder_and_actor_exactly(teacher_run):
    from slac_train.checkpoint import load_agent

    _, run_dir = teacher_run
    student, _ = load_agent(run_dir)
    config = small_test_config(task="dclaw-turn")  # TINY_NETWORKS: the student's sizes
    agent = fresh_agent(config, 9)
    init_policy(agent, run_dir)
    assert_acts_as(agent, student, 9)
    wide = fresh_agent(small_test_config(task="dclaw-turn", feature_dim=32), 9)
    with pytest.raises(ValueError) as refused:
        init_policy(wide, run_dir)
    assert "--encoder-base-channels 4 --feature-dim 16 --actor-critic-hidden 16" in str(
        refused.value
    )
    with pytest.raises(ValueError, match="pass --action-repeat 2"):
        init_policy(agent, run_dir, action_repeat=1)


def test_the_dclaw_demonstrations_preset_fits_the_shipped_turn_policy():
    from slac_runtime.policy import OnnxPolicy

    shipped = Path(__file__).resolve().parents[1] / "robots/dclaw/policies/turn.onnx"
    config = TrainConfig(**PRESETS["dclaw-turn-demos"], demos=("turn-demos.npz",), device="cpu")
    assert config.num_critics == 10 and config.critic_layer_norm and config.freeze_encoder
    agent = fresh_agent(config, 9)
    init_policy(agent, shipped)
    policy = OnnxPolicy(shipped)
    for history in some_histories(9, count=2):
        np.testing.assert_allclose(
            agent.act(history, deterministic=True),
            policy.run_full(history.items, history.actions).action,
            atol=1e-4,
        )


# -- the critic ensemble, the warm-up and the cloning term ----------------------------------------
def toy_batch(tmp_path: Path, size: int = 8) -> Batch:
    with toy_task():
        path = toy_dataset(tmp_path / "demos.npz", episodes=2, unlabelled=0)
        demos = Demonstrations.load([str(path)], (64, 64, 3), 2, 2)
    online = ReplayBuffer(100, (64, 64, 3), 2)
    online.start_episode(np.zeros((64, 64, 3), np.uint8))
    for _ in range(12):
        online.add(np.ones(2, np.float32), 1.0, False, np.zeros((64, 64, 3), np.uint8))
    arrays = sample_mixed(online, demos.buffer, size, 0.5, np.random.default_rng(0))
    return Batch.from_numpy(arrays, torch.device("cpu"))


def test_the_default_critic_is_the_twin_critic_and_the_ensemble_is_rlpds():
    twin = fresh_agent(small_test_config(task=TOY_TASK), 2).critic
    assert sorted({k.split(".")[0] for k in twin.state_dict()}) == ["q1", "q2"]
    assert "q1.4.bias" in twin.state_dict()  # the twin critic's layout: Linear, ReLU, ... Linear
    config = small_test_config(
        task=TOY_TASK, num_critics=5, critic_target_subset=2, critic_layer_norm=True
    )
    agent = fresh_agent(config, 2)
    assert agent.critic.count == 5
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in agent.critic.modules()) == 10
    values = (5.0, 1.0, 4.0, 2.0, 3.0)
    qs = tuple(torch.full((3,), v) for v in values)
    torch.manual_seed(3)
    expected = min(values[i] for i in torch.randperm(5)[:2].tolist())
    torch.manual_seed(3)
    assert (agent._target_min(qs) == expected).all()
    everything = fresh_agent(config.replace(critic_target_subset=5), 2)
    state = torch.get_rng_state()
    assert (everything._target_min(qs) == 1).all()
    assert torch.equal(state, torch.get_rng_state())  # the minimum over all draws nothing


def test_the_warm_up_holds_the_actor_and_alpha_while_the_critic_learns(tmp_path):
    batch = toy_batch(tmp_path)
    agent = fresh_agent(small_test_config(task=TOY_TASK, actor_warmup_updates=2), 2)
    actor = [p.clone() for p in agent.actor.parameters()]
    critic = [p.clone() for p in agent.critic.parameters()]
    alpha = agent.log_alpha.item()
    for index in range(2):
        metrics = agent.update(batch, update_index=index)
        assert metrics["actor/held"].item() == 1.0
    assert all(torch.equal(a, b) for a, b in zip(actor, agent.actor.parameters()))
    assert agent.log_alpha.item() == alpha
    assert not all(torch.equal(a, b) for a, b in zip(critic, agent.critic.parameters()))
    assert agent.update(batch, update_index=2)["actor/held"].item() == 0.0
    assert not all(torch.equal(a, b) for a, b in zip(actor, agent.actor.parameters()))


def test_the_cloning_term_pulls_the_actor_to_the_demonstrations_and_fades(tmp_path):
    batch = toy_batch(tmp_path)
    config = small_test_config(
        task=TOY_TASK, demos=("x.npz",), bc_weight=50.0, bc_decay_updates=100, lr_actor=3e-3
    )
    agent = fresh_agent(config, 2)
    assert agent.bc_weight_at(0) == 50.0 and agent.bc_weight_at(50) == 25.0
    assert agent.bc_weight_at(100) == agent.bc_weight_at(1000) == 0.0
    errors = [agent.update(batch, update_index=i)["actor/bc_mse"].item() for i in range(30)]
    assert errors[-1] < 0.5 * errors[0], errors
    assert agent.update(batch, update_index=100)["actor/bc_weight"].item() == 0.0  # faded out
    with pytest.raises(ValueError, match="give --demos"):
        small_test_config(task=TOY_TASK, bc_weight=1.0)


def test_a_frozen_encoder_is_not_trained_by_the_model(tmp_path):
    batch = toy_batch(tmp_path)
    agent = fresh_agent(small_test_config(task=TOY_TASK, freeze_encoder=True), 2)
    encoder = [p.clone() for p in agent.encoder.parameters()]
    decoder = [p.clone() for p in agent.model.decoder.parameters()]
    agent.update(batch)
    agent.update_model(batch)
    assert all(torch.equal(a, b) for a, b in zip(encoder, agent.encoder.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(decoder, agent.model.decoder.parameters()))


def test_a_residual_actor_starts_as_the_student_and_moves_only_within_its_bound(
    teacher_run, tmp_path
):
    """The residual on the frozen student: the very student before any update (mean and log std),
    a base that never trains, a pre-tanh mean never further than residual_scale from the
    student's and the student's own spread, and an export that onnxruntime runs as the agent
    does."""
    from slac_runtime.policy import OnnxPolicy
    from slac_train.checkpoint import load_agent
    from slac_train.export import export_onnx

    _, run_dir = teacher_run
    student, _ = load_agent(run_dir)
    config = small_test_config(
        task="dclaw-turn", init_policy=str(run_dir), residual_actor=True, residual_scale=0.2
    )
    agent = fresh_agent(config, 9)
    init_policy(agent, run_dir)
    assert_acts_as(agent, student, 9)
    dataset, _ = teacher_run
    demos = Demonstrations.load([str(dataset)], (64, 64, 3), 9, 2)
    online = ReplayBuffer(100, (64, 64, 3), 9)
    rng = np.random.default_rng(0)
    batch = Batch.from_numpy(sample_mixed(online, demos.buffer, 16, 0.5, rng), torch.device("cpu"))
    inputs = [
        agent.policy().actor_inputs(
            torch.as_tensor(h.items[None]), torch.as_tensor(h.actions[None])
        )
        for h in some_histories(9)
    ]
    for x in inputs:
        for ours, theirs in zip(agent.actor(x), student.actor(x)):
            assert torch.equal(ours, theirs)
    base = {k: v.clone() for k, v in agent.actor.base.state_dict().items()}
    for index in range(40):
        agent.update(batch, update_index=index)
    assert all(torch.equal(v, agent.actor.base.state_dict()[k]) for k, v in base.items())
    with torch.no_grad():
        shifts = [(agent.actor(x)[0] - student.actor(x)[0]).abs().max().item() for x in inputs]
        assert all(torch.equal(agent.actor(x)[1], student.actor(x)[1]) for x in inputs)
    assert 0.0 < max(shifts) <= 0.2 + 1e-6, shifts  # the mean moves within its bound, the spread
    # is the student's

    shipped = Path(__file__).resolve().parents[1] / "robots/dclaw/policies/turn.onnx"
    metadata = dataclasses.replace(OnnxPolicy(shipped).metadata, feature_dim=config.feature_dim)
    path = export_onnx(agent.encoder, agent.actor, metadata, tmp_path / "residual.onnx")
    assert_runs_as_onnx(agent, path)
    again = fresh_agent(config, 9)  # a residual policy file continues as a residual
    init_policy(again, path)
    assert_acts_as(again, agent, 9)
    with pytest.raises(ValueError, match="--residual-actor"):
        init_policy(fresh_agent(small_test_config(task="dclaw-turn"), 9), path)
    with pytest.raises(ValueError, match="give --init-policy"):
        small_test_config(task="dclaw-turn", residual_actor=True)


def test_the_critic_learns_the_scaled_reward(tmp_path):
    batch = toy_batch(tmp_path)
    targets = []
    for scale in (1.0, 0.1):
        torch.manual_seed(0)
        agent = fresh_agent(small_test_config(task=TOY_TASK, reward_scale=scale, gamma=0.0), 2)
        targets.append(agent.update(batch)["critic/target"].item())
    assert targets[0] == pytest.approx(batch.rewards[:, -1].mean().item())
    assert targets[1] == pytest.approx(0.1 * targets[0])
    with pytest.raises(ValueError, match="reward_scale"):
        small_test_config(task=TOY_TASK, reward_scale=0.0)


class PreferAction(torch.nn.Module):
    """A critic of known values: every member rates an action by minus ``slope`` x its squared
    distance to ``best``."""

    def __init__(self, best: torch.Tensor, slope: float = 1.0, count: int = 3) -> None:
        super().__init__()
        self.best, self.slope, self.count = best, slope, count

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q = -self.slope * (action - self.best).pow(2).sum(-1)
        return (q,) * self.count


def test_an_actions_likelihood_is_the_log_prob_it_was_sampled_with():
    agent = fresh_agent(small_test_config(task=TOY_TASK), 2)
    x = torch.randn(64, agent.actor.net[0].in_features)
    with torch.no_grad():
        action, log_prob = agent.actor.sample(x)
        inside = action.abs().max(-1).values < 0.99
        likelihood = agent.actor.log_prob(x, action)
    assert inside.sum() > 32
    torch.testing.assert_close(likelihood[inside], log_prob[inside], rtol=1e-4, atol=1e-3)


def test_the_advantage_weighted_actor_moves_to_the_actions_the_critic_ranks_higher(tmp_path):
    """AWAC's actor: the likelihood of the batch's own actions, weighted by their advantage. Online
    windows here act (1, 1), demonstrations elsewhere; a critic that prefers (1, 1) draws the
    actor there, one that prefers (-1, -1) draws it away, and a flat critic weights all alike."""
    batch = toy_batch(tmp_path, size=16)
    config = small_test_config(
        task=TOY_TASK, actor_update="advantage-weighted", advantage_temperature=0.3, lr_actor=3e-3
    )
    distance = {}
    for sign in (1.0, -1.0):
        agent = fresh_agent(config, 2)
        agent.critic = PreferAction(torch.full((2,), sign))
        z_now = torch.zeros(batch.size, 1)
        x = torch.randn(batch.size, agent.actor.net[0].in_features, generator=torch.Generator())
        for _ in range(150):
            metrics: dict[str, torch.Tensor] = {}
            loss, _ = agent._advantage_weighted_loss(x, z_now, batch.actions[:, -1], metrics)
            agent.actor_optimizer.zero_grad()
            loss.backward()
            agent.actor_optimizer.step()
        with torch.no_grad():
            distance[sign] = (agent.actor.deterministic(x) - 1.0).pow(2).sum(-1).mean().item()
        assert metrics["actor/weight_max"].item() > 1.0
    assert distance[1.0] < 0.5 * distance[-1.0], distance

    flat = fresh_agent(config, 2)
    flat.critic = PreferAction(torch.zeros(2), slope=0.0)  # every action alike: equal weights
    metrics = {}
    flat._advantage_weighted_loss(x, torch.zeros(batch.size, 1), batch.actions[:, -1], metrics)
    assert metrics["actor/weight_max"].item() == pytest.approx(1.0)

    agent = fresh_agent(config, 2)  # the whole update, its critic learning as usual
    critic = [p.clone() for p in agent.critic.parameters()]
    metrics = agent.update(batch)
    assert 0.0 <= metrics["actor/advantage_positive"].item() <= 1.0
    assert not all(torch.equal(a, b) for a, b in zip(critic, agent.critic.parameters()))
    with pytest.raises(ValueError, match="advantage_temperature"):
        small_test_config(task=TOY_TASK, advantage_temperature=0.0)


# -- slac-train end to end ------------------------------------------------------------------------
def test_slac_train_learns_from_demonstrations_on_the_dclaw_and_exports_their_provenance(
    teacher_run, tmp_path, capsys
):
    from slac_train.checkpoint import load_checkpoint
    from slac_train.cli import main
    from slac_train.export_cli import training_provenance

    dataset, student = teacher_run
    run_dir = tmp_path / "run"
    code = main(
        [
            "--task",
            "dclaw-turn",
            *TINY_TRAIN_ARGS,
            "--demos",
            str(dataset),
            "--init-policy",
            str(student),
            "--initial-collection-steps",
            "0",
            "--max-episode-agent-steps",
            "10",
            "--total-env-steps",
            "40",
            "--eval-every-env-steps",
            "40",
            "--num-critics",
            "4",
            "--critic-layer-norm",
            "--actor-q",
            "mean",
            "--actor-warmup-updates",
            "3",
            "--bc-weight",
            "0.5",
            "--bc-decay-updates",
            "10",
            "--freeze-encoder",
            "--no-eval-deterministic",
            "--randomization",
            "visual+dynamics+latency",
            "--log-every-updates",
            "4",
            "--run-dir",
            str(run_dir),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "demonstrations: 2 episodes, 80 transitions" in out and "done: 40 env steps" in out
    config = json.loads((run_dir / "config.json").read_text())
    assert config["demos"] == [str(dataset)] and config["init_policy"] == str(student)
    assert config["num_critics"] == 4 and config["randomization"] == "visual+dynamics+latency"
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train and all("actor/bc_mse" in r and "actor/held" in r for r in train)
    # held for the first 3 updates, the cloning term faded out by the 10th
    assert train[0]["actor/held"] > 0 and train[-1]["actor/held"] == 0.0
    assert train[0]["actor/bc_weight"] > 0 and train[-1]["actor/bc_weight"] == 0.0
    # what the exported policy's metadata will say about how it was trained
    training = training_provenance(load_checkpoint(run_dir))
    assert training["command"] == "slac-train" and training["init_policy"] == str(student)
    assert training["demos"][0]["sha256"] == records[0]["demos"][0]["sha256"]
