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

Counters are kept in agent steps and in environment (simulator) steps; budgets, schedules and
every logged scalar's x-axis are in simulator steps, as the paper's plots are. Checkpoints are
written at episode ends, during pre-training, and on Ctrl-C or SIGTERM at the next safe point (after
the agent step or update in progress; an evaluation in progress is abandoned and runs again on
resume). A resumed run continues exactly as an uninterrupted one would: a stop in the middle of an
episode records the episode's seed and actions, and the resume replays them in a fresh simulator
(checked against the episode's last frame) to stand where the run stopped. One process at a time
writes a run directory (:mod:`slac_train.run_lock`).
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slac_runtime.history import ACTOR_FRAMES, History
from slac_runtime.options import signal_handlers
from slac_train.checkpoint import (
    capture_global_rng,
    checkpoint_dir,
    generator_state,
    latest_checkpoint,
    load_checkpoint,
    restore_global_rng,
    save_checkpoint,
    set_generator_state,
)
from slac_train.config import TrainConfig
from slac_train.demonstrations import Demonstrations, sample_mixed
from slac_train.envs import get_task_spec, make_env
from slac_train.evaluation import EpisodeStopped, reconstruction_frames, run_episode
from slac_train.progress import PhaseClock, ProgressLines, format_duration, is_terminal
from slac_train.replay_buffer import ReplayBuffer
from slac_train.rollout_media import episode_captions, write_video
from slac_train.run_lock import RunLock
from slac_train.run_logging import RunLogger, frame_strip, plot_learning_curve, trim_run_files
from slac_train.slac_agent import (
    Batch,
    NonFiniteLossError,
    SlacAgent,
    check_finite,
    metrics_to_floats,
    resolve_device,
)

PHASES = ("collect", "pretrain", "train", "done")

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


class StopRequest:
    """Signals (Ctrl-C, SIGTERM) as a request to stop at the next safe point: the loop reads
    :attr:`requested` and writes a checkpoint; a second signal stops at once (KeyboardInterrupt).

    :attr:`signum` is the first signal received (the command exits with 128 + it). ``message`` is
    printed when a stop is first requested; ``{signal}`` in it is replaced by the signal's name.
    The same signal again within ``REPEAT_WINDOW_S`` is the same request delivered twice (to a
    process group and forwarded by a parent, as Slurm and wrapper scripts do), not a second one.
    """

    REPEAT_WINDOW_S = 1.0

    def __init__(self, message: str) -> None:
        self.message = message
        self.requested = False
        self.signum: int | None = None
        self._requested_at = 0.0

    @property
    def exit_code(self) -> int:
        """128 + the signal that asked to stop (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + int(self.signum if self.signum is not None else signal.SIGINT)

    @contextmanager
    def installed(
        self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
    ) -> Iterator[None]:
        """Handle ``signals`` this way for the block (in the main thread only; elsewhere: no
        change)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.requested:
                since = time.monotonic() - self._requested_at
                if signum == self.signum and since < self.REPEAT_WINDOW_S:
                    return
                raise KeyboardInterrupt
            self.requested = True
            self.signum = signum
            self._requested_at = time.monotonic()
            print(self.message.replace("{signal}", signal.Signals(signum).name), flush=True)

        with signal_handlers(signals, handler):
            yield


class _SafePoint(Exception):
    """A stop was requested and the loop reached a safe point: write a checkpoint and stop."""


class TrainingInterrupted(Exception):
    """Stopped by a signal. At a safe point a checkpoint was written (``checkpoint``,
    ``written``); a second signal stops at once, from a state that may be half-updated, so nothing
    is written and ``checkpoint`` is the latest one before (None: there is none).

    ``signum``: the signal (the command exits with ``exit_code``, 128 + it).
    """

    def __init__(
        self, checkpoint: Path | None, signum: int = signal.SIGINT, written: bool = True
    ) -> None:
        what = "checkpoint written to" if written else "stopped at once; latest checkpoint"
        super().__init__(f"interrupted; {what} {checkpoint}")
        self.checkpoint = checkpoint
        self.signum = int(signum)
        self.written = written

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class TrainingFailed(RuntimeError):
    """A loss became NaN/inf: the run stopped; the last good checkpoint is kept."""


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


def default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.runs_root) / f"{config.task}-{stamp}-s{config.seed}"


class Trainer:
    """Owns the environment(s), agent, replay buffer, counters and the run directory.

    ``Trainer(config)`` starts a new run; ``Trainer.resume(run_dir)`` continues one from its latest
    checkpoint. ``train()`` runs to ``total_env_steps`` (or to ``stop_at_env_step``, stopping at
    an episode end with a checkpoint).
    """

    def __init__(
        self,
        config: TrainConfig,
        _checkpoint: dict[str, Any] | None = None,
        _run_dir: Path | None = None,
        _lock: RunLock | None = None,
    ):
        spec = get_task_spec(
            config.task
        )  # unknown task -> UnknownTaskError with the registry's message
        self.spec = spec
        self.config = config = config.resolved(spec.action_repeat)
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = (
                True  # fixed batch shapes: let cuDNN pick the fastest kernels
            )

        if _checkpoint is None:
            random.seed(config.seed)
            np.random.seed(config.seed)
            torch.manual_seed(config.seed)
        self.env = make_env(
            config.task,
            seed=config.seed,
            action_repeat=config.action_repeat,
            image_size=config.image_size,
            **env_options(config, spec.suite),
        )
        self.eval_env = make_env(
            config.task,
            seed=config.seed + 1,
            action_repeat=config.action_repeat,
            image_size=config.image_size,
            **env_options(config, spec.suite),
        )
        self.action_dim = int(self.env.action_space.shape[0])
        self.frame_shape = tuple(self.env.observation_space.shape)
        self.agent = SlacAgent(config, self.action_dim, self.device)
        self.history = History(
            self.action_dim, self.frame_shape, length=ACTOR_FRAMES, dtype=np.uint8
        )

        # Independent random streams (each saved in checkpoints).
        self.action_rng = np.random.default_rng([config.seed, 1])  # random-collection actions
        self.sample_rng = np.random.default_rng([config.seed, 2])  # replay sampling
        self.episode_rng = np.random.default_rng([config.seed, 3])  # training episode seeds
        self.eval_rng = np.random.default_rng([config.seed, 4])  # evaluation episode seeds

        self.counters: dict[str, Any] = {
            "phase": "collect",
            "agent_step": 0,
            "env_step": 0,
            "episodes": 0,
            "updates": 0,
            "pretrain_updates": 0,
            "next_eval_env_step": 0,
            "next_checkpoint_env_step": config.checkpoint_every_env_steps,
            "elapsed_s": 0.0,
        }
        self.eval_history: list[dict[str, Any]] = []
        self.random_returns: list[float] = []  # episodes of the initial random collection
        self.needs_reset = True
        self.episode_return = 0.0
        self.episode_agent_steps = 0
        # the training episode in progress: its seed and actions (a mid-episode resume replays them)
        self._episode_seed = 0
        self._episode_actions: list[np.ndarray] = []
        self._stop = StopRequest(
            "\n{signal}: writing a checkpoint at the next safe point "
            "(send it again to stop at once)"
        )
        self._metric_sums: dict[str, torch.Tensor] = {}
        self._metric_count = 0
        self._last_eval_text = "-"
        self._session_start = time.perf_counter()
        self._elapsed_at_start = 0.0
        self._open_run_dir(_checkpoint, _run_dir, _lock)

    def _start_from_inputs(self) -> None:
        """A new run's inputs, read before its run directory is made: the demonstrations
        (``demos``) and the starting policy (``init_policy``)."""
        cfg = self.config
        if cfg.demos:
            self.demos = Demonstrations.load(
                cfg.demos, self.frame_shape, self.action_dim, self.env.action_repeat
            )
            for note in self.demos.setting_notes(cfg.task, env_options(cfg, self.spec.suite)):
                print(f"note: {note}")
        if cfg.init_policy:
            from slac_train.policy_init import init_policy

            init_policy(self.agent, cfg.init_policy, self.env.action_repeat)

    def _open_run_dir(
        self, checkpoint: dict[str, Any] | None, run_dir: Path | None, lock: RunLock | None
    ) -> None:
        """Lock the run directory and start a new run in it, or restore ``checkpoint``'s state."""
        self.demos: Demonstrations | None = None
        if checkpoint is None:
            try:  # (before the run directory: a file that cannot be read leaves none)
                self._start_from_inputs()
            except BaseException:
                self.env.close()
                self.eval_env.close()
                raise
            config = self.config
            self.buffer = ReplayBuffer(config.buffer_capacity, self.frame_shape, self.action_dim)
            self.run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
            self._lock = self._lock_new_run_dir()
            self.config = self.config.replace(run_dir=str(self.run_dir))
            self.config.save_json(self.run_dir / "config.json")
            if self.demos is not None:
                self.demos.copy_into(self.run_dir)
        else:
            self.run_dir = Path(run_dir)
            self._lock = lock if lock is not None else RunLock(self.run_dir).acquire()
            self._restore(checkpoint)
        (self.run_dir / "videos").mkdir(exist_ok=True)
        self.logger = RunLogger(
            self.run_dir, purge_step=self.counters["env_step"] if checkpoint else None
        )
        if checkpoint is None and (self.demos is not None or self.config.init_policy):
            self.logger.log(
                "inputs",
                0,
                {},
                demos=self.demos.record() if self.demos is not None else None,
                demo_windows=self.demos.buffer.num_windows() if self.demos is not None else 0,
                init_policy=self.config.init_policy,
            )

    def _lock_new_run_dir(self) -> RunLock:
        """Take the lock of a new run directory; refuse one that holds a run (or is being
        written)."""
        lock = RunLock(self.run_dir).acquire()
        if (self.run_dir / "checkpoints").exists():
            lock.release()
            raise FileExistsError(
                f"{self.run_dir} already holds a run; resume it with --resume {self.run_dir}"
            )
        return lock

    # ------------------------------------------------------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | Path, **overrides: Any) -> Trainer:
        """Continue the run in ``run_dir`` from its latest checkpoint.

        ``overrides`` may change budgets, schedules and system settings (``RESUMABLE_OVERRIDES``).
        The run directory is locked first (another process writing it is refused with
        :class:`~slac_train.run_lock.RunInUseError`), and ``metrics.jsonl``, ``eval.csv`` and the
        videos are cut back to the checkpoint, so that they hold one history.
        """
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"no run directory {run_dir}")
        lock = RunLock(run_dir).acquire()
        try:
            state = load_checkpoint(run_dir)
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
            trainer = cls(config, _checkpoint=state, _run_dir=run_dir, _lock=lock)
            trainer._extend_finished_run()
        except BaseException:
            lock.release()
            raise
        trainer.config.save_json(run_dir / "config.json")  # the settings in force from now on
        trainer.logger.log(
            "resume", trainer.counters["env_step"], {}, checkpoint=state["path"], changed=changed
        )
        return trainer

    def _extend_finished_run(self) -> None:
        """A finished run resumed with a larger budget goes on from where it finished."""
        c, cfg = self.counters, self.config
        if c["phase"] == "done" and c["env_step"] < cfg.total_env_steps:
            pretrained = c["pretrain_updates"] >= cfg.model_pretrain_steps
            c["phase"] = "train" if pretrained else "collect"

    def _restore(self, state: dict[str, Any]) -> None:
        if int(state["action_dim"]) != self.action_dim:
            raise ValueError(
                f"checkpoint action dimension {state['action_dim']} != task's {self.action_dim}"
            )
        self.agent.load_state_dict(state["agent"])
        self.counters = {
            k: v for k, v in state["counters"].items() if k not in ("agent_steps", "env_steps")
        }
        self.eval_history = list(state["eval_history"])
        self.random_returns = [float(r) for r in state.get("random_returns", [])]
        rng = state["rng"]
        restore_global_rng(rng["global"])
        set_generator_state(self.action_rng, rng["action"])
        set_generator_state(self.sample_rng, rng["sample"])
        set_generator_state(self.episode_rng, rng["episode"])
        set_generator_state(self.eval_rng, rng["eval"])
        buffer_file = state.get("buffer_file")
        if buffer_file and (checkpoint_dir(self.run_dir) / buffer_file).is_file():
            self.buffer = ReplayBuffer.load(checkpoint_dir(self.run_dir) / buffer_file)
        else:
            print(
                "note: no replay buffer was saved with this checkpoint; training continues with an "
                "empty one, re-collecting random data first"
            )
            self.buffer = ReplayBuffer(
                self.config.buffer_capacity, self.frame_shape, self.action_dim
            )
            if self.counters["phase"] == "train":
                self.counters["phase"] = "collect"
                self._refill_target = (
                    self.counters["agent_step"] + self.config.initial_collection_steps
                )
        if state.get("demos"):
            self.demos = Demonstrations.reload(
                self.run_dir,
                state["demos"],
                self.frame_shape,
                self.action_dim,
                self.env.action_repeat,
            )
        self._metric_sums = {k: v.to(self.device) for k, v in state.get("metric_sums", {}).items()}
        self._metric_count = int(state.get("metric_count", 0))
        if state.get("episode") is not None:
            self._replay_episode(state["episode"])
        elif state.get("mid_episode"):
            print(
                "note: the run was interrupted in the middle of an episode; "
                "a new episode starts now"
            )
        if self.eval_history:
            last = self.eval_history[-1]
            self._last_eval_text = f"{last['return_mean']:.1f}"
        self._elapsed_at_start = float(self.counters.get("elapsed_s", 0.0))

    def _replay_episode(self, episode: dict[str, Any]) -> None:
        """Stand in the middle of the episode a checkpoint was written in: reset the simulator with
        the episode's seed and take its actions again. The simulators are deterministic, so this
        ends on the recorded last frame; if it does not, a new episode starts (with a note)."""
        actions = np.asarray(episode["actions"], dtype=np.float32)
        obs, _ = self.env.reset(seed=int(episode["seed"]))
        self.history.reset(obs)
        ended = False
        for action in actions:
            if ended:
                break
            obs, _, terminated, truncated, _ = self.env.step(action)
            self.history.append(action, obs)
            ended = terminated or truncated
        if ended or not np.array_equal(obs, np.asarray(episode["last_frame"])):
            print(
                "note: the interrupted episode did not replay to its recorded last frame (the "
                "simulator is not deterministic here); a new episode starts now"
            )
            return
        self.needs_reset = False
        self._episode_seed = int(episode["seed"])
        self._episode_actions = list(actions)
        self.episode_return = float(episode["return"])
        self.episode_agent_steps = int(episode["agent_steps"])
        print(
            f"the interrupted episode was replayed ({self.episode_agent_steps} agent steps); "
            "it continues where it stopped"
        )

    @property
    def _last_obs(self) -> np.ndarray:
        """The frame the agent saw last (the history's newest)."""
        return self.history.items[-1]

    def _episode_state(self) -> dict[str, Any] | None:
        """What :meth:`_replay_episode` needs to stand in the episode in progress (None between
        episodes)."""
        if self.needs_reset:
            return None
        shape = (0, self.action_dim)
        actions = np.stack(self._episode_actions) if self._episode_actions else np.zeros(shape)
        return {
            "seed": self._episode_seed,
            # (tensors: checkpoints load with torch.load(weights_only=True))
            "actions": torch.from_numpy(actions.astype(np.float32)),
            "return": self.episode_return,
            "agent_steps": self.episode_agent_steps,
            "last_frame": torch.from_numpy(np.ascontiguousarray(self._last_obs)),
        }

    # ------------------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        self.counters["elapsed_s"] = self._elapsed_s()
        return {
            "config": self.config.to_dict(),
            "action_dim": self.action_dim,
            "task": self.config.task,
            "env": {
                "action_repeat": self.env.action_repeat,
                "control_period_s": float(self.env.control_period_s),
            },
            "agent": self.agent.state_dict(),
            # (agent_steps / env_steps: the names slac-export reads)
            "counters": dict(
                self.counters,
                agent_steps=self.counters["agent_step"],
                env_steps=self.counters["env_step"],
            ),
            "eval_history": list(self.eval_history),
            "random_returns": list(self.random_returns),
            "demos": self.demos.record() if self.demos is not None else None,
            "mid_episode": not self.needs_reset,
            "episode": self._episode_state(),
            # the training metrics summed since the last `train` record (logged every N updates)
            "metric_sums": {k: v.detach().cpu() for k, v in self._metric_sums.items()},
            "metric_count": self._metric_count,
            "rng": {
                "global": capture_global_rng(),
                "action": generator_state(self.action_rng),
                "sample": generator_state(self.sample_rng),
                "episode": generator_state(self.episode_rng),
                "eval": generator_state(self.eval_rng),
            },
        }

    def save_checkpoint(self) -> Path:
        """Write a checkpoint. Its ``checkpoint`` record is logged first and the checkpoint holds
        the sizes of the log files after it, so that a resume cuts them back to exactly this
        point."""
        c = self.counters
        name = f"ckpt-{c['env_step']:010d}-{c['updates'] + c['pretrain_updates']:010d}"
        path = checkpoint_dir(self.run_dir) / f"{name}.pt"
        self.logger.log("checkpoint", c["env_step"], {}, path=str(path), agent_step=c["agent_step"])
        state = self.checkpoint_state()
        state["log_sizes"] = self.logger.file_sizes()
        buffer = self.buffer if self.config.save_buffer else None
        return save_checkpoint(self.run_dir, name, state, buffer, keep=self.config.keep_checkpoints)

    def _elapsed_s(self) -> float:
        return self._elapsed_at_start + time.perf_counter() - self._session_start

    # ------------------------------------------------------------------------------------------
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
        if reason and self.counters["phase"] == "collect":
            print(f"WARNING: {reason}", flush=True)
        try:
            with self._sigint_as_request(), self._progress_bar() as self._bar:
                c = self.counters
                while c["phase"] != "done":
                    self._check_stop()
                    # (here, not in the agent step: an evaluation a stop abandoned runs on resume)
                    if c["phase"] == "train" and c["env_step"] >= c["next_eval_env_step"]:
                        self._evaluate()
                    if c["env_step"] >= self.config.total_env_steps:
                        self._finish()
                        continue
                    if self.needs_reset:
                        if self._at_episode_boundary(stop_at_env_step):
                            break
                        self._start_episode()
                    self._agent_step()
        except _SafePoint:
            path = self.save_checkpoint()
            self.logger.flush()
            raise TrainingInterrupted(path, self._stop.signum or signal.SIGINT) from None
        except KeyboardInterrupt:
            self.logger.flush()
            try:
                latest: Path | None = latest_checkpoint(self.run_dir)
            except FileNotFoundError:
                latest = None
            signum = self._stop.signum or signal.SIGINT
            raise TrainingInterrupted(latest, signum, written=False) from None
        except NonFiniteLossError as error:
            c = self.counters
            message = (
                f"{', '.join(error.names)} became NaN/inf at update "
                f"{c['updates'] + c['pretrain_updates']} (agent step {c['agent_step']}, "
                f"env step {c['env_step']}, "
                f"phase {c['phase']}); training stopped. "
            )
            try:
                message += f"The last good checkpoint is {latest_checkpoint(self.run_dir)}."
            except FileNotFoundError:
                message += "No checkpoint was written before."
            self.logger.log("error", c["env_step"], {}, message=message, losses=error.names)
            self.logger.flush()
            raise TrainingFailed(message) from error
        self.logger.flush()
        return dict(self.counters)

    def close(self) -> None:
        """Release the simulators, the TensorBoard writer and the run directory's lock."""
        self.logger.close()
        self.env.close()
        self.eval_env.close()
        self._lock.release()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _interrupt_requested(self) -> bool:
        return self._stop.requested

    def _sigint_as_request(self) -> AbstractContextManager[None]:
        """The first Ctrl-C or SIGTERM asks the loop to stop at the next safe point (after the
        current agent step or model update, with a checkpoint); a second one stops at once."""
        return self._stop.installed((signal.SIGINT, signal.SIGTERM))

    def _check_stop(self) -> None:
        if self._interrupt_requested:
            raise _SafePoint

    @contextmanager
    def _progress_bar(self):
        """A progress bar on a terminal; elsewhere (a log, a pipe) plain lines every 30 s.

        Either shows the phase in progress and its own ETA (collection, pre-training and training
        go at very different speeds, so the run's average rate says little about what is left).
        """
        from tqdm import tqdm

        self._clock = PhaseClock()
        self._lines = ProgressLines(every_s=30.0)
        self._bar_shown = self.config.progress and is_terminal()
        bar = tqdm(
            total=self.config.total_env_steps,
            initial=self.counters["env_step"],
            unit="env step",
            disable=not self._bar_shown,
            dynamic_ncols=True,
            smoothing=0.05,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]",
        )
        try:
            yield bar
        finally:
            bar.close()

    def _phase_progress(self) -> tuple[int, int, str]:
        """``(done, total, unit)`` of the phase in progress."""
        c, cfg = self.counters, self.config
        if c["phase"] == "collect":
            target = getattr(self, "_refill_target", None) or cfg.initial_collection_steps
            return c["agent_step"], target, "agent steps"
        if c["phase"] == "pretrain":
            return c["pretrain_updates"], cfg.model_pretrain_steps, "updates"
        return c["env_step"], cfg.total_env_steps, "env steps"

    def _update_bar(self, env_steps: int) -> None:
        self._bar.update(env_steps)
        if not self.config.progress:
            return
        done, total, unit = self._phase_progress()
        self._clock.observe(self.counters["phase"], done, total)
        eta = format_duration(self._clock.eta_s())
        if self._bar_shown:
            self._bar.set_postfix_str(
                f"{self.counters['phase']} ETA {eta} eval={self._last_eval_text}", refresh=False
            )
        else:
            c = self.counters
            run = f"run {c['env_step']:,}/{self.config.total_env_steps:,} env steps, "
            self._lines.maybe_write(
                self._clock, unit, run + f"{c['updates']:,} updates, eval {self._last_eval_text}"
            )

    # ------------------------------------------------------------------------------------------
    def _at_episode_boundary(self, stop_at_env_step: int | None) -> bool:
        """Phase changes, checkpoints and the stop request, between episodes. True = stop."""
        c, cfg = self.counters, self.config
        refill = getattr(self, "_refill_target", None)
        if c["phase"] == "collect" and c["agent_step"] >= (
            refill if refill is not None else cfg.initial_collection_steps
        ):
            c["phase"] = "pretrain" if refill is None else "train"
        if c["phase"] == "pretrain":
            self._pretrain()
            c["phase"] = "train"
            self._evaluate()
        if c["env_step"] >= c["next_checkpoint_env_step"]:
            self.save_checkpoint()
            c["next_checkpoint_env_step"] = (
                c["env_step"] // cfg.checkpoint_every_env_steps + 1
            ) * cfg.checkpoint_every_env_steps
        if stop_at_env_step is not None and c["env_step"] >= stop_at_env_step:
            self.save_checkpoint()
            return True
        return False

    def _start_episode(self) -> None:
        self._episode_seed = int(self.episode_rng.integers(2**31))
        self._episode_actions = []
        obs, _ = self.env.reset(seed=self._episode_seed)
        self.buffer.start_episode(obs)
        self.history.reset(obs)
        self.needs_reset = False
        self.episode_return = 0.0
        self.episode_agent_steps = 0

    def _agent_step(self) -> None:
        c, cfg = self.counters, self.config
        if c["phase"] == "collect":
            action = self.action_rng.uniform(-1.0, 1.0, size=self.action_dim).astype(np.float32)
        else:
            action = self.agent.act(self.history, deterministic=False)
        metrics = (
            self._update() if c["phase"] == "train" else None
        )  # overlaps the env step on a GPU
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_agent_steps += 1
        if (
            cfg.max_episode_agent_steps is not None
            and self.episode_agent_steps >= cfg.max_episode_agent_steps
        ):
            truncated = True
        self.buffer.add(action, reward, terminated, obs)
        self.history.append(action, obs)
        self._episode_actions.append(np.asarray(action, dtype=np.float32))
        env_steps = int(info.get("env_steps", self.env.action_repeat))
        c["agent_step"] += 1
        c["env_step"] += env_steps
        self.episode_return += float(reward)
        if metrics is not None:
            check_finite(metrics)
            self._accumulate(metrics)
        self._update_bar(env_steps)
        if terminated or truncated:
            self.needs_reset = True
            c["episodes"] += 1
            values = {
                "train/episode_return": self.episode_return,
                "train/episode_agent_steps": self.episode_agent_steps,
            }
            if "success" in info:
                values["train/success"] = float(info["success"])
            if c["phase"] == "collect":
                self.random_returns.append(self.episode_return)
            self.logger.log(
                "episode", c["env_step"], values, agent_step=c["agent_step"], phase=c["phase"]
            )

    def _sample(self, batch_size: int) -> Batch:
        """A batch of windows: from the replay buffer, mixed with the demonstrations (in the
        ratio ``demo_ratio``) when the run has them."""
        if self.demos is None:
            arrays = self.buffer.sample(batch_size, self.sample_rng)
        else:
            arrays = sample_mixed(
                self.buffer,
                self.demos.buffer,
                batch_size,
                self.config.demo_ratio,
                self.sample_rng,
            )
        return Batch.from_numpy(arrays, self.device)

    def _update(self) -> dict[str, torch.Tensor]:
        metrics: dict[str, torch.Tensor] = {}
        cfg = self.config
        for _ in range(cfg.updates_per_step):
            index = self.counters["updates"]
            if cfg.update_structure == "single-batch":
                metrics = self.agent.update(self._sample(cfg.batch_size_actor_critic), index)
            else:
                metrics = self.agent.update_model(self._sample(cfg.batch_size_model))
                metrics.update(
                    self.agent.update_actor_critic(self._sample(cfg.batch_size_actor_critic), index)
                )
            self.counters["updates"] += 1
        return metrics

    def _accumulate(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self._metric_sums[key] = self._metric_sums.get(key, 0.0) + value.detach()
        self._metric_count += 1
        c = self.counters
        if (c["updates"] + c["pretrain_updates"]) % self.config.log_every_updates == 0:
            means = {k: v / self._metric_count for k, v in self._metric_sums.items()}
            values = metrics_to_floats(means)
            values["time/elapsed_s"] = self._elapsed_s()
            pretraining = c["phase"] == "pretrain"
            if pretraining:  # at the collection's last env step; per update: metrics.jsonl
                values = {f"pretrain/{k}": v for k, v in values.items()}
            self.logger.log(
                "pretrain" if pretraining else "train",
                c["env_step"],
                values,
                agent_step=c["agent_step"],
                updates=c["updates"],
                pretrain_updates=c["pretrain_updates"],
            )
            self._metric_sums, self._metric_count = {}, 0

    def _pretrain(self) -> None:
        c, cfg = self.counters, self.config
        if c["pretrain_updates"] >= cfg.model_pretrain_steps:
            return
        from tqdm import tqdm

        demos = (
            f" and {len(self.demos.buffer):,} demonstration frames"
            if self.demos is not None
            else ""
        )
        print(
            f"pre-training the latent model: {cfg.model_pretrain_steps:,} updates "
            f"on {len(self.buffer):,} frames{demos}"
        )
        with tqdm(
            total=cfg.model_pretrain_steps,
            initial=c["pretrain_updates"],
            unit="update",
            disable=not self._bar_shown,
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            while c["pretrain_updates"] < cfg.model_pretrain_steps:
                self._check_stop()
                metrics = self.agent.update_model(self._sample(cfg.batch_size_model))
                c["pretrain_updates"] += 1
                check_finite(metrics)
                self._accumulate(metrics)
                bar.update(1)
                self._update_bar(0)
                if c["pretrain_updates"] % cfg.checkpoint_every_pretrain_updates == 0:
                    self.save_checkpoint()

    # ------------------------------------------------------------------------------------------
    def _evaluate(self) -> None:
        c, cfg = self.counters, self.config
        if cfg.eval_episodes == 0:
            self._schedule_next_eval()
            return
        started = time.perf_counter()
        row: dict[str, Any] = {
            "env_step": c["env_step"],
            "agent_step": c["agent_step"],
            "episodes": cfg.eval_episodes,
        }
        # A stop abandons the evaluation: its random streams go back to where they were, so that
        # it runs again on resume exactly as it would have.
        before = (capture_global_rng(), generator_state(self.eval_rng))
        try:
            recorded = self._evaluation_episodes(row)
        except EpisodeStopped:
            restore_global_rng(before[0])
            set_generator_state(self.eval_rng, before[1])
            raise _SafePoint from None
        row["wall_time_s"] = self._elapsed_s()
        self.eval_history.append(row)
        self._last_eval_text = f"{row['return_mean']:.1f}"

        step = c["env_step"]
        if recorded is not None:
            self._write_eval_media(recorded, step)
        plot_learning_curve(
            self.eval_history,
            self.run_dir / "curve.png",
            f"SLAC on {cfg.task} (seed {cfg.seed})",
            random_returns=self.random_returns,
        )
        scalars = {
            f"eval/{k}": v
            for k, v in row.items()
            if k not in ("env_step", "agent_step", "episodes", "wall_time_s")
        }
        scalars["eval/seconds"] = time.perf_counter() - started
        self.logger.log("eval", step, scalars, agent_step=c["agent_step"])
        self.logger.log_eval_row(row)
        self.logger.flush()
        self._bar.write(
            f"eval @ {step:,} env steps: return {row['return_mean']:.1f} +- {row['return_std']:.1f}"
            + (
                f", deterministic {row['deterministic_return_mean']:.1f}"
                if "deterministic_return_mean" in row
                else ""
            )
            + (f", success {row['success_rate']:.2f}" if "success_rate" in row else "")
        )
        self._schedule_next_eval()

    def _evaluation_episodes(self, row: dict[str, Any]) -> Any:
        """Play the evaluation episodes, filling ``row``; return the recorded episode (or None)."""
        cfg = self.config
        recorded = None
        modes = [("", False)] + ([("deterministic_", True)] if cfg.eval_deterministic else [])
        for prefix, deterministic in modes:
            returns, successes = [], []
            for i in range(cfg.eval_episodes):
                record = prefix == "" and i == 0 and (cfg.eval_video or cfg.reconstruction_video)
                result = run_episode(
                    self.eval_env,
                    self.agent,
                    int(self.eval_rng.integers(2**31)),
                    deterministic,
                    record=record,
                    max_agent_steps=cfg.max_episode_agent_steps,
                    should_stop=lambda: self._interrupt_requested,
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

    def _write_eval_media(self, recorded: Any, step: int) -> None:
        """The evaluation and reconstruction videos, and a strip of evaluation frames in
        TensorBoard."""
        cfg = self.config
        fps = 1.0 / (self.env.control_period_s * self.env.action_repeat)
        if cfg.eval_video:
            write_video(
                self.run_dir / "videos" / f"eval-{step:010d}.mp4",
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
                self.run_dir / "videos" / f"reconstruction-{step:010d}.mp4",
                frames,
                fps,
                scale=2,
                panel_labels=("truth", "posterior", "prior"),
            )
        self.logger.log_image("eval/episode_frames", frame_strip(recorded.frames), step)
        self.logger.log_video("eval/episode", recorded.frames, step, fps)

    def _schedule_next_eval(self) -> None:
        c, every = self.counters, self.config.eval_every_env_steps
        c["next_eval_env_step"] = (c["env_step"] // every + 1) * every

    def _finish(self) -> None:
        c = self.counters
        if not self.eval_history or self.eval_history[-1]["env_step"] != c["env_step"]:
            if c["phase"] == "train":
                self._evaluate()
        c["phase"] = "done"
        self.save_checkpoint()
        summary = {
            "counters": dict(c),
            "last_eval": self.eval_history[-1] if self.eval_history else None,
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
