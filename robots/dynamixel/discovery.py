"""Which Dynamixel servos answer on which serial port, and at which baud rate.

Each port is opened as the drivers open it (:class:`~robots.dynamixel.bus.DynamixelBus`: its lock,
exclusively) and sent a Protocol 2.0 broadcast PING at each baud rate: every servo on the bus
answers with its ID, model number and firmware version. Nothing is ever written to a servo.

The ports scanned are the USB serial adapters of this computer (``ttyUSB*``, ``ttyACM*``: those
with a USB vendor ID) and any given by path, such as a virtual robot's pseudo-terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

from serial.tools import list_ports

from robots.dynamixel import control_table as ct
from robots.dynamixel.bus import DynamixelBus, DynamixelError
from robots.dynamixel.port_lock import PortInUseError
from slac_runtime.robot import RobotRefused

DEFAULT_BAUDRATES = (1_000_000,)  # the D'Claw's bus speed
BROADCAST_ATTEMPTS = 2  # a reply lost to a collision or noise shows up in the second


@dataclass(frozen=True)
class FoundServo:
    """A servo that answered the broadcast ping."""

    servo_id: int
    model_number: int
    firmware: int

    @property
    def model_name(self) -> str:
        return ct.model_name(self.model_number)


@dataclass(frozen=True)
class PortScan:
    """What answered on one port at one baud rate, or why the port could not be scanned."""

    port: str
    baudrate: int
    servos: tuple[FoundServo, ...] = ()
    problem: str | None = None

    def describe(self) -> str:
        where = f"{self.port} at {self.baudrate} baud"
        if self.problem is not None:
            return f"{where}: {self.problem}"
        if not self.servos:
            return f"{where}: no servo answered"
        ids = " ".join(str(s.servo_id) for s in self.servos)
        models = sorted({f"{s.model_name} (model {s.model_number})" for s in self.servos})
        return f"{where}: {len(self.servos)} servos, IDs {ids}; {', '.join(models)}"


def usb_serial_ports() -> list[str]:
    """The USB serial adapters of this computer (those with a USB vendor ID), by path."""
    return sorted(p.device for p in list_ports.comports() if p.vid is not None)


def scan_port(port: str, baudrate: int) -> PortScan:
    """Open ``port`` at ``baudrate``, broadcast a ping, close it again."""
    bus = DynamixelBus(port, baudrate=baudrate, retries=0)
    try:
        bus.open()
    except (RobotRefused, PortInUseError, DynamixelError, OSError) as e:
        return PortScan(port, baudrate, problem=str(e))
    answers: dict[int, tuple[int, int]] = {}
    try:
        for _ in range(BROADCAST_ATTEMPTS):
            answers.update(bus.broadcast_ping())
    except DynamixelError as e:
        return PortScan(port, baudrate, problem=str(e))
    finally:
        bus.close()
    servos = tuple(FoundServo(i, model, fw) for i, (model, fw) in sorted(answers.items()))
    return PortScan(port, baudrate, servos)


def find_servos(ports: list[str], baudrates: tuple[int, ...] = DEFAULT_BAUDRATES) -> list[PortScan]:
    """Every port at every baud rate, in that order."""
    return [scan_port(port, baudrate) for port in ports for baudrate in baudrates]


__all__ = [
    "DEFAULT_BAUDRATES",
    "FoundServo",
    "PortScan",
    "find_servos",
    "scan_port",
    "usb_serial_ports",
]
