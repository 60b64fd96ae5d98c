"""Recording a teacher: whole teacher episodes with noise injection (DART), and DAgger episodes
in which a student drives first and the teacher takes over.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from slac_runtime.history import ACTOR_FRAMES, History
from slac_runtime.stop_request import StopRequest
from slac_train.imitation.dataset import Dataset, dynamics_targets
from slac_train.slac_agent import SlacAgent

REST_STEPS = (
    4  # a student whose action has not moved for this many steps rests (a stroke holds a pose <= 3)
)
REST_MOTION = 0.1  # largest change of any action component between two steps of a rest


def collect(
    env,
    teacher,
    episodes: int,
    noise_stds: list[float],
    rng: np.random.Generator,
    data: Dataset,
    seed0: int,
    student: SlacAgent | None = None,
    switch_at: str = "start",
    progress: Callable[[int, float, float], None] | None = None,
    stop: StopRequest | None = None,
) -> dict[str, float]:
    """Record ``episodes`` episodes (seeds ``seed0 + i``) into ``data``: every frame with the
    executed action, its reward and termination flag and the teacher's clean label (NaN where the
    teacher did not act), and each episode's last frame. The teacher's
    actions are executed with Gaussian noise whose std cycles through ``noise_stds`` (DART).

    ``switch_at="start"``: the teacher drives whole episodes. With a ``student`` (DAgger by
    take-over), the student (deterministic, as deployed) drives first and the teacher takes over:
    ``"random"`` at a uniformly drawn step; ``"rest"`` once the student has rested (its action
    still for ``REST_STEPS`` steps) with the valve further from the target than the teacher's
    tolerance -- its near misses, where the teacher's fresh plan is what the teacher itself would do
    after resting; episodes where that never happens are not kept.

    ``progress(episodes_done, success_rate_so_far, return_mean_so_far)`` is called after every
    episode; ``stop.check()`` before each one (a stop requested: stop with the episodes recorded
    so far, raising :class:`~slac_runtime.stop_request.StopRequested`, a KeyboardInterrupt as
    Ctrl-C's).
    """
    if switch_at not in ("start", "random", "rest") or (switch_at != "start") != (
        student is not None
    ):
        raise ValueError(
            "switch_at must be 'start' without a student, 'random' or 'rest' with one, "
            f"not {switch_at!r}"
        )
    from slac_train.envs import get_task_spec

    successes, returns, handed_over = [], [], []
    if hasattr(teacher, "attach"):  # a teacher that reads the task itself
        teacher.attach(env)
    horizon = get_task_spec(env.task_name).episode_env_steps // env.action_repeat
    for episode in range(episodes):
        if stop is not None:
            stop.check()
        obs, info = env.reset(seed=seed0 + episode)
        teacher.reset()
        switch = (
            0
            if switch_at == "start"
            else int(rng.integers(0, horizon))
            if switch_at == "random"
            else horizon
        )
        run = _run_episode(
            env,
            teacher,
            student,
            obs,
            info,
            switch,
            switch_at == "rest",
            noise_stds[episode % len(noise_stds)],
            rng,
        )
        if run["switch"] < horizon:
            _keep(data, run, dynamics_targets(info))
            handed_over.append(run["switch"])
        returns.append(run["return"])
        successes.append(run["success"])
        if progress is not None:
            progress(episode + 1, float(np.mean(successes)), float(np.mean(returns)))
    return {
        "return_mean": float(np.mean(returns)),
        "success_rate": float(np.mean(successes)),
        "episodes_kept": len(handed_over),
        "switch_step_mean": float(np.mean(handed_over)) if handed_over else float("nan"),
    }


def _keep(data: Dataset, run: dict, aux: np.ndarray) -> None:
    """Add a recorded episode (:func:`_run_episode`'s) to ``data``."""
    data.add_episode(
        run["frames"],
        run["actions"],
        run["labels"],
        aux,
        rewards=run["rewards"],
        terminated=run["terminated"],
        final_frame=run["final_frame"],
    )


def _run_episode(
    env,
    teacher,
    student,
    obs,
    reset_info,
    switch: int,
    switch_at_rest: bool,
    noise: float,
    rng: np.random.Generator,
) -> dict:
    """One episode from its reset: the student up to step ``switch`` (or, ``switch_at_rest``, to its
    first rest short of the target), the teacher from there."""
    history = History(env.action_space.shape[0], obs.shape, length=ACTOR_FRAMES, dtype=np.uint8)
    history.reset(obs)
    unlabelled = np.full(env.action_space.shape, np.nan, dtype=np.float32)
    frames, actions, labels, done, step, total, info = [], [], [], False, 0, 0.0, reset_info
    rewards, terminals = [], []
    while not done:
        if (
            switch_at_rest
            and REST_STEPS <= step < switch
            and abs(float(info["angle_error"])) > teacher.tolerance
            and np.abs(np.diff(np.stack(actions[-REST_STEPS:]), axis=0)).max() < REST_MOTION
        ):
            switch = step
        if step < switch:
            label, action = unlabelled, student.act(history, deterministic=True)
        else:
            if step == switch and step > 0:
                teacher.take_over(reset_info, step, info["joint_goals"])
            label = teacher.act_on(info)
            action = np.clip(label + rng.normal(0.0, noise, label.shape), -1.0, 1.0).astype(
                np.float32
            )
        frames.append(obs)
        labels.append(label)
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        if student is not None:
            history.append(action, obs)
        rewards.append(float(reward))
        terminals.append(bool(terminated))
        total += reward
        done = terminated or truncated
        step += 1
    return {
        "frames": frames,
        "actions": actions,
        "labels": labels,
        "rewards": rewards,
        "terminated": terminals,
        "final_frame": obs,
        "switch": switch,
        "return": total,
        "success": float(info.get("success", 0.0)),
    }


def collect_dagger(
    env,
    teacher,
    agent: SlacAgent,
    episodes: int,
    noise_stds: list[float],
    rng: np.random.Generator,
    data: Dataset,
    seed0: int,
    switch_at: str = "random",
) -> dict[str, float]:
    """DAgger by take-over (:func:`collect` with a student): only the teacher's steps are
    labelled."""
    return collect(
        env, teacher, episodes, noise_stds, rng, data, seed0, student=agent, switch_at=switch_at
    )
