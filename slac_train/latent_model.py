"""The SLAC sequential latent variable model (two stochastic layers, z = (z1, z2)).

Notation: a window holds frames x_0..x_T and actions a_0..a_{T-1} (T = tau = 8); action a_t leads
from x_t to x_{t+1} and earns r_t. The paper indexes from 1; the code from 0.

Generative model p:
    p(z1_0) = N(0, I)
    p(z2_0 | z1_0)                              z2_init_prior
    p(z1_{t+1} | z2_t, a_t)                     z1_prior
    p(z2_{t+1} | z1_{t+1}, z2_t, a_t)           z2_prior
    p(x_t | z1_t, z2_t) = N(decoder(z), decoder_std^2)      fixed std
    p(r_t | z_t, a_t, z_{t+1})                  reward (learned std)
Inference model q:
    q(z1_0 | x_0)                               z1_init_posterior (on encoder features)
    q(z1_{t+1} | x_{t+1}, z2_t, a_t)            z1_posterior
    q(z2 | ...) = p(z2 | ...)                   the same networks, so KL(z2) = 0 exactly

Every conditional is a diagonal Gaussian from an MLP (2 x hidden, leaky ReLU), std = softplus +
1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from slac_train.networks import Decoder, Encoder, GaussianHead

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float
) -> torch.Tensor:
    """Elementwise log N(x; mean, std^2)."""
    if isinstance(std, float):
        return -0.5 * ((x - mean) / std).pow(2) - math.log(std) - _HALF_LOG_2PI
    return -0.5 * ((x - mean) / std).pow(2) - torch.log(std) - _HALF_LOG_2PI


def gaussian_kl(
    mean_q: torch.Tensor, std_q: torch.Tensor, mean_p: torch.Tensor, std_p: torch.Tensor
) -> torch.Tensor:
    """Elementwise analytic KL( N(mean_q, std_q^2) || N(mean_p, std_p^2) )."""
    var_ratio = (std_q / std_p).pow(2)
    mean_term = ((mean_q - mean_p) / std_p).pow(2)
    return 0.5 * (var_ratio + mean_term - 1.0 - torch.log(var_ratio))


def first_frames(frame_mask: torch.Tensor) -> torch.Tensor:
    """bool[B, T+1]: where a window's filter starts -- step 0 and the first real frame after
    start-of-episode padding (``frame_mask`` 0 on padded frames, 1 on real ones)."""
    real = frame_mask > 0
    first = torch.ones_like(real)
    first[:, 1:] = real[:, 1:] & ~real[:, :-1]
    return first


@torch.no_grad()
def _reward_metrics(
    reward_mean: torch.Tensor, rewards: torch.Tensor, reward_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Mean squared error of the reward model and the fraction of variance it explains."""
    count = reward_mask.sum().clamp_min(1.0)
    reward_mse = ((reward_mean - rewards).pow(2) * reward_mask).sum() / count
    reward_var = (
        (rewards - (rewards * reward_mask).sum() / count).pow(2) * reward_mask
    ).sum() / count
    return {
        "model/reward_mse": reward_mse,
        # Fraction of the batch's reward variance the model explains (0 where the rewards do not
        # vary). Near 0, the model predicts no more than the mean reward: the latent state carries
        # nothing the reward depends on yet, so the critic cannot learn either.
        "model/reward_explained": torch.where(
            reward_var > 1e-8,
            1.0 - reward_mse / reward_var.clamp_min(1e-8),
            torch.zeros_like(reward_var),
        ),
    }


@dataclass
class PosteriorSample:
    """Filtering-posterior sample of a window, with the z1 posterior and prior parameters."""

    z1: torch.Tensor  # [B, T+1, z1_dim]
    z2: torch.Tensor  # [B, T+1, z2_dim]
    z1_post_mean: torch.Tensor  # [B, T+1, z1_dim]
    z1_post_std: torch.Tensor  # [B, T+1, z1_dim]

    @property
    def z(self) -> torch.Tensor:  # [B, T+1, z1_dim + z2_dim]
        return torch.cat([self.z1, self.z2], dim=-1)


class LatentModel(nn.Module):
    """Encoder, decoder, priors, posteriors and reward model of SLAC, and its negative ELBO."""

    def __init__(
        self,
        action_dim: int,
        feature_dim: int = 256,
        z1_dim: int = 32,
        z2_dim: int = 256,
        hidden: int = 256,
        base_channels: int = 32,
        decoder_std: float = math.sqrt(0.1),
        decoder_output_activation: str = "linear",
    ) -> None:
        super().__init__()
        self.action_dim, self.z1_dim, self.z2_dim = action_dim, z1_dim, z2_dim
        self.decoder_std = float(decoder_std)
        a, z = action_dim, z1_dim + z2_dim
        self.encoder = Encoder(
            base_channels, feature_dim
        )  # x_t -> feature_t, shared with the actor
        self.decoder = Decoder(z, base_channels, decoder_output_activation)  # p(x_t | z1_t, z2_t)
        self.z2_init_prior = GaussianHead(z1_dim, z2_dim, hidden)  # p(z2_0 | z1_0) = q(z2_0 | z1_0)
        self.z1_prior = GaussianHead(z2_dim + a, z1_dim, hidden)  # p(z1_{t+1} | z2_t, a_t)
        self.z2_prior = GaussianHead(
            z1_dim + z2_dim + a, z2_dim, hidden
        )  # p(z2_{t+1} | z1_{t+1}, z2_t, a_t)
        self.z1_init_posterior = GaussianHead(feature_dim, z1_dim, hidden)  # q(z1_0 | x_0)
        self.z1_posterior = GaussianHead(
            feature_dim + z2_dim + a, z1_dim, hidden
        )  # q(z1_{t+1} | x_{t+1}, z2_t, a_t)
        self.reward = GaussianHead(2 * z + a, 1, hidden)  # p(r_t | z_t, a_t, z_{t+1})

    # ------------------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor, batch: int) -> torch.Tensor:
        """images[B*(T+1), 3, 64, 64] -> features[B, T+1, F] (with autograd)."""
        return self.encoder(images).reshape(batch, -1, self.encoder.feature_dim)

    def sample_posterior(
        self,
        features: torch.Tensor,
        actions: torch.Tensor,
        first: torch.Tensor | None = None,
    ) -> PosteriorSample:
        """Filter a window: features[B, T+1, F], actions[B, T, A] -> reparameterised z samples.

        ``first[B, T+1]`` (bool, optional) marks the episode's first frame inside a padded window:
        there the filter restarts from q(z1 | x) and p(z2 | z1) and nothing of the steps before it
        (start-of-episode padding) reaches it, as the official ``sample_posterior`` restarts at
        ``StepType.FIRST`` (model_distribution_network.py). Step 0 always starts the filter.
        """
        steps = features.shape[1]
        # q(z1_t | x_t) at every step where the filter may (re)start: one batched call
        init_mean, init_std = self.z1_init_posterior(features[:, :1] if first is None else features)
        z1s, z2s, means, stds = [], [], [], []
        for t in range(steps):
            if t == 0:
                mean, std = init_mean[:, 0], init_std[:, 0]  # q(z1_0 | x_0)
            else:
                # q(z1_t | x_t, z2_{t-1}, a_{t-1})
                mean, std = self.z1_posterior(features[:, t], z2s[-1], actions[:, t - 1])
                if first is not None:
                    start = (init_mean[:, t], init_std[:, t])
                    mean, std = self._restart(first, t, start, (mean, std))
            z1 = mean + std * torch.randn_like(std)
            if t == 0:
                z2_mean, z2_std = self.z2_init_prior(z1)  # q(z2_0 | z1_0) = p(z2_0 | z1_0)
            else:
                # p(z2_t | z1_t, z2_{t-1}, a_{t-1}); p(z2_t | z1_t) where the filter restarts
                z2_mean, z2_std = self.z2_prior(z1, z2s[-1], actions[:, t - 1])
                if first is not None:
                    start = self.z2_init_prior(z1)
                    z2_mean, z2_std = self._restart(first, t, start, (z2_mean, z2_std))
            z2 = z2_mean + z2_std * torch.randn_like(z2_std)
            z1s.append(z1)
            z2s.append(z2)
            means.append(mean)
            stds.append(std)
        return PosteriorSample(
            z1=torch.stack(z1s, 1),
            z2=torch.stack(z2s, 1),
            z1_post_mean=torch.stack(means, 1),
            z1_post_std=torch.stack(stds, 1),
        )

    @staticmethod
    def _restart(
        first: torch.Tensor,
        t: int,
        start: tuple[torch.Tensor, torch.Tensor],
        step: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussian ``start`` where ``first[:, t]``, else ``step``."""
        where = first[:, t, None]
        return torch.where(where, start[0], step[0]), torch.where(where, start[1], step[1])

    def z1_prior_given_posterior(
        self, post: PosteriorSample, actions: torch.Tensor, first: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior parameters of z1 for every step of a window, conditioned on the POSTERIOR z2.

        Step 0 and every step ``first`` marks: N(0, I). Step t+1: p(z1_{t+1} | z2_t ~ q, a_t).
        Returns ``(mean, std)[B, T+1, z1]``.
        """
        batch, steps = post.z1.shape[:2]
        mean, std = self.z1_prior(
            post.z2[:, :-1].reshape(-1, self.z2_dim), actions.reshape(-1, self.action_dim)
        )
        mean = mean.reshape(batch, steps - 1, self.z1_dim)
        std = std.reshape(batch, steps - 1, self.z1_dim)
        mean = torch.cat([torch.zeros_like(mean[:, :1]), mean], dim=1)
        std = torch.cat([torch.ones_like(std[:, :1]), std], dim=1)
        if first is not None:
            mean = torch.where(first[..., None], torch.zeros_like(mean), mean)
            std = torch.where(first[..., None], torch.ones_like(std), std)
        return mean, std

    def reward_distribution(
        self, z: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """p(r_t | z_t, a_t, z_{t+1}) for t = 0..T-1: z[B, T+1, Z], actions[B, T, A] ->
        (mean, std)[B, T]."""
        mean, std = self.reward(z[:, :-1], actions, z[:, 1:])
        return mean.squeeze(-1), std.squeeze(-1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z[B, T+1, Z] -> image means[B, T+1, 3, 64, 64]."""
        batch, steps = z.shape[:2]
        return self.decoder(z.reshape(batch * steps, -1)).reshape(
            batch, steps, *self._image_shape()
        )

    @staticmethod
    def _image_shape() -> tuple[int, int, int]:
        return (3, 64, 64)

    # ------------------------------------------------------------------------------------------
    def loss(
        self,
        images: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        reward_mask: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        post: PosteriorSample | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Negative ELBO of a batch of windows, averaged over the batch.

        images[B*(T+1), 3, 64, 64] in [0, 1] (window-major), actions[B, T, A], rewards[B, T],
        reward_mask[B, T] (0 where the action is start-of-episode padding). Summed over time:
        - log p(x_t | z_t) over pixels, - log p(r_t | ...) where the mask is 1,
        + KL(q(z1_t) || p(z1_t)), with p(z1_{t+1}) conditioned on the posterior sample of z2_t.

        ``frame_mask[B, T+1]`` (optional; 0 where a frame is start-of-episode padding): the filter
        restarts at the episode's first frame (prior N(0, I) there) and the KL and image terms
        count only real frames, so no gradient comes from padding -- the official model's
        behaviour (model_distribution_network.py ``compute_loss``: reset masks at
        ``StepType.FIRST``). Without it every step counts, padding included.
        ``features`` / ``post``: this batch's encoder features and posterior sample, when the
        caller has computed them already (:meth:`SlacAgent.update`, one encoder pass).
        """
        batch = actions.shape[0]
        first = None if frame_mask is None else first_frames(frame_mask)
        if post is None:
            if features is None:
                features = self.encode(images, batch)  # [B, T+1, F]
            post = self.sample_posterior(features, actions, first)
        prior_mean, prior_std = self.z1_prior_given_posterior(post, actions, first)
        kl = gaussian_kl(post.z1_post_mean, post.z1_post_std, prior_mean, prior_std).sum(-1)

        z = post.z  # [B, T+1, Z]
        recon = self.decoder(z.reshape(-1, z.shape[-1]))  # [B*(T+1), 3, 64, 64]
        # sum over pixels of log N(x; recon, std^2)
        #   = -0.5 sse / std^2 - pixels * (log std + log sqrt(2 pi)),
        # written so that only two image-sized temporaries exist (forward and backward)
        squared_error = (recon - images).pow(2).sum((1, 2, 3)).reshape(batch, -1)  # [B, T+1]
        pixels = images[0].numel()
        std = self.decoder_std
        image_ll = (-0.5 / std**2) * squared_error - pixels * (math.log(std) + _HALF_LOG_2PI)
        if frame_mask is not None:
            kl = kl * frame_mask
            image_ll = image_ll * frame_mask
            squared_error = squared_error * frame_mask

        reward_mean, reward_std = self.reward_distribution(z, actions)  # [B, T]
        reward_ll = gaussian_log_prob(rewards, reward_mean, reward_std) * reward_mask

        kl_sum = kl.sum(1).mean()
        image_ll_sum = image_ll.sum(1).mean()
        reward_ll_sum = reward_ll.sum(1).mean()
        loss = kl_sum - image_ll_sum - reward_ll_sum
        frames = squared_error.numel() if frame_mask is None else frame_mask.sum().clamp_min(1.0)
        metrics = {
            "model/loss": loss.detach(),
            "model/kl": kl_sum.detach(),
            "model/image_nll": -image_ll_sum.detach(),
            "model/reward_nll": -reward_ll_sum.detach(),
            "model/image_mse": squared_error.detach().sum() / (frames * pixels),
        }
        metrics.update(_reward_metrics(reward_mean.detach(), rewards, reward_mask))
        return loss, metrics

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct_and_predict(
        self, images: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For the paper's Fig. 7: posterior reconstruction and open-loop prior prediction.

        images[T+1, 3, 64, 64], actions[T, A] of one sequence. The prior rollout is conditioned
        on the first frame only: z1_0 ~ q(z1_0 | x_0), z2_0 ~ p(z2_0 | z1_0), then
        z_{t+1} ~ p(. | z_t, a_t).
        Returns (posterior means, prior means), each [T+1, 3, 64, 64].
        """
        features = self.encoder(images)[None]  # [1, T+1, F]
        acts = actions[None]
        post = self.sample_posterior(features, acts)
        posterior_images = self.decode(post.z)[0]
        z1, z2 = post.z1[:, 0], post.z2[:, 0]
        z1s, z2s = [z1], [z2]
        for t in range(acts.shape[1]):
            mean, std = self.z1_prior(z2, acts[:, t])
            z1_next = mean + std * torch.randn_like(std)
            mean, std = self.z2_prior(z1_next, z2, acts[:, t])
            z2 = mean + std * torch.randn_like(std)
            z1 = z1_next
            z1s.append(z1)
            z2s.append(z2)
        prior_z = torch.cat([torch.stack(z1s, 1), torch.stack(z2s, 1)], dim=-1)
        return posterior_images.clamp(0, 1), self.decode(prior_z)[0].clamp(0, 1)
