"""The Turn policy shipped with the D'Claw package: found,
self-describing, and turning the valve."""

from __future__ import annotations

import numpy as np

from robots.dclaw import ROBOT
from slac_runtime.policy import OnnxPolicy


def test_the_dclaw_package_ships_a_turn_policy():
    path = ROBOT.default_policy()
    assert path is not None and path.name == "turn.onnx"
    assert path.stat().st_size < 5_000_000  # kept small in the repository
    policy = OnnxPolicy(path)
    m = policy.metadata
    assert (m.task, m.robot, m.action_dim, m.history_length) == ("dclaw-turn", "dclaw", 9, 8)
    assert m.joint_names == ROBOT.description.joint_names
    assert m.action_repeat == 2 and m.episode_policy_steps == 40


def test_the_shipped_policy_turns_the_valve_in_simulation():
    # Through onnxruntime, as slac-run runs it (deterministic), on the nominal Fixed task.
    from slac_train.envs import make_env

    policy = OnnxPolicy(ROBOT.default_policy())
    env = make_env("dclaw-turn", seed=0)
    errors = []
    try:
        for seed in (0, 1):
            frame, info = env.reset(seed=seed)
            out = policy.reset(frame, deterministic=True)
            assert abs(info["angle_error"]) > 3.0  # starts pi away
            done = False
            while not done:
                action = out.action
                frame, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
                if not done:
                    out = policy.step(frame, action, deterministic=True)
            errors.append(info["angle_error"])
    finally:
        env.close()
    assert np.all(np.abs(errors) < 0.1), errors  # the task's success threshold
