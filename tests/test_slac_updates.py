"""SLAC updates: what each update may change, that learning happens, determinism, the bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slac_runtime.history import History
from slac_train.slac_agent import Batch, NonFiniteLossError, SlacAgent, check_finite
from tests.train_configs import small_test_config

A = 2


def make_agent(seed: int = 0, **changes) -> SlacAgent:
    torch.manual_seed(seed)
    config = small_test_config(task="cartpole-swingup", **changes).resolved(4)
    return SlacAgent(config, A, "cpu")


def make_batch(size: int, seed: int = 0, terminated: float = 0.0) -> Batch:
    rng = np.random.default_rng(seed)
    valid = np.ones((size, 8), dtype=bool)
    valid[0, :3] = False  # a start-of-episode window
    actions = rng.uniform(-1, 1, (size, 8, A)).astype(np.float32) * valid[..., None]
    arrays = {
        "frames": rng.integers(0, 256, (size, 9, 64, 64, 3), dtype=np.uint8),
        "actions": actions,
        "rewards": rng.uniform(0, 1, (size, 8)).astype(np.float32) * valid,
        "action_valid": valid,
        "terminated": np.full((size, 8), terminated, dtype=np.float32),
    }
    return Batch.from_numpy(arrays, torch.device("cpu"))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_actor_critic_update_changes_neither_encoder_nor_model():
    agent = make_agent()
    model, actor, critic = snapshot(agent.model), snapshot(agent.actor), snapshot(agent.critic)
    target = snapshot(agent.critic_target)
    alpha = agent.log_alpha.item()
    metrics = agent.update_actor_critic(make_batch(8))
    assert same(model, snapshot(agent.model)), "the actor-critic update moved the latent model"
    assert not same(actor, snapshot(agent.actor))
    assert not same(critic, snapshot(agent.critic))
    assert not same(target, snapshot(agent.critic_target))
    assert agent.log_alpha.item() != alpha
    assert agent.model.encoder.convs[0].weight.grad is None  # no gradient reached the encoder
    assert {"critic/loss", "actor/loss", "alpha/loss"} <= set(metrics)


def test_model_update_changes_only_the_model():
    agent = make_agent()
    model, actor, critic = snapshot(agent.model), snapshot(agent.actor), snapshot(agent.critic)
    agent.update_model(make_batch(4))
    assert not same(model, snapshot(agent.model))
    assert same(actor, snapshot(agent.actor)) and same(critic, snapshot(agent.critic))


def test_polyak_update_is_tau_weighted():
    agent = make_agent(target_update_tau=0.25)
    before = snapshot(agent.critic_target)
    agent.update_actor_critic(make_batch(8))
    after_critic = snapshot(agent.critic)
    for key, old in before.items():
        torch.testing.assert_close(
            agent.critic_target.state_dict()[key], 0.75 * old + 0.25 * after_critic[key]
        )


def test_model_loss_falls_on_a_fixed_batch():
    agent = make_agent(lr_model=2e-3)
    batch = make_batch(4, seed=1)
    losses = [agent.update_model(batch)["model/loss"].item() for _ in range(40)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_reward_explained_measures_the_reward_model_against_the_mean(monkeypatch):
    agent = make_agent()
    batch = make_batch(4, seed=2)
    mask = batch.action_valid
    mean_reward = (batch.rewards * mask).sum() / mask.sum()

    def explained(prediction: torch.Tensor) -> float:
        monkeypatch.setattr(
            agent.model,
            "reward_distribution",
            lambda z, a: (prediction, torch.ones_like(prediction)),
        )
        _, metrics = agent.model.loss(batch.images(), batch.actions, batch.rewards, mask)
        return metrics["model/reward_explained"].item()

    # the padded steps' (zero) rewards take no part: a perfect prediction there is not required
    perfect = torch.where(mask > 0, batch.rewards, torch.full_like(batch.rewards, 5.0))
    assert explained(perfect) == pytest.approx(1.0)
    assert explained(torch.full_like(batch.rewards, mean_reward.item())) == pytest.approx(
        0.0, abs=1e-5
    )
    halfway = torch.where(mask > 0, 0.5 * (batch.rewards + mean_reward), batch.rewards)
    assert explained(halfway) == pytest.approx(0.75, abs=1e-4)


def test_same_seed_same_first_updates():
    results = []
    for _ in range(2):
        agent = make_agent(seed=3)
        torch.manual_seed(11)
        metrics = [
            agent.update_model(make_batch(4)),
            agent.update_actor_critic(make_batch(8)),
            agent.update_model(make_batch(4, seed=2)),
        ]
        results.append(
            (
                snapshot(agent.model),
                snapshot(agent.actor),
                snapshot(agent.critic),
                [{k: v.item() for k, v in m.items()} for m in metrics],
            )
        )
    (m1, a1, c1, x1), (m2, a2, c2, x2) = results
    assert same(m1, m2) and same(a1, a2) and same(c1, c2)
    assert x1 == x2
    other = make_agent(seed=4)
    assert not same(m1, snapshot(other.model))


def test_termination_zeroes_the_bootstrap_and_truncation_does_not():
    batch = make_batch(8, terminated=1.0)
    agent = make_agent()
    metrics = agent.update_actor_critic(batch)
    assert metrics["critic/target"].item() == pytest.approx(
        batch.rewards[:, -1].mean().item(), abs=1e-6
    )
    agent = make_agent()
    truncated = make_batch(8, terminated=0.0)  # a time-limit cut: not terminal, so it bootstraps
    metrics = agent.update_actor_critic(truncated)
    assert metrics["critic/target"].item() != pytest.approx(
        truncated.rewards[:, -1].mean().item(), abs=1e-4
    )


def test_act_matches_the_exportable_policy_module():
    agent = make_agent()
    rng = np.random.default_rng(0)
    history = History(A, (64, 64, 3))
    history.reset(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for _ in range(3):
        history.append(
            rng.uniform(-1, 1, A).astype(np.float32),
            rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        )
    action = agent.act(history, deterministic=True)
    with torch.no_grad():
        mean, log_std = agent.policy()(
            torch.as_tensor(history.items)[None], torch.as_tensor(history.actions)[None]
        )
    np.testing.assert_allclose(action, torch.tanh(mean)[0].numpy(), rtol=1e-5, atol=1e-6)
    sampled = agent.act(history, deterministic=False)
    assert sampled.shape == (A,) and np.all(np.abs(sampled) <= 1)


def test_non_finite_loss_is_named():
    metrics = {
        "model/loss": torch.tensor(1.0),
        "critic/loss": torch.tensor(float("nan")),
        "critic/q1": torch.tensor(float("inf")),
    }
    with pytest.raises(NonFiniteLossError, match="critic/loss") as info:
        check_finite(metrics, step=7)
    assert info.value.names == ["critic/loss"] and "7" in str(info.value)


def test_n_step_transition_sums_the_windows_rewards_from_n_steps_back():
    gamma = 0.9
    agent = make_agent(critic_n_step=3, gamma=gamma, reward_scale=2.0)
    batch = make_batch(3)
    valid = torch.ones(3, 8)
    valid[1, :6] = 0  # a window with two real actions: the episode's first step is the start
    batch.action_valid = valid
    z = torch.arange(9.0).repeat(3, 1)[..., None]  # z[b, t] = t: shows which step was taken
    z_start, action, reward, discount = agent._critic_transition(batch, z)
    r = batch.rewards
    assert z_start[:, 0].tolist() == [5.0, 6.0, 5.0]
    assert torch.equal(action[1], batch.actions[1, 6]) and torch.equal(
        action[2], batch.actions[2, 5]
    )
    expected = [
        2.0 * (r[0, 5] + gamma * r[0, 6] + gamma**2 * r[0, 7]),
        2.0 * (r[1, 6] + gamma * r[1, 7]),
        2.0 * (r[2, 5] + gamma * r[2, 6] + gamma**2 * r[2, 7]),
    ]
    assert reward.tolist() == pytest.approx([e.item() for e in expected], rel=1e-6)
    assert discount.tolist() == pytest.approx([gamma**3, gamma**2, gamma**3], rel=1e-6)


def test_one_step_transition_is_the_windows_last_step():
    agent = make_agent(gamma=0.9, reward_scale=2.0)
    batch = make_batch(4)
    z = torch.randn(4, 9, 5)
    z_start, action, reward, discount = agent._critic_transition(batch, z)
    assert torch.equal(z_start, z[:, -2]) and torch.equal(action, batch.actions[:, -1])
    assert torch.equal(reward, batch.rewards[:, -1] * 2.0) and discount == 0.9


def test_n_step_target_learns_and_stops_at_a_terminal_state():
    batch = make_batch(8, terminated=1.0)
    agent = make_agent(critic_n_step=2, gamma=0.5)
    metrics = agent.update_actor_critic(batch)
    r = batch.rewards
    assert metrics["critic/target"].item() == pytest.approx(
        (r[:, -2] + 0.5 * r[:, -1]).mean().item(), rel=1e-6
    )
    assert np.isfinite(metrics["critic/loss"].item())


@pytest.mark.parametrize("steps", [0, 9])
def test_n_step_outside_the_window_is_refused(steps):
    with pytest.raises(ValueError, match="critic_n_step"):
        small_test_config(task="cartpole-swingup", critic_n_step=steps)
