"""The robot registry and the action→joint-goal mapping shared by simulation and runtime."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from slac_runtime.robot import find_robot, list_robots


def test_dclaw_is_registered_through_entry_points():
    assert "dclaw" in list_robots()
    entry = find_robot("dclaw")
    d = entry.description
    assert d.joint_names[0] == "FF10" and d.motor_ids == (10, 11, 12, 20, 21, 22, 30, 31, 32)
    assert d.num_joints == 9


def test_unknown_robot_lists_known_ones():
    with pytest.raises(KeyError, match="dclaw"):
        find_robot("dclww")


def test_lookup_loads_neither_torch_nor_mujoco():
    code = (
        "import sys\n"
        "import slac_runtime, slac_runtime.history, slac_runtime.robot\n"
        "from slac_runtime.robot import find_robot\n"
        "find_robot('dclaw')\n"
        "heavy = [m for m in ('torch', 'mujoco', 'dm_control') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_action_mapping_ranges_clip_and_velocity_limit():
    d = find_robot("dclaw").description
    period = 0.05
    max_step = d.velocity_limit * period
    current = np.zeros(9)
    # Far targets: the step is limited to velocity_limit * period.
    goal = d.action_to_joint_goal(np.ones(9), current, period)
    np.testing.assert_allclose(goal, max_step)
    # Repeated steps reach the range ends and stay inside the ranges.
    for _ in range(100):
        goal = d.action_to_joint_goal(np.ones(9) * 5.0, goal, period)
    np.testing.assert_allclose(goal, d.high)
    # Zero action maps to the middle of each range.
    for _ in range(100):
        goal = d.action_to_joint_goal(np.zeros(9), goal, period)
    np.testing.assert_allclose(goal, (d.low + d.high) / 2, atol=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        d.action_to_joint_goal(np.full(9, np.nan), goal, period)
    with pytest.raises(ValueError, match="9"):
        d.action_to_joint_goal(np.zeros(8), goal, period)
