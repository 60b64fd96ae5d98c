"""The D'Claw (ROBEL's three-fingered robot) as every part of the toolkit sees it.

Three fingers (FF, MF, TH) of three joints each, ordered finger by finger, base to tip. Motor IDs
equal the numbers in the joint names. Angles in radians, velocities in rad/s.
"""

from __future__ import annotations

import math

from slac_runtime.robot import ReplayTolerance, RobotDescription

JOINT_NAMES = ("FF10", "FF11", "FF12", "MF20", "MF21", "MF22", "TH30", "TH31", "TH32")
MOTOR_IDS = (10, 11, 12, 20, 21, 22, 30, 31, 32)

TOP_RANGE = (-0.48, 0.48)  # joint 0: abduction (rad)
MIDDLE_RANGE = (-math.pi / 3, math.pi / 3)  # joint 1: flexion (rad)
BOTTOM_RANGE = (-math.pi / 2, math.pi / 2)  # joint 2: flexion (rad)
JOINT_RANGES = (TOP_RANGE, MIDDLE_RANGE, BOTTOM_RANGE) * 3
JOINT_GROUPS = (3, 3, 3)  # joints per finger

VELOCITY_LIMIT = 2 * math.pi / 3  # rad/s per joint
RESET_POSE = (0.0, -math.pi / 3, math.pi / 3) * 3  # rad, the Turn/Screw reset pose

CONTROL_PERIOD_S = 0.05  # environment control period of every D'Claw task (20 Hz)

# Tracking-error watchdog: a joint whose present position stays further than this from its goal
# for longer than this is stuck, miscalibrated or broken, and the runtime stops the robot.
# Measured on the virtual D'Claw over 21 episodes of the shipped Turn policy: largest error 0.56 rad
# (top joints pushing a spoke), never above 0.5 rad for more than 0.2 s.
TRACKING_ERROR_LIMIT_RAD = 0.8
TRACKING_ERROR_TIME_S = 0.5

# A replay of a log (slac-replay --port) stays this close to the logged joint positions, as
# tests/test_replay.py checks on the virtual D'Claw. A goal moving at the velocity limit turns a few
# milliseconds of servo lag into a few hundredths of a radian, and a tick the simulation thread of
# the virtual robot runs late (a loaded computer) into up to about a tenth.
REPLAY_TOLERANCE = ReplayTolerance(p95_error_rad=0.1, mean_error_rad=0.03)

DCLAW = RobotDescription(
    name="dclaw",
    joint_names=JOINT_NAMES,
    motor_ids=MOTOR_IDS,
    joint_ranges=JOINT_RANGES,
    velocity_limit=VELOCITY_LIMIT,
    reset_pose=RESET_POSE,
    control_periods_s=(CONTROL_PERIOD_S,),
    tracking_error_limit_rad=TRACKING_ERROR_LIMIT_RAD,
    tracking_error_time_s=TRACKING_ERROR_TIME_S,
    joint_groups=JOINT_GROUPS,
    replay_tolerance=REPLAY_TOLERANCE,
)
