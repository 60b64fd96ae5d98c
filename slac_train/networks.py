"""The networks of SLAC: pixel encoder and decoder, Gaussian MLP heads, tanh-Gaussian actor, critic
ensemble (twin critics by default).

Images enter the networks as float ``[N, 3, 64, 64]`` in [0, 1] (see :func:`preprocess_frames`);
the encoder and decoder run in channels-last memory layout, which is what oneDNN (CPU) and cuDNN
(tensor cores) are fastest with, and which a ``uint8[N, H, W, 3]`` frame already is after a permute.

The actor and the encoder are separate modules so that the ONNX export can run exactly what
:meth:`slac_train.slac_agent.SlacAgent.act` runs: ``encoder`` on each of the last 8 frames, then
:func:`actor_input`, then ``actor`` (see :class:`PixelPolicy`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slac_runtime.history import ACTOR_FRAMES
from slac_train.config import DECODER_OUTPUT_ACTIVATIONS

LEAKY_SLOPE = 0.2  # leaky ReLU slope of the encoder, decoder and latent-model MLPs
MIN_STD = 1e-5  # added to softplus(.) for every learned std
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # actor log-std clip
_LOG2 = math.log(2.0)


def preprocess_frames(frames_uint8: torch.Tensor) -> torch.Tensor:
    """``uint8[..., H, W, 3]`` RGB -> ``float32[..., 3, H, W]`` in [0, 1] (channels-last
    strides)."""
    x = frames_uint8.movedim(-1, -3)  # a view: NHWC memory read as NCHW = channels-last
    return x.to(torch.float32).div_(255.0)


def _fused_conv_available() -> bool:
    return (
        hasattr(torch.ops.mkldnn, "_convolution_pointwise") and torch.backends.mkldnn.is_available()
    )


class Encoder(nn.Module):
    """x[N, 3, 64, 64] in [0, 1] -> feature[N, feature_dim].

    conv c 5x5 s2 -> 2c 3x3 s2 -> 4c 3x3 s2 -> 8c 3x3 s2 -> feature_dim 4x4 (valid), leaky ReLU
    after each (paper: c = 32, feature_dim = 256). Spatial sizes 64 -> 32 -> 16 -> 8 -> 4 -> 1.
    """

    def __init__(self, base_channels: int = 32, feature_dim: int = 256) -> None:
        super().__init__()
        c = base_channels
        self.feature_dim = feature_dim
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(3, c, 5, stride=2, padding=2),
                nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
                nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1),
                nn.Conv2d(4 * c, 8 * c, 3, stride=2, padding=1),
                nn.Conv2d(8 * c, feature_dim, 4),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(
                conv(x), LEAKY_SLOPE, inplace=True
            )  # in place: no extra activation copy
        return x.flatten(1)

    @torch.no_grad()
    def features_no_grad(self, x: torch.Tensor, fast: bool = True, chunk: int = 64) -> torch.Tensor:
        """Same numbers as ``forward`` without autograd, faster on CPU.

        On CPU, each conv is fused with its leaky ReLU in one oneDNN call and the batch runs in
        chunks of ``chunk`` images so that activations stay in cache (the 256x9-frame actor-critic
        batch: ~1.9x faster than one eager pass on a 2-core CPU).
        """
        if not (fast and x.device.type == "cpu" and _fused_conv_available()):
            return self.forward(x)
        x = x.contiguous(memory_format=torch.channels_last)
        out = torch.empty(x.shape[0], self.feature_dim, dtype=x.dtype)
        for start in range(0, x.shape[0], chunk):
            h = x[start : start + chunk]
            for conv in self.convs:
                h = torch.ops.mkldnn._convolution_pointwise(
                    h,
                    conv.weight,
                    conv.bias,
                    conv.padding,
                    conv.stride,
                    conv.dilation,
                    conv.groups,
                    "leaky_relu",
                    [LEAKY_SLOPE],
                    "",
                )
            out[start : start + chunk] = h.flatten(1)
        return out


class Decoder(nn.Module):
    """z[N, z_dim] -> mean image[N, 3, 64, 64] (the likelihood's std is fixed, held by the model).

    transposed conv 8c 4x4 (valid, from 1x1) -> 4c 3x3 s2 -> 2c 3x3 s2 -> c 3x3 s2 -> 3 5x5 s2,
    leaky ReLU between (paper: 8c = 256). Spatial sizes 1 -> 4 -> 8 -> 16 -> 32 -> 64.

    ``output_activation``: ``"leaky_relu"`` also puts the leaky ReLU on the last transposed
    convolution, as the official implementation's ``Decoder`` does (model_distribution_network.py:
    every ``conv_transpose`` is built with ``activation=tf.nn.leaky_relu``, ``conv_transpose5``
    included); ``"linear"`` leaves the image mean unbounded.
    """

    def __init__(
        self, z_dim: int, base_channels: int = 32, output_activation: str = "linear"
    ) -> None:
        super().__init__()
        if output_activation not in DECODER_OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"decoder output activation must be one of {DECODER_OUTPUT_ACTIVATIONS}, "
                f"got {output_activation!r}"
            )
        self.output_activation = output_activation
        c = base_channels
        self.deconvs = nn.ModuleList(
            [
                nn.ConvTranspose2d(z_dim, 8 * c, 4),
                nn.ConvTranspose2d(8 * c, 4 * c, 3, stride=2, padding=1, output_padding=1),
                nn.ConvTranspose2d(4 * c, 2 * c, 3, stride=2, padding=1, output_padding=1),
                nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1),
                nn.ConvTranspose2d(c, 3, 5, stride=2, padding=2, output_padding=1),
            ]
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z[:, :, None, None].contiguous(memory_format=torch.channels_last)
        last = len(self.deconvs) - 1
        for i, deconv in enumerate(self.deconvs):
            x = deconv(x)
            if i < last or self.output_activation == "leaky_relu":
                x = F.leaky_relu(x, LEAKY_SLOPE, inplace=True)
        return x


def glorot_init_(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every linear and (transposed) convolution layer.

    The official implementation's layers are Keras ``Dense``/``Conv2D``/``Conv2DTranspose`` with
    their default ``kernel_initializer="glorot_uniform"`` and ``bias_initializer="zeros"``
    (model_distribution_network.py), and its actor and critic name
    ``glorot_uniform()`` explicitly (actor_distribution_network.py, critic_network.py).
    Glorot's bound sqrt(6 / (fan_in + fan_out)) is symmetric in the two fans, so the layout of a
    transposed convolution's weight does not change it.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: int,
    activation: type[nn.Module],
    layer_norm: bool = False,
) -> nn.Sequential:
    """Two hidden layers of ``hidden`` units; ``layer_norm`` puts a LayerNorm between each hidden
    layer's linear map and its activation (RLPD's critic)."""
    act = (lambda: activation(LEAKY_SLOPE)) if activation is nn.LeakyReLU else activation
    layers: list[nn.Module] = []
    for n_in in (in_dim, hidden):
        layers.append(nn.Linear(n_in, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(act())
    layers.append(nn.Linear(hidden, out_dim))
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """A diagonal Gaussian conditional: inputs (concatenated) -> (mean, std), std = softplus +
    1e-5."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = mlp(in_dim, 2 * out_dim, hidden, nn.LeakyReLU)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1)
        mean, raw_std = self.net(x).chunk(2, dim=-1)
        return mean, F.softplus(raw_std) + MIN_STD


def actor_input(features: torch.Tensor, prev_actions: torch.Tensor) -> torch.Tensor:
    """The actor's input vector.

    ``features[B, 8, F]`` are the encoder features of frames x_{t-7..t}, oldest first;
    ``prev_actions[B, 7, A]`` are the actions a_{t-7..t-1} between them, oldest first (zeros as
    start-of-episode padding). Result: ``[B, 8*F + 7*A]`` = features flattened oldest first, then
    actions flattened oldest first.
    """
    if features.shape[1] != ACTOR_FRAMES or prev_actions.shape[1] != ACTOR_FRAMES - 1:
        raise ValueError(
            f"actor_input needs {ACTOR_FRAMES} feature vectors and {ACTOR_FRAMES - 1} actions, "
            f"got {tuple(features.shape)} and {tuple(prev_actions.shape)}"
        )
    return torch.cat([features.flatten(1), prev_actions.flatten(1)], dim=1)


def tanh_gaussian_log_prob(
    pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """log pi(tanh(u)) for u ~ N(mean, exp(log_std)), summed over action dims -> ``[B]``.

    Change of variables: log pi(a) = log N(u) - sum log(1 - tanh(u)^2), with the stable form
    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
    """
    noise = (pre_tanh - mean) * torch.exp(-log_std)
    gaussian = -0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    log_det = 2.0 * (_LOG2 - pre_tanh - F.softplus(-2.0 * pre_tanh))
    return (gaussian - log_det).sum(-1)


ACTION_LIKELIHOOD_BOUND = 0.999


class _TanhGaussianPolicy(nn.Module):
    """Sampling and the deterministic action of a module whose ``forward(x)`` gives the pre-tanh
    Gaussian's ``(mean, log_std)``."""

    def sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised ``(action[B, A] in (-1, 1), log_prob[B])``."""
        mean, log_std = self(x)
        pre_tanh = mean + torch.randn_like(mean) * log_std.exp()
        return torch.tanh(pre_tanh), tanh_gaussian_log_prob(pre_tanh, mean, log_std)

    def deterministic(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(x)[0])

    def log_prob(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``log pi(action | x)[B]`` of given actions ``[B, A]`` (clipped into tanh's open range
        at +-0.999: an action at the bound has no finite pre-tanh value)."""
        mean, log_std = self(x)
        pre_tanh = torch.atanh(action.clamp(-ACTION_LIKELIHOOD_BOUND, ACTION_LIKELIHOOD_BOUND))
        return tanh_gaussian_log_prob(pre_tanh, mean, log_std)


class TanhGaussianActor(_TanhGaussianPolicy):
    """pi(a | actor_input): MLP (ReLU) -> mean, log-std clipped to [-20, 2]; a = tanh(u), u ~ N."""

    def __init__(self, input_dim: int, action_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.net = mlp(input_dim, 2 * action_dim, hidden, nn.ReLU)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x[B, 8F + 7A]`` -> ``(mean[B, A], log_std[B, A])`` of the pre-tanh Gaussian."""
        mean, log_std = self.net(x).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)


class ResidualActor(_TanhGaussianPolicy):
    """A frozen base actor plus a learned residual on its mean: pi(a | x) = tanh(N(mean, std)) with

        mean = base_mean(x) + scale * tanh(r(x, tanh(base_mean(x))))
        log std = base_log_std(x)

    (residual off-policy RL on a behaviour-cloned policy, Ankile et al. 2025). The residual's last
    layer starts at zero, so the policy starts as the base's, stochastic and deterministic; the
    residual moves the pre-tanh mean by at most ``scale`` in each action dimension whatever the
    critic says. The spread is the base's own: an entropy bonus cannot widen the exploration
    around a precise policy (where the critic's preference between nearby actions is weak, SAC's
    temperature would otherwise widen it long before it falls). The base (``base``, a
    :class:`TanhGaussianActor`) never trains. The interface is the actor's: ``forward``,
    ``sample``, ``deterministic``; the export runs ``forward``.
    """

    def __init__(
        self, input_dim: int, action_dim: int, hidden: int = 256, scale: float = 0.5
    ) -> None:
        super().__init__()
        if not (math.isfinite(scale) and scale > 0.0):
            raise ValueError(f"a residual actor's scale must be a positive number, got {scale}")
        self.action_dim = action_dim
        self.base = TanhGaussianActor(input_dim, action_dim, hidden).requires_grad_(False)
        self.residual = mlp(input_dim + action_dim, action_dim, hidden, nn.ReLU)
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.zero_residual_()

    def zero_residual_(self) -> None:
        """Set the residual's output layer to zero: the policy becomes the base's."""
        last = self.residual[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()

    def train(self, mode: bool = True) -> ResidualActor:
        super().train(mode)
        self.base.train(False)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x[B, 8F + 7A]`` -> ``(mean[B, A], log_std[B, A])`` of the pre-tanh Gaussian."""
        with torch.no_grad():
            base_mean, base_log_std = self.base(x)
        shift = self.residual(torch.cat([x, torch.tanh(base_mean)], dim=-1))
        return base_mean + self.scale * torch.tanh(shift), base_log_std


class CriticEnsemble(nn.Module):
    """Q1 .. QN (z, a): ``count`` MLPs (ReLU) on ``[z1, z2, a]`` -> a tuple of N ``[B]`` tensors.

    ``count=2`` is SAC's (and SLAC's) twin critic; larger ensembles and ``layer_norm`` are RLPD's
    (Ball et al. 2023: LayerNorm bounds Q on actions the data never shows). The members are
    attributes ``q1``, ``q2``, ... (state-dict keys ``q1.0.weight``, ...).
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        hidden: int = 256,
        count: int = 2,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if count < 1:
            raise ValueError(f"a critic ensemble needs at least 1 member, got {count}")
        self.count = count
        for i in range(count):
            self.add_module(
                f"q{i + 1}", mlp(latent_dim + action_dim, 1, hidden, nn.ReLU, layer_norm)
            )

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = torch.cat([z, action], dim=-1)
        return tuple(getattr(self, f"q{i + 1}")(x).squeeze(-1) for i in range(self.count))


class PixelPolicy(nn.Module):
    """Encoder + actor as one module: what the robot runs (and what the ONNX export wraps).

    ``forward(frames_uint8[B, 8, H, W, 3], prev_actions[B, 7, A]) -> (mean[B, A], log_std[B, A])``.
    Deterministic action: ``tanh(mean)``; stochastic: ``tanh(mean + exp(log_std) * eps)``,
    eps ~ N(0, I).
    """

    def __init__(self, encoder: Encoder, actor: TanhGaussianActor) -> None:
        super().__init__()
        self.encoder = encoder
        self.actor = actor

    def actor_inputs(self, frames_uint8: torch.Tensor, prev_actions: torch.Tensor) -> torch.Tensor:
        """The actor's input vector ``[B, 8F + 7A]`` (see :func:`actor_input`) for these windows."""
        batch, steps = frames_uint8.shape[:2]
        images = preprocess_frames(frames_uint8.reshape(batch * steps, *frames_uint8.shape[2:]))
        features = self.encoder(images).reshape(batch, steps, -1)
        return actor_input(features, prev_actions)

    def forward(
        self, frames_uint8: torch.Tensor, prev_actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(self.actor_inputs(frames_uint8, prev_actions))
