"""Export encoder + actor as one self-describing ONNX policy (docs/architecture.md §3).

The graph takes what the runtime holds -- uint8 RGB frames and float actions -- and does the
scaling and layout change inside:

    frames          uint8   [1, N, H, W, 3]  the N newest frames, oldest first (1 <= N <= 8)
    cached_features float32 [1, 8, F]        the previous call's `features` (ignored when N = 8)
    prev_actions    float32 [1, 7, A]        the actions between the 8 frames, oldest first
 -> action          float32 [1, A]           deterministic action tanh(mean)
    mean, log_std   float32 [1, A]           stochastic action: tanh(mean + exp(log_std) * eps)
    features        float32 [1, 8, F]        the features the actor saw: the next call's cache

N = 8 is the full form (re-encode the whole history); N = 1 is the streaming form (encode the new
frame only). Metadata: :class:`slac_runtime.policy_metadata.PolicyMetadata`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import warnings
from contextlib import nullcontext, redirect_stdout
from pathlib import Path

import torch
from torch import nn

from slac_runtime import policy_metadata as pm
from slac_runtime.history import ACTOR_FRAMES
from slac_runtime.policy_metadata import PolicyMetadata
from slac_train.networks import Encoder, TanhGaussianActor, actor_input

PROVENANCE_PROP = "training"  # metadata_props key of how the policy was trained (JSON)


class ExportGraph(nn.Module):
    """Encoder + actor with a feature cache: the function the ONNX file computes."""

    def __init__(self, encoder: Encoder, actor: TanhGaussianActor) -> None:
        super().__init__()
        self.encoder = encoder
        self.actor = actor

    def forward(
        self, frames: torch.Tensor, cached_features: torch.Tensor, prev_actions: torch.Tensor
    ):
        batch, n, height, width, channels = frames.shape
        images = frames.reshape(batch * n, height, width, channels).permute(0, 3, 1, 2)
        images = images.to(torch.float32) / 255.0
        new = self.encoder(images).reshape(batch, n, -1)  # [B, N, F]
        features = torch.cat([cached_features[:, n:], new], dim=1)  # [B, 8, F]
        mean, log_std = self.actor(actor_input(features, prev_actions))
        return torch.tanh(mean), mean, log_std, features


def export_onnx(
    encoder: Encoder,
    actor: TanhGaussianActor,
    metadata: PolicyMetadata,
    path: str | Path,
    verbose: bool = False,
    provenance: dict | None = None,
) -> Path:
    """Write the policy to ``path`` (atomically), check it with ``onnx.checker`` and return the
    path. ``provenance``: how the policy was trained (JSON), kept beside the metadata as the
    ``training`` property (:data:`PROVENANCE_PROP`); the runtime does not read it."""
    import onnx

    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    graph = ExportGraph(encoder, actor).to("cpu").eval()
    h, w, a, f = (
        metadata.image_height,
        metadata.image_width,
        metadata.action_dim,
        metadata.feature_dim,
    )
    example = (
        torch.zeros(1, ACTOR_FRAMES, h, w, 3, dtype=torch.uint8),
        torch.zeros(1, ACTOR_FRAMES, f),
        torch.zeros(1, ACTOR_FRAMES - 1, a),
    )
    n = torch.export.Dim("n_frames", min=1, max=ACTOR_FRAMES)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "policy.onnx"
        sink = io.StringIO()
        onnx_logger = logging.getLogger("torch.onnx")
        level = onnx_logger.level
        if not verbose:  # the exporter logs a warning per missing torchvision op; none apply here
            onnx_logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), nullcontext() if verbose else redirect_stdout(sink):
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    graph,
                    example,
                    str(raw),
                    input_names=[pm.INPUT_FRAMES, pm.INPUT_CACHED_FEATURES, pm.INPUT_PREV_ACTIONS],
                    output_names=[
                        pm.OUTPUT_ACTION,
                        pm.OUTPUT_MEAN,
                        pm.OUTPUT_LOG_STD,
                        pm.OUTPUT_FEATURES,
                    ],
                    dynamic_shapes={
                        "frames": {1: n},
                        "cached_features": None,
                        "prev_actions": None,
                    },
                    dynamo=True,
                    external_data=False,
                )
            finally:
                onnx_logger.setLevel(level)
        model = onnx.load(str(raw))
    del model.metadata_props[:]
    props = metadata.to_props()
    if provenance is not None:
        props[PROVENANCE_PROP] = json.dumps(provenance, sort_keys=True)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"SLAC policy (encoder + actor) for {metadata.task}"
    onnx.checker.check_model(model, full_check=True)
    # Written beside the target, then renamed: a reader never sees half a file; the file gets the
    # ordinary mode (umask), not mkstemp's 0600.
    tmp_name = str(path.with_name(f".{path.name}.{os.getpid()}.tmp"))
    try:
        onnx.save(model, tmp_name)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path
