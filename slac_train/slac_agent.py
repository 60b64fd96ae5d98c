"""The SLAC agent: latent model, actor, twin critics, temperature; their losses and updates; acting.

One update step (per agent step after pre-training) is, with ``update_structure``:

- ``single-batch`` (the official structure): :meth:`SlacAgent.update` on one batch of 256
  windows, encoded once; the model trains on its first 32 windows with the posterior samples the
  critic uses (the official ``SlacAgent._train`` computes every loss from one ``sample_posterior``
  and its ``model_loss`` keeps ``[:model_batch_size]``);
- ``separate-batches``: :meth:`SlacAgent.update_model` on a batch of 32 windows, then
  :meth:`SlacAgent.update_actor_critic` (critic, actor, alpha, Polyak) on a separate batch of 256.

A window holds 9 frames x_0..x_8 and 8 actions a_0..a_7.

Beyond the paper (each off by default, :class:`~slac_train.config.TrainConfig`): a critic ensemble
of ``num_critics`` Q networks with LayerNorm (RLPD), a target over a random subset of them
(``critic_target_subset``) and the actor on their mean (``actor_q``); the actor and temperature
held for ``actor_warmup_updates`` while the critic learns; a behaviour-cloning term on a batch's
demonstration windows that fades (``bc_weight``, ``bc_decay_updates``); an encoder the model does
not train (``freeze_encoder``).

Both update methods return metrics as a dict of 0-d detached tensors (no device -> host copy per
step); call :func:`metrics_to_floats` when logging.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from slac_runtime.history import ACTOR_FRAMES, History
from slac_train.config import TrainConfig
from slac_train.latent_model import LatentModel, first_frames
from slac_train.networks import (
    CriticEnsemble,
    PixelPolicy,
    ResidualActor,
    TanhGaussianActor,
    actor_input,
    glorot_init_,
    preprocess_frames,
)
from slac_train.replay_buffer import frame_validity


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} was asked for, but torch sees no CUDA GPU on this machine"
        )
    return device


@dataclass
class Batch:
    """A batch of windows on the agent's device.

    frames uint8[B, 9, H, W, 3]; actions float[B, 8, A] (zero where padding); rewards float[B, 8];
    action_valid float[B, 8] (0 where the action is start-of-episode padding); terminated
    float[B, 8] (1 where action t led to a terminal state; truncation is not termination);
    frame_valid float[B, 9] (0 where the frame is start-of-episode padding; from ``action_valid``
    when not given). With demonstrations (``slac_train.demonstrations``): demo float[B] (1 for a
    demonstration window) and bc_target float[B, A] (its demonstrated last action).
    """

    frames: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    action_valid: torch.Tensor
    terminated: torch.Tensor
    frame_valid: torch.Tensor | None = None
    demo: torch.Tensor | None = None
    bc_target: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.frame_valid is None:
            ones = torch.ones_like(self.action_valid[:, :1])
            self.frame_valid = torch.cat([self.action_valid, ones], dim=1)

    @classmethod
    def from_numpy(cls, arrays: Mapping[str, np.ndarray], device: torch.device) -> Batch:
        cuda = device.type == "cuda"

        def put(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            if cuda:
                tensor = tensor.pin_memory()
            return tensor.to(device=device, dtype=dtype, non_blocking=cuda)

        return cls(
            frames=put(arrays["frames"], torch.uint8),
            actions=put(arrays["actions"], torch.float32),
            rewards=put(arrays["rewards"], torch.float32),
            action_valid=put(arrays["action_valid"], torch.float32),
            terminated=put(arrays["terminated"], torch.float32),
            frame_valid=put(
                arrays["frame_valid"]
                if "frame_valid" in arrays
                else frame_validity(arrays["action_valid"]),
                torch.float32,
            ),
            demo=put(arrays["demo"], torch.float32) if "demo" in arrays else None,
            bc_target=put(arrays["bc_target"], torch.float32) if "bc_target" in arrays else None,
        )

    @property
    def size(self) -> int:
        return self.frames.shape[0]

    def first(self, size: int) -> Batch:
        """The batch's first ``size`` windows (views, no copies)."""
        return Batch(**{k: None if v is None else v[:size] for k, v in vars(self).items()})

    def images(self) -> torch.Tensor:
        """float[B*9, 3, H, W] in [0, 1], window-major, channels-last."""
        return preprocess_frames(self.frames.reshape(-1, *self.frames.shape[2:]))


def _backward(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    _backward(optimizer, loss)
    optimizer.step()


def metrics_to_floats(metrics: Mapping[str, torch.Tensor]) -> dict[str, float]:
    if not metrics:
        return {}
    keys = list(metrics)
    values = torch.stack([metrics[k].detach().float().reshape(()) for k in keys]).cpu().tolist()
    return dict(zip(keys, values))


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or inf; the message names the loss (and the trainer adds the step)."""

    def __init__(self, names: list[str], step: int | None = None) -> None:
        self.names = names
        self.step = step
        where = f" at update step {step}" if step is not None else ""
        super().__init__(f"non-finite loss{where}: {', '.join(names)}")


def check_finite(metrics: Mapping[str, torch.Tensor], step: int | None = None) -> None:
    """Raise :class:`NonFiniteLossError` naming every non-finite loss in ``metrics`` (one sync)."""
    keys = [k for k in metrics if k.endswith("loss")]
    if not keys:
        return
    finite = torch.stack([torch.isfinite(metrics[k]).reshape(()) for k in keys]).cpu().tolist()
    bad = [k for k, ok in zip(keys, finite) if not ok]
    if bad:
        raise NonFiniteLossError(bad, step)


def reduce_q(qs: tuple[torch.Tensor, ...], how: str) -> torch.Tensor:
    """``min`` or ``mean`` over Q values ``qs`` (each ``[B]``)."""
    if how == "mean":
        return torch.stack(qs).mean(0)
    if len(qs) == 1:
        return qs[0]
    return torch.min(*qs) if len(qs) == 2 else torch.stack(qs).min(0).values


class SlacAgent:
    """Latent model + actor + critic ensemble (+ targets) + log alpha, with one Adam optimiser
    each."""

    def __init__(
        self, config: TrainConfig, action_dim: int, device: torch.device | str = "cpu"
    ) -> None:
        if config.decoder_std is None:
            raise ValueError(
                "SlacAgent needs a resolved config (TrainConfig.resolved()): decoder_std is unset"
            )
        self.config = config
        self.action_dim = action_dim
        self.device = torch.device(device)
        c = config
        self.model = LatentModel(
            action_dim,
            c.feature_dim,
            c.z1_dim,
            c.z2_dim,
            c.model_hidden,
            c.encoder_base_channels,
            c.decoder_std,
            c.decoder_output_activation,
        )
        self.actor_input_dim = ACTOR_FRAMES * c.feature_dim + (ACTOR_FRAMES - 1) * action_dim
        if c.residual_actor:
            self.actor = ResidualActor(
                self.actor_input_dim, action_dim, c.actor_critic_hidden, c.residual_scale
            )
        else:
            self.actor = TanhGaussianActor(self.actor_input_dim, action_dim, c.actor_critic_hidden)
        latent_dim = c.z1_dim + c.z2_dim
        self.critic = CriticEnsemble(
            latent_dim, action_dim, c.actor_critic_hidden, c.num_critics, c.critic_layer_norm
        )
        if c.init == "glorot":  # the official layers' initialisation (networks.glorot_init_)
            for module in (self.model, self.actor, self.critic):
                glorot_init_(module)
            if c.residual_actor:
                self.actor.zero_residual_()
        self.model.to(self.device, memory_format=torch.channels_last)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(
            float(c.init_log_alpha), device=self.device, requires_grad=True
        )
        self.target_entropy = (
            float(c.target_entropy) if c.target_entropy is not None else -float(action_dim)
        )

        model_params = list(self.model.parameters())
        if c.freeze_encoder:  # the model learns on top of the encoder's features, not into them
            self.model.encoder.requires_grad_(False)
            model_params = [p for p in model_params if p.requires_grad]
        self.model_optimizer = torch.optim.Adam(model_params, lr=c.lr_model)
        self.actor_optimizer = torch.optim.Adam(
            [p for p in self.actor.parameters() if p.requires_grad], lr=c.lr_actor
        )
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=c.lr_critic)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=c.lr_alpha)
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())

    # ------------------------------------------------------------------------------------------
    @property
    def encoder(self):
        """The pixel encoder (shared by the latent model's posterior and the actor)."""
        return self.model.encoder

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def policy(self) -> PixelPolicy:
        """Encoder + actor as one module (what ``act`` runs; what the ONNX export wraps)."""
        return PixelPolicy(self.encoder, self.actor)

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(
        self, history: History | tuple[np.ndarray, np.ndarray], deterministic: bool = False
    ) -> np.ndarray:
        """One action in [-1, 1] from the last 8 frames and 7 actions.

        ``history`` is a :class:`slac_runtime.history.History` of uint8 frames (length 8) or a tuple
        ``(frames_uint8[8, H, W, 3], prev_actions[7, A])``.
        """
        if isinstance(history, History):
            frames, prev_actions = history.items, history.actions
        else:
            frames, prev_actions = history
        frames_t = torch.as_tensor(np.asarray(frames, dtype=np.uint8), device=self.device)
        actions_t = torch.as_tensor(np.asarray(prev_actions, dtype=np.float32), device=self.device)
        features = self.encoder.features_no_grad(
            preprocess_frames(frames_t), fast=self.config.fast_encoder
        )
        x = actor_input(features[None], actions_t[None])
        action = self.actor.deterministic(x) if deterministic else self.actor.sample(x)[0]
        return action[0].cpu().numpy().astype(np.float32)

    # ------------------------------------------------------------------------------------------
    def _frame_mask(self, batch: Batch) -> torch.Tensor | None:
        """The model's frame mask: None (every step counts) with ``model_loss_on_padding``."""
        return None if self.config.model_loss_on_padding else batch.frame_valid

    def _first(self, batch: Batch) -> torch.Tensor | None:
        """Where the filter restarts inside the batch's windows (None: at step 0 only)."""
        mask = self._frame_mask(batch)
        return None if mask is None else first_frames(mask)

    def update_model(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One Adam step on the negative ELBO of a batch of windows (encoder included)."""
        self.model.train()
        loss, metrics = self.model.loss(
            batch.images(),
            batch.actions,
            batch.rewards,
            batch.action_valid,
            self._frame_mask(batch),
        )
        self._model_step(loss)
        return metrics

    def _model_step(self, loss: torch.Tensor) -> None:
        self.model_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.model_optimizer.step()

    def update_actor_critic(self, batch: Batch, update_index: int = 0) -> dict[str, torch.Tensor]:
        """Critic, actor and alpha steps on one batch, then the Polyak update of the target critics.

        The latent samples come from the filtering posterior (no gradient: the critic does not
        train the model), restarted at the episode's first frame unless ``model_loss_on_padding``;
        the actor sees detached encoder features, so it never moves the encoder. ``update_index``:
        actor-critic updates made before this one (the warm-up's and the cloning term's clock).
        """
        size = batch.size
        with torch.no_grad():
            features = self.encoder.features_no_grad(batch.images(), fast=self.config.fast_encoder)
            features = features.reshape(size, -1, features.shape[-1])  # [B, 9, F]
            z = self.model.sample_posterior(features, batch.actions, self._first(batch)).z
        return self._actor_critic_step(batch, features, z, update_index)

    def update(self, batch: Batch, update_index: int = 0) -> dict[str, torch.Tensor]:
        """The official single-batch update: model, critic, actor, alpha and Polyak steps on one
        batch, every frame encoded once.

        The model trains on the batch's first ``batch_size_model`` windows; their features and
        posterior samples (with autograd) are the ones the critic and actor see (detached), and the
        other windows are encoded and filtered without autograd. The critic's inputs are
        stop-gradient and the actor's features detached, as in :meth:`update_actor_critic`, so
        sharing the pass changes no critic or actor gradient; the latent samples are those of the
        model before this update's model step (the official ``SlacAgent._train`` computes all four
        losses before it applies any gradient).
        """
        self.model.train()
        m, size = self.config.batch_size_model, batch.size
        images, first = batch.images(), self._first(batch)
        model_batch = batch.first(m)
        frames = images.shape[0] // size
        features = self.model.encode(images[: m * frames], m)  # [m, 9, F], with autograd
        post = self.model.sample_posterior(
            features, model_batch.actions, None if first is None else first[:m]
        )
        with torch.no_grad():
            rest = self.encoder.features_no_grad(
                images[m * frames :], fast=self.config.fast_encoder
            ).reshape(size - m, frames, -1)
            rest_z = self.model.sample_posterior(
                rest, batch.actions[m:], None if first is None else first[m:]
            ).z
            all_features = torch.cat([features.detach(), rest], dim=0)
            all_z = torch.cat([post.z.detach(), rest_z], dim=0)
        loss, metrics = self.model.loss(
            images[: m * frames],
            model_batch.actions,
            model_batch.rewards,
            model_batch.action_valid,
            self._frame_mask(model_batch),
            post=post,
        )
        self._model_step(loss)
        metrics.update(self._actor_critic_step(batch, all_features, all_z, update_index))
        return metrics

    def bc_weight_at(self, update_index: int) -> float:
        """The cloning term's weight at actor-critic update ``update_index``: ``bc_weight``,
        falling linearly to 0 over ``bc_decay_updates`` (0: constant)."""
        c = self.config
        if c.bc_decay_updates <= 0:
            return float(c.bc_weight)
        return float(c.bc_weight) * max(0.0, 1.0 - update_index / c.bc_decay_updates)

    def _target_min(self, qs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The minimum over a random ``critic_target_subset`` of the target Q values (over all of
        them when the subset is the whole ensemble: no random draw)."""
        subset = self.config.critic_target_subset
        if subset < len(qs):
            chosen = torch.randperm(len(qs))[:subset].tolist()
            qs = tuple(qs[i] for i in chosen)
        return reduce_q(qs, "min")

    def _reparameterised_loss(
        self, z_now: torch.Tensor, action: torch.Tensor, log_prob: torch.Tensor, alpha
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, Q[B])``: SAC's actor loss E[alpha log pi(a|h) - Q(z, a)] at a sampled action,
        Q the ``actor_q`` reduction over the Q networks, the critic held fixed."""
        self.critic.requires_grad_(False)
        q_pi = reduce_q(self.critic(z_now, action), self.config.actor_q)
        self.critic.requires_grad_(True)
        return (alpha * log_prob - q_pi).mean(), q_pi

    def _advantage_weighted_loss(
        self,
        input_now: torch.Tensor,
        z_now: torch.Tensor,
        action: torch.Tensor,
        metrics: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, Q of the policy's deterministic action[B])``: AWAC's actor loss (Nair et al.
        2020), minus the batch mean of w log pi(a | h) over the windows' own last actions ``a``,

            A = Q(z, a) - Q(z, tanh(mean(h))),  w = B softmax(A / (temperature x std(A)))

        with Q the ensemble's ``actor_q`` reduction. The critic only ranks actions the data show;
        its gradient in the action never reaches the actor.
        """
        with torch.no_grad():
            reduction = self.config.actor_q
            q_data = reduce_q(self.critic(z_now, action), reduction)
            q_policy = reduce_q(self.critic(z_now, self.actor.deterministic(input_now)), reduction)
            advantage = q_data - q_policy
            spread = advantage.std().clamp(min=1e-6)
            scale = self.config.advantage_temperature * spread
            weights = torch.softmax(advantage / scale, dim=0) * advantage.numel()
        metrics["actor/advantage_std"] = spread
        metrics["actor/advantage_positive"] = (advantage > 0).float().mean()
        metrics["actor/weight_max"] = weights.max()
        loss = -(weights * self.actor.log_prob(input_now, action)).mean()
        return loss, q_policy

    def _bc_term(
        self, batch: Batch, input_now: torch.Tensor, q_pi: torch.Tensor, weight: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(term, squared error)``: weight x mean|Q| x the mean over the batch's demonstration
        windows of the squared error of tanh(mean) to the demonstrated action (TD3+BC's scale)."""
        demo = batch.demo
        mean = self.actor(input_now)[0]
        error = (torch.tanh(mean) - batch.bc_target).pow(2).sum(-1)
        mse = (error * demo).sum() / demo.sum().clamp(min=1.0)
        return weight * q_pi.detach().abs().mean() * mse, mse.detach()

    def _critic_actor_steps(
        self, critic_loss: torch.Tensor, actor_loss: torch.Tensor, held: bool
    ) -> None:
        """The critic's and (unless ``held``) the actor's optimiser steps; ``sac_steps``
        sequential has applied the critic's already."""
        simultaneous = self.config.sac_steps == "simultaneous"
        if held:
            if simultaneous:
                _step(self.critic_optimizer, critic_loss)
        elif simultaneous:  # both gradients before either step (the actor's graph reads the
            _backward(self.critic_optimizer, critic_loss)  # critic's weights)
            _backward(self.actor_optimizer, actor_loss)
            self.critic_optimizer.step()
            self.actor_optimizer.step()
        else:
            _step(self.actor_optimizer, actor_loss)

    def _critic_transition(
        self, batch: Batch, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, action, scaled return, discount of the bootstrap)`` of the transition the critic
        learns from, each ``[B, ...]``, for ``critic_n_step`` n.

        n = 1: the window's last step, ``(z_tau, a_tau, r_tau, gamma)``. n > 1: the step n back
        from the window's end, or its episode's first step where the window holds fewer than n
        real actions (start-of-episode padding), with the discounted sum of the rewards from there
        to the end and gamma to the power of the steps summed. A terminal state can only be the
        window's last (a window never crosses an episode's end), so the caller's
        ``(1 - terminated[:, -1])`` stays right.
        """
        c = self.config
        if c.critic_n_step == 1:
            return z[:, -2], batch.actions[:, -1], batch.rewards[:, -1] * c.reward_scale, c.gamma
        length = batch.rewards.shape[1]
        steps = batch.action_valid.sum(1).long().clamp(min=1, max=c.critic_n_step)  # [B]
        start = length - steps
        rows = torch.arange(batch.size, device=z.device)
        offset = torch.arange(length, device=z.device)[None] - start[:, None]  # [B, T]
        weights = torch.where(offset >= 0, c.gamma ** offset.clamp(min=0).float(), 0.0)
        reward = (batch.rewards * weights).sum(1) * c.reward_scale
        return z[rows, start], batch.actions[rows, start], reward, c.gamma ** steps.float()

    def _actor_critic_step(
        self, batch: Batch, features: torch.Tensor, z: torch.Tensor, update_index: int = 0
    ) -> dict[str, torch.Tensor]:
        """Critic, actor, alpha and Polyak steps from the batch's (detached) encoder features
        ``[B, 9, F]`` and posterior sample ``z[B, 9, Z]``.

        ``sac_steps`` simultaneous (official): every loss from the parameters before this update,
        then the steps; sequential: the critic steps before the actor's loss is computed.
        ``alpha_loss_sample`` fresh (official): the temperature's loss draws its own action.
        Within ``actor_warmup_updates`` the actor and alpha losses are computed (and logged) but
        not applied.
        """
        c = self.config
        with torch.no_grad():
            z_now, z_next = z[:, -2], z[:, -1]  # z_tau, z_{tau+1}: one joint posterior sample
            input_now = actor_input(features[:, :-1], batch.actions[:, :-1])  # x_0..7, a_0..6
            input_next = actor_input(features[:, 1:], batch.actions[:, 1:])  # x_1..8, a_1..7
            alpha = self.log_alpha.exp()

            # target:
            # r + gamma (1 - terminated) (min Q'(z_{tau+1}, a') - alpha log pi(a' | history))
            next_action, next_log_prob = self.actor.sample(input_next)
            soft_value = (
                self._target_min(self.critic_target(z_next, next_action)) - alpha * next_log_prob
            )
            z_critic, action_critic, reward, discount = self._critic_transition(batch, z)
            target = reward + discount * (1.0 - batch.terminated[:, -1]) * soft_value

        qs = self.critic(z_critic, action_critic)
        critic_loss = 0.5 * sum(F.mse_loss(q, target) for q in qs)
        if c.sac_steps == "sequential":
            _step(self.critic_optimizer, critic_loss)

        # critic_loss: half the sum over the Q networks of each one's mean squared TD error.
        # actor: minimise E[alpha log pi(a|h) - Q(z_tau, a)], Q the minimum (or the mean:
        # actor_q) over the Q networks; the critic is held fixed.
        new_action, log_prob = self.actor.sample(input_now)
        metrics: dict[str, torch.Tensor] = {}
        if c.actor_update == "advantage-weighted":
            actor_loss, q_pi = self._advantage_weighted_loss(
                input_now, z_now, batch.actions[:, -1], metrics
            )
        else:
            actor_loss, q_pi = self._reparameterised_loss(z_now, new_action, log_prob, alpha)
        bc_weight = self.bc_weight_at(update_index) if c.bc_weight > 0 else 0.0
        if c.bc_weight > 0 and batch.demo is not None:  # (measured also once faded out)
            term, mse = self._bc_term(batch, input_now, q_pi, bc_weight)
            actor_loss = actor_loss + term
            metrics["actor/bc_mse"] = mse
        alpha_log_prob = log_prob.detach()
        if c.alpha_loss_sample == "fresh":
            with torch.no_grad():
                alpha_log_prob = self.actor.sample(input_now)[1]
        held = update_index < c.actor_warmup_updates
        self._critic_actor_steps(critic_loss, actor_loss, held)

        alpha_loss = self.log_alpha * (-alpha_log_prob.mean() - self.target_entropy)
        if not held:
            _step(self.alpha_optimizer, alpha_loss)

        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, c.target_update_tau)

        metrics.update(
            {
                "critic/loss": critic_loss.detach(),
                "critic/q1": qs[0].detach().mean(),
                "critic/target": target.mean(),
                "actor/loss": actor_loss.detach(),
                "actor/entropy": -log_prob.detach().mean(),
                "alpha/loss": alpha_loss.detach(),
                "alpha/value": alpha,
            }
        )
        if c.actor_warmup_updates > 0 or c.bc_weight > 0:
            metrics["actor/held"] = torch.tensor(float(held), device=self.device)
            metrics["actor/bc_weight"] = torch.tensor(bc_weight, device=self.device)
        return metrics

    # ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything learned or stateful: networks, target critics, optimisers, log alpha."""
        return {
            "model": self.model.state_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "model_optimizer": self.model_optimizer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.model.load_state_dict(state["model"])
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"].to(self.device))
        self.model_optimizer.load_state_dict(state["model_optimizer"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
