"""Domain randomisation of a D'Claw MuJoCo model: its dynamics and what the task camera sees.

:class:`DynamicsRandomization` draws joint damping and friction loss, the servos' gains, contact
friction and the mount position (ROBEL's RandomDynamics variants, :class:`DynamicsRanges`);
:class:`VisualRandomization` draws lights, material colours and a jitter of the task camera
(:class:`VisualRanges`). Each keeps the nominal values of its model and starts every draw from
them, so draws never accumulate. :class:`~robots.dclaw.sim.DClawSim` owns one of each and exposes
them as its ``randomize_dynamics``, ``apply_dynamics``, ``randomize_visuals`` and related
methods.

Units: metres, radians, seconds, N·m.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from robots.dclaw.description import JOINT_NAMES

MOUNT_BODIES = ("mount", "goal_mount")  # bodies moved together by the mount-position randomisation
# Materials whose colours the visual randomisation changes; the floor gets floor_colour_jitter.
_RANDOMISED_MATERIALS = (
    "dclaw_servo", "dclaw_bracket", "dclaw_tip", "dclaw_plate",
    "valve", "valve_marker", "valve_base", "valve_goal", "goal_claw",
)  # fmt: skip


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


def axis_angle_quat(axis: np.ndarray, angle: float) -> np.ndarray:
    """The MuJoCo quaternion (w, x, y, z) of a rotation by ``angle`` (rad) about ``axis``."""
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, np.asarray(axis, dtype=np.float64), float(angle))
    return quat


class DynamicsRandomization:
    """Draws and sets the dynamics of ``model`` around its values when this object is made.

    The servos' position gains are drawn here but set by the simulator, which zeroes those of the
    servos whose torque is off: :meth:`restore_nominal` and :meth:`apply` return the gains to set.

    Args:
        model: the simulator's model.
        joint_dofs: the claw joints' DOF addresses, in the order of ``JOINT_NAMES``.
    """

    def __init__(self, model: mujoco.MjModel, joint_dofs: np.ndarray):
        m = self.model = model
        self._dof = joint_dofs
        self._mount_ids = [
            i for n in MOUNT_BODIES if (i := mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, n)) >= 0
        ]
        self._collision_geoms = np.flatnonzero((m.geom_contype != 0) | (m.geom_conaffinity != 0))
        self._nominal = {
            "dof_damping": m.dof_damping.copy(),
            "dof_frictionloss": m.dof_frictionloss.copy(),
            "actuator_gainprm": m.actuator_gainprm.copy(),
            "actuator_biasprm": m.actuator_biasprm.copy(),
            "geom_friction": m.geom_friction.copy(),
            "body_pos": m.body_pos.copy(),
        }

    def restore_nominal(self) -> np.ndarray:
        """Put back the nominal dynamics; return the nominal gains (N·m/rad, per actuator)."""
        m, nominal = self.model, self._nominal
        m.dof_damping[:] = nominal["dof_damping"]
        m.dof_frictionloss[:] = nominal["dof_frictionloss"]
        m.actuator_gainprm[:] = nominal["actuator_gainprm"]
        m.actuator_biasprm[:] = nominal["actuator_biasprm"]
        m.geom_friction[:] = nominal["geom_friction"]
        m.body_pos[:] = nominal["body_pos"]
        return nominal["actuator_gainprm"][:, 0].copy()

    def draw(
        self, rng: np.random.Generator, ranges: DynamicsRanges = DYNAMICS_RANGES
    ) -> dict[str, np.ndarray]:
        """New dynamics around the nominal model, for :meth:`apply`.

        Claw joint damping and friction loss, actuator gains (a position actuator's force is
        ``kp * ctrl - kp * q``: ``gainprm[0] = kp``, ``biasprm[1] = -kp``), sliding friction of
        every collision geom, and the mount position (the claw and the goal claw move together).
        """
        m, n = self.model, len(JOINT_NAMES)
        return {
            "joint_damping": rng.uniform(*ranges.joint_damping, size=n),
            "joint_frictionloss": rng.uniform(*ranges.joint_frictionloss, size=n),
            "actuator_kp": rng.uniform(*ranges.actuator_kp, size=m.nu),
            "geom_friction_scale": rng.uniform(
                *ranges.geom_friction_scale, size=len(self._collision_geoms)
            ),
            "mount_offset_m": rng.uniform(-ranges.mount_offset_m, ranges.mount_offset_m, size=3),
        }

    def apply(self, draw: dict[str, Any]) -> np.ndarray:
        """Set the dynamics to ``draw`` (a :meth:`draw` result, or part of one); return the gains
        to set (N·m/rad, per actuator).

        Starts from the nominal model; a key left out stays nominal, and a scalar stands for every
        joint, servo or geom (``{"actuator_kp": 1.5}``: all nine servos at 1.5 N·m/rad).
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
        kp = self.restore_nominal()
        m, n = self.model, len(JOINT_NAMES)

        def sized(key: str, size: int) -> np.ndarray:
            return np.broadcast_to(np.asarray(draw[key], dtype=np.float64), (size,)).copy()

        if "joint_damping" in draw:
            m.dof_damping[self._dof] = sized("joint_damping", n)
        if "joint_frictionloss" in draw:
            m.dof_frictionloss[self._dof] = sized("joint_frictionloss", n)
        if "actuator_kp" in draw:
            kp = sized("actuator_kp", m.nu)
        if "geom_friction_scale" in draw:
            m.geom_friction[self._collision_geoms, 0] *= sized(
                "geom_friction_scale", len(self._collision_geoms)
            )
        if "mount_offset_m" in draw:
            for body in self._mount_ids:
                m.body_pos[body] += sized("mount_offset_m", 3)
        return kp


class VisualRandomization:
    """Draws and sets the lights, material colours and task camera of ``model`` around their values
    when this object is made (or the task camera :meth:`set_task_camera` set since).

    Args:
        model, data: the simulator's model and data.
        task_camera: the task camera's id.
    """

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, task_camera: int):
        m = model
        self.model, self.data = model, data
        self._task_cam = task_camera
        self._nominal = {
            "light_dir": m.light_dir.copy(),
            "light_diffuse": m.light_diffuse.copy(),
            "headlight_ambient": m.vis.headlight.ambient.copy(),
            "headlight_diffuse": m.vis.headlight.diffuse.copy(),
            "mat_rgba": m.mat_rgba.copy(),
            "cam_pos": m.cam_pos.copy(),
            "cam_quat": m.cam_quat.copy(),
            "cam_fovy": m.cam_fovy.copy(),
        }

    def restore_nominal(self) -> None:
        m, nominal = self.model, self._nominal
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
        m, nominal, cam = self.model, self._nominal, self._task_cam
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

    def randomize(
        self, rng: np.random.Generator, ranges: VisualRanges = VISUAL_RANGES
    ) -> dict[str, Any]:
        """Draw lighting, colours and a task-camera jitter around the nominal scene; return them."""
        self.restore_nominal()
        m, nominal = self.model, self._nominal
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
            mujoco.mju_mulQuat(quat, quat, axis_angle_quat(axis, angle))
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
