"""Evaluation episodes and the model's reconstruction / open-loop prediction frames.

Acting goes through :class:`slac_runtime.history.History` over uint8 frames, with the same
start-of-episode padding as the replay buffer's windows (repeat the first frame, zero actions), so
the policy sees in evaluation exactly what it is trained on and what the robot runtime feeds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from slac_runtime.history import ACTOR_FRAMES, History
from slac_train.networks import preprocess_frames


class EpisodeStopped(KeyboardInterrupt):
    """``run_episode``'s ``should_stop()`` asked to stop: the episode was abandoned part-way.

    A KeyboardInterrupt, so that callers that stop on Ctrl-C stop on it too; the trainer tells it
    apart from a real one (a second signal) to write a checkpoint only at a safe point.
    """


@dataclass
class EpisodeResult:
    episode_return: float
    agent_steps: int
    env_steps: int
    success: float | None  # the task's info["success"] at the last step, when it reports one
    frames: list[np.ndarray] = field(default_factory=list)  # uint8[H, W, 3], when recorded
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)  # per step, when recorded
    successes: list[float | None] = field(default_factory=list)  # info["success"] per step
    final_info: dict = field(default_factory=dict)  # the env's info of the last step


def run_episode(
    env,
    agent,
    seed: int,
    deterministic: bool,
    record: bool = False,
    max_agent_steps: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EpisodeResult:
    """One episode of ``agent.act`` in ``env`` reset with ``seed``; ``should_stop()`` is asked
    before each step (True: :class:`EpisodeStopped`)."""
    obs, _ = env.reset(seed=int(seed))
    history = History(env.action_space.shape[0], obs.shape, length=ACTOR_FRAMES, dtype=np.uint8)
    history.reset(obs)
    result = EpisodeResult(0.0, 0, 0, None)
    if record:
        result.frames.append(obs)
    while True:
        if should_stop is not None and should_stop():
            raise EpisodeStopped
        action = agent.act(history, deterministic=deterministic)
        obs, reward, terminated, truncated, info = env.step(action)
        result.episode_return += float(reward)
        result.agent_steps += 1
        result.env_steps += int(info.get("env_steps", 1))
        if "success" in info:
            result.success = float(info["success"])
        history.append(action, obs)
        if record:
            result.frames.append(obs)
            result.actions.append(action)
            result.rewards.append(float(reward))
            result.successes.append(float(info["success"]) if "success" in info else None)
        if max_agent_steps is not None and result.agent_steps >= max_agent_steps:
            truncated = True
        if terminated or truncated:
            result.final_info = info
            return result


def reconstruction_frames(
    agent, frames: list[np.ndarray], actions: list[np.ndarray], steps: int
) -> np.ndarray:
    """``uint8[T+1, H, 3W, 3]``: ground truth | posterior reconstruction | open-loop prior
    prediction.

    The prior rollout sees only the first frame and the actions (paper Fig. 7).
    """
    count = min(len(frames), steps + 1)
    if count < 2:
        raise ValueError("a reconstruction needs at least two frames")
    device = agent.device
    truth = np.stack(frames[:count])
    images = preprocess_frames(torch.as_tensor(truth, device=device))
    acts = torch.as_tensor(np.stack(actions[: count - 1]), dtype=torch.float32, device=device)
    posterior, prior = agent.model.reconstruct_and_predict(images, acts)

    def to_uint8(x: torch.Tensor) -> np.ndarray:
        return (x.permute(0, 2, 3, 1) * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()

    return np.concatenate([truth, to_uint8(posterior), to_uint8(prior)], axis=2)
