"""The one configuration of a SLAC training run: :class:`TrainConfig`.

Defaults are the paper's (Lee et al. 2020, "Stochastic Latent Actor-Critic", and the official
code at github.com/alexlee-gk/slac). Every field carries its help text and its check in
``metadata`` (:func:`_f`); the checks between fields are named functions
(:data:`CROSS_FIELD_CHECKS`). The CLI turns each field into a ``--option`` and the trainer saves
the resolved config as JSON beside the run and inside every checkpoint, so that every choice
(action repeat, decoder variance, ...) is an explicit, logged value.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slac_runtime.history import ACTOR_FRAMES
from slac_runtime.options import (  # noqa: F401 - every command builds its options this way
    Check,
    OneLineParser,
    add_options,
    check_options,
    config_from_args,
    finite_float,
    float_in,
    int_at_least,
    non_negative_float,
    option,
    parse_config,
)

# Decoder output variance the paper's NeurIPS 2020 runs used per task (their result files).
# Tasks not listed use DEFAULT_DECODER_VARIANCE.
PAPER_DECODER_VARIANCE: dict[str, float] = {
    "cheetah-run": 0.1,
    "walker-walk": 0.4,
    "ball_in_cup-catch": 0.04,
    "finger-spin": 0.1,
    "cartpole-swingup": 0.1,
    "reacher-easy": 0.01,
}
DEFAULT_DECODER_VARIANCE = 0.1

_DEVICES = ("auto", "cpu", "cuda")
UPDATE_STRUCTURES = ("single-batch", "separate-batches")
DECODER_OUTPUT_ACTIVATIONS = ("leaky_relu", "linear")
INITS = ("glorot", "torch")
SAC_STEPS = ("simultaneous", "sequential")
ALPHA_LOSS_SAMPLES = ("fresh", "actor")
ACTOR_Q = ("min", "mean")
ACTOR_UPDATES = ("reparameterised", "advantage-weighted")
# D'Claw randomisation settings (slac_train.envs.dclaw.RANDOMIZATION_SETTINGS); "task": the task
# variant's own switches.
RANDOMIZATIONS = ("task", "none", "visual", "visual+dynamics", "visual+dynamics+latency")

# What a configuration written before the parity fields existed meant (a run resumed from such a
# checkpoint keeps the behaviour it was trained with).
LEGACY_DEFAULTS: dict[str, Any] = {
    "model_loss_on_padding": True,
    "decoder_output_activation": "linear",
    "init": "torch",
    "update_structure": "separate-batches",
    "fast_render": True,
    "sac_steps": "sequential",
    "alpha_loss_sample": "actor",
}


def _f(default: Any, help: str, check: Any = None, **cli: Any) -> Any:  # noqa: A002
    """A dataclass field with its help text (shown by ``slac-train --help``; see :func:`option`)
    and its ``check``: a :class:`Check` of its number, or a function ``value -> problem | None``.
    A field with ``choices`` takes only those; a field whose default is None also takes None."""
    field = option(default, help, **cli)
    return dataclasses.field(default=default, metadata={**field.metadata, "check": check})


# The checks of single fields (:func:`field_problems`); a problem reads ``<field> must be ...``.
at_least_zero = int_at_least(0)
at_least_one = int_at_least(1)
positive = Check(float, lambda v: v > 0, "a positive number", "positive")
share = float_in(0.0, 1.0)
discount = Check(float, lambda v: 0 <= v < 1, "a number in [0, 1)", "discount")
polyak_rate = Check(float, lambda v: 0 < v <= 1, "a number in (0, 1]", "polyak_rate")
actor_history = Check(
    int,
    lambda v: v == ACTOR_FRAMES,
    f"{ACTOR_FRAMES}: the actor sees {ACTOR_FRAMES} frames (slac_runtime.history)",
)
paper_image_size = Check(
    int, lambda v: v == 64, "64: the paper's encoder and decoder are built for 64x64 frames"
)
n_step_in_window = Check(
    int,
    lambda v: 1 <= v <= ACTOR_FRAMES,
    f"an integer from 1 to {ACTOR_FRAMES} (the rewards a training window holds)",
)
four_windows = Check(
    int,
    lambda v: v >= 4 * (ACTOR_FRAMES + 1),
    f"at least {4 * (ACTOR_FRAMES + 1)} agent steps (four training windows)",
)


def torch_device(value: Any) -> str | None:
    """The problem with a torch device name (auto, cpu, cuda, cuda:N), or None."""
    cuda_n = isinstance(value, str) and value.startswith("cuda:") and value[5:].isdigit()
    if value in _DEVICES or cuda_n:
        return None
    return f"must be one of auto, cpu, cuda, cuda:N, got {value!r}"


@dataclass
class TrainConfig:
    """Everything that defines a SLAC run. Units: agent steps (one policy decision,
    ``action_repeat`` simulator steps) unless a name says ``env_steps`` (simulator steps, as the
    paper's plots count)."""

    # --- task -----------------------------------------------------------------------------------
    task: str = _f("", "registered task name (see --list-tasks)")
    seed: int = _f(0, "seed of networks, sampling, environments")
    action_repeat: int | None = _f(
        None,
        "simulator steps per agent step; default: the task's (paper) value",
        check=at_least_one,
    )
    image_size: int = _f(
        64, "frame side in pixels (the paper's networks need 64)", check=paper_image_size
    )
    max_episode_agent_steps: int | None = _f(
        None,
        "cut episodes after this many agent steps (truncation, not termination); default: the "
        "task's own limit",
        check=at_least_one,
    )
    randomization: str = _f(
        "task",
        "D'Claw tasks: what each training and evaluation episode draws anew -- task (the "
        "variant's own switches), none, visual (lights, colours, camera pose, image noise), "
        "visual+dynamics (and damping, friction, servo gains, mount), visual+dynamics+latency "
        "(and frames up to 80 ms old, as slac-imitate records by default)",
        choices=list(RANDOMIZATIONS),
    )

    # --- budget ---------------------------------------------------------------------------------
    total_env_steps: int = _f(
        500_000,
        "stop after this many simulator steps (initial collection included)",
        check=at_least_one,
    )
    initial_collection_steps: int = _f(
        10_000,
        "agent steps of uniformly random actions before learning (rounded up to an episode end)",
        check=at_least_zero,
    )
    model_pretrain_steps: int = _f(
        100_000,
        "latent-model updates on the initial data before the actor-critic starts",
        check=at_least_zero,
    )
    updates_per_step: int = _f(
        1,
        "updates (model + critic + actor + alpha) per agent step after pre-training (RLPD's "
        "update-to-data ratio, per agent step)",
        check=at_least_one,
    )

    # --- replay ---------------------------------------------------------------------------------
    buffer_capacity: int = _f(
        100_000, "replay capacity in agent steps (frames stored once as uint8)", check=four_windows
    )
    sequence_length: int = _f(
        ACTOR_FRAMES,
        "tau: actions per training window (tau + 1 frames); fixed at 8 by the history",
        check=actor_history,
    )
    save_buffer: bool = _f(
        True, "store the replay buffer with checkpoints (needed for an exact resume)"
    )

    # --- batches and optimisation ---------------------------------------------------------------
    batch_size_actor_critic: int = _f(256, "sequences per actor-critic batch", check=at_least_one)
    batch_size_model: int = _f(32, "sequences per latent-model batch", check=at_least_one)
    lr_actor: float = _f(3e-4, "Adam learning rate of the actor", check=positive)
    lr_critic: float = _f(3e-4, "Adam learning rate of the twin critics", check=positive)
    lr_alpha: float = _f(
        3e-4, "Adam learning rate of log alpha (entropy temperature)", check=positive
    )
    lr_model: float = _f(
        1e-4,
        "Adam learning rate of the latent model (encoder, decoder, priors, posteriors, reward)",
        check=positive,
    )
    gamma: float = _f(0.99, "discount", check=discount)
    reward_scale: float = _f(
        1.0,
        "the critic learns the return of reward x reward_scale (the latent model predicts the "
        "reward itself): keeps Q near 1-100 where rewards are large",
        check=positive,
    )
    target_update_tau: float = _f(
        0.005, "Polyak rate of the target critics, applied every update", check=polyak_rate
    )
    init_log_alpha: float = _f(0.0, "initial log alpha", check=finite_float)
    target_entropy: float | None = _f(
        None, "entropy target of alpha; default: -(action dimension)", check=finite_float
    )

    # --- demonstrations and a starting policy ----------------------------------------------------
    demos: tuple[str, ...] | None = _f(
        None,
        "episode datasets with rewards (slac-imitate --save-dataset) held in a buffer of their own "
        "that online data never overwrites; copied into the run directory",
        cli=False,  # slac-train --demos PATH [PATH ...]
    )
    demo_ratio: float = _f(
        0.5,
        "with --demos: the share of every batch (pre-training included) drawn from the "
        "demonstrations, exactly round(ratio x batch) windows (RLPD: 0.5); a batch is all "
        "demonstrations until the online buffer holds a transition",
        check=share,
    )
    init_policy: str | None = _f(
        None,
        "start the encoder and actor from this policy: an exported .onnx (slac-export) or a run "
        "directory or checkpoint (slac-imitate, slac-train); its sizes must match this run's",
        metavar="PATH",
    )
    freeze_encoder: bool = _f(
        False,
        "the latent model does not train the encoder (keeps the features an --init-policy actor "
        "was trained on; the encoder then never changes)",
    )
    actor_warmup_updates: int = _f(
        0,
        "hold the actor and alpha for this many updates after pre-training while the critic "
        "learns (a good --init-policy is not moved by a critic that is still wrong)",
        check=at_least_zero,
    )
    bc_weight: float = _f(
        0.0,
        "weight of a behaviour-cloning term on the batch's demonstration windows in the actor's "
        "loss: bc_weight x mean|Q| x squared error of tanh(mean) to the demonstrated action "
        "(TD3+BC's normalisation; 0.4 is its alpha of 2.5)",
        check=non_negative_float,
    )
    bc_decay_updates: int = _f(
        0,
        "fade bc_weight linearly to 0 over this many updates after pre-training (0: constant)",
        check=at_least_zero,
    )

    residual_actor: bool = _f(
        False,
        "learn a residual on the frozen --init-policy actor instead of moving it: its last layer "
        "starts at zero, so the policy starts as the given one (Ankile et al. 2025)",
    )
    residual_scale: float = _f(
        0.5,
        "with residual_actor: the most the residual moves the actor's pre-tanh mean, per action "
        "dimension",
        check=positive,
    )

    # --- critic ---------------------------------------------------------------------------------
    num_critics: int = _f(
        2, "Q networks in the critic ensemble (SAC/SLAC: 2; RLPD: 10)", check=at_least_one
    )
    critic_target_subset: int = _f(
        2,
        "the critic's target takes the minimum over a random subset of this many target Q "
        "networks, drawn anew every update (REDQ/RLPD: 2); num_critics: the minimum over all",
        check=at_least_one,
    )
    actor_q: str = _f(
        "min",
        "what the actor maximises: min (SAC: the minimum over all Q networks) or mean (REDQ/RLPD: "
        "their mean)",
        choices=list(ACTOR_Q),
    )
    actor_update: str = _f(
        "reparameterised",
        "how the actor learns from the critic: reparameterised (SAC: along Q's gradient at a "
        "sampled action) or advantage-weighted (AWAC: the likelihood of the batch's own actions, "
        "each weighted by its advantage, so that the actor never follows the critic to actions "
        "the data do not show)",
        choices=list(ACTOR_UPDATES),
    )
    advantage_temperature: float = _f(
        1.0,
        "with actor_update advantage-weighted: the weights are the batch's softmax of "
        "advantage / (this x the batch's advantage spread); smaller: only the best actions count",
        check=positive,
    )
    critic_layer_norm: bool = _f(
        False, "LayerNorm after each hidden layer of every Q network (RLPD)"
    )
    critic_n_step: int = _f(
        1,
        "rewards the critic's target sums before it bootstraps, all from the training window "
        "(fewer where the window starts its episode): 1 is SAC's and SLAC's one-step target; n > "
        "1 the uncorrected n-step return (DrQ-v2: 3), without the entropy bonus of the steps in "
        "between",
        check=n_step_in_window,
    )

    # --- networks -------------------------------------------------------------------------------
    encoder_base_channels: int = _f(
        32,
        "first conv width; the encoder is c, 2c, 4c, 8c, feature_dim (paper: 32)",
        check=at_least_one,
    )
    feature_dim: int = _f(256, "encoder feature size (last conv's channels)", check=at_least_one)
    z1_dim: int = _f(32, "size of latent z1", check=at_least_one)
    z2_dim: int = _f(256, "size of latent z2", check=at_least_one)
    model_hidden: int = _f(
        256, "units of the two hidden layers of every latent-model conditional", check=at_least_one
    )
    actor_critic_hidden: int = _f(
        256, "units of the two hidden layers of the actor and each critic", check=at_least_one
    )
    decoder_std: float | None = _f(
        None,
        "fixed std of the image likelihood on [0,1] pixels; default: sqrt of the paper's per-task "
        "variance (else sqrt(0.1))",
        check=positive,
    )

    # --- parity with the official implementation ------------------------------------------------
    # Each choice where the official SLAC code (github.com/alexlee-gk/slac, slac/agents/slac/)
    # and an alternative differ; the defaults are the official behaviour. A checkpoint or
    # config.json written before a field existed reads it as LEGACY_DEFAULTS (the old behaviour).
    model_loss_on_padding: bool = _f(
        False,
        "let the model learn from start-of-episode padding (repeated first frame, zero actions); "
        "official: no -- its filter restarts at the episode's first frame, prior N(0, I), in the "
        "model loss and in the critic's latent samples (the actor's padded history is the same)",
    )
    decoder_output_activation: str = _f(
        "leaky_relu",
        "activation on the decoder's last transposed convolution: leaky_relu (official) or linear",
        choices=list(DECODER_OUTPUT_ACTIVATIONS),
    )
    init: str = _f(
        "glorot",
        "weight initialisation: glorot (official: Glorot-uniform weights, zero biases) or torch "
        "(PyTorch's layer defaults)",
        choices=list(INITS),
    )
    update_structure: str = _f(
        "single-batch",
        "single-batch (official: one batch of batch_size_actor_critic windows, one encoder pass; "
        "the model trains on its first batch_size_model) or separate-batches (a batch for each)",
        choices=list(UPDATE_STRUCTURES),
    )
    sac_steps: str = _f(
        "simultaneous",
        "simultaneous (official: SlacAgent._train computes the critic, actor and alpha losses "
        "before it applies any gradient, so the actor's loss sees the critic as it was before this "
        "update) or sequential (the actor's loss sees the critic after its step)",
        choices=list(SAC_STEPS),
    )
    alpha_loss_sample: str = _f(
        "fresh",
        "the action sample in the temperature's loss: fresh (official: SlacAgent.alpha_loss draws "
        "its own from the actor) or actor (the actor loss's sample, reused)",
        choices=list(ALPHA_LOSS_SAMPLES),
    )
    fast_render: bool = _f(
        False,
        "render without shadows, reflections and multisampling (3-6 ms instead of 11-40 ms a "
        "64x64 frame on a CPU); official: dm_control's full-quality rendering",
    )

    # --- evaluation and artefacts ---------------------------------------------------------------
    eval_every_env_steps: int = _f(
        10_000,
        "evaluate every this many simulator steps (and after pre-training, and at the end)",
        check=at_least_one,
    )
    eval_episodes: int = _f(
        10,
        "episodes per evaluation and per policy mode (official: 10 stochastic episodes every 10k "
        "simulator steps)",
        check=at_least_zero,
    )
    eval_deterministic: bool = _f(True, "also evaluate the deterministic tanh(mean) policy")
    eval_video: bool = _f(True, "write an mp4 of the first stochastic evaluation episode")
    reconstruction_video: bool = _f(
        True, "write an mp4: ground truth | posterior reconstruction | open-loop prior"
    )
    reconstruction_steps: int = _f(32, "frames in the reconstruction video", check=at_least_one)
    log_every_updates: int = _f(
        250, "write training losses every this many updates", check=at_least_one
    )

    # --- checkpoints ----------------------------------------------------------------------------
    checkpoint_every_env_steps: int = _f(
        50_000,
        "checkpoint at the first episode end after every this many simulator steps",
        check=at_least_one,
    )
    checkpoint_every_pretrain_updates: int = _f(
        10_000, "checkpoint every this many pre-training updates", check=at_least_one
    )
    keep_checkpoints: int = _f(
        2, "checkpoints kept on disk (oldest deleted first)", check=at_least_one
    )

    # --- system ---------------------------------------------------------------------------------
    device: str = _f("auto", "auto (cuda when available), cpu, cuda or cuda:N", check=torch_device)
    num_threads: int | None = _f(
        None,
        "torch CPU threads; default: torch's choice",
        flag="threads",
        aliases=["num-threads"],
        check=at_least_one,
    )
    runs_root: str = _f("runs", "folder under which run directories are created")
    run_dir: str | None = _f(
        None, "exact run directory; default: <runs_root>/<task>-<timestamp>-s<seed>"
    )
    fast_encoder: bool = _f(
        True, "use fused, chunked convolutions for the no-grad encoder passes (same numbers)"
    )
    progress: bool = _f(
        True, "show progress: a bar on a terminal, else a plain line every 30 s (logs, pipes)"
    )

    def __post_init__(self) -> None:
        if self.demos is not None:  # a JSON list, or several command-line values
            self.demos = (self.demos,) if isinstance(self.demos, str) else tuple(self.demos)
            self.demos = tuple(str(p) for p in self.demos) or None
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a sentence a user understands if a value cannot work: each
        field's own check, then the checks between fields (:data:`CROSS_FIELD_CHECKS`)."""
        problems = field_problems(self)
        if not problems:  # the checks between fields read numbers each field has checked
            problems = [p for check in CROSS_FIELD_CHECKS if (p := check(self))]
        if problems:
            raise ValueError("invalid training configuration: " + "; ".join(problems))

    # ------------------------------------------------------------------------------------------
    def resolved(self, task_action_repeat: int) -> TrainConfig:
        """A copy with every default that depends on the task filled in (what gets logged)."""
        variance = PAPER_DECODER_VARIANCE.get(self.task, DEFAULT_DECODER_VARIANCE)
        return dataclasses.replace(
            self,
            action_repeat=self.action_repeat
            if self.action_repeat is not None
            else int(task_action_repeat),
            decoder_std=self.decoder_std if self.decoder_std is not None else math.sqrt(variance),
        )

    def no_updates_reason(self, task_action_repeat: int) -> str | None:
        """Why this run would end before its first update (a sentence), or None.

        Random collection takes ``initial_collection_steps`` agent steps (``action_repeat``
        simulator steps each, then on to an episode end); a budget inside it leaves the networks
        untrained.
        """
        repeat = self.action_repeat if self.action_repeat is not None else int(task_action_repeat)
        collection = self.initial_collection_steps * repeat
        if self.total_env_steps > collection:
            return None
        return (
            f"total_env_steps {self.total_env_steps:,} ends within the initial random collection "
            f"({self.initial_collection_steps:,} agent steps x action repeat {repeat} = "
            f"{collection:,} simulator steps), so the networks would never be updated; raise "
            f"--total-env-steps above {collection:,} or lower --initial-collection-steps"
        )

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The config a saved dict (config.json, a checkpoint) describes. A parity field it lacks
        was written before the field existed: it takes its LEGACY_DEFAULTS value, the behaviour
        that run was trained with."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown configuration fields: {', '.join(unknown)}")
        return cls(**{**LEGACY_DEFAULTS, **data})

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load_json(cls, path: str | Path) -> TrainConfig:
        try:
            values = json.loads(Path(path).read_text())
        except ValueError as error:  # an empty or cut-short file
            raise ValueError(f"{path} is not a JSON config ({error})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path} is not a JSON config (not an object of TrainConfig fields)")
        return cls.from_dict(values)


def field_problems(config: Any) -> list[str]:
    """What each field's own check (its ``choices`` or ``check``) finds wrong, as sentences."""
    problems = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        problem = None if value is None and f.default is None else _problem(f, value)
        if problem:
            problems.append(f"{f.name} {problem}")
    return problems


def _problem(f: dataclasses.Field, value: Any) -> str | None:
    choices, check = f.metadata.get("choices"), f.metadata.get("check")
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(choices)}, got {value!r}"
    if check is None:
        return None
    if not isinstance(check, Check):
        return check(value)
    if check.kind is int and not isinstance(value, int):  # 8.0 is no count
        return f"must be an integer, got {value!r}"
    return check.validate(value)


def _collection_feeds_the_first_updates(c: TrainConfig) -> str | None:
    if c.initial_collection_steps >= 1 or c.demos:
        return None
    return (
        "initial_collection_steps must be at least 1: the first updates need data in the replay "
        "buffer (or give --demos)"
    )


def _cloning_has_demonstrations(c: TrainConfig) -> str | None:
    if c.bc_weight == 0.0 or c.demos:
        return None
    return "bc_weight clones the demonstrations: give --demos, or set --bc-weight 0"


def _residual_has_an_actor(c: TrainConfig) -> str | None:
    if not c.residual_actor or c.init_policy:
        return None
    return "residual_actor learns a residual on a given actor: give --init-policy"


def _target_subset_within_critics(c: TrainConfig) -> str | None:
    if c.critic_target_subset <= c.num_critics:
        return None
    return (
        f"critic_target_subset ({c.critic_target_subset}) must not exceed num_critics "
        f"({c.num_critics})"
    )


def _model_batch_within_single_batch(c: TrainConfig) -> str | None:
    if c.update_structure != "single-batch" or c.batch_size_model <= c.batch_size_actor_critic:
        return None
    return (
        "update_structure single-batch trains the model on the first batch_size_model windows of "
        f"the actor-critic batch: batch_size_model ({c.batch_size_model}) must not exceed "
        f"batch_size_actor_critic ({c.batch_size_actor_critic})"
    )


# The checks between fields (each returns its problem, a sentence, or None).
CROSS_FIELD_CHECKS = (
    _collection_feeds_the_first_updates,
    _cloning_has_demonstrations,
    _residual_has_an_actor,
    _target_subset_within_critics,
    _model_batch_within_single_batch,
)


# Named starting points for a run (``slac-train --preset NAME``); options typed after them win.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's networks, schedule and the official implementation's choices: TrainConfig's
    # defaults.
    "paper": {},
    # Narrower networks, smaller batches and a short pre-training, for runs of about two hours on a
    # 2-core CPU (benchmarks/learning/results).
    "cpu-small": {
        "encoder_base_channels": 16,
        "feature_dim": 128,
        "z1_dim": 16,
        "z2_dim": 128,
        "model_hidden": 128,
        "actor_critic_hidden": 128,
        "batch_size_actor_critic": 64,
        "batch_size_model": 16,
        "initial_collection_steps": 2000,
        "model_pretrain_steps": 2000,
        "eval_episodes": 5,
        "checkpoint_every_env_steps": 10_000,
        # Rendering dominates a CPU run's simulation time; the fast renderer keeps it at 3-6 ms.
        "fast_render": True,
        # The paper's model learning rate (1e-4) works with its 100k pre-training updates; within a
        # CPU run's few thousand it leaves the latent state empty (walker-stand, 1,000 updates: the
        # KL fell to 31 nats and the reward head explained nothing, -0.13 of the reward's variance;
        # at 1e-3 the KL rose to 154 nats and the reward head explained 0.62).
        "lr_model": 1e-3,
        # A CPU run makes ~20k updates, not the paper's ~100k+: starting the temperature at 0.1
        # instead of 1 (as SAC-AE/DrQ do) saves the ~8k updates log alpha needs to get there at
        # lr 3e-4, during which the entropy bonus drowns the reward and the actor stays uniform.
        "init_log_alpha": -2.3,
    },
}
# A first run that ends in minutes on a 2-core CPU (the README's first run, and the training of
# `python -m slac_train.pipeline_demo --retrain`): small networks, 1,600 simulator steps, a few
# hundred updates. It shows the pipeline -- a run directory, a checkpoint to export and run -- not
# a skilled policy.
PRESETS["quickstart"] = {
    "encoder_base_channels": 8,
    "feature_dim": 64,
    "z1_dim": 16,
    "z2_dim": 64,
    "model_hidden": 64,
    "actor_critic_hidden": 64,
    "batch_size_actor_critic": 32,
    "batch_size_model": 8,
    "buffer_capacity": 10_000,
    "initial_collection_steps": 400,
    "model_pretrain_steps": 200,
    "total_env_steps": 1_600,
    "eval_every_env_steps": 800,
    "eval_episodes": 1,
    "fast_render": True,
    "lr_model": 1e-3,  # a few hundred model updates need cpu-small's rate, not the paper's
}
# D'Claw Turn from demonstrations (--demos) on a 2-core CPU, under the randomisation slac-imitate
# records with: cpu-small's latent model and schedule, with the imitation student's encoder and
# actor sizes (slac-imitate's defaults: width 16, 128 features, 256 units) so that --init-policy
# robots/dclaw/policies/turn.onnx or an slac-imitate run fits; RLPD's critic (LayerNorm, 10 Q
# networks, the minimum of a random 2 for the target, their mean for the actor) and half of every
# batch from the demonstrations; the encoder stays where the student left it and the critic learns
# for 2,000 updates before the actor moves.
PRESETS["dclaw-turn-demos"] = {
    **PRESETS["cpu-small"],
    "task": "dclaw-turn",
    "randomization": "visual+dynamics+latency",
    "encoder_base_channels": 16,
    "feature_dim": 128,
    "actor_critic_hidden": 256,
    "num_critics": 10,
    "critic_target_subset": 2,
    "actor_q": "mean",
    "critic_layer_norm": True,
    "demo_ratio": 0.5,
    "initial_collection_steps": 400,
    "freeze_encoder": True,
    "actor_warmup_updates": 2000,
    "eval_every_env_steps": 4000,
    "eval_episodes": 20,
    "checkpoint_every_env_steps": 4000,
}


def preset_values(name: str) -> dict[str, Any]:
    """The fields preset ``name`` sets; ValueError naming the presets for an unknown one."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown preset {name!r} (presets: {', '.join(PRESETS)}){hint}")
    return dict(PRESETS[name])


def read_config_file(path: str | Path) -> dict[str, Any]:
    """TrainConfig fields from a JSON (``.json``) or TOML (``.toml``) file of ``field = value``.

    Unknown fields are refused with the nearest field's name; a value of the wrong type is refused
    naming the field, what it got and what it needs (an integer may be written ``1e4``).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--config {path} is a directory: give a .json or .toml file")
    if not path.is_file():
        raise FileNotFoundError(f"no config file {path}")
    if path.suffix not in (".json", ".toml"):
        raise ValueError(f"{path}: a config file is .json or .toml")
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text())
        else:
            data = json.loads(path.read_text())
    except ValueError as error:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ValueError(f"{path} is not valid {path.suffix[1:].upper()}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a table of TrainConfig fields")
    try:
        return config_values(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def config_values(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as TrainConfig field values: each key checked to be a field and each value of its
    type (an integral float such as ``1e4`` becomes an int); ValueError naming every problem."""
    values, problems = {}, []
    for key, value in data.items():
        try:
            values[key] = field_value(key, value)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError("; ".join(problems))
    return values


def field_value(key: str, value: Any) -> Any:
    """``value`` as TrainConfig field ``key`` takes it; ValueError (a sentence) if it cannot be."""
    hints = typing.get_type_hints(TrainConfig)
    if key not in hints:
        close = difflib.get_close_matches(key.replace("-", "_"), list(hints), n=1)
        raise ValueError(
            f"unknown field {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        )
    annotation = hints[key]
    kinds = [a for a in typing.get_args(annotation) or (annotation,) if a is not type(None)]
    if value is None:
        if len(kinds) < len(typing.get_args(annotation)):
            return None
        raise ValueError(f"{key} cannot be null")
    kind = kinds[0]
    if typing.get_origin(kind) is tuple:  # a list of strings (demos)
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(f"{key} must be a list of strings, got {value!r}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int and number and float(value).is_integer():
        return int(value)
    if kind is float and number:
        return float(value)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise ValueError(f"{key} must be {kind.__name__}, got {value!r}")
