"""The D'Claw: description, MuJoCo model (simulation only), Dynamixel driver and virtual robot.

Importing this package loads neither mujoco nor torch: the driver and the virtual robot are named
by path in :data:`ROBOT` and loaded on demand.
"""

from robots.dclaw.description import DCLAW
from slac_runtime.robot import RobotEntry

ROBOT = RobotEntry(
    description=DCLAW,
    driver="robots.dclaw.driver:DClawDriver",
    virtual="robots.dclaw.virtual:main",
)

__all__ = ["DCLAW", "ROBOT"]
