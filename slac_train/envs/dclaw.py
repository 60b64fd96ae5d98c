"""D'Claw tasks from pixels: Pose, Turn and Screw (ROBEL's definitions, Ahn et al. 2019).

Registered names, each ``<task>-<variant>``:

==========================  ======  ==========  ==============  ===========================
task                        repeat  episode     env steps       reset / goal
==========================  ======  ==========  ==============  ===========================
``dclaw-pose-*``            1       80 steps    80 (4 s)        start pose -> target pose
``dclaw-turn-*``            2       40 steps    80 (4 s)        valve angle -> target angle
``dclaw-screw-*``           2       80 steps    160 (8 s)       valve follows a moving target
==========================  ======  ==========  ==============  ===========================

Every task runs at the runtime's control period of 0.05 s (20 simulator steps of 2.5 ms); ROBEL's
0.1 s Turn/Screw policy period is action repeat 2. Episodes end by truncation only. The action
(9 values in [-1, 1]) becomes joint goals through :meth:`RobotDescription.action_to_joint_goal` of
:data:`robots.dclaw.description.DCLAW` -- the very function the robot runtime uses: linear onto the
joint ranges, clipped, then each joint's goal moves at most 2pi/3 rad/s x 0.05 s per step.

Variants:

* ``-fixed``: ROBEL's Fixed task. Pose: start at the reset pose, target :data:`FIXED_POSE_GOAL`.
  Turn: valve 0 -> target pi. Screw: valve 0, target turning at +0.5 rad/s.
* ``-random``: Pose: random start and target poses (middle joints <= 0). Turn: valve U(+-pi/3),
  target pi + U(+-pi/3). Screw: valve U(+-pi), target speed U(+-0.75) rad/s from the valve's start.
* ``-random-dynamics``: ``-random`` plus dynamics randomisation (joint damping, friction loss,
  servo gains, contact friction, mount position;
  :class:`robots.dclaw.sim_randomization.DynamicsRanges`), visual randomisation (lights, colours,
  task-camera jitter; :class:`robots.dclaw.sim_randomization.VisualRanges`) and image noise (std
  :data:`RANDOM_DYNAMICS_IMAGE_NOISE` grey levels): the sim-to-real variant.

The plain names ``dclaw-pose``, ``dclaw-turn`` and ``dclaw-screw`` are the ``-fixed`` tasks, as in
ROBEL's headline benchmark, and the one a real setup reproduces without a goal display.

Every variant adds U(+-0.05) rad to each joint of its start pose, so that seeds differ (also in the
Fixed tasks) and a policy does not rely on one exact start.

Goal display. A policy that sees only pixels must see the goal when it changes between episodes
or within one: the Random and RandomDynamics variants and every Screw task draw it -- a green bar
on the floor at the target angle, where the valve's green marker spoke should point (Turn, Screw),
or a translucent green goal claw (Pose). Fixed Turn and Pose hide it (the goal never changes, and a
real setup has nothing to show it with). ``show_goal=`` overrides this; a real setup reproduces the
bar with a pointer on a servo (ROBEL's guide motor) or a printed dial.

Keyword switches (``make_env("dclaw-turn-fixed", visual_randomization=True, ...)``):
``fast_render`` (default True), ``visual_randomization``, ``dynamics_randomization``,
``image_noise`` (std of Gaussian pixel noise in grey levels), ``show_goal``,
``observation_latency`` (seconds, or a ``(low, high)`` range drawn per episode); ``None`` keeps the
variant's default.

Observation latency. On the robot the frame a policy step acts on is older than the step: the
camera's exposure and transport, and the wait for the next frame (the virtual D'Claw's 20 fps
camera delivers frames ~55 ms old to the 20 Hz control loop). With ``observation_latency=L`` the
observation returned after a step shows the scene ``L`` seconds before the step's end (the frame
of the reset state while the episode is younger than ``L``); rewards and ``info`` stay those of the
step's end. The ``-random-dynamics`` variants draw ``L`` from :data:`RANDOM_DYNAMICS_LATENCY_S`.

Rewards are computed after every environment step (:class:`PixelEnv` sums them over the repeat):

* Pose: ``-1 * ||q - q_goal|| - 0.1 * ||qdot[|qdot| >= pi]||``.
* Turn, Screw: ``-5 * |err| - 1 * ||q - reset pose|| - 1 * ||qdot[|qdot| >= 0.5]||
  + 10 * (|err| < 0.25) + 50 * (|err| < 0.1)``, with ``err = wrap(target - valve)`` in [-pi, pi).

``info`` of every step (and of reset):

* ``success`` -- Pose: mean |q - q_goal| < 10 degrees; Turn: |err| < 0.1 rad; Screw: |err| < 0.2
  rad. It describes the state reached by the step; an episode succeeds when its last step does.
* ``score`` -- the task's score: ``-pose_error`` (Pose) or ``-|angle_error|`` (Turn, Screw), rad.
* ``pose_error`` (Pose): mean |q - q_goal| over the nine joints (rad).
* ``angle_error`` (Turn, Screw): ``wrap(target - valve)`` (rad, signed: + means turn the valve
  counter-clockwise), with ``valve_angle`` and ``target_angle`` (rad).
* ``reward_terms``: the reward's parts; ``joint_positions`` and ``joint_goals`` (rad).
* reset only: ``dynamics`` and ``visuals``, the randomisation draws (absent when switched off).

State-based teachers (:mod:`slac_train.imitation.teachers`) read a valve task through
:attr:`DClawValveTask.servo_goals` and try strokes with :meth:`DClawValveTask.valve_rollouts`,
besides the ``info`` above; nothing else of the simulator is theirs to touch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from robots.dclaw.description import CONTROL_PERIOD_S, DCLAW, RESET_POSE
from slac_runtime.angles import wrap_angle
from slac_train.envs.base import PixelTask
from slac_train.envs.registry import TaskSpec, register_task

VARIANTS = ("fixed", "random", "random-dynamics")
START_JOINT_NOISE = 0.05  # rad, U(-x, x) added to every joint of a start pose
RANDOM_DYNAMICS_IMAGE_NOISE = 4.0  # std of the pixel noise of RandomDynamics variants (grey levels)
RANDOM_DYNAMICS_LATENCY_S = (0.0, 0.08)  # observation latency range of RandomDynamics variants (s)
FIXED_POSE_GOAL = (0.25, -0.5, 1.0) * 3  # rad, the Pose-Fixed target
POSE_SUCCESS_RAD = math.radians(10.0)  # mean |pose error| for Pose success
TURN_SUCCESS_RAD = 0.1
SCREW_SUCCESS_RAD = 0.2
SCREW_FIXED_SPEED = 0.5  # rad/s
SCREW_RANDOM_SPEED = 0.75  # rad/s, U(-x, x)


class DClawTask(PixelTask):
    """What the three D'Claw tasks share: simulator, action mapping, randomisation, rendering."""

    scene: str  # "pose" or "valve"
    episode_env_steps: int

    def __init__(
        self,
        variant: str = "fixed",
        image_size: int = 64,
        fast_render: bool = True,
        visual_randomization: bool | None = None,
        dynamics_randomization: bool | None = None,
        image_noise: float | None = None,
        show_goal: bool | None = None,
        observation_latency: float | tuple[float, float] | None = None,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"unknown D'Claw variant {variant!r}; variants: {', '.join(VARIANTS)}")
        randomized = variant == "random-dynamics"
        self.variant = variant
        self.visual_randomization = (
            randomized if visual_randomization is None else bool(visual_randomization)
        )
        self.dynamics_randomization = (
            randomized if dynamics_randomization is None else bool(dynamics_randomization)
        )
        self.image_noise = (
            (RANDOM_DYNAMICS_IMAGE_NOISE if randomized else 0.0)
            if image_noise is None
            else float(image_noise)
        )
        if self.image_noise < 0:
            raise ValueError(
                f"image_noise is a standard deviation in grey levels, got {image_noise}"
            )
        self.show_goal = self._default_show_goal() if show_goal is None else bool(show_goal)
        if observation_latency is None:
            observation_latency = RANDOM_DYNAMICS_LATENCY_S if randomized else 0.0
        low, high = (
            (observation_latency, observation_latency)
            if np.isscalar(observation_latency)
            else observation_latency
        )
        if not 0.0 <= float(low) <= float(high):
            raise ValueError(
                "observation_latency must be seconds >= 0 or a (low, high) range with "
                "0 <= low <= high, "
                f"got {observation_latency!r}"
            )
        self.latency_range = (float(low), float(high))
        self._captures: list[
            np.ndarray
        ] = []  # frames captured latency_s (mod one period) before each step's end
        self.action_dim = DCLAW.num_joints
        self.control_period_s = CONTROL_PERIOD_S
        self.image_size = int(image_size)

        from slac_train.envs.rendering import select_gl_backend

        select_gl_backend()  # before mujoco is imported
        from robots.dclaw.sim import DClawSim

        self.sim = DClawSim(
            self.scene,
            render_size=self.image_size,
            fast_render=fast_render,
            show_goal=self.show_goal,
        )
        self._set_latency(self.latency_range[0])
        self._goal = np.array(RESET_POSE)  # current joint goals (rad), the velocity limit's origin
        self._steps = 0
        self._noise_rng = np.random.default_rng(0)

    def _default_show_goal(self) -> bool:
        return self.variant != "fixed"

    # One draw of four child seeds per reset, whatever the switches, so that switching a
    # randomisation on or off does not change the task's own draws.
    def reset(self, rng: np.random.Generator) -> dict[str, Any]:
        task_seed, dynamics_seed, visual_seed, noise_seed = rng.integers(2**62, size=4)
        info: dict[str, Any] = {}
        if self.dynamics_randomization:
            info["dynamics"] = self.sim.randomize_dynamics(np.random.default_rng(dynamics_seed))
        if self.visual_randomization:
            info["visuals"] = self.sim.randomize_visuals(np.random.default_rng(visual_seed))
        self._noise_rng = np.random.default_rng(noise_seed)
        low, high = self.latency_range
        self._set_latency(
            low if high == low else float(np.random.default_rng([noise_seed, 1]).uniform(low, high))
        )
        self._captures = []
        task_rng = np.random.default_rng(task_seed)
        start = self._reset_task(task_rng)
        start = start + task_rng.uniform(-START_JOINT_NOISE, START_JOINT_NOISE, size=start.shape)
        start = np.clip(start, DCLAW.low, DCLAW.high)
        self.sim.reset(joint_positions=start, valve_angle=self._start_valve_angle)
        self._goal = start.copy()
        self._steps = 0
        self._show_goal_marker()
        info.update(self._info(None))
        return info

    def step(self, action: np.ndarray) -> tuple[float, bool, bool, dict[str, Any]]:
        self._goal = DCLAW.action_to_joint_goal(action, self._goal, self.control_period_s)
        self.sim.set_joint_goals(self._goal)
        if self.latency_s > 0:
            # Capture the scene at (latency mod one period) before this step's end; render() picks
            # the capture that is latency_s old.
            self.sim.step(self.sim.substeps - self._substeps_after_capture)
            keep = self._periods_back
            self._captures = (self._captures[-keep:] if keep else []) + [self.sim.render()]
            self.sim.step(self._substeps_after_capture)
        else:
            self.sim.step()
        self._steps += 1
        self._advance_goal()
        terms = self._reward_terms()
        truncated = self._steps >= self.episode_env_steps
        return float(sum(terms.values())), False, truncated, self._info(terms)

    def _set_latency(self, latency_s: float) -> None:
        """This episode's latency, as whole control periods back plus substeps within one."""
        self.latency_s = latency_s
        self._periods_back = int(latency_s // self.control_period_s + 1e-9)
        self._substeps_after_capture = int(
            round((latency_s % self.control_period_s) / self.sim.model.opt.timestep)
        )

    def render(self) -> np.ndarray:
        if self.latency_s > 0:
            if self._steps == 0:  # the reset state, until the episode is older
                self._captures = [self.sim.render()]
            back = self._periods_back
            frame = self._captures[-1 - back] if len(self._captures) > back else self._captures[0]
        else:
            frame = self.sim.render()
        if self.image_noise > 0:
            from robots.dclaw.sim import add_image_noise

            frame = add_image_noise(frame, self._noise_rng, self.image_noise)
        return frame

    def close(self) -> None:
        self.sim.close()

    def _info(self, terms: dict[str, float] | None) -> dict[str, Any]:
        info = self._task_info()
        info["reward_terms"] = dict(terms or {})
        info["joint_positions"] = self.sim.joint_positions()
        info["joint_goals"] = self._goal.copy()
        return info

    # Task hooks.
    _start_valve_angle: float = 0.0

    def _reset_task(self, rng: np.random.Generator) -> np.ndarray:
        """Draw the episode's goal (and valve start); return the start joint pose."""
        raise NotImplementedError

    def _show_goal_marker(self) -> None:
        pass

    def _advance_goal(self) -> None:
        pass

    def _reward_terms(self) -> dict[str, float]:
        raise NotImplementedError

    def _task_info(self) -> dict[str, Any]:
        raise NotImplementedError


class DClawPose(DClawTask):
    """Move the nine joints to a target pose (seen as a translucent goal claw when it varies)."""

    scene = "pose"
    episode_env_steps = 80

    def __init__(self, variant: str = "fixed", **kwargs: Any):
        self._target = np.array(FIXED_POSE_GOAL)
        super().__init__(variant, **kwargs)

    @staticmethod
    def sample_pose(rng: np.random.Generator) -> np.ndarray:
        """A pose uniform in the joint ranges with the middle joints <= 0 (fingers opened out)."""
        pose = rng.uniform(DCLAW.low, DCLAW.high)
        pose[1::3] = -np.abs(pose[1::3])
        return pose

    def _reset_task(self, rng: np.random.Generator) -> np.ndarray:
        if self.variant == "fixed":
            self._target = np.array(FIXED_POSE_GOAL)
            return np.array(RESET_POSE)
        start = self.sample_pose(rng)
        self._target = self.sample_pose(rng)
        return start

    def _show_goal_marker(self) -> None:
        self.sim.set_goal_pose(self._target)

    def _reward_terms(self) -> dict[str, float]:
        velocities = self.sim.joint_velocities()
        return {
            "pose_error": -1.0 * float(np.linalg.norm(self.sim.joint_positions() - self._target)),
            "joint_velocity": -0.1
            * float(np.linalg.norm(velocities[np.abs(velocities) >= math.pi])),
        }

    def _task_info(self) -> dict[str, Any]:
        error = float(np.mean(np.abs(self.sim.joint_positions() - self._target)))
        return {
            "success": error < POSE_SUCCESS_RAD,
            "score": -error,
            "pose_error": error,
            "target_pose": self._target.copy(),
        }


class DClawValveTask(DClawTask):
    """Turn and Screw: bring the valve's marker spoke to a target angle."""

    scene = "valve"
    success_rad: float

    def __init__(self, variant: str = "fixed", **kwargs: Any):
        self._target_angle = 0.0
        super().__init__(variant, **kwargs)

    def angle_error(self) -> float:
        """wrap(target - valve angle) in [-pi, pi) (rad)."""
        return wrap_angle(self._target_angle - self.sim.valve_angle())

    # What a state-based teacher may read and try (training only: the simulator's privileged state).
    @property
    def servo_goals(self) -> np.ndarray:
        """The nine servo goals (rad) in force now: velocity-limited, within the joint ranges."""
        return self.sim.joint_goals()

    def valve_rollouts(self, own_model: bool = True) -> ValveRollouts:
        """A :class:`ValveRollouts` that tries servo goals from this task's present state, in the
        task's own model (``own_model``, its dynamics draw included) or in a model of its own."""
        return ValveRollouts(self, own_model)

    def _show_goal_marker(self) -> None:
        self.sim.set_goal_angle(self._target_angle)

    def _reward_terms(self) -> dict[str, float]:
        error = abs(self.angle_error())
        velocities = self.sim.joint_velocities()
        return {
            "angle_error": -5.0 * error,
            "pose_difference": -1.0
            * float(np.linalg.norm(self.sim.joint_positions() - np.array(RESET_POSE))),
            "joint_velocity": -1.0 * float(np.linalg.norm(velocities[np.abs(velocities) >= 0.5])),
            "bonus_small": 10.0 * (error < 0.25),
            "bonus_big": 50.0 * (error < 0.10),
        }

    def _task_info(self) -> dict[str, Any]:
        error = self.angle_error()
        return {
            "success": abs(error) < self.success_rad,
            "score": -abs(error),
            "angle_error": error,
            "valve_angle": self.sim.valve_angle(),
            "target_angle": self._target_angle,
        }


class ValveRollouts:
    """Tries servo goals from a valve task's present state and reports where the valve ends.

    Each rollout copies the task's simulator state into a scratch state and steps that, one control
    period (:attr:`DClawSim.substeps` simulator steps) per servo goal, so the task itself is left
    exactly as it was. The rollouts run in the task's own model (``own_model=True``: whatever its
    dynamics draw is) or in a model of their own, nominal until :meth:`assume_dynamics` sets a draw
    (what a teacher that knows only part of the draw would predict).
    """

    def __init__(self, task: DClawValveTask, own_model: bool = True):
        import mujoco

        from robots.dclaw.sim import VALVE_JOINT, DClawSim

        self._task = task
        self._own_sim = None if own_model else DClawSim(task.scene, render_size=16)
        self._model = task.sim.model if own_model else self._own_sim.model
        self._scratch = mujoco.MjData(self._model)
        self._valve_qpos = int(self._model.joint(VALVE_JOINT).qposadr[0])

    def assume_dynamics(self, draw: dict[str, Any]) -> None:
        """Roll out in the nominal model changed by ``draw`` (a :meth:`DClawSim.apply_dynamics`
        draw)."""
        if self._own_sim is None:
            raise ValueError(
                "these rollouts run in the task's own model: make them with own_model=False"
            )
        self._own_sim.apply_dynamics(dict(draw))

    def valve_angle_after(self, servo_goals) -> float:
        """The valve's angle (rad) after holding each of ``servo_goals`` (nine joint goals, rad,
        clipped to the joint ranges) for one control period, from the task's present state."""
        import mujoco

        mujoco.mj_copyData(self._scratch, self._model, self._task.sim.data)
        substeps = self._task.sim.substeps
        for goal in servo_goals:
            self._scratch.ctrl[:] = np.clip(goal, DCLAW.low, DCLAW.high)
            mujoco.mj_step(self._model, self._scratch, nstep=substeps)
        return float(self._scratch.qpos[self._valve_qpos])

    def close(self) -> None:
        """Release the rollouts' own simulator (if they have one)."""
        if self._own_sim is not None:
            self._own_sim.close()


class DClawTurn(DClawValveTask):
    """Turn the valve to a target angle and hold it there."""

    episode_env_steps = 80
    success_rad = TURN_SUCCESS_RAD

    def _reset_task(self, rng: np.random.Generator) -> np.ndarray:
        if self.variant == "fixed":
            self._start_valve_angle, self._target_angle = 0.0, math.pi
        else:
            self._start_valve_angle = float(rng.uniform(-math.pi / 3, math.pi / 3))
            self._target_angle = math.pi + float(rng.uniform(-math.pi / 3, math.pi / 3))
        return np.array(RESET_POSE)


class DClawScrew(DClawValveTask):
    """Keep the valve turning with a target that moves at a constant speed."""

    episode_env_steps = 160
    success_rad = SCREW_SUCCESS_RAD

    def __init__(self, variant: str = "fixed", **kwargs: Any):
        self._target_speed = SCREW_FIXED_SPEED  # rad/s
        super().__init__(variant, **kwargs)

    def _default_show_goal(self) -> bool:
        return True  # the target moves within an episode: the policy must see where it is

    def _reset_task(self, rng: np.random.Generator) -> np.ndarray:
        if self.variant == "fixed":
            self._start_valve_angle, self._target_speed = 0.0, SCREW_FIXED_SPEED
        else:
            self._start_valve_angle = float(rng.uniform(-math.pi, math.pi))
            self._target_speed = float(rng.uniform(-SCREW_RANDOM_SPEED, SCREW_RANDOM_SPEED))
        self._target_angle = self._start_valve_angle
        return np.array(RESET_POSE)

    def _advance_goal(self) -> None:
        self._target_angle += self._target_speed * self.control_period_s
        self.sim.set_goal_angle(self._target_angle)

    def _task_info(self) -> dict[str, Any]:
        info = super()._task_info()
        info["target_speed"] = self._target_speed
        return info


HEIGHT_BINS_MM = ((-10, -6), (-6, -2), (-2, 2), (2, 6), (6, 10))  # mount heights drawn: U(+-10 mm)


def mount_height_mm(reset_info: dict[str, Any]) -> float | None:
    """The mount height (mm above nominal) a reset drew, or None without dynamics randomisation."""
    dynamics = reset_info.get("dynamics")
    return None if dynamics is None else float(dynamics["mount_offset_m"][2]) * 1000


def success_by_mount_height(heights_mm: np.ndarray, ok: np.ndarray) -> dict[str, list]:
    """``[success rate (None if empty), episodes]`` per mount-height bin of :data:`HEIGHT_BINS_MM`,
    from each episode's drawn height (mm) and whether it succeeded."""
    return {
        f"{lo:+d}..{hi:+d} mm": [
            float(ok[inside].mean()) if inside.any() else None,
            int(inside.sum()),
        ]
        for lo, hi in HEIGHT_BINS_MM
        for inside in [(heights_mm >= lo) & (heights_mm < hi)]
    }


TASKS = {"pose": (DClawPose, 1), "turn": (DClawTurn, 2), "screw": (DClawScrew, 2)}
DESCRIPTIONS = {
    "pose": "D'Claw: move the nine joints to a target pose",
    "turn": "D'Claw: turn the three-spoke valve to a target angle",
    "screw": "D'Claw: keep the valve turning with a moving target",
}
# What slac-train's ``randomization`` setting switches on (TrainConfig.randomization): the task's
# keyword switches; "task" keeps the variant's own. "visual+dynamics+latency" is what slac-imitate
# records its teachers' episodes under by default.
RANDOMIZATION_SETTINGS: dict[str, dict[str, Any]] = {
    "task": {},
    "none": {
        "visual_randomization": False,
        "dynamics_randomization": False,
        "image_noise": 0.0,
        "observation_latency": 0.0,
    },
    "visual": {
        "visual_randomization": True,
        "dynamics_randomization": False,
        "image_noise": RANDOM_DYNAMICS_IMAGE_NOISE,
        "observation_latency": 0.0,
    },
    "visual+dynamics": {
        "visual_randomization": True,
        "dynamics_randomization": True,
        "image_noise": RANDOM_DYNAMICS_IMAGE_NOISE,
        "observation_latency": 0.0,
    },
    "visual+dynamics+latency": {
        "visual_randomization": True,
        "dynamics_randomization": True,
        "image_noise": RANDOM_DYNAMICS_IMAGE_NOISE,
        "observation_latency": RANDOM_DYNAMICS_LATENCY_S,
    },
}

VARIANT_NOTES = {
    "fixed": "fixed goal",
    "random": "random start and goal",
    "random-dynamics": "random start and goal, dynamics and visual randomisation, image noise",
}


def _register() -> None:
    for task, (cls, repeat) in TASKS.items():
        for variant in VARIANTS:

            def make_task(
                image_size: int = 64, _cls=cls, _variant=variant, **kwargs: Any
            ) -> DClawTask:
                return _cls(_variant, image_size=image_size, **kwargs)

            spec = dict(
                suite="dclaw",
                make_task=make_task,
                action_repeat=repeat,
                episode_env_steps=cls.episode_env_steps,
                robot="dclaw",
            )
            register_task(
                TaskSpec(
                    name=f"dclaw-{task}-{variant}",
                    description=f"{DESCRIPTIONS[task]} ({VARIANT_NOTES[variant]})",
                    tags=("robot",),
                    **spec,
                )
            )
            if variant == "fixed":  # the plain name is the Fixed task
                register_task(
                    TaskSpec(
                        name=f"dclaw-{task}",
                        description=f"{DESCRIPTIONS[task]} (= dclaw-{task}-fixed)",
                        tags=("robot", "alias"),
                        **spec,
                    )
                )


_register()
