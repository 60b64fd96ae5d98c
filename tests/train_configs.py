"""TrainConfig values that train tiny networks in seconds on a CPU, for tests.

Importing this module imports no part of the toolkit (some tests check what a process loaded).
"""

from typing import Any

# Networks, batches and buffer small enough to train in seconds on a CPU.
TINY_NETWORKS: dict[str, int] = dict(
    encoder_base_channels=4,
    feature_dim=16,
    z1_dim=4,
    z2_dim=8,
    model_hidden=16,
    actor_critic_hidden=16,
    batch_size_actor_critic=8,
    batch_size_model=4,
    buffer_capacity=2_000,
)

# Budgets, schedules and artefacts of a run that ends in seconds.
TINY_RUN: dict[str, Any] = dict(
    initial_collection_steps=20,
    model_pretrain_steps=5,
    total_env_steps=200,
    eval_every_env_steps=100,
    eval_episodes=1,
    reconstruction_steps=8,
    log_every_updates=10,
    checkpoint_every_env_steps=100,
    checkpoint_every_pretrain_updates=100,
    device="cpu",
    progress=False,
    fast_render=True,
)


# A run on the toy task (slac_toy_task, episodes of 24 env steps): six episodes, evaluations and
# checkpoints every two, no videos.
TOY_RUN: dict[str, Any] = dict(
    total_env_steps=144,
    initial_collection_steps=20,
    model_pretrain_steps=5,
    eval_every_env_steps=48,
    checkpoint_every_env_steps=48,
    eval_video=False,
    reconstruction_video=False,
    log_every_updates=5,
)


def small_test_config(**changes: Any):
    """A TrainConfig of tiny networks and budgets (``changes`` over them)."""
    from slac_train.config import TrainConfig

    return TrainConfig(**{**TINY_NETWORKS, **TINY_RUN, **changes})


def tiny_train_values(**changes: Any) -> dict[str, Any]:
    """slac-train settings that train tiny networks in seconds on a CPU (``changes`` over them)."""
    values = dict(
        **TINY_NETWORKS,
        model_pretrain_steps=3,
        eval_episodes=1,
        reconstruction_steps=6,
        log_every_updates=5,
        device="cpu",
        progress=False,
    )
    return {**values, **changes}
