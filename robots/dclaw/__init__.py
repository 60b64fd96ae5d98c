"""The D'Claw: description, MuJoCo model (simulation only), Dynamixel driver and virtual robot.

Importing this package loads neither mujoco nor torch: the driver, the virtual robot and the
simulation replay are named by path in :data:`ROBOT` and loaded on demand.
"""

from robots.dclaw.description import DCLAW
from slac_runtime.robot import RobotEntry

ROBOT = RobotEntry(
    description=DCLAW,
    driver="robots.dclaw.driver:DClawDriver",
    virtual="robots.dclaw.virtual:main",
    sim_replay="robots.dclaw.sim_replay:replay_in_sim",
    task_view="robots.dclaw.task_view:render_task_view",
    # dclaw-turn, distilled by slac-imitate from the teacher in
    # slac_train.imitation.teachers.dclaw_turn (docs/results.md)
    policy="robots.dclaw:policies/turn.onnx",
    # the virtual D'Claw's scenes (slac-virtual-robot --scene): the valve for Turn and Screw
    task_scenes=(("dclaw-pose", "pose"), ("dclaw-turn", "valve"), ("dclaw-screw", "valve")),
)

__all__ = ["DCLAW", "ROBOT"]
