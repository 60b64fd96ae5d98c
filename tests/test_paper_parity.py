"""The switches that choose between the official SLAC implementation's behaviour and another: each
builds what it says, and the official choice is the default."""

from __future__ import annotations

import copy
import math
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from slac_toy_task import TOY_TASK, toy_task  # noqa: E402

from slac_train.config import LEGACY_DEFAULTS, PRESETS, TrainConfig  # noqa: E402
from slac_train.latent_model import gaussian_kl, gaussian_log_prob  # noqa: E402
from slac_train.networks import Decoder, actor_input  # noqa: E402
from slac_train.replay_buffer import ReplayBuffer  # noqa: E402
from slac_train.slac_agent import Batch, SlacAgent  # noqa: E402
from tests.train_configs import small_test_config  # noqa: E402

A = 2
PADDED = 3  # window 0 starts its episode at frame 3: frames 0..2 and actions 0..2 are padding


def make_agent(seed: int = 0, **changes) -> SlacAgent:
    torch.manual_seed(seed)
    config = small_test_config(task="cartpole-swingup", **changes).resolved(4)
    return SlacAgent(config, A, "cpu")


def make_arrays(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Windows as the replay buffer gives them; window 0 has PADDED padded steps."""
    rng = np.random.default_rng(seed)
    valid = np.ones((size, 8), dtype=bool)
    valid[0, :PADDED] = False
    frames = rng.integers(0, 256, (size, 9, 64, 64, 3), dtype=np.uint8)
    frames[0, :PADDED] = frames[0, PADDED]  # padding repeats the episode's first frame
    return {
        "frames": frames,
        "actions": rng.uniform(-1, 1, (size, 8, A)).astype(np.float32) * valid[..., None],
        "rewards": rng.uniform(0, 1, (size, 8)).astype(np.float32) * valid,
        "action_valid": valid,
        "terminated": np.zeros((size, 8), dtype=np.float32),
    }


def with_garbage_padding(arrays: dict[str, np.ndarray], seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in arrays.items()}
    out["frames"][0, :PADDED] = rng.integers(0, 256, (PADDED, 64, 64, 3), dtype=np.uint8)
    out["actions"][0, :PADDED] = rng.uniform(-1, 1, (PADDED, A))
    return out


def model_gradients(agent: SlacAgent, arrays: dict[str, np.ndarray]) -> tuple[float, dict]:
    batch = Batch.from_numpy(arrays, torch.device("cpu"))
    agent.model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    loss, _ = agent.model.loss(
        batch.images(), batch.actions, batch.rewards, batch.action_valid, agent._frame_mask(batch)
    )
    loss.backward()
    grads = {n: p.grad.clone() for n, p in agent.model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def test_padded_frames_give_no_model_gradient():
    agent = make_agent()
    assert agent.config.model_loss_on_padding is False  # the official default
    arrays = make_arrays(4)
    loss, grads = model_gradients(agent, arrays)
    garbage_loss, garbage_grads = model_gradients(agent, with_garbage_padding(arrays))
    assert garbage_loss == pytest.approx(loss, rel=1e-6)
    assert grads.keys() == garbage_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(garbage_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_model_loss_on_padding_learns_from_padding():
    agent = make_agent(model_loss_on_padding=True)
    arrays = make_arrays(4)
    loss, _ = model_gradients(agent, arrays)
    garbage_loss, _ = model_gradients(agent, with_garbage_padding(arrays))
    assert garbage_loss != pytest.approx(loss, rel=1e-3)


def test_filter_restarts_at_the_episode_start():
    """At the first real frame the z1 prior is N(0, I) and the posterior is q(z1 | x) alone."""
    agent = make_agent()
    batch = Batch.from_numpy(make_arrays(4), torch.device("cpu"))
    first = agent._first(batch)
    assert first[0].tolist() == [True, False, False, True] + [False] * 5
    assert first[1:].sum() == 3 and first[1:, 0].all()
    with torch.no_grad():
        features = agent.model.encode(batch.images(), 4)
        post = agent.model.sample_posterior(features, batch.actions, first)
        mean, std = agent.model.z1_prior_given_posterior(post, batch.actions, first)
        start_mean, start_std = agent.model.z1_init_posterior(features[0, PADDED])
    torch.testing.assert_close(mean[0, PADDED], torch.zeros_like(mean[0, PADDED]))
    torch.testing.assert_close(std[0, PADDED], torch.ones_like(std[0, PADDED]))
    torch.testing.assert_close(post.z1_post_mean[0, PADDED], start_mean)
    torch.testing.assert_close(post.z1_post_std[0, PADDED], start_std)


def test_replay_buffer_marks_padded_frames():
    buffer = ReplayBuffer(200, (64, 64, 3), A)
    for episode_length in (5, 12):
        buffer.start_episode(np.zeros((64, 64, 3), np.uint8))
        for _ in range(episode_length):
            buffer.add(np.zeros(A), 0.0, False, np.zeros((64, 64, 3), np.uint8))
    windows = buffer.windows(np.array([7, 9, 18]), np.array([6, 6, 6]))
    assert windows["frame_valid"].tolist() == [
        [False] * 7 + [True] * 2,  # ends one step after the episode's first frame (6)
        [False] * 5 + [True] * 4,
        [True] * 9,
    ]
    np.testing.assert_array_equal(windows["frame_valid"][:, :-1], windows["action_valid"])


def test_decoder_output_activation_builds_what_it_says():
    torch.manual_seed(0)
    linear, leaky = Decoder(12, 4, "linear"), Decoder(12, 4, "leaky_relu")
    leaky.load_state_dict(linear.state_dict())
    z = torch.randn(6, 12)
    with torch.no_grad():
        out_linear, out_leaky = linear(z), leaky(z)
    assert (out_linear < 0).any()
    torch.testing.assert_close(out_leaky, F.leaky_relu(out_linear, 0.2))
    assert make_agent().model.decoder.output_activation == "leaky_relu"  # the official default
    assert make_agent(decoder_output_activation="linear").model.decoder.output_activation == (
        "linear"
    )
    with pytest.raises(ValueError, match="decoder_output_activation"):
        small_test_config(decoder_output_activation="tanh")


def layers(agent: SlacAgent) -> list[torch.nn.Module]:
    kinds = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    modules = (agent.model, agent.actor, agent.critic)
    return [m for module in modules for m in module.modules() if isinstance(m, kinds)]


def glorot_bound(layer: torch.nn.Module) -> float:
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)
    return math.sqrt(6.0 / (fan_in + fan_out))


def test_glorot_init_builds_what_it_says():
    torch.manual_seed(0)
    paper = TrainConfig(task="cheetah-run", device="cpu").resolved(4)
    assert paper.init == "glorot"  # the official default
    agent = SlacAgent(paper, 6, "cpu")
    for layer in layers(agent):
        assert torch.count_nonzero(layer.bias) == 0
        bound = glorot_bound(layer)
        assert layer.weight.abs().max() <= bound
        if layer.weight.numel() >= 50_000:  # uniform(-b, b) has variance b^2 / 3
            variance = layer.weight.var().item()
            assert variance == pytest.approx(bound**2 / 3, rel=0.05), layer
    torch_init = make_agent(init="torch")
    assert all(torch.count_nonzero(layer.bias) > 0 for layer in layers(torch_init))


def test_single_batch_update_matches_a_hand_built_reference():
    """One batch of 8 windows, the model on its first 4: the same losses and parameters as the
    official structure written out by hand (one autograd encoder pass over the whole batch, the
    critic's latents from the posterior the model's loss uses, the model loss on [:4])."""
    agent = make_agent(seed=3)
    assert agent.config.update_structure == "single-batch"
    reference = copy.deepcopy(agent)
    batch = Batch.from_numpy(make_arrays(8, seed=5), torch.device("cpu"))
    torch.manual_seed(11)
    metrics = agent.update(batch)
    torch.manual_seed(11)
    expected = reference_update(reference, batch, model_windows=4)
    for key, value in expected.items():
        assert metrics[key].item() == pytest.approx(value, rel=1e-5, abs=1e-5), key
    for name in ("model", "actor", "critic", "critic_target"):
        for key, tensor in getattr(agent, name).state_dict().items():
            other = getattr(reference, name).state_dict()[key]
            torch.testing.assert_close(tensor, other, rtol=1e-5, atol=1e-6, msg=f"{name}.{key}")


def test_the_sac_step_switches_do_what_they_say():
    """sequential: the actor's loss sees the critic after its step (the same as simultaneous when
    the critic cannot move); actor: the temperature's loss reuses the actor's sample."""
    batch = Batch.from_numpy(make_arrays(8, seed=5), torch.device("cpu"))

    def updated(**changes):
        agent = make_agent(seed=3, init_log_alpha=-1.0, **changes)
        torch.manual_seed(11)
        return agent, {k: v.item() for k, v in agent.update(batch).items()}

    official, official_metrics = updated()
    sequential, sequential_metrics = updated(sac_steps="sequential")
    assert_same_params(official.critic, sequential.critic)  # the critic's step is the same
    assert sequential_metrics["actor/loss"] != official_metrics["actor/loss"]
    frozen, _ = updated(lr_critic=1e-12)
    frozen_sequential, _ = updated(lr_critic=1e-12, sac_steps="sequential")
    assert_same_params(frozen.actor, frozen_sequential.actor, rtol=1e-4)
    with pytest.raises(AssertionError):
        assert_same_params(official.actor, sequential.actor, rtol=1e-4)

    reused = updated(alpha_loss_sample="actor")[1]
    for metrics, same in ((reused, True), (official_metrics, False)):
        from_actor_sample = -1.0 * (metrics["actor/entropy"] + A)  # target entropy -|A|
        assert (metrics["alpha/loss"] == pytest.approx(from_actor_sample, rel=1e-6)) is same


def assert_same_params(a: torch.nn.Module, b: torch.nn.Module, rtol: float = 0.0) -> None:
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=rtol, atol=rtol * 1e-2, msg=key)


def reference_update(agent: SlacAgent, batch: Batch, model_windows: int) -> dict[str, float]:
    """The official single-batch update written out: all from one encoder pass; the same
    posterior noise order as :meth:`SlacAgent.update` (model windows first)."""
    model, m, c = agent.model, model_windows, agent.config
    features = model.encoder(batch.images()).reshape(batch.size, 9, -1)
    first = agent._first(batch)
    post = model.sample_posterior(features[:m], batch.actions[:m], first[:m])
    with torch.no_grad():
        rest = model.sample_posterior(features[m:], batch.actions[m:], first[m:])
    model_loss = reference_elbo(agent, batch, post, first[:m], m)

    z = torch.cat([post.z, rest.z]).detach()
    feats = features.detach()
    with torch.no_grad():
        alpha = agent.log_alpha.exp()
        next_action, next_log_prob = agent.actor.sample(
            actor_input(feats[:, 1:], batch.actions[:, 1:])
        )
        target_q = torch.min(*agent.critic_target(z[:, -1], next_action))
        target = batch.rewards[:, -1] + c.gamma * (target_q - alpha * next_log_prob)
    # every loss first, then every gradient, then the steps: the official _train's one tape
    q1, q2 = agent.critic(z[:, -2], batch.actions[:, -1])
    critic_loss = 0.5 * ((q1 - target).pow(2).mean() + (q2 - target).pow(2).mean())
    history = actor_input(feats[:, :-1], batch.actions[:, :-1])
    action, log_prob = agent.actor.sample(history)
    actor_loss = (alpha * log_prob - torch.min(*agent.critic(z[:, -2], action))).mean()
    _, fresh_log_prob = agent.actor.sample(history)  # the official alpha_loss draws its own action
    alpha_loss = agent.log_alpha * (-fresh_log_prob.detach().mean() - agent.target_entropy)
    steps = [
        (critic_loss, list(agent.critic.parameters()), agent.critic_optimizer),
        (actor_loss, list(agent.actor.parameters()), agent.actor_optimizer),
        (alpha_loss, [agent.log_alpha], agent.alpha_optimizer),
    ]
    grads = [torch.autograd.grad(loss, params) for loss, params, _ in steps]
    for (_, params, optimizer), param_grads in zip(steps, grads):
        for param, grad in zip(params, param_grads):
            param.grad = grad
        optimizer.step()
    with torch.no_grad():
        for target_p, p in zip(agent.critic_target.parameters(), agent.critic.parameters()):
            target_p.lerp_(p, c.target_update_tau)
    agent.model_optimizer.zero_grad()
    model_loss.backward()
    agent.model_optimizer.step()
    return {
        "model/loss": model_loss.item(),
        "critic/loss": critic_loss.item(),
        "actor/loss": actor_loss.item(),
        "alpha/loss": alpha_loss.item(),
    }


def reference_elbo(agent: SlacAgent, batch: Batch, post, first: torch.Tensor, m: int):
    """Negative ELBO of the first m windows, counting real frames only."""
    model = agent.model
    real = batch.frame_valid[:m]
    prior_mean, prior_std = model.z1_prior(post.z2[:, :-1], batch.actions[:m])
    zeros = torch.zeros_like(prior_mean[:, :1])
    prior_mean = torch.where(first[:, 1:, None], 0.0, prior_mean)
    prior_std = torch.where(first[:, 1:, None], 1.0, prior_std)
    prior_mean = torch.cat([zeros, prior_mean], 1)
    prior_std = torch.cat([torch.ones_like(zeros), prior_std], 1)
    kl = gaussian_kl(post.z1_post_mean, post.z1_post_std, prior_mean, prior_std).sum(-1)
    images = batch.images()[: m * 9].reshape(m, 9, 3, 64, 64)
    recon = model.decoder(post.z.reshape(m * 9, -1)).reshape(m, 9, 3, 64, 64)
    image_ll = gaussian_log_prob(images, recon, model.decoder_std).sum((2, 3, 4))
    reward_mean, reward_std = model.reward(post.z[:, :-1], batch.actions[:m], post.z[:, 1:])
    reward_ll = gaussian_log_prob(batch.rewards[:m], reward_mean[..., 0], reward_std[..., 0])
    elbo = (image_ll - kl) * real
    return -(elbo.sum(1) + (reward_ll * batch.action_valid[:m]).sum(1)).mean()


def test_official_defaults_and_legacy_reading():
    config = TrainConfig(task="walker-walk")
    assert PRESETS["paper"] == {}
    official = {
        "model_loss_on_padding": False,
        "decoder_output_activation": "leaky_relu",
        "init": "glorot",
        "update_structure": "single-batch",
        "sac_steps": "simultaneous",
        "alpha_loss_sample": "fresh",
        "fast_render": False,
        "eval_episodes": 10,
        "eval_every_env_steps": 10_000,
    }
    assert {k: getattr(config, k) for k in official} == official
    saved = config.to_dict()
    assert set(official) <= set(saved)  # every choice is in config.json and in checkpoints
    # a config written before the parity fields existed keeps the behaviour it was trained with
    old = {k: v for k, v in saved.items() if k not in LEGACY_DEFAULTS}
    assert {k: getattr(TrainConfig.from_dict(old), k) for k in LEGACY_DEFAULTS} == LEGACY_DEFAULTS
    assert TrainConfig.from_dict(saved) == config
    assert (
        PRESETS["cpu-small"]["fast_render"] is True and PRESETS["cpu-small"]["eval_episodes"] == 5
    )
    with pytest.raises(ValueError, match="batch_size_model"):
        TrainConfig(batch_size_model=300)
    TrainConfig(batch_size_model=300, update_structure="separate-batches")


def test_the_renderer_setting_reaches_the_environments(tmp_path):
    from slac_train.trainer import Trainer, env_options

    for suite in ("dmc", "gym", "dclaw"):
        assert env_options(small_test_config(fast_render=False), suite) == {"fast_render": False}
        assert env_options(small_test_config(fast_render=True), suite) == {"fast_render": True}
    with toy_task(action_repeat=2, length=24):  # a test suite drawn without MuJoCo
        assert env_options(small_test_config(), "test") == {}
        config = small_test_config(task=TOY_TASK, fast_render=False, run_dir=str(tmp_path / "r"))
        with Trainer(config):
            pass
    assert TrainConfig.load_json(tmp_path / "r" / "config.json").fast_render is False
