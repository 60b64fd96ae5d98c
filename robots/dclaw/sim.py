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

Domain randomisation (``sim.randomize_dynamics(rng)``, ``sim.randomize_visuals(rng)``) is drawn
and set by :mod:`robots.dclaw.sim_randomization`, whose ranges this module exports.

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
from robots.dclaw.sim_randomization import (
    DYNAMICS_RANGES,
    VISUAL_RANGES,
    DynamicsRandomization,
    DynamicsRanges,
    VisualRandomization,
    VisualRanges,
    axis_angle_quat,
)
from robots.mujoco_gl import close_at_exit, close_renderer, forget_at_exit

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
SCENES = {"pose": "scene_pose.xml", "valve": "scene_valve.xml"}
TIMESTEP_S = 0.0025  # simulator timestep (seconds), as in the scene files
SUBSTEPS = round(CONTROL_PERIOD_S / TIMESTEP_S)  # simulator steps per control period (20)
VALVE_JOINT = "valve"
FINGERS = ("FF", "MF", "TH")
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
        self._kp = m.actuator_gainprm[:, 0].copy()  # N·m/rad, the servos' gains (nominal or drawn)
        self._torque_enabled = np.ones(m.nu, dtype=bool)
        # Each starts its draws from the model's values now (so draws never accumulate).
        self._dynamics = DynamicsRandomization(m, self._dof)
        self._visuals = VisualRandomization(m, self.data, self._task_cam)
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
        self.data.mocap_quat[self._goal_mocap] = axis_angle_quat((0.0, 0.0, 1.0), angle)
        mujoco.mj_kinematics(self.model, self.data)

    def set_goal_pose(self, pose: np.ndarray) -> None:
        """Pose the goal claw of the pose scene at the joint positions ``pose`` (rad)."""
        if not self._goal_claw:
            raise RuntimeError(f"the {self.scene!r} scene has no goal claw")
        pose = np.asarray(pose, dtype=np.float64).reshape(len(JOINT_NAMES))
        for i, finger in enumerate(FINGERS):
            for k in range(3):
                body, axis = self._goal_claw[finger, k]
                self.model.body_quat[body] = axis_angle_quat(axis, pose[3 * i + k])
        mujoco.mj_kinematics(self.model, self.data)

    def warnings(self) -> dict[str, int]:
        """MuJoCo warnings raised since the last reset, by name (empty when there were none)."""
        return {
            mujoco.mjtWarning(i).name: int(w.number)
            for i, w in enumerate(self.data.warning)
            if w.number > 0
        }

    # ----------------------------------------------------------------------------------------
    # Randomisation (robots/dclaw/sim_randomization.py)
    def restore_nominal_dynamics(self) -> None:
        self._kp = self._dynamics.restore_nominal()
        self._apply_gains()

    def randomize_dynamics(
        self, rng: np.random.Generator, ranges: DynamicsRanges = DYNAMICS_RANGES
    ) -> dict[str, np.ndarray]:
        """Draw new dynamics around the nominal model; return what was drawn
        (:meth:`DynamicsRandomization.draw`). Takes effect on the next step; call :meth:`reset`
        afterwards to settle positions."""
        draw = self._dynamics.draw(rng, ranges)
        self.apply_dynamics(draw)
        return draw

    def apply_dynamics(self, draw: dict[str, Any]) -> None:
        """Set the dynamics to ``draw`` (a :meth:`randomize_dynamics` result, or part of one;
        :meth:`DynamicsRandomization.apply`). Takes effect on the next step; call :meth:`reset`
        afterwards to settle positions."""
        self._kp = self._dynamics.apply(draw)
        self._apply_gains()
        mujoco.mj_forward(self.model, self.data)

    def restore_nominal_visuals(self) -> None:
        self._visuals.restore_nominal()

    def set_task_camera(
        self,
        quat: np.ndarray | None = None,
        fovy_deg: float | None = None,
        pos: np.ndarray | None = None,
    ) -> None:
        """Move the task camera (orientation quaternion w, x, y, z; vertical field of view, degrees;
        position, metres) and make it the nominal one: visual randomisation jitters around it."""
        self._visuals.set_task_camera(quat, fovy_deg, pos)

    def randomize_visuals(
        self, rng: np.random.Generator, ranges: VisualRanges = VISUAL_RANGES
    ) -> dict[str, Any]:
        """Draw lighting, colours and a task-camera jitter around the nominal scene; return them
        (:meth:`VisualRandomization.randomize`)."""
        return self._visuals.randomize(rng, ranges)

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
