"""The SLAC training loop: random collection, model pre-training, then one update per agent step.

    collect   uniformly random actions for ``initial_collection_steps`` agent steps (to an
              episode end)
    pretrain  ``model_pretrain_steps`` latent-model updates on that data
    train     act with the stochastic policy; after each agent step, ``updates_per_step`` x
              (model + critic/actor/alpha update: one batch of 256 windows whose first 32 train
              the model, or separate batches of 32 and 256: ``update_structure``)

With ``demos`` the demonstrations sit in a buffer of their own and every batch, pre-training
included, mixes them with online windows (:mod:`slac_train.demonstrations`);
``initial_collection_steps`` may then be 0, and the model pre-trains on the demonstrations before
the run first acts. With ``init_policy`` a new run's encoder and actor start from a policy
(:mod:`slac_train.policy_init`).

Counters are kept in agent steps and in environment (simulator) steps
(:class:`~slac_train.loop_state.LoopState`); budgets, schedules and every logged scalar's x-axis
are in simulator steps, as the paper's plots are. Evaluations and their videos:
:class:`~slac_train.evaluation.Evaluator`. Checkpoints are written at episode ends, during
pre-training, and on Ctrl-C or SIGTERM at the next safe point (after the agent step or update in
progress; an evaluation in progress is abandoned and runs again on resume). A resumed run
continues exactly as an uninterrupted one would: a stop in the middle of an episode records the
episode's seed and actions, and the resume replays them in a fresh simulator (checked against the
episode's last frame) to stand where the run stopped. The run directory, its lock, the stop
request and the interrupted and failed outcomes: :mod:`slac_train.run`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slac_runtime.history import ACTOR_FRAMES, History
from slac_runtime.stop_request import StopRequest
from slac_train.checkpoint import agent_checkpoint, checkpoint_dir, load_checkpoint, save_checkpoint
from slac_train.config import TrainConfig
from slac_train.demonstrations import Demonstrations, sample_mixed
from slac_train.envs import get_task_spec, make_env
from slac_train.evaluation import Evaluator, evaluation_line
from slac_train.loop_state import Episode, LoopState, MetricMeans, Phase, RandomStreams
from slac_train.progress import TrainingProgress
from slac_train.replay_buffer import ReplayBuffer
from slac_train.run import (
    Cadence,
    Run,
    RunWriter,
    TrainingFailed,
    TrainingInterrupted,
    default_run_dir,
)
from slac_train.run_lock import RunLock
from slac_train.run_logging import trim_run_files
from slac_train.slac_agent import (
    Batch,
    NonFiniteLossError,
    SlacAgent,
    check_finite,
    resolve_device,
)

# (TrainingFailed and TrainingInterrupted, what train() raises, are slac_train.run's.)
__all__ = [
    "MUJOCO_RENDERED_SUITES",
    "RESUMABLE_OVERRIDES",
    "STOP_MESSAGE",
    "Trainer",
    "TrainingFailed",
    "TrainingInterrupted",
    "checkpoint_to_resume",
    "env_options",
    "make_task_env",
    "read_inputs",
    "set_up_torch",
    "start_run_dir",
]

# Config fields that may change when a run is resumed (budgets, schedules, system settings).
RESUMABLE_OVERRIDES = frozenset(
    {
        "total_env_steps",
        "eval_every_env_steps",
        "eval_episodes",
        "eval_deterministic",
        "eval_video",
        "reconstruction_video",
        "reconstruction_steps",
        "log_every_updates",
        "checkpoint_every_env_steps",
        "checkpoint_every_pretrain_updates",
        "keep_checkpoints",
        "device",
        "num_threads",
        "fast_encoder",
        "progress",
        "save_buffer",
    }
)

STOP_MESSAGE = (
    "\n{signal}: writing a checkpoint at the next safe point (send it again to stop at once)"
)

# Suites whose frames MuJoCo's renderer draws (their tasks take ``fast_render``).
MUJOCO_RENDERED_SUITES = ("dmc", "gym", "dclaw")


def env_options(config: TrainConfig, suite: str) -> dict[str, Any]:
    """The task options a run's config sets: the renderer's fast mode for MuJoCo-rendered
    suites, and the D'Claw's randomisation switches (``randomization``)."""
    options = {"fast_render": config.fast_render} if suite in MUJOCO_RENDERED_SUITES else {}
    if config.randomization != "task":
        if suite != "dclaw":
            raise ValueError(
                f"--randomization {config.randomization} applies to D'Claw tasks; {config.task} "
                "is not one (leave --randomization at task)"
            )
        from slac_train.envs.dclaw import RANDOMIZATION_SETTINGS

        options.update(RANDOMIZATION_SETTINGS[config.randomization])
    return options


def make_task_env(config: TrainConfig, suite: str, seed: int):
    """The run's task as ``config`` sets it up, seeded with ``seed``."""
    return make_env(
        config.task,
        seed=seed,
        action_repeat=config.action_repeat,
        image_size=config.image_size,
        **env_options(config, suite),
    )


def checkpoint_to_resume(
    run_dir: Path, overrides: dict[str, Any]
) -> tuple[TrainConfig, dict[str, Any], dict[str, Any], RunLock]:
    """Lock ``run_dir`` and read its latest checkpoint: ``(config, checkpoint, changed, lock)``,
    the config with the ``overrides`` that change it (``changed``; only ``RESUMABLE_OVERRIDES``
    may). ``metrics.jsonl``, ``eval.csv`` and the videos are cut back to the checkpoint, so that
    they hold one history."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory {run_dir}")
    lock = RunLock(run_dir).acquire()
    try:
        state = load_checkpoint(run_dir)
        if state.get("imitation") is not None:
            raise ValueError(
                f"{state['path']} is a slac-imitate checkpoint, which slac-train cannot continue: "
                f"start a slac-train run from its policy with --init-policy {run_dir}"
            )
        lacking = sorted({"config", "counters", "agent", "rng"} - set(state))
        if lacking:
            raise ValueError(
                f"{state['path']} is not a slac-train checkpoint (it has no {', '.join(lacking)})"
            )
        config = TrainConfig.from_dict(state["config"])
        changed = {k: v for k, v in overrides.items() if getattr(config, k) != v}
        refused = sorted(set(changed) - RESUMABLE_OVERRIDES)
        if refused:
            raise ValueError(
                f"cannot change {', '.join(refused)} when resuming {run_dir}: "
                "these define the run; start a new run instead"
            )
        config = config.replace(**changed, run_dir=str(run_dir))
        trim_run_files(run_dir, state.get("log_sizes"), int(state["counters"]["env_step"]))
    except BaseException:
        lock.release()
        raise
    return config, state, changed, lock


def set_up_torch(config: TrainConfig, new_run: bool) -> torch.device:
    """Torch's threads and, for a new run, the global seeds, as ``config`` says; the device."""
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick the fastest
    if new_run:
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
    return device


def read_inputs(config: TrainConfig, suite: str, agent: SlacAgent, env) -> Demonstrations | None:
    """A new run's inputs: its demonstrations (``demos``), returned, and its starting policy
    (``init_policy``), loaded into ``agent``."""
    demos = None
    if config.demos:
        frame_shape, action_dim = env.observation_space.shape, env.action_space.shape[0]
        demos = Demonstrations.load(config.demos, frame_shape, action_dim, env.action_repeat)
        for note in demos.setting_notes(config.task, env_options(config, suite)):
            print(f"note: {note}")
    if config.init_policy:
        from slac_train.policy_init import init_policy

        init_policy(agent, config.init_policy, env.action_repeat)
    return demos


def start_run_dir(
    config: TrainConfig, stop: StopRequest, demos: Demonstrations | None
) -> tuple[Run, TrainConfig]:
    """Lock a new run's directory and write its config there, with its inputs (``demos``,
    ``init_policy``) as an ``inputs`` record: the run, and the config naming its directory."""
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    run = Run.start(run_dir, stop, refusal=f"resume it with --resume {run_dir}")
    config = config.replace(run_dir=str(run_dir))
    config.save_json(run_dir / "config.json")
    if demos is not None:
        demos.copy_into(run_dir)
    if demos is not None or config.init_policy:
        run.logger.log(
            "inputs",
            0,
            {},
            demos=demos.record() if demos is not None else None,
            demo_windows=demos.buffer.num_windows() if demos is not None else 0,
            init_policy=config.init_policy,
        )
    return run, config


class Trainer(RunWriter):
    """Owns the environments, agent, replay buffer, loop state and the run directory.

    ``Trainer(config)`` starts a new run; ``Trainer.resume(run_dir)`` continues one from its latest
    checkpoint. ``train()`` runs to ``total_env_steps`` (or to ``stop_at_env_step``, stopping at
    an episode end with a checkpoint).
    """

    def __init__(
        self,
        config: TrainConfig,
        _checkpoint: dict[str, Any] | None = None,
        _lock: RunLock | None = None,
    ):
        self.spec = get_task_spec(config.task)  # unknown task: the registry's one-line error
        self.config = config = config.resolved(self.spec.action_repeat)
        self.device = set_up_torch(config, new_run=_checkpoint is None)
        self.env = make_task_env(config, self.spec.suite, config.seed)
        self.eval_env = make_task_env(config, self.spec.suite, config.seed + 1)
        self.action_dim = int(self.env.action_space.shape[0])
        self.frame_shape = tuple(self.env.observation_space.shape)
        self.agent = SlacAgent(config, self.action_dim, self.device)
        self.history = History(
            self.action_dim, self.frame_shape, length=ACTOR_FRAMES, dtype=np.uint8
        )
        self.rng = RandomStreams.seeded(config.seed)  # each saved in checkpoints
        self.loop = LoopState(next_checkpoint_env_step=config.checkpoint_every_env_steps)
        self.episode: Episode | None = None  # the training episode in progress
        self.random_returns: list[float] = []  # episodes of the initial random collection
        self.metrics = MetricMeans()
        self.demos: Demonstrations | None = None
        self._stop = StopRequest(STOP_MESSAGE)
        if _checkpoint is None:
            try:  # (before the run directory: a file that cannot be read leaves none)
                self.demos = read_inputs(config, self.spec.suite, self.agent, self.env)
            except BaseException:
                self.env.close()
                self.eval_env.close()
                raise
            self.buffer = ReplayBuffer(config.buffer_capacity, self.frame_shape, self.action_dim)
            self._run, self.config = start_run_dir(config, self._stop, self.demos)
        else:
            purge_step = int(_checkpoint["counters"]["env_step"])
            self._run = Run(config.run_dir, _lock, self._stop, purge_step=purge_step)
        self._run.own(self.env)
        self._run.own(self.eval_env)
        self.evaluator = Evaluator(self.config, self.eval_env, self.agent, self.rng.eval, self._run)
        if _checkpoint is not None:
            try:
                self._restore(_checkpoint)
            except BaseException:
                self.close()
                raise
        (self.run_dir / "videos").mkdir(exist_ok=True)

    # -- resume ---------------------------------------------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | Path, **overrides: Any) -> Trainer:
        """Continue the run in ``run_dir`` from its latest checkpoint.

        ``overrides`` may change budgets, schedules and system settings (``RESUMABLE_OVERRIDES``).
        The run directory is locked first (another process writing it is refused with
        :class:`~slac_train.run_lock.RunInUseError`), and ``metrics.jsonl``, ``eval.csv`` and the
        videos are cut back to the checkpoint, so that they hold one history.
        """
        config, state, changed, lock = checkpoint_to_resume(Path(run_dir), overrides)
        try:
            trainer = cls(config, _checkpoint=state, _lock=lock)
        except BaseException:
            lock.release()
            raise
        trainer.loop.reopen(trainer.config)
        trainer.config.save_json(trainer.run_dir / "config.json")  # the settings from now on
        trainer.logger.log(
            "resume", trainer.loop.env_step, {}, checkpoint=state["path"], changed=changed
        )
        return trainer

    def _restore(self, state: dict[str, Any]) -> None:
        if int(state["action_dim"]) != self.action_dim:
            raise ValueError(
                f"checkpoint action dimension {state['action_dim']} != task's {self.action_dim}"
            )
        self.agent.load_state_dict(state["agent"])
        self.loop = LoopState.from_dict(state["counters"])
        self.evaluator.history = list(state["eval_history"])
        self.random_returns = [float(r) for r in state.get("random_returns", [])]
        self.rng.restore(state["rng"])
        buffer_file = state.get("buffer_file")
        buffer = checkpoint_dir(self.run_dir) / buffer_file if buffer_file else None
        if buffer is not None and buffer.is_file():
            self.buffer = ReplayBuffer.load(buffer)
        else:
            print(
                "note: no replay buffer was saved with this checkpoint; training continues with "
                "an empty one, re-collecting random data first"
            )
            cfg = self.config
            self.buffer = ReplayBuffer(cfg.buffer_capacity, self.frame_shape, self.action_dim)
            self.loop.collect_again(cfg.initial_collection_steps)
        if state.get("demos"):
            self.demos = Demonstrations.reload(
                self.run_dir,
                state["demos"],
                self.frame_shape,
                self.action_dim,
                self.env.action_repeat,
            )
        self.metrics.restore(state, self.device)
        if state.get("episode") is not None:
            self.episode = Episode.replay(self.env, self.history, state["episode"])
        elif state.get("mid_episode"):
            print(
                "note: the run was interrupted in the middle of an episode; "
                "a new episode starts now"
            )
        self._run.elapsed_before = self.loop.elapsed_s

    # -- what tests and commands read -----------------------------------------------------------
    @property
    def counters(self) -> dict[str, Any]:
        """The loop's counters and phase as plain values (a checkpoint's ``counters``)."""
        return self.loop.to_dict()

    @property
    def eval_history(self) -> list[dict[str, Any]]:
        return self.evaluator.history

    @property
    def needs_reset(self) -> bool:
        """True between episodes."""
        return self.episode is None

    @property
    def _last_obs(self) -> np.ndarray:
        """The frame the agent saw last (the history's newest)."""
        return self.history.items[-1]

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        self.loop.elapsed_s = self._run.elapsed_s()
        episode = self.episode
        return {
            **agent_checkpoint(self.config, self.action_dim, self.env, self.agent),
            "counters": self.loop.to_checkpoint(),
            "eval_history": list(self.eval_history),
            "random_returns": list(self.random_returns),
            "demos": self.demos.record() if self.demos is not None else None,
            "mid_episode": episode is not None,
            "episode": None if episode is None else episode.record(self._last_obs, self.action_dim),
            # the training metrics summed since the last `train` record (logged every N updates)
            **self.metrics.state(),
            "rng": self.rng.state(),
        }

    def save_checkpoint(self) -> Path:
        """Write a checkpoint. Its ``checkpoint`` record is logged first and the checkpoint holds
        the sizes of the log files after it, so that a resume cuts them back to exactly this
        point."""
        s = self.loop
        name = f"ckpt-{s.env_step:010d}-{s.total_updates:010d}"
        path = checkpoint_dir(self.run_dir) / f"{name}.pt"
        self.logger.log("checkpoint", s.env_step, {}, path=str(path), agent_step=s.agent_step)
        state = self.checkpoint_state()
        state["log_sizes"] = self.logger.file_sizes()
        buffer = self.buffer if self.config.save_buffer else None
        return save_checkpoint(self.run_dir, name, state, buffer, keep=self.config.keep_checkpoints)

    # -- the loop -------------------------------------------------------------------------------
    def train(self, stop_at_env_step: int | None = None) -> dict[str, Any]:
        """Run until the budget (or ``stop_at_env_step``, at an episode end) is reached.

        Returns the counters. Ctrl-C or SIGTERM writes a checkpoint at the next safe point and
        raises :class:`TrainingInterrupted` (a second one raises it at once, writing nothing);
        a NaN/inf loss raises :class:`TrainingFailed` naming the loss and the step.
        """
        print(self.buffer.describe())
        if self.demos is not None:
            print(self.demos.describe() + f"; {self.config.demo_ratio:g} of every batch")
        print(f"run directory: {self.run_dir}")
        reason = self.config.no_updates_reason(self.env.action_repeat)
        if reason and self.loop.phase is Phase.COLLECT:
            print(f"WARNING: {reason}", flush=True)
        cfg = self.config
        try:
            with (
                self._run.checkpoint_on_stop(self.save_checkpoint),
                self._stop.installed(),
                TrainingProgress(cfg.total_env_steps, self.loop.env_step, cfg.progress) as bar,
            ):
                self._progress = bar
                self._run_loop(stop_at_env_step)
        except NonFiniteLossError as error:
            s = self.loop
            raise self._run.failed(
                f"{', '.join(error.names)} became NaN/inf at {s.describe()}; training stopped. "
                + self._run.latest_checkpoint_note(),
                s.env_step,
                losses=error.names,
            ) from error
        self.logger.flush()
        return self.counters

    def _run_loop(self, stop_at_env_step: int | None) -> None:
        s = self.loop
        while s.phase is not Phase.DONE:
            self._stop.check()
            # (here, not in the agent step: an evaluation a stop abandoned runs on resume)
            if s.phase is Phase.TRAIN and s.env_step >= s.next_eval_env_step:
                self._evaluate()
            if s.env_step >= self.config.total_env_steps:
                self._finish()
                continue
            if self.episode is None:
                if self._at_episode_boundary(stop_at_env_step):
                    return
                self._start_episode()
            self._agent_step()

    def _at_episode_boundary(self, stop_at_env_step: int | None) -> bool:
        """Phase changes, checkpoints and the stop request, between episodes. True = stop."""
        s, cfg = self.loop, self.config
        if s.phase is Phase.COLLECT and s.agent_step >= s.collection_target(
            cfg.initial_collection_steps
        ):
            s.phase = Phase.PRETRAIN if s.refill_target is None else Phase.TRAIN
        if s.phase is Phase.PRETRAIN:
            self._pretrain()
            s.phase = Phase.TRAIN
            self._evaluate()
        if s.env_step >= s.next_checkpoint_env_step:
            self.save_checkpoint()
            s.next_checkpoint_env_step = Cadence(cfg.checkpoint_every_env_steps).next_after(
                s.env_step
            )
        if stop_at_env_step is not None and s.env_step >= stop_at_env_step:
            self.save_checkpoint()
            return True
        return False

    def _start_episode(self) -> None:
        self.episode = Episode(seed=int(self.rng.episode.integers(2**31)))
        obs, _ = self.env.reset(seed=self.episode.seed)
        self.buffer.start_episode(obs)
        self.history.reset(obs)

    def _agent_step(self) -> None:
        s, cfg, episode = self.loop, self.config, self.episode
        if s.phase is Phase.COLLECT:
            action = self.rng.action.uniform(-1.0, 1.0, size=self.action_dim).astype(np.float32)
        else:
            action = self.agent.act(self.history, deterministic=False)
        metrics = self._update() if s.phase is Phase.TRAIN else None  # overlaps the env step
        obs, reward, terminated, truncated, info = self.env.step(action)
        episode.agent_steps += 1
        if (
            cfg.max_episode_agent_steps is not None
            and episode.agent_steps >= cfg.max_episode_agent_steps
        ):
            truncated = True
        self.buffer.add(action, reward, terminated, obs)
        self.history.append(action, obs)
        episode.actions.append(np.asarray(action, dtype=np.float32))
        env_steps = int(info.get("env_steps", self.env.action_repeat))
        s.agent_step += 1
        s.env_step += env_steps
        episode.episode_return += float(reward)
        if metrics is not None:
            check_finite(metrics)
            self._log_metrics(metrics)
        self._show_progress(env_steps)
        if terminated or truncated:
            self._end_episode(info)

    def _end_episode(self, info: dict[str, Any]) -> None:
        s, episode = self.loop, self.episode
        self.episode = None
        s.episodes += 1
        values = {
            "train/episode_return": episode.episode_return,
            "train/episode_agent_steps": episode.agent_steps,
        }
        if "success" in info:
            values["train/success"] = float(info["success"])
        if s.phase is Phase.COLLECT:
            self.random_returns.append(episode.episode_return)
        self.logger.log("episode", s.env_step, values, agent_step=s.agent_step, phase=s.phase.value)

    def _sample(self, batch_size: int) -> Batch:
        """A batch of windows: from the replay buffer, mixed with the demonstrations (in the
        ratio ``demo_ratio``) when the run has them."""
        if self.demos is None:
            arrays = self.buffer.sample(batch_size, self.rng.sample)
        else:
            arrays = sample_mixed(
                self.buffer, self.demos.buffer, batch_size, self.config.demo_ratio, self.rng.sample
            )
        return Batch.from_numpy(arrays, self.device)

    def _update(self) -> dict[str, torch.Tensor]:
        metrics: dict[str, torch.Tensor] = {}
        cfg = self.config
        for _ in range(cfg.updates_per_step):
            index = self.loop.updates
            if cfg.update_structure == "single-batch":
                metrics = self.agent.update(self._sample(cfg.batch_size_actor_critic), index)
            else:
                metrics = self.agent.update_model(self._sample(cfg.batch_size_model))
                metrics.update(
                    self.agent.update_actor_critic(self._sample(cfg.batch_size_actor_critic), index)
                )
            self.loop.updates += 1
        return metrics

    def _log_metrics(self, metrics: dict[str, torch.Tensor]) -> None:
        """Add ``metrics`` to the sums; every ``log_every_updates`` updates log their means."""
        self.metrics.add(metrics)
        s = self.loop
        if s.total_updates % self.config.log_every_updates != 0:
            return
        values = self.metrics.take()
        values["time/elapsed_s"] = self._run.elapsed_s()
        pretraining = s.phase is Phase.PRETRAIN
        if pretraining:  # at the collection's last env step; per update: metrics.jsonl
            values = {f"pretrain/{k}": v for k, v in values.items()}
        self.logger.log(
            "pretrain" if pretraining else "train",
            s.env_step,
            values,
            agent_step=s.agent_step,
            updates=s.updates,
            pretrain_updates=s.pretrain_updates,
        )

    def _pretrain(self) -> None:
        s, cfg = self.loop, self.config
        if s.pretrain_updates >= cfg.model_pretrain_steps:
            return
        demos = (
            f" and {len(self.demos.buffer):,} demonstration frames"
            if self.demos is not None
            else ""
        )
        print(
            f"pre-training the latent model: {cfg.model_pretrain_steps:,} updates "
            f"on {len(self.buffer):,} frames{demos}"
        )
        checkpoints = Cadence(cfg.checkpoint_every_pretrain_updates)
        with self._progress.inner_bar(
            cfg.model_pretrain_steps, s.pretrain_updates, "update"
        ) as bar:
            while s.pretrain_updates < cfg.model_pretrain_steps:
                self._stop.check()
                metrics = self.agent.update_model(self._sample(cfg.batch_size_model))
                s.pretrain_updates += 1
                check_finite(metrics)
                self._log_metrics(metrics)
                bar.update(1)
                self._show_progress(0)
                if checkpoints.due(s.pretrain_updates):
                    self.save_checkpoint()

    def _show_progress(self, env_steps: int) -> None:
        s, cfg = self.loop, self.config
        self._progress.update(
            env_steps,
            s.phase.value,
            s.phase_progress(cfg),
            f"run {s.env_step:,}/{cfg.total_env_steps:,} env steps, {s.updates:,} updates",
            self.evaluator.last_return_text,
        )

    def _evaluate(self) -> None:
        s, cfg = self.loop, self.config
        if cfg.eval_episodes > 0:
            row = self.evaluator.evaluate(s.env_step, s.agent_step, self.random_returns)
            self._progress.write(evaluation_line(row))
        s.next_eval_env_step = Cadence(cfg.eval_every_env_steps).next_after(s.env_step)

    def _finish(self) -> None:
        s = self.loop
        if not self.eval_history or self.eval_history[-1]["env_step"] != s.env_step:
            if s.phase is Phase.TRAIN:
                self._evaluate()
        s.phase = Phase.DONE
        self.save_checkpoint()
        last_eval = self.eval_history[-1] if self.eval_history else None
        self._run.write_summary({"counters": self.counters, "last_eval": last_eval})
