"""``slac-calibrate ports``: the serial ports with Dynamixel servos on them, and which servos
answer on each (IDs, model numbers and names), by a broadcast ping that writes nothing.

It lives beside ``slac-calibrate joints``, which needs the port it finds.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from slac_runtime.options import check_options, comma_integers, option
from slac_runtime.robot import DEFAULT_ROBOT, find_robot


def _parse_baudrates(text: str) -> tuple[int, ...]:
    from robots.dynamixel.bus import _SUPPORTED_BAUD_RATES

    rates = comma_integers(text, "baud rates must look like 1000000,57600")
    bad = [r for r in rates if r not in _SUPPORTED_BAUD_RATES]
    if bad:
        raise argparse.ArgumentTypeError(
            f"baud rate {bad[0]} is not one a Dynamixel bus runs at; use some of "
            f"{', '.join(map(str, _SUPPORTED_BAUD_RATES))}"
        )
    return rates


def _parse_ports(text: str) -> tuple[str, ...]:
    ports = tuple(p for p in text.split(",") if p)
    if not ports:
        raise argparse.ArgumentTypeError(f"give a serial device such as /dev/ttyUSB0, got {text!r}")
    return ports


@dataclass(frozen=True)
class PortsConfig:
    """``slac-calibrate ports``: list the serial ports (USB adapters, and any given with --port)
    and the Dynamixel servos that answer a broadcast ping on each: IDs, model numbers and names.
    Nothing is written to a servo."""

    port: tuple[str, ...] | None = option(
        None,
        "scan these serial devices, comma-separated, instead of the USB adapters found (a "
        "virtual robot's pty, for instance)",
        parse=_parse_ports,
        metavar="PORT[,PORT...]",
    )
    baudrates: tuple[int, ...] = option(
        (1_000_000,),
        "bus speeds to ping at, comma-separated (1000000: the D'Claw's)",
        parse=_parse_baudrates,
        metavar="BAUD[,BAUD...]",
    )
    robot: str = option(DEFAULT_ROBOT, "robot whose servo IDs are looked for")

    def __post_init__(self) -> None:
        check_options(self)


def run_ports(config: PortsConfig) -> int:
    """Print one line per port and baud rate, and whether the robot's servos are all there."""
    from robots.dynamixel.discovery import find_servos, usb_serial_ports

    ports = list(config.port) if config.port else usb_serial_ports()
    if not ports:
        print(
            "no serial ports found: no USB serial adapter is plugged in (for a virtual robot, "
            "give its pty with --port)"
        )
        return 0
    motor_ids = set(find_robot(config.robot).description.motor_ids)
    for scan in find_servos(ports, config.baudrates):
        found = {s.servo_id for s in scan.servos}
        verdict = ""
        if found and found >= motor_ids:
            verdict = f"  <- the {config.robot}'s {len(motor_ids)} servos"
        elif found & motor_ids:
            missing = " ".join(str(i) for i in sorted(motor_ids - found))
            verdict = f"  <- the {config.robot}'s servos without {missing}"
        print(scan.describe() + verdict, flush=True)
    return 0


__all__ = ["PortsConfig", "run_ports"]
