"""Starting a SLAC agent's encoder and actor from a policy (``slac-train --init-policy PATH``).

Two sources hold the very ``Encoder`` and ``TanhGaussianActor`` a SLAC agent has:

* an exported policy (``.onnx``, :mod:`slac_train.export`): the exporter keeps each parameter as a
  graph initializer under its module path (``encoder.convs.0.weight``, ``actor.net.0.weight``,
  ...), in the torch layout, so reading the initializers back inverts the export exactly;
* a run directory or checkpoint of ``slac-imitate`` or ``slac-train``: the agent's state dict
  (``agent.model`` holds ``encoder.*``, ``agent.actor`` the actor).

The sizes must be the run's (``--encoder-base-channels``, ``--feature-dim``,
``--actor-critic-hidden``); a mismatch is refused with the options that would fit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from slac_train.checkpoint import load_checkpoint

ENCODER_PREFIX = "encoder."
ACTOR_PREFIX = "actor."


def _with_prefix(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


Weights = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int | None]


def _from_onnx(path: Path) -> Weights:
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf raises its own types for a file that is not ONNX
        raise ValueError(f"--init-policy {path} cannot be read as ONNX: {error}") from None
    weights = {
        init.name: torch.from_numpy(numpy_helper.to_array(init).copy())
        for init in model.graph.initializer
    }
    props = {p.key: p.value for p in model.metadata_props}
    repeat = int(props["action_repeat"]) if props.get("action_repeat", "").isdigit() else None
    return _with_prefix(weights, ENCODER_PREFIX), _with_prefix(weights, ACTOR_PREFIX), repeat


def _from_checkpoint(path: Path) -> Weights:
    try:
        state = load_checkpoint(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--init-policy {path}: {error}") from None
    except ValueError as error:  # not a checkpoint (the sentence names the file)
        raise ValueError(f"--init-policy {error}") from None
    except Exception as error:  # torch.load raises many types for a file that is not a checkpoint
        raise ValueError(f"--init-policy {path} cannot be read as a checkpoint: {error}") from None
    agent = state.get("agent", {})
    if "model" not in agent or "actor" not in agent:
        raise ValueError(f"--init-policy {path} holds no agent (is it a slac-train checkpoint?)")
    repeat = state.get("env", {}).get("action_repeat")
    encoder = _with_prefix(agent["model"], ENCODER_PREFIX)
    return encoder, dict(agent["actor"]), None if repeat is None else int(repeat)


def policy_weights(path: str | Path) -> Weights:
    """``(encoder_state, actor_state, action_repeat)`` of the policy at ``path``: an ``.onnx``
    file, a run directory or a checkpoint file (``action_repeat`` None where it does not say)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"--init-policy {path} does not exist: pass an .onnx policy, a run directory or a "
            "checkpoint"
        )
    encoder, actor, repeat = _from_onnx(path) if path.suffix == ".onnx" else _from_checkpoint(path)
    if not encoder or not actor:
        raise ValueError(
            f"--init-policy {path} holds no encoder and actor weights (encoder.*, actor.*): "
            "pass a policy written by slac-export, or a slac-imitate or slac-train run"
        )
    return encoder, actor, repeat


def _sizes(encoder: dict[str, torch.Tensor], actor: dict[str, torch.Tensor]) -> dict[str, int]:
    """What a policy's weights say about its networks' sizes (-1 where they do not say)."""

    def dim(weights: dict[str, torch.Tensor], key: str, axis: int = 0) -> int:
        tensor = weights.get(key)
        return int(tensor.shape[axis]) if tensor is not None and tensor.dim() > axis else -1

    last = max((k for k in actor if k.endswith(".weight")), default="", key=_layer_index)
    return {
        "encoder_base_channels": dim(encoder, "convs.0.weight"),
        "feature_dim": dim(encoder, "convs.4.weight"),
        "actor_critic_hidden": dim(actor, "net.0.weight"),
        "action_dim": dim(actor, last) // 2 if last else -1,
    }


def _layer_index(key: str) -> int:
    parts = key.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else -1


def _fits(module: torch.nn.Module, weights: dict[str, torch.Tensor]) -> bool:
    own = module.state_dict()
    return own.keys() == weights.keys() and all(own[k].shape == weights[k].shape for k in own)


def init_policy(agent, path: str | Path, action_repeat: int | None = None) -> None:
    """Copy the encoder and actor of the policy at ``path`` into ``agent`` (a ``SlacAgent``).

    Raises ``ValueError`` naming the options that would fit when the sizes differ or the policy
    acts at another ``action_repeat`` than the run's, and ``FileNotFoundError`` for a path that
    does not exist.
    """
    encoder, actor, repeat = policy_weights(path)
    if action_repeat is not None and repeat is not None and repeat != action_repeat:
        raise ValueError(
            f"--init-policy {path} acts at action repeat {repeat} and this run at "
            f"{action_repeat}: pass --action-repeat {repeat}"
        )
    target = agent.actor
    if not _fits(target, actor) and hasattr(target, "base"):  # a residual on this actor
        target = target.base
    elif not _fits(target, actor) and "base.net.0.weight" in actor:
        raise ValueError(
            f"--init-policy {path} is a residual policy (a base actor and a residual): continue "
            "it with --residual-actor"
        )
    if not (_fits(agent.encoder, encoder) and _fits(target, actor)):
        theirs = _sizes(encoder, actor)
        ours = _sizes(agent.encoder.state_dict(), target.state_dict())
        if theirs["action_dim"] != ours["action_dim"]:
            raise ValueError(
                f"--init-policy {path} acts with {theirs['action_dim']} actions; this task has "
                f"{ours['action_dim']}"
            )
        fix = " ".join(
            f"--{name.replace('_', '-')} {theirs[name]}"
            for name in ("encoder_base_channels", "feature_dim", "actor_critic_hidden")
        )
        raise ValueError(
            f"--init-policy {path} has an encoder of width {theirs['encoder_base_channels']} with "
            f"{theirs['feature_dim']} features and an actor of {theirs['actor_critic_hidden']} "
            f"units, this run {ours['encoder_base_channels']}, {ours['feature_dim']} and "
            f"{ours['actor_critic_hidden']}: pass {fix}"
        )
    with torch.no_grad():
        agent.encoder.load_state_dict(encoder)
        target.load_state_dict(actor)
