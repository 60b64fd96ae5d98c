"""Checkpoints that resume a run exactly, and loading an agent from one.

Layout inside a run directory::

    checkpoints/ckpt-<env_step>.pt      networks, targets, optimisers, log alpha, counters, config,
                                        RNG states
    checkpoints/buffer-<version>.npz    the replay buffer of the latest checkpoint (optional)
    checkpoints/latest                  the file name of the newest checkpoint (one line)

Every file is written to a temporary name, flushed and renamed into place, and ``latest`` is
replaced only after its checkpoint is complete, so a crash at any moment leaves the previous
checkpoint usable. Checkpoints hold only tensors and plain Python values and load with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slac_train.config import TrainConfig

CHECKPOINT_DIR = "checkpoints"
LATEST_POINTER = "latest"
FORMAT_VERSION = 1


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# RNG states as plain values (weights_only-loadable)


def generator_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def set_generator_state(rng: np.random.Generator, state: Mapping) -> None:
    rng.bit_generator.state = dict(state)


def capture_global_rng() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_global_rng(state: Mapping) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


# ----------------------------------------------------------------------------------------------
def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def agent_checkpoint(config: TrainConfig, action_dim: int, env, agent) -> dict[str, Any]:
    """The part of a checkpoint that :func:`load_agent` and ``slac-export`` read: the agent's
    config and weights, its action dimension, the task and the environment's timing."""
    return {
        "config": config.to_dict(),
        "action_dim": action_dim,
        "task": config.task,
        "env": {
            "action_repeat": env.action_repeat,
            "control_period_s": float(env.control_period_s),
        },
        "agent": agent.state_dict(),
    }


def save_checkpoint(
    run_dir: str | Path,
    name: str,
    state: dict[str, Any],
    buffer=None,
    keep: int = 2,
) -> Path:
    """Write ``state`` (and the replay ``buffer`` if given) as checkpoint ``name``; update
    ``latest``.

    The buffer is written only when it changed since the last saved copy (``buffer.version``); only
    the buffer of the newest checkpoint is kept on disk. Older checkpoints beyond ``keep`` are
    deleted.
    """
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(state)
    state["format"] = FORMAT_VERSION
    if buffer is not None:
        buffer_name = f"buffer-{buffer.version}.npz"
        if not (folder / buffer_name).exists():
            buffer.save(folder / buffer_name)
        state["buffer_file"] = buffer_name
    else:
        state["buffer_file"] = None
    path = folder / f"{name}.pt"
    atomic_torch_save(state, path)
    _atomic_write_bytes(folder / LATEST_POINTER, (path.name + "\n").encode())
    _prune(folder, keep=keep, keep_buffer=state["buffer_file"])
    return path


def _prune(folder: Path, keep: int, keep_buffer: str | None) -> None:
    latest = (folder / LATEST_POINTER).read_text().strip()
    checkpoints = sorted(folder.glob("ckpt-*.pt"))  # names sort by (env step, update count)
    old = [p for p in checkpoints if p.name != latest][: max(0, len(checkpoints) - keep)]
    for p in old:
        p.unlink()
    for p in folder.glob("buffer-*.npz"):
        if p.name != keep_buffer:
            p.unlink()
    for p in folder.glob("*.tmp"):  # leftovers of a crash while writing
        p.unlink()


def latest_checkpoint(run_dir_or_file: str | Path) -> Path:
    """The checkpoint file ``latest`` points to (or the file itself when given a file)."""
    path = Path(run_dir_or_file)
    if path.is_file():
        return path
    folder = path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path
    pointer = folder / LATEST_POINTER
    if not pointer.is_file():
        raise FileNotFoundError(f"no checkpoint in {path} (expected {pointer})")
    target = folder / pointer.read_text().strip()
    if not target.is_file():
        raise FileNotFoundError(f"{pointer} names {target.name}, which does not exist")
    return target


TORCH_SAVE_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (PyTorch >= 1.6)


def check_checkpoint_file(path: Path) -> None:
    """Refuse, in one sentence, a file that ``torch.save`` did not write (a README, an ONNX
    policy), before ``torch.load`` answers with a page about ``weights_only``."""
    with open(path, "rb") as f:
        head = f.read(len(TORCH_SAVE_MAGIC))
    if head != TORCH_SAVE_MAGIC:
        raise ValueError(
            f"{path} could not be read as a checkpoint: it is not a file torch.save wrote "
            "(slac-train and slac-imitate write RUN_DIR/checkpoints/*.pt)"
        )


def load_checkpoint(
    run_dir_or_file: str | Path, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    path = latest_checkpoint(run_dir_or_file)
    check_checkpoint_file(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch.load raises many types for a damaged or truncated file
        reason = (str(error).split(". ")[0] or type(error).__name__).strip()
        raise ValueError(
            f"{path} could not be read as a checkpoint: the file is damaged or incomplete "
            f"({reason}); resume from or export another checkpoint"
        ) from None
    found = state.get("format") if isinstance(state, dict) else None
    if found != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {found!r}, this code reads {FORMAT_VERSION}")
    state["path"] = str(path)
    return state


def load_agent(run_dir_or_file: str | Path, device: str | torch.device = "cpu"):
    """``(agent, checkpoint)`` from a run directory or checkpoint file, ready to ``act()``.

    ``agent.encoder`` and ``agent.actor`` are the modules to export; ``checkpoint["config"]`` the
    run's config and ``checkpoint["counters"]`` its step counters.
    """
    from slac_train.slac_agent import SlacAgent

    state = load_checkpoint(run_dir_or_file, map_location=device)
    config = TrainConfig.from_dict(state["config"])
    agent = SlacAgent(config, int(state["action_dim"]), device)
    agent.load_state_dict(state["agent"])
    return agent, state
