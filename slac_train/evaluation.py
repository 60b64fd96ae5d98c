"""Evaluation episodes, the model's reconstruction / open-loop prediction frames, and a SLAC run's
periodic evaluation with its videos (:class:`Evaluator`).

Acting goes through :class:`slac_runtime.history.History` over uint8 frames, with the same
start-of-episode padding as the replay buffer's windows (repeat the first frame, zero actions), so
the policy sees in evaluation exactly what it is trained on and what the robot runtime feeds it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from slac_runtime.history import ACTOR_FRAMES, History
from slac_runtime.stop_request import StopRequest, StopRequested
from slac_train.checkpoint import (
    capture_global_rng,
    generator_state,
    restore_global_rng,
    set_generator_state,
)
from slac_train.config import TrainConfig
from slac_train.networks import preprocess_frames
from slac_train.rollout_media import episode_captions, write_video
from slac_train.run import Run
from slac_train.run_logging import frame_strip


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
    stop: StopRequest | None = None,
) -> EpisodeResult:
    """One episode of ``agent.act`` in ``env`` reset with ``seed``; before each step
    ``stop.check()`` (a stop requested: :class:`~slac_runtime.stop_request.StopRequested`, the
    episode abandoned part-way)."""
    obs, _ = env.reset(seed=int(seed))
    history = History(env.action_space.shape[0], obs.shape, length=ACTOR_FRAMES, dtype=np.uint8)
    history.reset(obs)
    result = EpisodeResult(0.0, 0, 0, None)
    if record:
        result.frames.append(obs)
    while True:
        if stop is not None:
            stop.check()
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


class Evaluator:
    """A SLAC run's evaluations: ``eval_episodes`` episodes of the stochastic policy (and with
    ``eval_deterministic`` as many of the deterministic one) in ``env``, from seeds drawn from
    ``rng``. Each evaluation is a row of :attr:`history` and ``eval.csv``, an ``eval`` record, a
    point of ``curve.png``, and with ``eval_video`` / ``reconstruction_video`` its first episode
    as videos and a strip of frames in TensorBoard.

    A stop requested during an evaluation abandons it
    (:class:`~slac_runtime.stop_request.StopRequested`) with the random streams back where they
    were, so that it runs again on resume exactly as it would have.
    """

    def __init__(self, config: TrainConfig, env, agent, rng: np.random.Generator, run: Run) -> None:
        self.config = config
        self.env = env
        self.agent = agent
        self.rng = rng
        self.run = run
        self.history: list[dict[str, Any]] = []

    @property
    def last_return_text(self) -> str:
        """The latest evaluation's mean return (``-`` before the first)."""
        return f"{self.history[-1]['return_mean']:.1f}" if self.history else "-"

    def evaluate(
        self, env_step: int, agent_step: int, random_returns: Sequence[float] = ()
    ) -> dict[str, Any]:
        """Evaluate the agent at ``env_step``; returns the row added to :attr:`history`.
        ``random_returns`` (the random collection's) are the curve's reference line."""
        cfg, logger = self.config, self.run.logger
        started = time.perf_counter()
        row: dict[str, Any] = {
            "env_step": env_step,
            "agent_step": agent_step,
            "episodes": cfg.eval_episodes,
        }
        before = (capture_global_rng(), generator_state(self.rng))
        try:
            recorded = self._play(row)
        except StopRequested:
            restore_global_rng(before[0])
            set_generator_state(self.rng, before[1])
            raise
        row["wall_time_s"] = self.run.elapsed_s()
        if recorded is not None:
            self._write_media(recorded, env_step)
        scalars = {
            f"eval/{k}": v
            for k, v in row.items()
            if k not in ("env_step", "agent_step", "episodes", "wall_time_s")
        }
        scalars["eval/seconds"] = time.perf_counter() - started
        logger.log("eval", env_step, scalars, agent_step=agent_step)
        title = f"SLAC on {cfg.task} (seed {cfg.seed})"
        logger.add_evaluation(self.history, row, title, random_returns=random_returns)
        return row

    def _play(self, row: dict[str, Any]) -> EpisodeResult | None:
        """Play the evaluation episodes, filling ``row``; return the recorded episode (or None)."""
        cfg = self.config
        recorded = None
        modes = [("", False)] + ([("deterministic_", True)] if cfg.eval_deterministic else [])
        for prefix, deterministic in modes:
            returns, successes = [], []
            for i in range(cfg.eval_episodes):
                record = prefix == "" and i == 0 and (cfg.eval_video or cfg.reconstruction_video)
                result = run_episode(
                    self.env,
                    self.agent,
                    int(self.rng.integers(2**31)),
                    deterministic,
                    record=record,
                    max_agent_steps=cfg.max_episode_agent_steps,
                    stop=self.run.stop,
                )
                returns.append(result.episode_return)
                if result.success is not None:
                    successes.append(result.success)
                if record:
                    recorded = result
            row[f"{prefix}return_mean"] = float(np.mean(returns))
            row[f"{prefix}return_std"] = float(np.std(returns))
            if successes:
                row[f"{prefix}success_rate"] = float(np.mean(successes))
        return recorded

    def _write_media(self, recorded: EpisodeResult, step: int) -> None:
        """The evaluation and reconstruction videos, and a strip of evaluation frames in
        TensorBoard."""
        cfg, videos = self.config, self.run.dir / "videos"
        fps = 1.0 / (self.env.control_period_s * self.env.action_repeat)
        if cfg.eval_video:
            write_video(
                videos / f"eval-{step:010d}.mp4",
                recorded.frames,
                fps,
                scale=4,  # room for the caption line
                captions=episode_captions(recorded.rewards, recorded.successes),
            )
        if cfg.reconstruction_video and len(recorded.frames) >= 2:
            frames = reconstruction_frames(
                self.agent, recorded.frames, recorded.actions, cfg.reconstruction_steps
            )
            write_video(
                videos / f"reconstruction-{step:010d}.mp4",
                frames,
                fps,
                scale=2,
                panel_labels=("truth", "posterior", "prior"),
            )
        self.run.logger.log_image("eval/episode_frames", frame_strip(recorded.frames), step)
        self.run.logger.log_video("eval/episode", recorded.frames, step, fps)


def evaluation_line(row: dict[str, Any]) -> str:
    """``eval @ 4,000 env steps: return 123.4 +- 5.6, deterministic 130.2, success 0.40``."""
    return (
        f"eval @ {row['env_step']:,} env steps: "
        f"return {row['return_mean']:.1f} +- {row['return_std']:.1f}"
        + (
            f", deterministic {row['deterministic_return_mean']:.1f}"
            if "deterministic_return_mean" in row
            else ""
        )
        + (f", success {row['success_rate']:.2f}" if "success_rate" in row else "")
    )
