"""The D'Claw in MuJoCo: scenes, a small simulator, randomisation and the task camera.

Both the training tasks (``slac_train/envs/dclaw.py``) and the virtual robot (real-time MuJoCo
behind a servo emulator) drive the claw through :class:`DClawSim`::

    sim = DClawSim("valve")                  # or "pose"
    sim.reset(joint_positions=RESET_POSE, valve_angle=0.0)
    sim.set_joint_goals(goals_rad)           # the servos' goal positions (position actuators)
    sim.step()                               # one control period: 20 substeps of 2.5 ms
    sim.step_until(t_s)                      # or catch up with a wall clock (virtual robot)
    q, qd, tau = sim.joint_positions(), sim.joint_velocities(), sim.actuator_forces()
    sim.set_torque_enabled(False)            # servos limp (Torque Enable 0), True to hold again
    frame = sim.render()                     # uint8[64, 64, 3] RGB from the task camera
    sim.close()                              # free the GL contexts (also done at exit)

This module imports mujoco (it is the simulation module of ``robots/dclaw``) but never
``slac_train``. MuJoCo fixes its OpenGL backend when first imported: a program that renders
offscreen without a display sets ``MUJOCO_GL`` (e.g. ``egl`` or ``osmesa``) in its ``main()`` before
importing this module (``slac_train`` does it for the training tasks).

Units: metres, radians, seconds, N·m. Joint arrays are in the order of
:data:`robots.dclaw.description.JOINT_NAMES`. A DClawSim is not thread-safe: a virtual robot that
steps it on one thread and reads it from another holds a lock around every call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from robots.dclaw.description import CONTROL_PERIOD_S, DCLAW, JOINT_NAMES, RESET_POSE
from robots.mujoco_gl import close_at_exit, close_renderer, forget_at_exit

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
SCENES = {"pose": "scene_pose.xml", "valve": "scene_valve.xml"}
TIMESTEP_S = 0.0025  # simulator timestep (seconds), as in the scene files
SUBSTEPS = round(CONTROL_PERIOD_S / TIMESTEP_S)  # simulator steps per control period (20)
VALVE_JOINT = "valve"
FINGERS = ("FF", "MF", "TH")
MOUNT_BODIES = ("mount", "goal_mount")  # bodies moved together by the mount-position randomisation
GOAL_GEOM_GROUP = 2  # geom group of the goal markers (valve goal pointer, goal claw)


@dataclass(frozen=True)
class CameraMount:
    """A camera a real setup can reproduce: lens position, the point it looks at, vertical FOV.

    No roll: the image's x axis stays horizontal. Positions in metres, in the world frame (origin on
    the floor on the claw's axis, z up, +y towards the camera).
    """

    pos: tuple[float, float, float]
    lookat: tuple[float, float, float]
    fovy_deg: float

    def xyaxes(self) -> np.ndarray:
        """The MJCF ``xyaxes`` of the camera (its x and y axes in world coordinates)."""
        forward = np.subtract(self.lookat, self.pos)
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, (0.0, 0.0, 1.0))
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        return np.concatenate([right, up])

    def quat(self) -> np.ndarray:
        """The camera's orientation as a MuJoCo quaternion (w, x, y, z)."""
        x, y = self.xyaxes().reshape(2, 3)
        mat = np.stack([x, y, np.cross(x, y)], axis=1)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, mat.ravel())
        return quat

    @property
    def pitch_deg(self) -> float:
        forward = np.subtract(self.lookat, self.pos)
        return math.degrees(math.asin(-forward[2] / np.linalg.norm(forward)))


# The task camera (both scenes): on a stand in front of the claw, in the gap between the FF and MF
# fingers, 0.355 m from the claw's axis and 0.435 m above the floor, looking at the valve axis
# 0.16 m above the floor (37.8 degrees down, 0.45 m away), vertical field of view 42 degrees.
# A real camera's frame is cropped to a square about the same centre.
TASK_CAMERA = CameraMount(pos=(0.0, 0.355, 0.435), lookat=(0.0, 0.0, 0.16), fovy_deg=42.0)


@dataclass(frozen=True)
class DynamicsRanges:
    """Ranges of the dynamics randomisation (ROBEL's RandomDynamics variants)."""

    joint_damping: tuple[float, float] = (0.005, 0.1)  # N·m·s/rad, per claw joint
    joint_frictionloss: tuple[float, float] = (0.001, 0.005)  # N·m, per claw joint
    actuator_kp: tuple[float, float] = (1.0, 3.0)  # N·m/rad, per actuator
    geom_friction_scale: tuple[float, float] = (0.8, 1.2)  # x sliding friction, per collision geom
    mount_offset_m: float = 0.01  # mount position: U(-x, x) per axis


@dataclass(frozen=True)
class VisualRanges:
    """Ranges of the visual randomisation (for sim-to-real transfer from pixels)."""

    light_dir_jitter: float = 0.3  # added to each component of a light's direction, then normalised
    light_intensity_scale: tuple[float, float] = (0.6, 1.4)  # x diffuse of each light
    headlight_ambient: tuple[float, float] = (0.2, 0.5)
    headlight_diffuse: tuple[float, float] = (0.3, 0.6)
    brightness_scale: float = 0.2  # colour x U(1 - x, 1 + x) per material
    colour_jitter: float = 0.08  # + U(-x, x) per channel and material
    floor_colour_jitter: float = 0.15  # the floor (a real table) varies more
    camera_pos_jitter_m: float = 0.005  # + U(-x, x) per axis
    camera_angle_jitter_deg: float = 2.0  # rotation by U(-x, x) about each camera axis
    camera_fovy_jitter_deg: float = 1.0


DYNAMICS_RANGES = DynamicsRanges()
VISUAL_RANGES = VisualRanges()
# Materials whose colours the visual randomisation changes; the floor gets floor_colour_jitter.
_RANDOMISED_MATERIALS = (
    "dclaw_servo", "dclaw_bracket", "dclaw_tip", "dclaw_plate",
    "valve", "valve_marker", "valve_base", "valve_goal", "goal_claw",
)  # fmt: skip


def scene_path(scene: str) -> Path:
    """The MJCF file of a scene by name ("pose" or "valve")."""
    try:
        return ASSETS_DIR / SCENES[scene]
    except KeyError:
        raise ValueError(f"unknown D'Claw scene {scene!r}; scenes: {', '.join(SCENES)}") from None


def load_model(scene: str) -> mujoco.MjModel:
    """Compile a scene ("pose" or "valve") into a fresh MjModel."""
    return mujoco.MjModel.from_xml_path(str(scene_path(scene)))


def add_image_noise(frame: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Gaussian pixel noise of ``std`` (in 0-255 levels) on a uint8 frame; returns a new frame."""
    if std <= 0:
        return frame.copy()
    noisy = frame.astype(np.float32) + rng.normal(0.0, std, size=frame.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _axis_angle_quat(axis: np.ndarray, angle: float) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, np.asarray(axis, dtype=np.float64), float(angle))
    return quat


class DClawSim:
    """One D'Claw scene in MuJoCo, with the accessors tasks and the virtual robot need.

    Args:
        scene: "valve" (Turn and Screw) or "pose" (Pose).
        render_size: height and width (pixels) of :meth:`render`'s default frame.
        fast_render: shadows, reflections and multisampling off (the training setting).
        show_goal: draw the goal markers (geom group 2: the valve's goal pointer, the goal claw).

    The model is this object's own copy, so randomisation never leaks between simulators.
    """

    def __init__(
        self,
        scene: str = "valve",
        *,
        render_size: int = 64,
        fast_render: bool = True,
        show_goal: bool = True,
    ):
        self.scene = scene
        self.model = load_model(scene)
        self.data = mujoco.MjData(self.model)
        self.render_size = int(render_size)
        self.fast_render = bool(fast_render)
        self.show_goal = bool(show_goal)
        if abs(self.model.opt.timestep - TIMESTEP_S) > 1e-12:
            raise ValueError(
                f"{scene_path(scene).name}: timestep {self.model.opt.timestep} != {TIMESTEP_S}"
            )
        self.substeps = SUBSTEPS
        self.control_period_s = CONTROL_PERIOD_S

        m = self.model
        names = tuple(m.joint(i).name for i in range(m.njnt))[: len(JOINT_NAMES)]
        actuators = tuple(m.actuator(i).name for i in range(m.nu))
        if names != JOINT_NAMES or actuators != JOINT_NAMES:
            raise ValueError(
                f"model joints {names} / actuators {actuators} differ from {JOINT_NAMES}"
            )
        self._qpos = np.array([m.joint(n).qposadr[0] for n in JOINT_NAMES])
        self._dof = np.array([m.joint(n).dofadr[0] for n in JOINT_NAMES])
        self.has_valve = VALVE_JOINT in {m.joint(i).name for i in range(m.njnt)}
        if self.has_valve:
            valve = m.joint(VALVE_JOINT)
            self._valve_qpos, self._valve_dof = int(valve.qposadr[0]), int(valve.dofadr[0])
            self._goal_mocap = int(m.body("valve_goal").mocapid[0])
        self._goal_claw = {}  # (finger, joint index) -> (body id, joint axis)
        if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "goal_mount") >= 0:
            for finger in FINGERS:
                for k, (part, axis) in enumerate(
                    (
                        ("proximal_bracket", (1, 0, 0)),
                        ("proximal", (0, 1, 0)),
                        ("distal", (0, 1, 0)),
                    )
                ):
                    self._goal_claw[finger, k] = (
                        m.body(f"goal_{finger}_{part}").id,
                        np.array(axis, float),
                    )
        self._task_cam = m.camera("task").id

        # Nominal values the randomisations start from (so draws never accumulate).
        self._mount_ids = [
            i for n in MOUNT_BODIES if (i := mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, n)) >= 0
        ]
        self._collision_geoms = np.flatnonzero((m.geom_contype != 0) | (m.geom_conaffinity != 0))
        self._nominal_dynamics = {
            "dof_damping": m.dof_damping.copy(),
            "dof_frictionloss": m.dof_frictionloss.copy(),
            "actuator_gainprm": m.actuator_gainprm.copy(),
            "actuator_biasprm": m.actuator_biasprm.copy(),
            "geom_friction": m.geom_friction.copy(),
            "body_pos": m.body_pos.copy(),
        }
        self._nominal_visuals = {
            "light_dir": m.light_dir.copy(),
            "light_diffuse": m.light_diffuse.copy(),
            "headlight_ambient": m.vis.headlight.ambient.copy(),
            "headlight_diffuse": m.vis.headlight.diffuse.copy(),
            "mat_rgba": m.mat_rgba.copy(),
            "cam_pos": m.cam_pos.copy(),
            "cam_quat": m.cam_quat.copy(),
            "cam_fovy": m.cam_fovy.copy(),
        }
        self._kp = m.actuator_gainprm[:, 0].copy()  # N·m/rad, the servos' gains (nominal or drawn)
        self._torque_enabled = np.ones(m.nu, dtype=bool)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._scene_option = mujoco.MjvOption()
        self.reset()

    # ----------------------------------------------------------------------------------------
    # State
    def reset(self, joint_positions: np.ndarray | None = None, valve_angle: float = 0.0) -> None:
        """Zero the state and time; put the joints (default: the reset
        pose) and their goals there."""
        mujoco.mj_resetData(self.model, self.data)
        q = np.asarray(RESET_POSE if joint_positions is None else joint_positions, dtype=np.float64)
        self.data.qpos[self._qpos] = q
        self.data.ctrl[:] = np.clip(q, DCLAW.low, DCLAW.high)
        if self.has_valve:
            self.data.qpos[self._valve_qpos] = valve_angle
        mujoco.mj_forward(self.model, self.data)

    def set_joint_goals(self, goals: np.ndarray) -> np.ndarray:
        """Set the nine servo goal positions (rad), clipped to the joint ranges; return them."""
        goals = np.clip(
            np.asarray(goals, dtype=np.float64).reshape(len(JOINT_NAMES)), DCLAW.low, DCLAW.high
        )
        self.data.ctrl[:] = goals
        return goals

    def joint_goals(self) -> np.ndarray:
        return self.data.ctrl.copy()

    def set_torque_enabled(self, enabled: bool | np.ndarray) -> None:
        """Torque on or off per servo (one bool, or nine): a servo with torque off exerts no force
        (its joint keeps only damping and friction loss), as a Dynamixel with Torque Enable 0."""
        self._torque_enabled = np.broadcast_to(
            np.asarray(enabled, dtype=bool), (self.model.nu,)
        ).copy()
        self._apply_gains()

    def torque_enabled(self) -> np.ndarray:
        return self._torque_enabled.copy()

    def _apply_gains(self) -> None:
        kp = np.where(self._torque_enabled, self._kp, 0.0)
        self.model.actuator_gainprm[:, 0] = kp  # force = kp * ctrl - kp * q
        self.model.actuator_biasprm[:, 1] = -kp

    def step(self, substeps: int | None = None) -> None:
        """Advance ``substeps`` simulator steps (default: one control period, 0.05 s)."""
        n = self.substeps if substeps is None else int(substeps)
        if n > 0:
            mujoco.mj_step(self.model, self.data, nstep=n)
            # Positions, contacts and actuator forces of the state reached
            # (for reading and rendering).
            mujoco.mj_forward(self.model, self.data)

    def step_until(self, time_s: float) -> int:
        """Step until simulated time reaches ``time_s`` (e.g. a wall
        clock); return the steps taken."""
        n = int(math.floor((time_s - self.data.time) / self.model.opt.timestep + 1e-9))
        self.step(max(n, 0))
        return max(n, 0)

    @property
    def time(self) -> float:
        """Simulated time since the last reset (s)."""
        return float(self.data.time)

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._dof].copy()

    def actuator_forces(self) -> np.ndarray:
        """Torque each servo applies (N·m): kp * (goal - position) for a position actuator."""
        return self.data.actuator_force.copy()

    def set_joint_positions(
        self, positions: np.ndarray, velocities: np.ndarray | None = None
    ) -> None:
        self.data.qpos[self._qpos] = positions
        self.data.qvel[self._dof] = 0.0 if velocities is None else velocities
        mujoco.mj_forward(self.model, self.data)

    def _need_valve(self) -> None:
        if not self.has_valve:
            raise RuntimeError(f"the {self.scene!r} scene has no valve")

    def valve_angle(self) -> float:
        """Valve angle (rad, counter-clockwise seen from above, not wrapped)."""
        self._need_valve()
        return float(self.data.qpos[self._valve_qpos])

    def valve_velocity(self) -> float:
        self._need_valve()
        return float(self.data.qvel[self._valve_dof])

    def set_valve_angle(self, angle: float, velocity: float = 0.0) -> None:
        self._need_valve()
        self.data.qpos[self._valve_qpos] = angle
        self.data.qvel[self._valve_dof] = velocity
        mujoco.mj_forward(self.model, self.data)

    def set_goal_angle(self, angle: float) -> None:
        """Turn the valve's goal pointer to ``angle`` (rad): where the marker spoke should point."""
        self._need_valve()
        self.data.mocap_quat[self._goal_mocap] = _axis_angle_quat((0.0, 0.0, 1.0), angle)
        mujoco.mj_kinematics(self.model, self.data)

    def set_goal_pose(self, pose: np.ndarray) -> None:
        """Pose the goal claw of the pose scene at the joint positions ``pose`` (rad)."""
        if not self._goal_claw:
            raise RuntimeError(f"the {self.scene!r} scene has no goal claw")
        pose = np.asarray(pose, dtype=np.float64).reshape(len(JOINT_NAMES))
        for i, finger in enumerate(FINGERS):
            for k in range(3):
                body, axis = self._goal_claw[finger, k]
                self.model.body_quat[body] = _axis_angle_quat(axis, pose[3 * i + k])
        mujoco.mj_kinematics(self.model, self.data)

    def warnings(self) -> dict[str, int]:
        """MuJoCo warnings raised since the last reset, by name (empty when there were none)."""
        return {
            mujoco.mjtWarning(i).name: int(w.number)
            for i, w in enumerate(self.data.warning)
            if w.number > 0
        }

    # ----------------------------------------------------------------------------------------
    # Randomisation
    def restore_nominal_dynamics(self) -> None:
        m, nominal = self.model, self._nominal_dynamics
        m.dof_damping[:] = nominal["dof_damping"]
        m.dof_frictionloss[:] = nominal["dof_frictionloss"]
        m.actuator_gainprm[:] = nominal["actuator_gainprm"]
        m.actuator_biasprm[:] = nominal["actuator_biasprm"]
        m.geom_friction[:] = nominal["geom_friction"]
        m.body_pos[:] = nominal["body_pos"]
        self._kp = nominal["actuator_gainprm"][:, 0].copy()
        self._apply_gains()

    def randomize_dynamics(
        self, rng: np.random.Generator, ranges: DynamicsRanges = DYNAMICS_RANGES
    ) -> dict[str, np.ndarray]:
        """Draw new dynamics around the nominal model; return what was drawn.

        Claw joint damping and friction loss, actuator gains (a position actuator's force is
        ``kp * ctrl - kp * q``: ``gainprm[0] = kp``, ``biasprm[1] = -kp``), sliding friction of
        every collision geom, and the mount position (the claw and the goal claw move together).
        Takes effect on the next step; call :meth:`reset` afterwards to settle positions.
        """
        m, n = self.model, len(JOINT_NAMES)
        draw = {
            "joint_damping": rng.uniform(*ranges.joint_damping, size=n),
            "joint_frictionloss": rng.uniform(*ranges.joint_frictionloss, size=n),
            "actuator_kp": rng.uniform(*ranges.actuator_kp, size=m.nu),
            "geom_friction_scale": rng.uniform(
                *ranges.geom_friction_scale, size=len(self._collision_geoms)
            ),
            "mount_offset_m": rng.uniform(-ranges.mount_offset_m, ranges.mount_offset_m, size=3),
        }
        self.apply_dynamics(draw)
        return draw

    def apply_dynamics(self, draw: dict[str, Any]) -> None:
        """Set the dynamics to ``draw`` (a :meth:`randomize_dynamics` result, or part of one).

        Starts from the nominal model; a key left out stays nominal, and a scalar stands for every
        joint, servo or geom (``{"actuator_kp": 1.5}``: all nine servos at 1.5 N·m/rad). Takes
        effect on the next step; call :meth:`reset` afterwards to settle positions.
        """
        known = {
            "joint_damping",
            "joint_frictionloss",
            "actuator_kp",
            "geom_friction_scale",
            "mount_offset_m",
        }
        if unknown := set(draw) - known:
            raise ValueError(f"unknown dynamics {sorted(unknown)}; known: {sorted(known)}")
        self.restore_nominal_dynamics()
        m, n = self.model, len(JOINT_NAMES)

        def sized(key: str, size: int) -> np.ndarray:
            return np.broadcast_to(np.asarray(draw[key], dtype=np.float64), (size,)).copy()

        if "joint_damping" in draw:
            m.dof_damping[self._dof] = sized("joint_damping", n)
        if "joint_frictionloss" in draw:
            m.dof_frictionloss[self._dof] = sized("joint_frictionloss", n)
        if "actuator_kp" in draw:
            self._kp = sized("actuator_kp", m.nu)
            self._apply_gains()
        if "geom_friction_scale" in draw:
            m.geom_friction[self._collision_geoms, 0] *= sized(
                "geom_friction_scale", len(self._collision_geoms)
            )
        if "mount_offset_m" in draw:
            for body in self._mount_ids:
                m.body_pos[body] += sized("mount_offset_m", 3)
        mujoco.mj_forward(m, self.data)

    def restore_nominal_visuals(self) -> None:
        m, nominal = self.model, self._nominal_visuals
        m.light_dir[:] = nominal["light_dir"]
        m.light_diffuse[:] = nominal["light_diffuse"]
        m.vis.headlight.ambient[:] = nominal["headlight_ambient"]
        m.vis.headlight.diffuse[:] = nominal["headlight_diffuse"]
        m.mat_rgba[:] = nominal["mat_rgba"]
        m.cam_pos[:] = nominal["cam_pos"]
        m.cam_quat[:] = nominal["cam_quat"]
        m.cam_fovy[:] = nominal["cam_fovy"]
        mujoco.mj_forward(m, self.data)

    def set_task_camera(
        self,
        quat: np.ndarray | None = None,
        fovy_deg: float | None = None,
        pos: np.ndarray | None = None,
    ) -> None:
        """Move the task camera (orientation quaternion w, x, y, z; vertical field of view, degrees;
        position, metres) and make it the nominal one: visual randomisation jitters around it."""
        m, nominal, cam = self.model, self._nominal_visuals, self._task_cam
        if quat is not None:
            quat = np.asarray(quat, dtype=np.float64)
            nominal["cam_quat"][cam] = m.cam_quat[cam] = quat / np.linalg.norm(quat)
        if fovy_deg is not None:
            if not 0.0 < fovy_deg < 180.0:
                raise ValueError(
                    f"the camera's field of view must be in (0, 180) degrees, got {fovy_deg}"
                )
            nominal["cam_fovy"][cam] = m.cam_fovy[cam] = float(fovy_deg)
        if pos is not None:
            nominal["cam_pos"][cam] = m.cam_pos[cam] = np.asarray(pos, dtype=np.float64)
        mujoco.mj_forward(m, self.data)

    def randomize_visuals(
        self, rng: np.random.Generator, ranges: VisualRanges = VISUAL_RANGES
    ) -> dict[str, Any]:
        """Draw lighting, colours and a task-camera jitter around the nominal scene; return them."""
        self.restore_nominal_visuals()
        m, nominal = self.model, self._nominal_visuals
        # Lights: direction and intensity; the headlight's ambient and diffuse parts.
        light_dir = nominal["light_dir"] + rng.uniform(
            -ranges.light_dir_jitter, ranges.light_dir_jitter, size=m.light_dir.shape
        )
        light_dir[:, 2] = -np.abs(light_dir[:, 2])  # keep the light coming from above
        light_dir /= np.linalg.norm(light_dir, axis=1, keepdims=True)
        intensity = rng.uniform(*ranges.light_intensity_scale, size=m.nlight)
        m.light_dir[:] = light_dir
        m.light_diffuse[:] = np.clip(nominal["light_diffuse"] * intensity[:, None], 0.0, 1.0)
        ambient = rng.uniform(*ranges.headlight_ambient)
        diffuse = rng.uniform(*ranges.headlight_diffuse)
        m.vis.headlight.ambient[:] = ambient
        m.vis.headlight.diffuse[:] = diffuse
        # Colours of the claw, the valve, the goal markers and the floor.
        colours = {}
        for name in (*_RANDOMISED_MATERIALS, "floor"):
            mat = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_MATERIAL, name)
            if mat < 0:
                continue
            jitter = ranges.floor_colour_jitter if name == "floor" else ranges.colour_jitter
            brightness = rng.uniform(1 - ranges.brightness_scale, 1 + ranges.brightness_scale)
            rgb = nominal["mat_rgba"][mat, :3] * brightness + rng.uniform(-jitter, jitter, size=3)
            m.mat_rgba[mat, :3] = np.clip(rgb, 0.0, 1.0)
            colours[name] = m.mat_rgba[mat, :3].copy()
        # Task camera: a few millimetres and degrees off its mount, and a slightly different lens.
        cam = self._task_cam
        pos_offset = rng.uniform(-ranges.camera_pos_jitter_m, ranges.camera_pos_jitter_m, size=3)
        angles = np.radians(
            rng.uniform(-ranges.camera_angle_jitter_deg, ranges.camera_angle_jitter_deg, size=3)
        )
        fovy_offset = rng.uniform(-ranges.camera_fovy_jitter_deg, ranges.camera_fovy_jitter_deg)
        quat = nominal["cam_quat"][cam].copy()
        for axis, angle in zip(np.eye(3), angles):  # about the camera's own x, y, z axes
            mujoco.mju_mulQuat(quat, quat, _axis_angle_quat(axis, angle))
        m.cam_pos[cam] = nominal["cam_pos"][cam] + pos_offset
        m.cam_quat[cam] = quat
        m.cam_fovy[cam] = nominal["cam_fovy"][cam] + fovy_offset
        mujoco.mj_forward(m, self.data)
        return {
            "light_dir": light_dir,
            "light_intensity_scale": intensity,
            "headlight_ambient": ambient,
            "headlight_diffuse": diffuse,
            "colours": colours,
            "camera_pos_offset_m": pos_offset,
            "camera_angles_rad": angles,
            "camera_fovy_offset_deg": fovy_offset,
        }

    # ----------------------------------------------------------------------------------------
    # Rendering
    def _renderer(self, height: int, width: int) -> mujoco.Renderer:
        renderer = self._renderers.get((height, width))
        if renderer is None:
            if self.fast_render:
                self.model.vis.quality.offsamples = 0  # read when the GL context is made
            renderer = mujoco.Renderer(self.model, height=height, width=width)
            self._renderers[height, width] = renderer
            close_at_exit(self)
        return renderer

    def render(
        self, camera: str | int = "task", height: int | None = None, width: int | None = None
    ) -> np.ndarray:
        """A fresh ``uint8[H, W, 3]`` RGB frame (default: the task camera at ``render_size``)."""
        return self.update_scene(camera, height, width).render().copy()

    def update_scene(
        self, camera: str | int = "task", height: int | None = None, width: int | None = None
    ) -> mujoco.Renderer:
        """Copy the current state into a renderer's scene and return the renderer.

        The first half of :meth:`render`: it reads the simulation state; ``renderer.render()``
        afterwards does not, so a threaded caller holds its lock only for this part.
        """
        height = self.render_size if height is None else int(height)
        width = height if width is None else int(width)
        renderer = self._renderer(height, width)
        self._scene_option.geomgroup[GOAL_GEOM_GROUP] = int(self.show_goal)
        renderer.update_scene(self.data, camera=camera, scene_option=self._scene_option)
        if self.fast_render:
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        return renderer

    def close(self) -> None:
        """Free the GL contexts (also done at interpreter exit); rendering again makes new ones."""
        renderers, self._renderers = self._renderers, {}
        for renderer in renderers.values():
            close_renderer(renderer)
        forget_at_exit(self)

    def __del__(self) -> None:
        # Dropped without close(): free the GL objects in their own contexts (see close_renderer).
        if getattr(self, "_renderers", None):
            self.close()

    def __enter__(self) -> DClawSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
