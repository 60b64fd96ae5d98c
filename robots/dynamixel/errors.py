"""The exceptions of a Dynamixel bus and of the drivers built on it.

Every one is a :class:`DynamixelError`. Those raised before anything was sent or before torque went
on are also a :class:`~slac_runtime.robot.RobotRefused` (the runtime reports them as a refusal:
nothing moved). :mod:`robots.dynamixel.bus` exports them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slac_runtime.robot import RobotRefused


class DynamixelError(RuntimeError):
    """A problem on the Dynamixel bus."""


class ServoCommunicationError(DynamixelError):
    """Servos that did not answer (or only with corrupt replies) after every retry."""

    def __init__(self, message: str, servo_ids: Sequence[int]):
        super().__init__(message)
        self.servo_ids = tuple(servo_ids)


class ServoHardwareError(DynamixelError):
    """Servos that report a hardware error (alert bit); ``statuses`` maps
    ID -> Hardware Error Status."""

    def __init__(self, message: str, statuses: Mapping[int, int]):
        super().__init__(message)
        self.statuses = dict(statuses)

    @property
    def servo_ids(self) -> tuple[int, ...]:
        return tuple(self.statuses)


class ServoStatusError(DynamixelError):
    """A servo refused an instruction; ``error`` is the status packet's error number."""

    def __init__(self, message: str, servo_id: int, error: int):
        super().__init__(message)
        self.servo_id = servo_id
        self.error = error


class BusDisconnectedError(DynamixelError):
    """The serial link failed with an I/O error; ``port`` is the device path."""

    def __init__(self, message: str, port: str):
        super().__init__(message)
        self.port = port


class SerialPortNotFoundError(DynamixelError, RobotRefused, FileNotFoundError):
    """The serial port does not exist (an adapter unplugged, a virtual robot not running)."""


class SerialPortPermissionError(DynamixelError, RobotRefused, PermissionError):
    """This user may not open the serial port."""


class SerialPortOpenError(DynamixelError, RobotRefused):
    """The serial port exists but does not open as the servo bus's port (a directory, a file or
    device that is not a serial port, a baud rate it refuses)."""


class ServoConfigurationError(DynamixelError, RobotRefused):
    """Servo registers (or the pose the servos report) contradict what the driver needs to move
    them safely; ``servo_ids`` names the servos. Raised before torque goes on (the runtime reports
    it as a refusal: nothing moved)."""

    def __init__(self, message: str, servo_ids: Sequence[int]):
        super().__init__(message)
        self.servo_ids = tuple(servo_ids)


class BusWatchdogError(DynamixelError):
    """Servos in Bus Watchdog Error: they stopped because no instruction reached them within the
    watchdog window, and ignore goals until the error is cleared."""

    def __init__(self, message: str, servo_ids: Sequence[int]):
        super().__init__(message)
        self.servo_ids = tuple(servo_ids)
