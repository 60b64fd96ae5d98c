"""The D'Claw Turn teachers and slac-imitate (behaviour cloning into the encoder + actor)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from robots.dclaw.description import DCLAW, RESET_POSE
from robots.dclaw.sim import load_model
from slac_train.envs import make_env
from slac_train.imitation.cli import main
from slac_train.imitation.collection import collect_dagger
from slac_train.imitation.dataset import Dataset, sample_batch
from slac_train.imitation.teachers.dclaw_turn import (
    FOLLOW_TABLES,
    MOUNT_TABLES,
    STROKE_TABLE,
    TurnSearchController,
    TurnStrokeController,
    TurnTableController,
    mount_compensated_pose,
    stroke_poses,
)
from slac_train.imitation.teachers.dclaw_turn_tables import (
    build_follow_table,
    build_stroke_table,
    mount_table_options,
    stroke_end_goals,
)
from tests.conftest import cli_flags, short_run_flags
from tests.train_configs import tiny_train_values

# A student small enough to train in seconds on a CPU, evaluated on one episode.
TINY_STUDENT = dict(
    batch_size=4, encoder_base_channels=4, feature_dim=16, actor_hidden=16, eval_episodes=1
)


def imitate(run_dir: Path, **options) -> int:
    """slac-imitate's exit code for a tiny student's run in ``run_dir``: ``options`` (written as
    :func:`cli_flags` writes them) over :data:`TINY_STUDENT`."""
    return main(["--run-dir", str(run_dir), *cli_flags(**{**TINY_STUDENT, **options})])


def tiny_agent_config(task: str, action_repeat: int):
    """A resolved TrainConfig of a SLAC agent with a tiny encoder and actor."""
    from slac_train.config import TrainConfig

    tiny = dict(encoder_base_channels=4, feature_dim=16, actor_critic_hidden=16, device="cpu")
    return TrainConfig(task=task, **tiny).resolved(action_repeat)


def run_teacher(env, teacher, seed):
    obs, info = env.reset(seed=seed)
    teacher.reset()
    done = False
    while not done:
        action = teacher.act_on(info)
        assert action.shape == (9,) and np.all(np.abs(action) <= 1.0)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return info


def test_teacher_turns_the_valve_in_nominal_simulation():
    env = make_env("dclaw-turn-fixed", seed=0)
    try:
        errors = [
            run_teacher(env, TurnStrokeController(), seed)["angle_error"] for seed in range(3)
        ]
    finally:
        env.close()
    # from pi away at the start; the success threshold is 0.1 rad
    assert np.mean(np.abs(errors) < 0.1) >= 2 / 3, errors


def test_teacher_waits_at_the_reset_pose_when_on_target():
    teacher = TurnStrokeController()
    teacher.reset()
    target = DCLAW.low + (teacher.act(0.0).astype(np.float64) + 1.0) * 0.5 * (
        DCLAW.high - DCLAW.low
    )
    np.testing.assert_allclose(target, RESET_POSE, atol=1e-5)
    # a large error starts a stroke away from the reset pose, mirrored for the other direction
    a = TurnStrokeController().act(-1.0)
    b = TurnStrokeController().act(+1.0)
    assert not np.allclose(a, b) and np.allclose(a[1:3], b[1:3])


@pytest.mark.parametrize("follow", [False, True], ids=["table", "follow-tables"])
def test_table_teacher_turns_the_valve_and_keeps_it_there(follow):
    """The shipped stroke table's controller ends within the success threshold and stays there for
    the episode's last 0.5 s (the stroke teacher's last stroke lands just as the episode ends); so
    does the one with the shipped follow-on tables (every stroke after the first predicted from
    where the last one left the claw)."""
    assert all(Path(path).exists() for path in FOLLOW_TABLES.values())
    env = make_env("dclaw-turn-fixed", seed=0)
    teacher = (
        TurnTableController(height_tables=MOUNT_TABLES, follow_tables=FOLLOW_TABLES)
        if follow
        else TurnTableController()
    )
    try:
        for seed in range(3):
            obs, info = env.reset(seed=seed)
            teacher.reset()
            errors = []
            for _ in range(40):
                obs, _, _, _, info = env.step(teacher.act_on(info))
                errors.append(abs(info["angle_error"]))
            assert max(errors[-5:]) < 0.1, (seed, errors)
    finally:
        env.close()


def test_a_stroke_leaves_the_fingers_half_lifted_at_its_sweeps_end():
    """The goals chase each pose at the velocity limit and do not reach it in the steps a stroke
    gives them: the next stroke starts with the fingers lower than the reset pose has them."""
    for b1 in (-0.3, 0.4):
        goals = stroke_end_goals(b1)
        np.testing.assert_allclose(goals[0::3], b1)  # the top joints reached the sweep's end
        lifted_middle, reset_middle = TurnStrokeController.lifted[0], RESET_POSE[1]
        assert np.all(goals[1::3] > lifted_middle + 0.2) and lifted_middle > reset_middle
        np.testing.assert_allclose(goals[1::3], goals[1])  # three fingers alike
    np.testing.assert_allclose(stroke_end_goals(-0.3)[1:3], stroke_end_goals(0.4)[1:3])


def test_follow_table_predicts_the_strokes_after_the_first(tmp_path):
    sweeps = [-0.35, 0.0, 0.35]
    first = build_stroke_table(phases=2, sweeps=sweeps)
    follow = build_follow_table(starts=(-0.3, 0.3), phases=2, sweeps=sweeps)
    assert follow["rotation"].shape == (2, 2, 3, 3) and np.isfinite(follow["rotation"]).all()
    np.testing.assert_allclose(follow["starts"], [-0.3, 0.3])
    # the same strokes from the half-lifted end of an earlier one turn the valve differently
    assert np.abs(follow["rotation"] - first["rotation"]).max() > 0.1
    np.savez(tmp_path / "first.npz", **first)
    np.savez(tmp_path / "follow.npz", **follow)
    teacher = TurnTableController(
        tmp_path / "first.npz",
        phase_radius=0,
        sweep_radius=0,
        follow_tables={0.0: tmp_path / "follow.npz"},
    )
    teacher.reset()
    np.testing.assert_allclose(
        teacher._table_outcomes()[0], first["rotation"][0]
    )  # from the reset pose
    plan = [
        teacher.joint_targets(valve_angle=0.0, angle_error=-1.0)
        for _ in range(sum(TurnStrokeController.steps))
    ]
    b1 = plan[-1][0]
    start = int(np.argmin(np.abs(follow["starts"] - b1)))
    np.testing.assert_allclose(teacher._table_outcomes()[0], follow["rotation"][start])
    teacher.reset()  # a new episode starts from the reset pose again
    np.testing.assert_allclose(teacher._table_outcomes()[0], first["rotation"][0])
    with pytest.raises(ValueError, match="other phases or sweeps"):
        TurnTableController(
            tmp_path / "first.npz",
            follow_tables={0.0: {**follow, "sweeps": np.array([0.0, 0.1, 0.2])}},
        )


def test_mount_compensation_puts_the_fingertip_where_the_nominal_model_has_it():
    import mujoco

    from robots.dclaw.sim import load_model

    def fingertip(model, middle, bottom):
        data = mujoco.MjData(model)
        data.qpos[[model.joint(n).qposadr[0] for n in DCLAW.joint_names[:3]]] = (
            0.0,
            middle,
            bottom,
        )
        mujoco.mj_kinematics(model, data)
        return data.site_xpos[model.site("FF_tip").id].copy()

    nominal = load_model("valve")
    for pose in (TurnStrokeController.lowered, TurnStrokeController.lifted):
        assert mount_compensated_pose(pose, 0.0) == pytest.approx(pose, abs=1e-9)
        for height in (-0.01, 0.01):
            raised = load_model("valve")
            raised.body_pos[raised.body("mount").id, 2] += height
            moved = mount_compensated_pose(pose, height)
            assert not np.allclose(moved, pose, atol=0.02)
            np.testing.assert_allclose(
                fingertip(raised, *moved), fingertip(nominal, *pose), atol=1e-6
            )
            # uncompensated, the tip is a centimetre off
            assert abs(fingertip(raised, *pose)[2] - fingertip(nominal, *pose)[2]) == pytest.approx(
                0.01, abs=1e-6
            )


def test_table_teacher_reads_the_mount_offset_from_a_randomised_reset():
    env = make_env("dclaw-turn-random-dynamics", seed=0)
    try:
        _, info = env.reset(seed=5)
    finally:
        env.close()
    height = float(info["dynamics"]["mount_offset_m"][2])
    teacher = TurnTableController()
    teacher.reset()
    teacher.act_on(info)
    assert teacher.lowered == pytest.approx(
        mount_compensated_pose(TurnStrokeController.lowered, height)
    )
    assert teacher.lifted == pytest.approx(
        mount_compensated_pose(TurnStrokeController.lifted, height)
    )
    plain = TurnTableController(compensate_mount=False)
    plain.reset()
    plain.act_on(info)
    assert plain.lowered == TurnStrokeController.lowered
    # a new episode starts from the nominal poses until its reset info says otherwise
    teacher.reset()
    assert teacher.lowered == TurnStrokeController.lowered


def test_search_teacher_turns_the_valve_where_the_table_alone_fails():
    """Seed 20006 draws dynamics (servo gains, mount, friction) under which the table's strokes
    leave the valve 1.3 rad short; checking the candidate strokes in a copy of the simulator finds
    ones that work. The search must leave the simulator it reads exactly as it was."""
    env = make_env("dclaw-turn-fixed", seed=0, dynamics_randomization=True)
    try:
        table_info = run_teacher(env, TurnTableController(), 20006)
        assert abs(table_info["angle_error"]) > 0.5
        teacher = TurnSearchController(candidates=32)
        with pytest.raises(RuntimeError, match="attach"):
            teacher.reset()
            teacher.act_on(table_info)
        teacher.attach(env)
        _, info = env.reset(seed=20006)
        teacher.reset()
        sim = env.task.sim
        before = (sim.data.time, sim.data.qpos.copy(), sim.data.qvel.copy(), sim.data.ctrl.copy())
        teacher.act_on(info)  # searches: 33 rollouts from this state
        after = (sim.data.time, sim.data.qpos, sim.data.qvel, sim.data.ctrl)
        assert before[0] == after[0] and all(
            np.array_equal(b, a) for b, a in zip(before[1:], after[1:])
        )
        search_info = run_teacher(env, teacher, 20006)
        assert abs(search_info["angle_error"]) < 0.1, search_info["angle_error"]
    finally:
        env.close()


def test_a_teacher_taking_over_mid_episode_keeps_the_draw_and_the_fingers_where_they_are():
    env = make_env("dclaw-turn-random-dynamics", seed=0)
    try:
        _, reset_info = env.reset(seed=5)
        for _ in range(7):  # someone else drives: the fingers are away from the reset pose
            _, _, _, _, info = env.step(np.full(9, 0.3, np.float32))
    finally:
        env.close()
    height = float(reset_info["dynamics"]["mount_offset_m"][2])
    for teacher in (TurnTableController(), TurnSearchController()):
        teacher.reset()
        teacher.take_over(reset_info, 7, info["joint_goals"])
        assert teacher.lowered == pytest.approx(
            mount_compensated_pose(TurnStrokeController.lowered, height)
        )
        # on target, the teacher rests where the servo goals are, not at the reset pose
        pose = teacher.joint_targets(valve_angle=1.0, angle_error=0.01)
        np.testing.assert_allclose(pose, info["joint_goals"])
        assert not np.allclose(pose, RESET_POSE, atol=0.05)
    assert teacher._step == 7  # the search's rollouts end where the episode does


def test_dagger_episodes_label_only_the_teachers_steps():
    """The student drives each episode up to a random step, the teacher from there; the student's
    steps stay in the data (they are the history the teacher's windows see) without labels, and a
    batch never asks the student to imitate itself."""
    from slac_train.slac_agent import SlacAgent

    env = make_env("dclaw-turn-fixed", seed=0)
    agent = SlacAgent(tiny_agent_config("dclaw-turn-fixed", env.action_repeat), 9)
    data = Dataset(env.observation_space.shape, 9)
    try:
        stats = collect_dagger(
            env, TurnTableController(), agent, 3, [0.0], np.random.default_rng(1), data, seed0=0
        )
    finally:
        env.close()
    arrays = data.arrays()
    assert len(data) == 3 * 40 and 0 <= stats["switch_step_mean"] < 40
    labelled = ~np.isnan(arrays["labels"]).any(-1)
    assert np.isnan(arrays["labels"][~labelled]).all()
    for episode in range(3):
        mask = labelled[40 * episode : 40 * (episode + 1)]
        switch = int(np.argmax(mask))
        assert (
            mask[switch:].all() and not mask[:switch].any()
        )  # student first, then the teacher to the end
        # the teacher's steps (no noise here) are executed as labelled
        np.testing.assert_allclose(
            arrays["actions"][40 * episode + switch : 40 * (episode + 1)],
            np.clip(arrays["labels"][40 * episode + switch : 40 * (episode + 1)], -1, 1),
            atol=0.031,
        )
    assert (~labelled).sum() == round(3 * stats["switch_step_mean"]) > 0
    batch = sample_batch(arrays, 256, np.random.default_rng(0))
    assert np.isfinite(batch["labels"]).all()


@pytest.mark.parametrize(
    "left, chosen",
    [
        ([0.5, 0.07, 0.06, 0.05], 1),  # all within slack of the best: the table's favourite
        ([0.5, 0.20, 0.18, 0.05], 3),  # the table's favourites fail here: the one that works
        ([0.06, 0.07, 0.05, 0.04], 0),  # no stroke beats resting by more than the slack: rest
    ],
)
def test_search_teacher_keeps_the_tables_choice_unless_it_fails(left, chosen):
    teacher = TurnSearchController(candidates=3, slack=0.03)
    teacher._rollouts, teacher._episode_steps = object(), 40  # attached (the rollouts are replaced)
    teacher.reset()
    target = 1.0
    outcomes = iter(target - np.array(left))
    plans = []

    def rollout(plan, goal, horizon):
        plans.append(plan)
        return next(outcomes)

    teacher._rollout = rollout
    picked = teacher._search(valve_angle=target - 0.5, angle_error=0.5, goal=np.array(RESET_POSE))
    assert len(plans) == 4 and picked is plans[chosen]


def test_near_miss_search_keeps_the_tables_strokes_and_searches_only_where_it_would_rest():
    teacher = TurnSearchController(candidates=3, near_miss_only=True)
    teacher._rollouts, teacher._episode_steps = object(), 40
    teacher.reset()
    calls = []

    def rollout(plan, goal, horizon):
        calls.append(plan)
        return 0.0

    teacher._rollout = rollout
    teacher._task = type("Task", (), {"servo_goals": np.array(RESET_POSE)})()
    # a large error: the table has a stroke whose worst case beats it -- no rollouts
    angle = 0.3
    table = TurnTableController()
    table.reset()
    assert len(table._next_plan(angle, 1.5)) > 1
    np.testing.assert_allclose(
        np.stack(teacher._next_plan(angle, 1.5)), np.stack(table._next_plan(angle, 1.5))
    )
    assert calls == []
    # where the table rests short of the target (no stroke's worst case beats 0.12 rad), it searches
    phases = [
        a
        for a in np.linspace(0, 2 * math.pi / 3, 24, endpoint=False)
        if len(table._next_plan(a, 0.12)) == 1
    ]
    assert phases
    teacher._next_plan(phases[0], 0.12)
    assert len(calls) == 4  # resting and the 3 candidates


def test_search_teacher_rolls_out_in_a_model_that_knows_what_it_is_told():
    """``knows`` picks what of the episode's dynamics draw the rollouts assume: all of it gives the
    exact simulator's outcomes, none of it the nominal model's (which differ under this draw)."""
    env = make_env("dclaw-turn-fixed", seed=0, dynamics_randomization=True)
    try:
        outcomes = {}
        for name, knows in (
            ("exact", None),
            ("all", lambda d: d),
            ("mount", lambda d: {"mount_offset_m": d["mount_offset_m"]}),
            ("nothing", lambda d: {}),
        ):
            teacher = TurnSearchController(candidates=1, knows=knows)
            teacher.attach(env)
            _, info = env.reset(seed=20006)
            teacher.reset()
            teacher.act_on(info)  # reads the reset's draw
            if name == "mount":
                model, nominal = teacher._rollouts._model, load_model("valve")
                offset = info["dynamics"]["mount_offset_m"]
                np.testing.assert_allclose(
                    model.body("mount").pos, nominal.body("mount").pos + offset
                )
                np.testing.assert_array_equal(model.actuator_gainprm, nominal.actuator_gainprm)
            plan = stroke_poses(-0.2, 0.2)
            outcomes[name] = teacher._rollout(plan, env.task.servo_goals, len(plan))
    finally:
        env.close()
    assert outcomes["all"] == outcomes["exact"]
    assert (
        abs(outcomes["nothing"] - outcomes["exact"]) > 0.05
        and outcomes["mount"] != outcomes["exact"]
    )


def test_stroke_table_can_be_built_for_other_dynamics():
    sweeps = [-0.35, 0.0, 0.35]
    rotation = {
        kp: build_stroke_table(
            phases=1, sweeps=sweeps, dynamics=None if kp is None else {"actuator_kp": kp}
        )["rotation"][0, 0, 1, 2]
        for kp in (None, 1.0, 3.0)
    }  # the stroke from 0 to 0.35 rad
    # nominal servos (kp 2) turn the valve about 0.9 rad; weak ones less, strong ones more
    assert (
        rotation[None] > 0.5
        and rotation[1.0] < 0.9 * rotation[None]
        and rotation[3.0] > rotation[None]
    )


def test_stroke_table_is_built_from_the_simulator_and_rests_on_target(tmp_path):
    table = build_stroke_table(phases=2, sweeps=[-0.35, 0.0, 0.35], dynamics_draws=1)
    rotation = table["rotation"]
    assert rotation.shape == (2, 2, 3, 3) and np.isfinite(rotation).all()
    # sweeping the fingertips towards +top-joint turns the valve clockwise (negative), and back
    assert rotation[0, 0, 0, 2] < -0.3 and rotation[0, 0, 2, 0] > 0.3
    assert not np.allclose(rotation[0], rotation[1])  # the dynamics draw changes the outcomes
    np.savez(tmp_path / "t.npz", **table)
    teacher = TurnTableController(tmp_path / "t.npz", phase_radius=0, sweep_radius=0)
    teacher.reset()
    b0, b1, left = teacher.choose(0.0, -1.0)  # the stroke that leaves the least error, worst draw
    worst = np.abs(-1.0 - rotation[:, 0]).max(axis=0)
    assert left == pytest.approx(worst.min(), abs=1e-6)
    j, k = list(table["sweeps"]).index(b0), list(table["sweeps"]).index(b1)
    assert worst[j, k] == pytest.approx(left, abs=1e-6)
    # on target: no stroke, the fingers stay where they are (the reset pose at the start)
    pose = teacher.joint_targets(valve_angle=math.pi, angle_error=0.01)
    np.testing.assert_allclose(pose, RESET_POSE)
    with pytest.raises(
        FileNotFoundError, match="python -m slac_train.imitation.teachers.dclaw_turn_tables"
    ):
        TurnTableController(tmp_path / "missing.npz")
    assert STROKE_TABLE.exists()  # shipped: a teacher must not need a 10-minute build first


def test_windows_line_up_labels_and_pad_actions_at_episode_start():
    data = Dataset((2, 2, 3), 1)
    for episode in range(2):
        n = 5
        frames = [np.full((2, 2, 3), 10 * episode + t, np.uint8) for t in range(n)]
        actions = [np.array([100 * episode + t], np.float32) for t in range(n)]
        labels = [np.array([0.01 * (10 * episode + t)], np.float32) for t in range(n)]
        data.add_episode(frames, actions, labels)
    arrays = data.arrays()
    batch = sample_batch(arrays, 64, np.random.default_rng(0))
    for frames, prev, label in zip(batch["frames"], batch["prev_actions"], batch["labels"]):
        newest = int(frames[-1, 0, 0, 0])
        episode, t = divmod(newest, 10)
        assert label[0] == pytest.approx(0.01 * newest)
        # frames t-7..t clamped to the episode's first frame; actions t-7..t-1, zero before it
        expected_frames = [10 * episode + max(0, t - 7 + k) for k in range(8)]
        assert frames[:, 0, 0, 0].tolist() == expected_frames
        expected_actions = [100 * episode + (t - 7 + k) if t - 7 + k >= 0 else 0 for k in range(7)]
        assert prev[:, 0].tolist() == expected_actions


class _ConstantStudent:
    """A student that plays a fixed sequence of actions, whatever it sees."""

    def __init__(self, actions):
        self.actions = iter(actions)

    def act(self, history, deterministic=False):
        return next(self.actions)


def test_dagger_rest_switch_hands_over_where_the_student_rests_short_of_the_target():
    from slac_train.imitation.collection import REST_STEPS

    env = make_env("dclaw-turn-fixed", seed=0)
    rest = DCLAW.joint_target_to_action(np.array(RESET_POSE)).astype(np.float32)

    def dagger(student, episodes, data, switch_at="rest"):
        rng = np.random.default_rng(0)
        return collect_dagger(
            env, TurnTableController(), student, episodes, [0.0], rng, data, 0, switch_at
        )

    try:
        data = Dataset(env.observation_space.shape, 9)
        resting = _ConstantStudent(itertools.repeat(rest))
        stats = dagger(resting, 2, data)
        assert (
            stats["episodes_kept"] == 2 and stats["switch_step_mean"] == REST_STEPS
        )  # pi from the target
        labelled = ~np.isnan(data.arrays()["labels"]).any(-1)
        assert (
            labelled.reshape(2, 40)[:, REST_STEPS:].all()
            and not labelled.reshape(2, 40)[:, :REST_STEPS].any()
        )
        # a student that keeps moving is never taken over, and its episodes are not kept
        wiggle = np.tile(np.array([[0.4] * 9, [-0.4] * 9], np.float32), (40, 1))
        data = Dataset(env.observation_space.shape, 9)
        stats = dagger(_ConstantStudent(wiggle), 1, data)
        assert stats["episodes_kept"] == 0 and len(data) == 0
        with pytest.raises(ValueError, match="switch_at"):
            dagger(resting, 1, data, switch_at="never")
    finally:
        env.close()


def test_auxiliary_targets_are_the_dynamics_draw_and_reach_the_encoder():
    import torch

    from slac_train.imitation.dataset import dynamics_targets
    from slac_train.imitation.training import bc_loss
    from slac_train.slac_agent import SlacAgent

    env = make_env("dclaw-turn-random-dynamics", seed=0)
    try:
        _, info = env.reset(seed=5)
        frame = env.reset(seed=6)[0]
    finally:
        env.close()
    targets = dynamics_targets(info)
    assert targets[0] == pytest.approx(info["dynamics"]["mount_offset_m"][2] / 0.01, rel=1e-5)
    assert targets[1] == pytest.approx(np.mean(info["dynamics"]["actuator_kp"]) - 2.0, rel=1e-5)
    assert np.all(np.abs(targets) <= 1.0)
    assert np.isnan(dynamics_targets({})).all()  # no draw: no target

    policy = SlacAgent(tiny_agent_config("dclaw-turn", 2), 9).policy()
    torch.manual_seed(0)
    batch = {
        "frames": torch.from_numpy(np.stack([np.stack([frame] * 8)] * 4)),
        "prev_actions": torch.zeros(4, 7, 9),
        "labels": torch.full((4, 9), 0.5),
        "aux": torch.tensor([[0.5, -0.5], [np.nan, np.nan], [0.1, 0.2], [-1.0, 1.0]]),
    }
    head = torch.nn.Linear(policy.actor.net[0].in_features, 2)
    plain, _ = bc_loss(policy, batch)
    mean, _ = policy(
        batch["frames"], batch["prev_actions"]
    )  # the exported module computes the same actions
    assert float(plain.detach()) > 0 and torch.isfinite(mean).all()
    with_aux, parts = bc_loss(policy, batch, head, 1.0)
    assert (
        float(with_aux.detach())
        == pytest.approx(float(plain.detach()) + parts["aux_mse"], rel=1e-5)
        and parts["aux_mse"] > 0
    )
    grads = []
    for loss in (bc_loss(policy, batch)[0], bc_loss(policy, batch, head, 1.0)[0]):
        policy.zero_grad()
        loss.backward()
        grads.append(policy.encoder.convs[0].weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])  # the read-out trains the encoder


def test_slac_imitate_writes_a_run_that_exports(tmp_path, capsys):
    from slac_train.checkpoint import load_agent
    from slac_train.export_cli import export_run

    run_dir = tmp_path / "bc"
    code = imitate(run_dir, episodes=2, updates=4, noise=(0, 0.2))
    assert code == 0
    assert "collecting: 1/2 teacher episodes" in capsys.readouterr().out  # progress while recording
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["collect", "train", "checkpoint", "eval", "eval"]
    assert records[0]["frames"] == 2 * 40
    agent, state = load_agent(run_dir)
    assert (
        state["counters"]["agent_steps"] == 80
        and state["imitation"]["teacher"] == "dclaw-turn-table"
    )
    path, metadata = export_run(run_dir, tmp_path / "bc.onnx")
    assert path.exists() and metadata.task == "dclaw-turn" and metadata.training_agent_steps == 80


def test_slac_imitate_records_the_search_teacher_with_its_tolerance(tmp_path):
    run_dir = tmp_path / "bc"
    code = imitate(
        run_dir,
        teacher="dclaw-turn-search",
        teacher_tolerance=0.08,
        search_knows="mount",
        episodes=1,
        updates=2,
        noise=0,
    )
    assert code == 0
    collect = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert collect["kind"] == "collect" and collect["frames"] == 40
    options = json.loads((run_dir / "config.json").read_text())
    assert options["teacher"] == "dclaw-turn-search" and options["teacher_tolerance"] == 0.08
    assert options["search_knows"] == "mount"


def test_slac_imitate_runs_dagger_rounds_with_another_teacher(tmp_path):
    run_dir = tmp_path / "bc"
    code = imitate(
        run_dir,
        dagger_teacher="dclaw-turn-search",
        search_slack=0.03,
        dagger_switch="random",
        episodes=1,
        updates=2,
        dagger_rounds=2,
        dagger_episodes=1,
        dagger_updates=3,
        noise=0,
    )
    assert code == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == [
        "collect",
        "train",
        "dagger",
        "train",
        "dagger",
        "train",
        "checkpoint",
        "eval",
        "eval",
    ]
    assert [r["frames"] for r in records if r["kind"] == "dagger"] == [80, 120]
    assert [r["update"] for r in records if r["kind"] == "train"][-1] == 2 + 3 + 3
    assert (run_dir / "checkpoints" / "ckpt-bc-00000008.pt").exists()


def test_slac_imitate_refuses_a_task_its_teacher_cannot_drive(tmp_path, capsys):
    assert main(["--task", "dclaw-pose", "--run-dir", str(tmp_path / "x")]) == 2
    assert "drives dclaw-turn" in capsys.readouterr().err
    assert main(["--task", "dclaw-trun", "--run-dir", str(tmp_path / "y")]) == 2
    assert "dclaw-turn" in capsys.readouterr().err  # the close match


def test_table_teacher_uses_the_stroke_table_built_for_the_nearest_mount_height():
    sweeps = np.array([-0.35, 0.0, 0.35])
    nominal = {"rotation": np.zeros((1, 1, 3, 3)), "phases": np.zeros(1), "sweeps": sweeps}
    nominal["rotation"][
        0, 0, 0, 2
    ] = -1.0  # nominal: only -0.35 -> +0.35 turns the valve (by -1 rad)
    low = {"rotation": np.zeros((1, 1, 3, 3)), "phases": np.zeros(1), "sweeps": sweeps}
    low["rotation"][0, 0, 1, 2] = -1.0  # 4 mm low: only 0 -> +0.35 does
    teacher = TurnTableController(
        nominal, phase_radius=0, sweep_radius=0, height_tables={-0.004: low}
    )
    teacher.reset()
    assert teacher.choose(0.0, -1.0)[:2] == (-0.35, 0.35)
    teacher.set_mount_offset([0.005, 0.0, -0.0035])
    assert teacher.choose(0.0, -1.0)[:2] == (0.0, 0.35)
    assert teacher.lowered == pytest.approx(
        mount_compensated_pose(TurnStrokeController.lowered, -0.0035)
    )
    teacher.set_mount_offset([0.0, 0.0, -0.0015])  # nearer nominal than -4 mm
    assert teacher.choose(0.0, -1.0)[:2] == (-0.35, 0.35)
    teacher.set_mount_offset([0.0, 0.0, -0.009])
    # a new episode starts from the nominal table until its reset info says otherwise
    teacher.reset()
    assert teacher.choose(0.0, -1.0)[:2] == (-0.35, 0.35)
    with pytest.raises(ValueError, match="same options"):
        TurnTableController(nominal, height_tables={-0.004: low | {"sweeps": sweeps[:2]}})


def test_shipped_mount_table_is_what_the_builder_makes_for_that_height():
    ((height, path),) = MOUNT_TABLES.items()
    shipped = np.load(path)
    sweeps = [-0.35, 0.0, 0.35]
    built = build_stroke_table(phases=1, sweeps=sweeps, **mount_table_options(height))["rotation"][
        0, 0
    ]
    idx = [int(np.argmin(np.abs(shipped["sweeps"] - b))) for b in sweeps]
    np.testing.assert_allclose(built, shipped["rotation"][0, 0][np.ix_(idx, idx)], atol=1e-5)
    # the mount moved and the poses with it: not the nominal table's outcomes
    nominal = np.load(STROKE_TABLE)["rotation"][0, 0][np.ix_(idx, idx)]
    assert np.abs(built - nominal).max() > 0.05


def test_slac_imitate_mount_tables_teacher_strokes_from_the_low_mount_table_when_the_mount_is_low():
    from slac_train.imitation.teachers import TeacherOptions, get_teacher

    teacher = get_teacher("dclaw-turn-mount-tables").make(TeacherOptions())
    ((height, path),) = MOUNT_TABLES.items()
    low, nominal = TurnTableController(path), TurnTableController()
    for t in (teacher, low, nominal):
        t.reset()
    teacher.set_mount_offset([0.0, 0.0, height - 0.001])
    choices = {
        name: [t.choose(angle, -1.2) for angle in np.linspace(0, 2.0, 9)]
        for name, t in (("teacher", teacher), ("low", low), ("nominal", nominal))
    }
    assert choices["teacher"] == choices["low"] != choices["nominal"]
    teacher.set_mount_offset([0.0, 0.0, 0.006])
    assert [teacher.choose(angle, -1.2) for angle in np.linspace(0, 2.0, 9)] == choices["nominal"]


def test_slac_imitate_checkpoints_while_training_and_on_ctrl_c(tmp_path, monkeypatch, capsys):
    import slac_train.imitation.training as imitation
    from slac_train.checkpoint import load_agent
    from slac_train.export_cli import export_run

    real_loss, calls = imitation.bc_loss, []

    def interrupted_at_the_fifth_update(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(imitation, "bc_loss", interrupted_at_the_fifth_update)
    run_dir = tmp_path / "bc"
    code = imitate(run_dir, episodes=1, updates=10, checkpoint_every=2)
    assert code == 130
    assert "interrupted after 4 updates" in capsys.readouterr().err
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    assert names == [
        "ckpt-bc-00000002.pt",
        "ckpt-bc-00000004.pt",
    ]  # the periodic one and the Ctrl-C one
    _, state = load_agent(run_dir)
    assert state["counters"]["bc_updates"] == 4 and state["counters"]["agent_steps"] == 40
    path, _ = export_run(run_dir, tmp_path / "bc.onnx")
    assert path.exists()


def test_weight_average_follows_the_weights_with_a_warmed_up_decay_and_swaps_back():
    import torch

    from slac_train.imitation.training import WeightAverage

    weight = torch.nn.Parameter(torch.zeros(3))
    average = WeightAverage([weight], decay=0.5)
    expected = np.zeros(3)
    for t, value in enumerate([1.0, 2.0, 4.0, 4.0]):
        with torch.no_grad():
            weight.fill_(value)
        average.update()
        decay = min(
            0.5, (1 + t) / (10 + t)
        )  # 0.1, 0.18, 0.25, 0.31: warm-up, then 0.5 would cap it
        expected = decay * expected + (1 - decay) * value
        np.testing.assert_allclose(average.average[0].numpy(), expected, rtol=1e-6)
    with average.swapped_in():
        np.testing.assert_allclose(weight.detach().numpy(), expected, rtol=1e-6)
    assert torch.equal(weight.detach(), torch.full((3,), 4.0))  # the trained weights again
    with pytest.raises(ValueError, match="decay"):
        WeightAverage([weight], decay=1.0)


def test_cosine_learning_rate_falls_from_one_to_zero():
    from slac_train.imitation.training import lr_factor

    assert [lr_factor("cosine", u, 100) for u in (0, 50, 100)] == pytest.approx(
        [1.0, 0.5, 0.0], abs=1e-12
    )
    assert lr_factor("cosine", 25, 100) > lr_factor("cosine", 26, 100)
    assert lr_factor("constant", 99, 100) == 1.0
    with pytest.raises(ValueError, match="constant or cosine"):
        lr_factor("linear", 0, 10)


def test_random_shift_moves_each_window_as_one_and_repeats_the_edge():
    from slac_train.imitation.dataset import random_shift

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (16, 8, 12, 10, 3)).astype(np.uint8)
    assert random_shift(frames, 0, rng) is frames
    shifted = random_shift(frames, 2, rng)
    assert shifted.shape == frames.shape and shifted.dtype == np.uint8
    moves = []
    for window, moved in zip(frames, shifted):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(
                moved,
                window.take(np.clip(np.arange(12) + dy, 0, 11), axis=1).take(
                    np.clip(np.arange(10) + dx, 0, 9), axis=2
                ),
            )
        ]
        assert len(found) == 1  # one shift for all 8 frames of the window
        moves.append(found[0])
    assert len(set(moves)) > 3  # windows move differently


def test_slac_imitate_saves_its_episodes_validates_checkpoints_and_trains_again_from_the_file(
    tmp_path, capsys
):
    from slac_train.export_cli import export_run

    dataset = tmp_path / "turn.npz"
    run_dir = tmp_path / "bc"
    code = imitate(
        run_dir,
        episodes=2,
        updates=6,
        checkpoint_every=3,
        lr_schedule="cosine",
        ema=0.9,
        val_episodes=1,
        save_dataset=dataset,
    )
    assert code == 0
    assert "best validation: update" in capsys.readouterr().out
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records if r["kind"] == "val"] == [
        3,
        6,
    ]  # the periodic checkpoint and the last
    lrs = [r["lr"] for r in records if r["kind"] == "train"]
    assert lrs[-1] < 0.1 * 3e-4  # annealed: the 6th update runs at cos(5/6 pi) of the rate
    path, metadata = export_run(run_dir / "checkpoints" / "best.pt", tmp_path / "best.onnx")
    assert path.exists() and metadata.training_agent_steps == 80

    again = tmp_path / "again"
    assert imitate(again, dataset=dataset, updates=2, augment_shift=3) == 0
    collect = json.loads((again / "metrics.jsonl").read_text().splitlines()[0])
    assert collect["frames"] == 80 and collect["dataset"] == str(dataset)
    assert collect["teacher_success"] == records[0]["teacher_success"]
    assert "collecting" not in capsys.readouterr().out  # no teacher episodes recorded
    twice = tmp_path / "twice"
    assert imitate(twice, dataset=(dataset, dataset), updates=1) == 0
    assert json.loads((twice / "metrics.jsonl").read_text().splitlines()[0])["frames"] == 160
    joined, meta = Dataset.load(dataset)
    joined.extend(Dataset.load(dataset)[0])
    assert meta["episodes"] == 2 and meta["teacher"] == "dclaw-turn-table"
    assert (
        joined.starts == [0] * 40 + [40] * 40 + [80] * 40 + [120] * 40
    )  # windows stay inside their episode

    np.savez(tmp_path / "other.npz", frames=np.zeros((2, 8, 8, 3), np.uint8))
    assert imitate(tmp_path / "x", dataset=tmp_path / "other.npz") == 2
    assert "not a dataset written by slac-imitate --save-dataset" in capsys.readouterr().err


def test_slac_imitate_keeps_the_episodes_recorded_before_a_ctrl_c(tmp_path, monkeypatch, capsys):
    import slac_train.imitation.training as imitation

    real_add = Dataset.add_episode

    def interrupted_in_the_third_episode(self, *args, **kwargs):
        if len(set(self.starts)) == 2:
            raise KeyboardInterrupt
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(imitation.Dataset, "add_episode", interrupted_in_the_third_episode)
    dataset = tmp_path / "turn.npz"
    assert (
        main(["--run-dir", str(tmp_path / "bc"), "--episodes", "5", "--save-dataset", str(dataset)])
        == 130
    )
    assert f"the 2 episodes recorded are in {dataset}" in capsys.readouterr().err
    monkeypatch.setattr(imitation.Dataset, "add_episode", real_add)
    data, meta = Dataset.load(dataset)
    assert (
        len(data) == 80
        and meta["episodes"] == 2
        and 0.0 <= meta["teacher_stats"]["success_rate"] <= 1.0
    )


def run_layout(run_dir: Path) -> set[str]:
    """A run directory's files, with their counters and time stamps as ``*``."""
    import re

    names = set()
    for path in run_dir.rglob("*"):
        if path.is_file():
            name = path.relative_to(run_dir).as_posix()
            name = re.sub(r"events\.out\.tfevents\..*", "events.out.tfevents.*", name)
            names.add(re.sub(r"-[0-9-]+(bc-)?[0-9]+\.", "-*.", name.replace("ckpt-bc-", "ckpt-")))
    return names


def test_slac_imitate_leaves_the_run_directory_slac_train_leaves(tmp_path):
    """The same files, kinds and formats as a slac-train run, but for what only a SLAC learner has
    (its replay buffer, its model's reconstruction video)."""
    import csv

    from slac_train.cli import main as train_main

    trained, imitated = tmp_path / "train", tmp_path / "imitate"
    tiny = cli_flags(**tiny_train_values(log_every_updates=250))
    flags = short_run_flags(episode_steps=15, total_env_steps=120, eval_every_env_steps=60)
    assert train_main(["--task", "cartpole-swingup", *tiny, *flags, "--run-dir", str(trained)]) == 0
    assert imitate(imitated, episodes=2, updates=4, noise=0, progress=False) == 0
    only_slac = {"checkpoints/buffer-*.npz", "videos/reconstruction-*.mp4"}
    assert run_layout(imitated) == run_layout(trained) - only_slac
    assert {
        "config.json",
        "metrics.jsonl",
        "eval.csv",
        "curve.png",
        "summary.json",
        "checkpoints/latest",
        "checkpoints/ckpt-*.pt",
        "tensorboard/events.out.tfevents.*",
        "videos/eval-*.mp4",
    } <= run_layout(imitated)
    for run in (trained, imitated):
        with open(run / "eval.csv") as f:
            header = next(csv.reader(f))
        assert header[:3] == ["env_step", "agent_step", "wall_time_s"]
        assert (run / "curve.png").read_bytes()[:4] == b"\x89PNG"
    # the saved config is the command's dataclass, every option in it
    from slac_train.imitation.config import ImitationConfig

    saved = json.loads((imitated / "config.json").read_text())
    assert saved["run_dir"] == str(imitated) and saved["updates"] == 4 and saved["noise"] == [0.0]
    ImitationConfig(**saved)


def test_slac_imitate_options_come_from_its_config_and_refuse_what_cannot_work(tmp_path, capsys):
    import dataclasses

    from slac_train.imitation.cli import build_parser
    from slac_train.imitation.config import ImitationConfig

    parser = build_parser()
    flags = {s for action in parser._actions for s in action.option_strings}
    for f in dataclasses.fields(ImitationConfig):
        assert f.metadata["help"], f"{f.name} has no help"
        assert f.default is not dataclasses.MISSING
    assert {"--noise", "--dataset", "--observation-latency", "--threads", "--num-threads"} <= flags
    with pytest.raises(SystemExit) as stop:
        main(
            ["--run-dir", str(tmp_path / "x"), "--episode", "3"]
        )  # an abbreviation is not an option
    assert stop.value.code == 2 and "did you mean --episodes?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--run-dir", str(tmp_path / "x"), "--ema", "1.5"])
    assert "--ema" in capsys.readouterr().err
    assert main(["--run-dir", str(tmp_path / "x"), "--teacher", "dclaw-turn-tabel"]) == 2
    assert "did you mean dclaw-turn-table" in capsys.readouterr().err
    assert main(["--list-teachers"]) == 0
    assert "dclaw-turn-follow-tables" in capsys.readouterr().out


def test_slac_imitate_stops_with_a_checkpoint_on_sigterm(tmp_path, monkeypatch, capsys):
    """A kill (SIGTERM) asks for a stop, as Ctrl-C does: the update under way finishes and a
    checkpoint holds it."""
    import os
    import signal

    import slac_train.imitation.training as imitation
    from slac_train.checkpoint import load_agent

    real_loss, calls = imitation.bc_loss, []

    def killed_in_the_third_update(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(imitation, "bc_loss", killed_in_the_third_update)
    run_dir = tmp_path / "bc"
    code = imitate(run_dir, episodes=1, updates=10)
    assert code == 143 and "interrupted after 3 updates" in capsys.readouterr().err
    _, state = load_agent(run_dir)
    assert state["counters"]["bc_updates"] == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the run


def test_slac_imitate_refuses_a_run_directory_another_process_writes(tmp_path, capsys):
    from slac_train.imitation.cli import main
    from slac_train.run_lock import RunLock

    run_dir = tmp_path / "bc"
    with RunLock(run_dir):  # as a slac-train or slac-imitate writing there would hold it
        code = main(["--run-dir", str(run_dir), "--episodes", "1", "--updates", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "is being written by" in err and len(err.strip().splitlines()) == 1
    assert not (run_dir / "checkpoints").exists()
