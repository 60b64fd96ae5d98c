"""Behaviour cloning of a teacher into the SLAC agent's encoder + actor, in a ``slac-train`` run
directory.

:class:`Imitation` runs one ``slac-imitate`` run: it records (or loads) the teacher's episodes,
trains the pixel policy to output the teacher's action, optionally runs DAgger rounds, and
evaluates. It reuses the trainer's pieces, so an imitation run leaves what a ``slac-train`` run
leaves: ``config.json``, ``metrics.jsonl``, ``eval.csv``, ``curve.png`` and TensorBoard events
(:class:`~slac_train.run_logging.RunLogger`), checkpoints in the SLAC format with
``checkpoints/latest`` (:func:`~slac_train.checkpoint.save_checkpoint`; critic and latent model
untrained, so ``slac-export`` and ``load_agent`` read them as any run's), an evaluation video,
``summary.json``; Ctrl-C or SIGTERM (:class:`~slac_runtime.stop_request.StopRequest`) stops
training with a checkpoint, or recording with the episodes recorded so far. The run directory, its
lock and the interrupted and failed outcomes are :mod:`slac_train.run`'s, as ``slac-train``'s are.

* Loss: squared error of ``tanh(mean)`` against the label, plus the Gaussian negative
  log-likelihood of the label's pre-tanh value for ``log_std`` (mean detached), so the stochastic
  policy is the teacher plus the spread of its imitation error (:func:`bc_loss`).
* ``lr_schedule="cosine"`` anneals the learning rate to 0; ``ema`` checkpoints, validates and
  exports an exponential moving average of the weights (:class:`WeightAverage`); ``val_episodes``
  runs every checkpoint on randomised episodes of seeds used nowhere else
  (:data:`VALIDATION_SEED0` on) and keeps the best as ``checkpoints/best.pt``.
* ``augment_shift`` moves each training window (all 8 frames alike) by a random whole number of
  pixels with the edge repeated (DrQ's random shift); ``aux_weight`` adds a linear read-out of the
  episode's mount height and servo gain from the actor's input (trained with the policy, not
  exported).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slac_runtime.options import UsageError
from slac_runtime.stop_request import StopRequest
from slac_train.checkpoint import agent_checkpoint, save_checkpoint
from slac_train.config import TrainConfig
from slac_train.envs import get_task_spec, make_env
from slac_train.evaluation import run_episode
from slac_train.imitation.collection import collect, collect_dagger
from slac_train.imitation.config import ImitationConfig
from slac_train.imitation.dataset import (
    AUX_TARGETS,
    Dataset,
    load_datasets,
    random_shift,
    sample_batch,
)
from slac_train.imitation.teachers import TeacherOptions, get_teacher
from slac_train.networks import PixelPolicy
from slac_train.rollout_media import write_video
from slac_train.run import Run, RunWriter, default_run_dir
from slac_train.slac_agent import SlacAgent

# teacher episodes: seed * RECORDING_SEED0 + i (DAgger rounds: + 50,000 + round * 1,000)
RECORDING_SEED0 = 100_000
VALIDATION_SEED0 = 5_000_000  # validation episodes (val_episodes)
EVALUATION_SEED0 = 10_000_000  # the final evaluation's episodes


class RecordingInterrupted(Exception):
    """Ctrl-C or SIGTERM while recording: the message says what was kept."""


def bc_loss(
    policy: PixelPolicy,
    batch: dict[str, torch.Tensor],
    aux_head: torch.nn.Module | None = None,
    aux_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    x = policy.actor_inputs(batch["frames"], batch["prev_actions"])
    mean, log_std = policy.actor(x)
    labels = batch["labels"]
    mse = (torch.tanh(mean) - labels).pow(2).sum(-1).mean()
    pre_tanh = torch.atanh(labels)
    nll = (0.5 * ((pre_tanh - mean.detach()) * torch.exp(-log_std)).pow(2) + log_std).sum(-1).mean()
    loss = mse + 0.01 * nll
    parts = {
        "mse": float(mse.detach()),
        "nll": float(nll.detach()),
        "std": float(log_std.detach().exp().mean()),
    }
    if aux_head is not None and aux_weight > 0:
        # the dynamics draw from the actor's input (a linear read-out: the encoder must carry it)
        target = batch["aux"]
        known = torch.isfinite(target)
        if known.any():
            aux = (aux_head(x) - torch.nan_to_num(target)).pow(2)[known].mean()
            loss = loss + aux_weight * aux
            parts["aux_mse"] = float(aux.detach())
    return loss, parts


class WeightAverage:
    """Exponential moving average of parameters (Polyak averaging), the weights a run exports.

    With a constant learning rate the last weights of a long run sit wherever the last noisy steps
    left them; the average over the last ~1/(1 - decay) updates does not. The decay is warmed up as
    ``min(decay, (1 + t) / (10 + t))`` so the first updates are not averaged with the initial
    weights.
    """

    def __init__(self, params: list[torch.nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        self.params, self.decay, self.updates = list(params), decay, 0
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for a, p in zip(self.average, self.params):
            a.lerp_(p.detach(), 1.0 - decay)
        self.updates += 1

    @torch.no_grad()
    def copy_in(self) -> None:
        for a, p in zip(self.average, self.params):
            p.copy_(a)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The averaged weights in the model for the block (a checkpoint, a validation), then the
        trained ones again."""
        saved = [p.detach().clone() for p in self.params]
        self.copy_in()
        try:
            yield
        finally:
            with torch.no_grad():
                for s, p in zip(saved, self.params):
                    p.copy_(s)


def lr_factor(schedule: str, update: int, total: int) -> float:
    """Learning-rate multiplier before update ``update`` (0-based) of ``total``: 1, or a cosine
    from 1 to 0."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(update, total) / max(1, total)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}: constant or cosine")


def evaluate(
    agent: SlacAgent, env, episodes: int, seed0: int, deterministic: bool, video: Path | None = None
) -> dict[str, float]:
    """Closed-loop return, success and final |error| of ``agent`` over seeds ``seed0 + i``; the
    first episode written to ``video`` (mp4) if given."""
    results = [
        run_episode(env, agent, seed0 + i, deterministic, record=video is not None and i == 0)
        for i in range(episodes)
    ]
    if video is not None and results:
        write_video(video, results[0].frames, 1.0 / env.agent_period_s, scale=2)
    errors = [
        r.final_info.get("angle_error", r.final_info.get("pose_error", np.nan)) for r in results
    ]
    returns = [r.episode_return for r in results]
    return {
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "success_rate": float(np.mean([r.success or 0.0 for r in results])),
        "final_error_abs_mean": float(np.mean(np.abs(errors))),
    }


class Imitation(RunWriter):
    """One ``slac-imitate`` run; ``Imitation(config).run()`` returns its summary.

    Raises :class:`UsageError` for a teacher that cannot drive the task or a dataset that does not
    fit it, :class:`RecordingInterrupted` or :class:`~slac_train.run.TrainingInterrupted`
    (checkpoint written) on Ctrl-C / SIGTERM, :class:`~slac_train.run.TrainingFailed` on a
    non-finite loss.
    """

    def __init__(self, config: ImitationConfig) -> None:
        self.spec = get_task_spec(config.task)  # unknown task: the registry's one-line error
        for name in dict.fromkeys([config.teacher, config.dagger_teacher or config.teacher]):
            teacher = get_teacher(name)
            if not teacher.drives(self.spec.name):
                raise UsageError(
                    f"teacher {name} drives {', '.join(teacher.tasks)} tasks, not {self.spec.name}"
                )
        agent_config = TrainConfig(
            task=self.spec.name,
            seed=config.seed,
            encoder_base_channels=config.encoder_base_channels,
            feature_dim=config.feature_dim,
            actor_critic_hidden=config.actor_hidden,
            runs_root=config.runs_root,
            run_dir=config.run_dir,
            device="cpu",
            # The student's recipe (docs/results.md) starts from PyTorch's default initialisation.
            init="torch",
        )
        run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(agent_config)
        self.stop = StopRequest(
            "\nstop requested: writing a checkpoint after this update (again: stop at once)"
        )
        self._run = Run.start(run_dir, self.stop, refusal="give another --run-dir")
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        try:
            self.env = self._run.own(
                make_env(self.spec.name, seed=config.seed, **config.randomization)
            )
        except BaseException:
            self._run.close()
            raise
        self.agent_config = agent_config.resolved(self.env.action_repeat)
        self.config = config.replace(run_dir=str(run_dir))
        self.agent_config = self.agent_config.replace(run_dir=str(run_dir))
        self.config.save_json(run_dir / "config.json")
        self.data = Dataset(self.env.observation_space.shape, self.env.action_space.shape[0])
        self.updates = 0
        self.eval_history: list[dict[str, Any]] = []
        self.best: tuple[tuple[float, float], int] | None = None
        self._val_env = None

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        with self.stop.installed():
            teacher_stats = self.record()
            self._build_learner()
            with self._run.checkpoint_on_stop(self.checkpoint, second_signal_saves=True):
                self._train(self.config.updates)
                self._dagger_rounds()
        return self._finish(teacher_stats)

    def _elapsed_s(self) -> float:
        return self._run.elapsed_s()

    def _env_steps(self) -> int:
        return len(self.data) * self.env.action_repeat

    def _teacher(self, name: str):
        options = TeacherOptions(
            self.config.teacher_tolerance, self.config.search_slack, self.config.search_knows
        )
        try:
            return get_teacher(name).make(options)
        except ValueError as error:
            raise UsageError(str(error)) from None

    # -- recording ------------------------------------------------------------------------------
    def record(self) -> dict[str, float]:
        """The teacher's episodes, recorded (or read from ``dataset``), logged as a ``collect``
        record; written to ``save_dataset`` if asked. Returns the teacher's return and success."""
        cfg = self.config
        if cfg.dataset:
            shape, action_dim = self.env.observation_space.shape, self.env.action_space.shape[0]
            self.data, recorded_by, stats = load_datasets(
                cfg.dataset, shape, action_dim, self.spec.name
            )
            extra = {"dataset": " ".join(cfg.dataset), "recorded_by": recorded_by}
        else:
            stats, extra = self._record_teacher(), {}
        self.arrays = self.data.arrays()
        episodes = len(set(self.data.starts))
        self.logger.log(
            "collect",
            self._env_steps(),
            {
                "frames": len(self.data),
                "episodes": episodes,
                "teacher_return": stats["return_mean"],
                "teacher_success": stats["success_rate"],
                "elapsed_s": self._elapsed_s(),
            },
            tb_step=0,
            **extra,
        )
        if not cfg.dataset and cfg.save_dataset is not None:
            self.data.save(
                Path(cfg.save_dataset), self._dataset_meta(cfg.episodes, stats), self.arrays
            )
            print(f"dataset: {cfg.save_dataset}", flush=True)
        return stats

    def _dataset_meta(self, episodes: int, stats: dict) -> dict:
        """What ``save_dataset`` writes beside the episodes."""
        return {
            "task": self.spec.name,
            "teacher": self.config.teacher,
            "episodes": episodes,
            "action_repeat": int(self.env.action_repeat),
            "seed": self.config.seed,
            "noise": list(self.config.noise),
            **self.config.randomization,
            "teacher_stats": stats,
        }

    def _record_teacher(self) -> dict[str, float]:
        cfg, so_far = self.config, {"success_rate": float("nan"), "return_mean": float("nan")}
        every = max(1, cfg.episodes // 20)

        def progress(done: int, success: float, return_mean: float) -> None:
            so_far.update(success_rate=success, return_mean=return_mean)
            if cfg.progress and done % every == 0 and done < cfg.episodes:
                print(
                    f"collecting: {done}/{cfg.episodes} teacher episodes, "
                    f"teacher success {success:.0%}, "
                    f"{self._elapsed_s():.0f} s",
                    flush=True,
                )

        try:
            return collect(
                self.env,
                self._teacher(cfg.teacher),
                cfg.episodes,
                list(cfg.noise),
                self.rng,
                self.data,
                seed0=cfg.seed * RECORDING_SEED0,
                progress=progress,
                stop=self.stop,
            )
        except KeyboardInterrupt:
            episodes = len(set(self.data.starts))
            if cfg.save_dataset is None or episodes == 0:
                raise RecordingInterrupted(
                    f"interrupted while recording, after {episodes} episodes; nothing was written "
                    f"(--save-dataset keeps the episodes recorded before a stop)"
                ) from None
            self.data.save(Path(cfg.save_dataset), self._dataset_meta(episodes, so_far))
            raise RecordingInterrupted(
                f"interrupted while recording; the {episodes} episodes recorded are in "
                f"{cfg.save_dataset}: "
                f"train on them with --dataset {cfg.save_dataset}"
            ) from None

    # -- training -------------------------------------------------------------------------------
    def _build_learner(self) -> None:
        cfg = self.config
        self.agent = SlacAgent(self.agent_config, self.data.action_dim)
        self.policy = self.agent.policy()
        self.aux_head = (
            torch.nn.Linear(self.policy.actor.net[0].in_features, len(AUX_TARGETS))
            if cfg.aux_weight > 0
            else None
        )
        params = list(self.policy.parameters()) + (
            list(self.aux_head.parameters()) if self.aux_head else []
        )
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr)
        self.average = (
            WeightAverage(list(self.policy.parameters()), cfg.ema) if cfg.ema > 0 else None
        )

    def _update(self) -> tuple[dict[str, float], float]:
        """One update on a batch of windows; returns the loss's parts and the learning rate."""
        cfg = self.config
        lr = cfg.lr * lr_factor(cfg.lr_schedule, self.updates, cfg.total_updates)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = sample_batch(self.arrays, cfg.batch_size, self.rng)
        batch["frames"] = random_shift(batch["frames"], cfg.augment_shift, self.rng)
        batch = {k: torch.from_numpy(v) for k, v in batch.items()}
        loss, parts = bc_loss(self.policy, batch, self.aux_head, cfg.aux_weight)
        if not torch.isfinite(loss):
            raise self._run.failed(
                f"non-finite loss at update {self.updates + 1}: {parts}; training stopped",
                self._env_steps(),
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.average is not None:
            self.average.update()
        self.updates += 1  # counted once applied: a checkpoint on Ctrl-C says what it holds
        return parts, lr

    def _train(self, updates: int) -> None:
        cfg = self.config
        for i in range(updates):
            self.stop.check()
            parts, lr = self._update()
            if self.updates % cfg.log_every_updates == 0 or i == updates - 1:
                self.logger.log(
                    "train",
                    self._env_steps(),
                    {**parts, "lr": lr, "elapsed_s": self._elapsed_s()},
                    tb_step=self.updates,
                    update=self.updates,
                )
            if (
                cfg.checkpoint_every > 0
                and self.updates % cfg.checkpoint_every == 0
                and i < updates - 1
            ):
                self._validate(self.checkpoint())

    def _dagger_rounds(self) -> None:
        cfg = self.config
        if cfg.dagger_rounds == 0:
            return
        teacher = self._teacher(cfg.dagger_teacher or cfg.teacher)
        for round_ in range(1, cfg.dagger_rounds + 1):
            stats = collect_dagger(
                self.env,
                teacher,
                self.agent,
                cfg.dagger_episodes,
                list(cfg.noise),
                self.rng,
                self.data,
                seed0=cfg.seed * RECORDING_SEED0 + 50_000 + round_ * 1_000,
                switch_at=cfg.dagger_switch,
            )
            self.arrays = self.data.arrays()
            self.logger.log(
                "dagger",
                self._env_steps(),
                {
                    "frames": len(self.data),
                    "labelled": len(self.arrays["labelled"]),
                    **stats,
                    "elapsed_s": self._elapsed_s(),
                },
                tb_step=self.updates,
                round=round_,
            )
            self._train(cfg.dagger_updates)

    # -- checkpoints and evaluation -------------------------------------------------------------
    def _exported_weights(self):
        return self.average.swapped_in() if self.average is not None else nullcontext()

    def _counters(self) -> dict[str, int]:
        return {
            "agent_steps": len(self.data),
            "env_steps": self._env_steps(),
            "bc_updates": self.updates,
        }

    def checkpoint(self) -> Path:
        """A checkpoint of the weights a run exports (the moving average, with ``ema``)."""
        with self._exported_weights():
            state = {
                **agent_checkpoint(self.agent_config, self.data.action_dim, self.env, self.agent),
                "counters": self._counters(),
                "imitation": self.config.to_dict(),
            }
            path = save_checkpoint(
                self.run_dir,
                f"ckpt-bc-{self.updates:08d}",
                state,
                keep=self.config.keep_checkpoints,
            )
        self.logger.log("checkpoint", self._env_steps(), {}, path=str(path), update=self.updates)
        return path

    def _log_evaluation(
        self, kind: str, result: dict[str, float], curve: bool = True, **extra: Any
    ) -> None:
        """An evaluation in metrics.jsonl and TensorBoard; with ``curve`` (the randomised ones) also
        in eval.csv and the learning curve (against updates)."""
        self.logger.log(
            kind,
            self._env_steps(),
            {**result, "elapsed_s": self._elapsed_s()},
            tb_step=self.updates,
            update=self.updates,
            **extra,
        )
        if not curve:
            self.logger.flush()
            return
        row = {
            "env_step": self._env_steps(),
            "agent_step": len(self.data),
            "updates": self.updates,
            "wall_time_s": self._elapsed_s(),
            "deterministic_return_mean": result["return_mean"],
            "deterministic_return_std": result["return_std"],
            "deterministic_success_rate": result["success_rate"],
        }
        title = f"{self.config.teacher} imitated on {self.spec.name} (seed {self.config.seed})"
        self.logger.add_evaluation(
            self.eval_history, row, title, x_key="updates", x_label="updates"
        )

    def _validate(self, path: Path) -> None:
        """Closed-loop success of the checkpoint at ``path``; the best so far is copied to
        checkpoints/best.pt."""
        if self.config.val_episodes <= 0:
            return
        if self._val_env is None:
            self._val_env = self._run.own(
                make_env(self.spec.name, seed=self.config.seed + 2, **self.config.randomization)
            )
        with self._exported_weights():
            result = evaluate(
                self.agent, self._val_env, self.config.val_episodes, VALIDATION_SEED0, True
            )
        self._log_evaluation("val", result)
        score = (result["success_rate"], -result["final_error_abs_mean"])
        if self.best is None or score >= self.best[0]:
            self.best = (score, self.updates)
            tmp = path.with_name("best.pt.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, path.with_name("best.pt"))

    def _finish(self, teacher_stats: dict[str, float]) -> dict[str, Any]:
        cfg = self.config
        if self.average is not None:
            self.average.copy_in()  # from here on the model is what is exported
        final = self.checkpoint()
        print(f"checkpoint: {final}", flush=True)
        self._validate(final)
        if self.best is not None:
            print(
                f"best validation: update {self.best[1]}, success {self.best[0][0]:.0%} "
                f"over {cfg.val_episodes} "
                f"episodes: slac-export {final.parent / 'best.pt'}",
                flush=True,
            )
        results = {}
        for name, switches in (("nominal", {}), ("randomized", cfg.randomization)):
            if cfg.eval_episodes == 0:
                break
            env = make_env(self.spec.name, seed=cfg.seed + 1, **switches)
            video = (
                self.run_dir / "videos" / f"eval-{self.updates:08d}.mp4"
                if name == "nominal"
                else None
            )
            if video is not None:
                video.parent.mkdir(exist_ok=True)
            try:
                results[name] = evaluate(
                    self.agent, env, cfg.eval_episodes, EVALUATION_SEED0, True, video
                )
            finally:
                env.close()
            self._log_evaluation("eval", results[name], curve=name == "randomized", setting=name)
        summary = {
            "counters": self._counters(),
            "teacher": teacher_stats,
            "student": results,
            "best_validation": None
            if self.best is None
            else {"update": self.best[1], "success_rate": self.best[0][0]},
        }
        self._run.write_summary(summary)
        return summary
