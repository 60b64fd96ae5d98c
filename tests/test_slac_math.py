"""The SLAC learner's math: analytic KL, tanh-Gaussian log-probability,
network shapes and fast paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slac_train.latent_model import gaussian_kl, gaussian_log_prob
from slac_train.networks import (
    Decoder,
    Encoder,
    TanhGaussianActor,
    actor_input,
    preprocess_frames,
    tanh_gaussian_log_prob,
)


def test_analytic_kl_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    mean_q, mean_p = torch.randn(5, generator=gen), torch.randn(5, generator=gen)
    std_q = torch.rand(5, generator=gen) + 0.3
    std_p = torch.rand(5, generator=gen) + 0.3
    samples = mean_q + std_q * torch.randn(400_000, 5, generator=gen, dtype=torch.float64).float()
    mc = (
        gaussian_log_prob(samples, mean_q, std_q) - gaussian_log_prob(samples, mean_p, std_p)
    ).mean(0)
    analytic = gaussian_kl(mean_q, std_q, mean_p, std_p)
    np.testing.assert_allclose(mc.numpy(), analytic.numpy(), rtol=0.03, atol=0.01)
    assert torch.all(gaussian_kl(mean_q, std_q, mean_q, std_q).abs() < 1e-6)


def test_gaussian_log_prob_matches_torch():
    x, m, s = torch.randn(100), torch.randn(100), torch.rand(100) + 0.1
    expected = torch.distributions.Normal(m, s).log_prob(x)
    torch.testing.assert_close(gaussian_log_prob(x, m, s), expected)
    torch.testing.assert_close(
        gaussian_log_prob(x, m, 0.3), torch.distributions.Normal(m, 0.3).log_prob(x)
    )


def test_tanh_gaussian_log_prob_is_a_change_of_variables():
    torch.set_default_dtype(torch.float64)
    try:
        mean = torch.tensor([0.3, -1.2, 0.0])
        log_std = torch.tensor([-0.5, 0.2, 0.7])
        u = torch.tensor([0.1, -2.5, 3.0])
        ours = tanh_gaussian_log_prob(u[None], mean[None], log_std[None])[0]
        # numeric: log p_a(a) = log p_u(u) - log |d tanh(u) / du| with a
        # finite-difference derivative
        h = 1e-6
        dtanh = (torch.tanh(u + h) - torch.tanh(u - h)) / (2 * h)
        normal = torch.distributions.Normal(mean, log_std.exp())
        numeric = (normal.log_prob(u) - torch.log(dtanh)).sum()
        assert ours.item() == pytest.approx(numeric.item(), rel=1e-6, abs=1e-6)
        # and the density of a = tanh(u) integrates to one over (-1, 1) (1-D)
        a = torch.linspace(-1 + 1e-9, 1 - 1e-9, 400_001)
        pre = torch.atanh(a)
        density = tanh_gaussian_log_prob(
            pre[:, None], mean[:1, None].expand(len(a), 1), log_std[:1, None].expand(len(a), 1)
        ).exp()
        assert torch.trapezoid(density, a).item() == pytest.approx(1.0, abs=1e-4)
    finally:
        torch.set_default_dtype(torch.float32)


def test_actor_log_prob_is_finite_at_saturation():
    actor = TanhGaussianActor(6, 2, hidden=8)
    with torch.no_grad():
        actor.net[-1].bias.copy_(torch.tensor([30.0, -30.0, -5.0, -5.0]))
    action, log_prob = actor.sample(torch.zeros(4, 6))
    assert torch.isfinite(log_prob).all()
    mean, log_std = actor(torch.zeros(1, 6))
    assert log_std.min() >= -20 and log_std.max() <= 2


def test_actor_input_layout():
    feats = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(2, 8, 3)
    acts = -torch.arange(2 * 7 * 2, dtype=torch.float32).reshape(2, 7, 2) - 1
    x = actor_input(feats, acts)
    assert x.shape == (2, 8 * 3 + 7 * 2)
    torch.testing.assert_close(x[1, :24], feats[1].flatten())  # features oldest first
    torch.testing.assert_close(x[1, 24:], acts[1].flatten())  # then actions oldest first
    with pytest.raises(ValueError, match="8 feature vectors"):
        actor_input(feats[:, :7], acts)


def test_encoder_decoder_shapes_and_fast_path():
    torch.manual_seed(0)
    encoder, decoder = Encoder(4, 16), Decoder(12, 4)
    frames = torch.randint(0, 256, (10, 64, 64, 3), dtype=torch.uint8)
    images = preprocess_frames(frames)
    assert images.shape == (10, 3, 64, 64) and images.max() <= 1.0
    torch.testing.assert_close(images[3, 1], frames[3, :, :, 1].float() / 255)
    features = encoder(images)
    assert features.shape == (10, 16)
    fast = encoder.features_no_grad(images, fast=True, chunk=3)
    torch.testing.assert_close(fast, features.detach(), rtol=1e-5, atol=1e-6)
    assert decoder(torch.randn(5, 12)).shape == (5, 3, 64, 64)


def test_paper_sizes():
    encoder = Encoder()
    assert [c.out_channels for c in encoder.convs] == [32, 64, 128, 256, 256]
    assert math.prod(encoder(torch.zeros(1, 3, 64, 64)).shape) == 256
