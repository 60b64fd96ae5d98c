"""The D'Claw MuJoCo model and simulator: scenes compile and step without warnings, the model agrees
with the Python description, and DClawSim's accessors and randomisations do what they say."""

from __future__ import annotations

import math
import subprocess
import sys

import mujoco
import numpy as np
import pytest

from robots.dclaw.description import DCLAW, JOINT_NAMES, RESET_POSE
from robots.dclaw.sim import (
    ASSETS_DIR,
    DYNAMICS_RANGES,
    SCENES,
    SUBSTEPS,
    TASK_CAMERA,
    TIMESTEP_S,
    DClawSim,
    load_model,
)

FINGER_YAWS = {"FF": 0.52, "MF": 2.6, "TH": -1.57}
MOUNT_HEIGHT = 0.32  # m, the base plate's lower face
FINGER_LENGTH = 0.014 + 0.0675 + 0.068 + 0.076  # m, plate to fingertip


@pytest.fixture(params=sorted(SCENES))
def scene(request):
    return request.param


def test_claw_alone_compiles():
    model = mujoco.MjModel.from_xml_path(str(ASSETS_DIR / "dclaw.xml"))
    assert model.njnt == model.nu == 9


def test_scene_steps_two_seconds_under_random_control_without_warnings(scene):
    model = load_model(scene)
    data = mujoco.MjData(model)
    assert model.opt.timestep == TIMESTEP_S
    rng = np.random.default_rng(0)
    steps = round(2.0 / model.opt.timestep)
    for i in range(steps):
        if i % SUBSTEPS == 0:  # a new random goal every control period
            data.ctrl[:] = rng.uniform(DCLAW.low, DCLAW.high)
        mujoco.mj_step(model, data)
    assert data.time == pytest.approx(2.0)
    assert [w.number for w in data.warning] == [0] * len(data.warning)
    assert np.all(np.isfinite(data.qpos)) and np.all(np.isfinite(data.qvel))


def test_random_dynamics_and_bang_bang_goals_raise_no_warnings():
    sim = DClawSim("valve")
    for seed in range(3):
        rng = np.random.default_rng(seed)
        sim.randomize_dynamics(rng)
        sim.reset()
        for _ in range(40):  # 2 s of goals jumping between the range limits
            sim.set_joint_goals(np.where(rng.random(9) < 0.5, DCLAW.low, DCLAW.high))
            sim.step()
        assert sim.warnings() == {}, sim.warnings()


def test_joints_and_actuators_match_the_description(scene):
    model = load_model(scene)
    joints = [model.joint(i).name for i in range(model.njnt)]
    assert tuple(joints[:9]) == JOINT_NAMES
    assert tuple(model.actuator(i).name for i in range(model.nu)) == JOINT_NAMES
    for i, name in enumerate(JOINT_NAMES):
        joint = model.joint(name)
        assert model.actuator_trnid[i, 0] == joint.id
        assert joint.limited[0] and model.actuator_ctrllimited[i]
        np.testing.assert_allclose(joint.range, DCLAW.joint_ranges[i], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            model.actuator_ctrlrange[i], DCLAW.joint_ranges[i], rtol=0, atol=1e-12
        )
        # Position actuator kp 2, no kv; joint damping 0.1, armature 0.001.
        assert model.actuator_gainprm[i, 0] == pytest.approx(2.0)
        assert model.actuator_biasprm[i, :3] == pytest.approx([0.0, -2.0, 0.0])
        assert model.dof_damping[joint.dofadr[0]] == pytest.approx(0.1)
        assert model.dof_armature[joint.dofadr[0]] == pytest.approx(0.001)


def test_geometry_and_masses_follow_the_spec():
    model = load_model("valve")
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)  # q = 0: fingers straight down
    mount = model.body("mount")
    assert data.xpos[mount.id][2] == pytest.approx(MOUNT_HEIGHT)
    assert model.geom("base_plate").size[0] == pytest.approx(0.075)
    for finger, yaw in FINGER_YAWS.items():
        base = data.xpos[model.body(f"{finger}_base").id]
        assert math.hypot(base[0], base[1]) == pytest.approx(0.06, abs=1e-4)
        assert math.atan2(base[1], base[0]) == pytest.approx(yaw, abs=1e-3)
        tip = data.site_xpos[model.site(f"{finger}_tip").id]
        np.testing.assert_allclose(tip[:2], base[:2], atol=1e-9)
        assert tip[2] == pytest.approx(MOUNT_HEIGHT - FINGER_LENGTH)
        geom = model.geom(f"{finger}_tip")
        assert geom.size[0] == pytest.approx(0.011) and geom.friction[0] == pytest.approx(0.2)
    claw_bodies = range(mount.id, model.body("valve_base").id)
    assert sum(model.body_mass[b] for b in claw_bodies) == pytest.approx(1.1, abs=0.05)
    assert model.body("valve").mass[0] == pytest.approx(0.5)
    assert model.joint("valve").damping[0] == pytest.approx(0.1)


def test_visual_and_collision_geoms_are_separate():
    model = load_model("valve")
    for g in range(model.ngeom):
        if model.geom_bodyid[g] == 0:  # the floor: both
            continue
        collides = model.geom_contype[g] or model.geom_conaffinity[g]
        if model.geom_group[g] == 3:
            assert collides, model.geom(g).name
        else:
            assert not collides, (
                f"visual geom {model.geom(g).name!r} (group {model.geom_group[g]}) collides"
            )


def test_task_camera_is_the_documented_mount(scene):
    model = load_model(scene)
    cam = model.camera("task")
    np.testing.assert_allclose(cam.pos, TASK_CAMERA.pos, atol=1e-9)
    np.testing.assert_allclose(cam.quat, TASK_CAMERA.quat(), atol=1e-4)
    assert cam.fovy[0] == pytest.approx(TASK_CAMERA.fovy_deg)


def _colour_fractions(frame):
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    orange = (r > 150) & (g > 40) & (g < 160) & (b < 90)
    green = (g > 140) & (r < 120) & (b < 120)
    dark = (r < 50) & (g < 50) & (b < 50)
    return orange.mean(), green.mean(), dark.mean()


def test_task_view_shows_claw_valve_and_marker():
    with DClawSim("valve") as sim:
        frame = sim.render()
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
        orange, green, dark = _colour_fractions(frame)
        assert orange > 0.01 and green > 0.005 and dark > 0.05, (orange, green, dark)
        # The marker spoke shows the angle: turning the valve moves it.
        sim.set_valve_angle(2.0)
        assert np.abs(sim.render().astype(int) - frame).sum() > 1000


def test_sim_follows_goals_and_reads_state():
    with DClawSim("valve") as sim:
        sim.reset()
        np.testing.assert_allclose(sim.joint_positions(), RESET_POSE)
        goal = np.array([0.2, -0.3, 0.5] * 3)
        assert sim.step_until(1.0) == 400 and sim.time == pytest.approx(1.0)
        sim.set_joint_goals(goal)
        for _ in range(20):
            sim.step()
        assert sim.time == pytest.approx(2.0)
        np.testing.assert_allclose(sim.joint_positions(), goal, atol=0.05)
        assert np.abs(sim.joint_velocities()).max() < 0.05
        # A position actuator pushes with kp * (goal - position) (no kv).
        np.testing.assert_allclose(
            sim.actuator_forces(), 2.0 * (goal - sim.joint_positions()), atol=1e-9
        )
        # Goals are clipped to the joint ranges.
        np.testing.assert_allclose(sim.set_joint_goals(np.full(9, 5.0)), DCLAW.high)
        sim.set_valve_angle(1.25)
        assert sim.valve_angle() == pytest.approx(1.25)


def test_torque_off_lets_the_fingers_hang():
    with DClawSim("pose") as sim:
        sim.reset()  # reset pose: fingers opened out, held there by the servos
        sim.set_torque_enabled(False)
        sim.step(400)  # 1 s
        np.testing.assert_array_equal(sim.actuator_forces(), 0.0)
        assert np.abs(sim.joint_positions() - RESET_POSE)[1::3].min() > 0.3  # middle joints fell
        sim.set_torque_enabled(True)
        sim.step(800)
        np.testing.assert_allclose(sim.joint_positions(), RESET_POSE, atol=0.05)
        # Torque state survives a dynamics draw; the drawn gains apply once torque is back on.
        sim.set_torque_enabled([True, False, True] * 3)
        kp = sim.randomize_dynamics(np.random.default_rng(0))["actuator_kp"]
        np.testing.assert_allclose(sim.model.actuator_gainprm[:, 0], kp * np.tile([1, 0, 1], 3))
        sim.set_torque_enabled(True)
        np.testing.assert_allclose(sim.model.actuator_gainprm[:, 0], kp)


def test_dynamics_randomisation_draws_in_range_and_restores():
    sim = DClawSim("valve")
    nominal_pos = sim.model.body("mount").pos.copy()
    nominal_friction = sim.model.geom_friction.copy()
    draws = [sim.randomize_dynamics(np.random.default_rng(seed)) for seed in (1, 2)]
    r = DYNAMICS_RANGES
    for d in draws:
        assert np.all(
            (d["joint_damping"] >= r.joint_damping[0]) & (d["joint_damping"] <= r.joint_damping[1])
        )
        assert np.all(
            (d["joint_frictionloss"] >= r.joint_frictionloss[0])
            & (d["joint_frictionloss"] <= r.joint_frictionloss[1])
        )
        assert np.all(
            (d["actuator_kp"] >= r.actuator_kp[0]) & (d["actuator_kp"] <= r.actuator_kp[1])
        )
        scale = d["geom_friction_scale"]
        assert np.all((scale >= r.geom_friction_scale[0]) & (scale <= r.geom_friction_scale[1]))
        assert np.all(np.abs(d["mount_offset_m"]) <= r.mount_offset_m)
    assert not np.allclose(draws[0]["actuator_kp"], draws[1]["actuator_kp"])
    # The model holds the last draw (kp in gain and bias), not an accumulation of draws.
    m, last = sim.model, draws[1]
    np.testing.assert_allclose(m.actuator_gainprm[:, 0], last["actuator_kp"])
    np.testing.assert_allclose(m.actuator_biasprm[:, 1], -last["actuator_kp"])
    np.testing.assert_allclose(m.body("mount").pos, nominal_pos + last["mount_offset_m"])
    # Same generator state, same draw.
    again = sim.randomize_dynamics(np.random.default_rng(2))
    for key, value in last.items():
        np.testing.assert_array_equal(value, again[key])
    sim.restore_nominal_dynamics()
    np.testing.assert_array_equal(m.geom_friction, nominal_friction)
    np.testing.assert_array_equal(m.body("mount").pos, nominal_pos)
    sim.close()


def test_apply_dynamics_sets_a_draw_or_part_of_one():
    with DClawSim("valve") as sim, DClawSim("valve") as other:
        m = sim.model
        nominal = {
            "damping": m.dof_damping.copy(),
            "friction": m.geom_friction.copy(),
            "pos": m.body("mount").pos.copy(),
        }
        draw = sim.randomize_dynamics(np.random.default_rng(3))
        other.apply_dynamics(draw)  # another simulator, the same dynamics
        for field in (
            "dof_damping",
            "dof_frictionloss",
            "actuator_gainprm",
            "actuator_biasprm",
            "geom_friction",
            "body_pos",
        ):
            np.testing.assert_array_equal(
                getattr(other.model, field), getattr(m, field), err_msg=field
            )
        # part of a draw: the rest goes back to nominal; a scalar stands for every servo
        sim.apply_dynamics({"actuator_kp": 1.5, "mount_offset_m": [0.0, 0.0, 0.004]})
        np.testing.assert_allclose(m.actuator_gainprm[:, 0], 1.5)
        np.testing.assert_allclose(m.actuator_biasprm[:, 1], -1.5)
        np.testing.assert_allclose(m.body("mount").pos, nominal["pos"] + [0.0, 0.0, 0.004])
        np.testing.assert_array_equal(m.dof_damping, nominal["damping"])
        np.testing.assert_array_equal(m.geom_friction, nominal["friction"])
        with pytest.raises(ValueError, match="unknown dynamics.*kp"):
            sim.apply_dynamics({"kp": 2.0})


def test_visual_randomisation_changes_the_image_reproducibly():
    with DClawSim("valve") as sim:
        nominal = sim.render()
        sim.randomize_visuals(np.random.default_rng(5))
        first = sim.render()
        sim.randomize_visuals(np.random.default_rng(6))
        other = sim.render()
        sim.randomize_visuals(np.random.default_rng(5))
        np.testing.assert_array_equal(sim.render(), first)
        assert not np.array_equal(first, nominal) and not np.array_equal(first, other)
        sim.restore_nominal_visuals()
        np.testing.assert_array_equal(sim.render(), nominal)


def test_simulation_module_does_not_import_the_training_package():
    code = (
        "import sys, robots.dclaw.sim; "
        "assert 'slac_train' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
