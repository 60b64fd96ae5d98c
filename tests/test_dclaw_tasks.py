"""The D'Claw tasks: registry, action mapping, rewards and success, randomisation switches, and a
scripted (no learning) controller that turns the valve."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from robots.dclaw.description import CONTROL_PERIOD_S, DCLAW, RESET_POSE
from robots.dclaw.sim import DYNAMICS_RANGES
from slac_train.envs import get_task_spec, make_env, task_names

EXPECTED = {"pose": (1, 80), "turn": (2, 80), "screw": (2, 160)}  # action repeat, env steps


def test_the_robot_names_the_virtual_scene_each_task_renders():
    """slac-run checks a virtual camera's scene against the robot's word for a policy's task: the
    robot's word is the scene the task trains in, for every task and variant."""
    from robots.dclaw import ROBOT
    from slac_train.envs.dclaw import TASKS

    for task, (task_class, _) in TASKS.items():
        for name in (f"dclaw-{task}", f"dclaw-{task}-random-dynamics"):
            assert ROBOT.scene_for_task(name) == task_class.scene, name
    assert ROBOT.scene_for_task("dclaw-poser") is None and ROBOT.scene_for_task("walker") is None


def pose_to_action(pose) -> np.ndarray:
    """The action whose linear map onto the joint ranges is ``pose`` (rad)."""
    pose = np.asarray(pose, dtype=np.float64)
    return (2 * (pose - DCLAW.low) / (DCLAW.high - DCLAW.low) - 1).astype(np.float32)


def test_registry_lists_every_task_and_variant():
    names = set(task_names(suite="dclaw"))
    for task, (repeat, env_steps) in EXPECTED.items():
        for name in (
            f"dclaw-{task}",
            *(f"dclaw-{task}-{v}" for v in ("fixed", "random", "random-dynamics")),
        ):
            assert name in names
            spec = get_task_spec(name)
            assert spec.action_repeat == repeat and spec.episode_env_steps == env_steps
            assert spec.robot == "dclaw"
        assert (
            get_task_spec(f"dclaw-{task}").make_task.__kwdefaults__
            == get_task_spec(f"dclaw-{task}-fixed").make_task.__kwdefaults__
        )  # the plain name is Fixed
    assert get_task_spec("dclaw-turn").episode_agent_steps == 40
    assert get_task_spec("dclaw-pose").episode_agent_steps == 80
    assert get_task_spec("dclaw-screw").episode_agent_steps == 80


def test_registering_the_tasks_imports_no_simulator():
    code = (
        "import sys, slac_train.envs.dclaw; "
        "assert 'mujoco' not in sys.modules and 'dm_control' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# The scripted controller: all three fingers in step. Swing back with the fingers raised (the
# reset pose's flexion), lower the fingertips between the spokes, sweep them counter-clockwise
# (positive abduction pushes the spokes round), lift, swing back, and push again.
RAISED, LOWERED, SWEEP = (-1.0, 1.0), (0.2, 0.0), 0.45
GAIT = [  # (finger pose (top, middle, bottom) in rad, policy steps)
    ((-SWEEP, *RAISED), 3), ((-SWEEP, *LOWERED), 7), ((SWEEP, *LOWERED), 6),
    ((SWEEP, *RAISED), 6), ((-SWEEP, *RAISED), 5), ((-SWEEP, *LOWERED), 7), ((SWEEP, *LOWERED), 6),
]  # fmt: skip


@pytest.mark.parametrize("name", ["dclaw-turn-fixed", "dclaw-turn-random-dynamics"])
def test_scripted_controller_turns_the_valve_90_degrees_in_one_episode(name):
    env = make_env(name, seed=0)
    try:
        _, info = env.reset(seed=3)
        start, steps = info["valve_angle"], 0
        for finger_pose, n in GAIT:
            for _ in range(n):
                _, _, terminated, truncated, info = env.step(pose_to_action(finger_pose * 3))
                steps += 1
        assert steps == 40 and truncated and not terminated
        turned = info["valve_angle"] - start
        assert turned > math.radians(90), f"turned only {math.degrees(turned):.0f} degrees"
        assert env.task.sim.warnings() == {}
    finally:
        env.close()


def _hold(task):
    """One environment step that keeps the joint goals where they are."""
    return task.step(pose_to_action(task._goal))


@pytest.mark.parametrize("name", ["dclaw-turn-fixed", "dclaw-screw-fixed"])
def test_bonuses_success_and_wrapping_at_hand_set_valve_angles(name):
    env = make_env(name, seed=0)
    task = env.task
    success_rad = 0.1 if "turn" in name else 0.2
    try:
        for error, bonus in [
            (0.05, 60.0),
            (-0.09, 60.0),
            (0.2, 10.0),
            (-0.24, 10.0),
            (0.3, 0.0),
            (2.0, 0.0),
        ]:
            for turns in (0, 1, -2):  # whole turns of the valve change nothing: errors wrap
                env.reset(seed=1)
                target = task._target_angle + (
                    task._target_speed * CONTROL_PERIOD_S if "screw" in name else 0
                )
                task.sim.set_valve_angle(target - error + 2 * math.pi * turns)
                reward, _, _, info = _hold(task)
                assert info["angle_error"] == pytest.approx(error, abs=2e-3)
                assert info["score"] == pytest.approx(-abs(error), abs=2e-3)
                terms = info["reward_terms"]
                assert terms["bonus_small"] + terms["bonus_big"] == bonus
                assert info["success"] == (abs(error) < success_rad)
                # The reward is the documented sum.
                q = info["joint_positions"]
                expected = (
                    -5 * abs(info["angle_error"])
                    - np.linalg.norm(q - np.array(RESET_POSE))
                    + terms["joint_velocity"]
                    + bonus
                )
                assert reward == pytest.approx(expected, abs=1e-9)
    finally:
        env.close()


def test_screw_target_moves_at_its_speed():
    env = make_env("dclaw-screw-random", seed=0)
    try:
        _, info = env.reset(seed=4)
        start, speed = info["target_angle"], info["target_speed"]
        assert start == pytest.approx(info["valve_angle"], abs=0.06) and abs(speed) <= 0.75
        for _ in range(10):
            _, _, _, _, info = env.step(np.zeros(9, dtype=np.float32))
        assert info["target_angle"] == pytest.approx(start + speed * 20 * CONTROL_PERIOD_S)
    finally:
        env.close()


def test_actions_map_to_goals_exactly_as_the_runtime_does():
    env = make_env("dclaw-turn-random", seed=0)
    rng = np.random.default_rng(0)
    try:
        _, info = env.reset(seed=2)
        goal = info["joint_goals"]
        np.testing.assert_allclose(goal, info["joint_positions"])
        for _ in range(10):
            action = rng.uniform(-1, 1, 9).astype(np.float32)
            _, _, _, _, info = env.step(action)
            for _ in range(env.action_repeat):
                goal = DCLAW.action_to_joint_goal(action, goal, CONTROL_PERIOD_S)
            np.testing.assert_array_equal(info["joint_goals"], goal)
            np.testing.assert_array_equal(env.task.sim.joint_goals(), goal)
    finally:
        env.close()


def test_pose_reached_by_commanding_the_target_succeeds():
    env = make_env("dclaw-pose-random", seed=0)
    try:
        _, info = env.reset(seed=5)
        target = info["target_pose"]
        assert np.all(target[1::3] <= 0) and not info["success"]
        while True:
            _, reward, _, truncated, info = env.step(pose_to_action(target))
            if truncated:
                break
        assert info["success"] and info["pose_error"] < math.radians(10)
        assert info["score"] == -info["pose_error"]
        assert reward == pytest.approx(-np.linalg.norm(info["joint_positions"] - target), abs=1e-6)
    finally:
        env.close()


def test_random_dynamics_draws_stay_in_range_and_differ_per_seed():
    env = make_env("dclaw-turn-random-dynamics", seed=0)
    r = DYNAMICS_RANGES
    try:
        draws = [env.reset(seed=s)[1]["dynamics"] for s in (0, 1, 0)]
        for d in draws:
            assert np.all(
                (d["joint_damping"] >= r.joint_damping[0])
                & (d["joint_damping"] <= r.joint_damping[1])
            )
            assert np.all(
                (d["joint_frictionloss"] >= r.joint_frictionloss[0])
                & (d["joint_frictionloss"] <= r.joint_frictionloss[1])
            )
            assert np.all(
                (d["actuator_kp"] >= r.actuator_kp[0]) & (d["actuator_kp"] <= r.actuator_kp[1])
            )
            assert np.all(np.abs(d["mount_offset_m"]) <= r.mount_offset_m)
        assert not np.allclose(draws[0]["actuator_kp"], draws[1]["actuator_kp"])
        np.testing.assert_array_equal(draws[0]["actuator_kp"], draws[2]["actuator_kp"])
        np.testing.assert_array_equal(
            env.task.sim.model.actuator_gainprm[:, 0], draws[2]["actuator_kp"]
        )
    finally:
        env.close()


def test_switches_and_their_defaults():
    fixed = make_env("dclaw-turn-fixed", seed=0)
    randomized = make_env("dclaw-turn-fixed", seed=0, visual_randomization=True)
    noisy = make_env("dclaw-turn-fixed", seed=0, image_noise=4.0)
    goal = make_env("dclaw-turn-fixed", seed=0, show_goal=True)
    try:
        t = fixed.task
        assert not (
            t.visual_randomization or t.dynamics_randomization or t.image_noise or t.show_goal
        )
        sim_to_real = make_env("dclaw-turn-random-dynamics", seed=0).task
        assert sim_to_real.visual_randomization and sim_to_real.dynamics_randomization
        assert sim_to_real.image_noise > 0 and sim_to_real.show_goal
        sim_to_real.close()

        plain = fixed.reset(seed=1)[0]
        # Visual randomisation changes the image, reproducibly under a seed, differently per seed.
        a = randomized.reset(seed=1)[0]
        assert not np.array_equal(a, plain)
        np.testing.assert_array_equal(randomized.reset(seed=1)[0], a)
        assert not np.array_equal(randomized.reset(seed=2)[0], a)
        # Switching visual randomisation on does not change the task's own draws.
        assert (
            randomized.reset(seed=1)[1]["joint_positions"].tolist()
            == fixed.reset(seed=1)[1]["joint_positions"].tolist()
        )
        # Image noise: small, reproducible; the goal bar: shown on request.
        n = noisy.reset(seed=1)[0]
        assert 1.0 < np.abs(n.astype(int) - plain).mean() < 6.0
        np.testing.assert_array_equal(noisy.reset(seed=1)[0], n)
        assert not np.array_equal(goal.reset(seed=1)[0], plain)
    finally:
        for env in (fixed, randomized, noisy, goal):
            env.close()


def test_bad_variant_and_noise_are_explained():
    from slac_train.envs.dclaw import DClawTurn

    with pytest.raises(ValueError, match="variant"):
        DClawTurn("hard")
    with pytest.raises(ValueError, match="image_noise"):
        DClawTurn("fixed", image_noise=-1.0)
    with pytest.raises(ValueError, match="observation_latency"):
        DClawTurn("fixed", observation_latency=(0.05, 0.01))


@pytest.mark.parametrize(
    "latency", [0.03, 0.07]
)  # within the step's last control period; the one before
def test_observation_latency_shows_the_scene_that_long_before_the_step_ends(latency):
    """The frame after a step with latency L is the scene at (step end - L): compared with a twin
    simulation rendered after every 2.5 ms substep; rewards and info stay the step end's."""
    delayed = make_env("dclaw-turn", seed=0, observation_latency=latency)
    twin = make_env("dclaw-turn", seed=0)
    try:
        first, _ = delayed.reset(seed=3)
        np.testing.assert_array_equal(first, twin.reset(seed=3)[0])  # the reset state, however old
        rng = np.random.default_rng(0)
        task, sim = twin.task, twin.task.sim
        for _ in range(3):
            action = rng.uniform(-1, 1, 9).astype(np.float32)
            frame, reward, _, _, info = delayed.step(action)
            frames = {}
            for _ in range(twin.action_repeat):  # the twin: the task's step, one substep at a time
                task._goal = DCLAW.action_to_joint_goal(action, task._goal, CONTROL_PERIOD_S)
                sim.set_joint_goals(task._goal)
                for _ in range(sim.substeps):
                    sim.step(1)
                    frames[round(sim.time, 4)] = sim.render().copy()
            np.testing.assert_array_equal(frame, frames[round(sim.time - latency, 4)])
            assert info["valve_angle"] == pytest.approx(sim.valve_angle(), abs=1e-9)
            assert not np.array_equal(frame, frames[round(sim.time, 4)])
        randomized = make_env("dclaw-turn-random-dynamics", seed=0).task
        drawn = set()
        for seed in range(4):
            randomized.reset(np.random.default_rng(seed))
            assert 0.0 <= randomized.latency_s <= 0.08
            drawn.add(randomized.latency_s)
        randomized.close()
        assert len(drawn) == 4  # drawn per episode
    finally:
        delayed.close()
        twin.close()
