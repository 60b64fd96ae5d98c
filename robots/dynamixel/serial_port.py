"""Opening a Dynamixel bus's serial port, and what stands in the way of it.

:func:`check_port_access` refuses a port that does not exist (:class:`SerialPortNotFoundError`) or
that this user may not open (:class:`SerialPortPermissionError`); :func:`open_exclusive` opens the
tty exclusively through ROBOTIS's ``dynamixel_sdk`` (:class:`ExclusivePortHandler`) and turns a
failure into one of those errors, a :class:`~robots.dynamixel.port_lock.PortInUseError` naming
the command that shows the holder, or a :class:`SerialPortOpenError`.
:func:`check_latency_timer` warns when a USB adapter's latency timer slows every read.
"""

from __future__ import annotations

import errno
import os
import re
import select
import warnings
from pathlib import Path

import dynamixel_sdk as sdk
import serial

from robots.dynamixel.errors import (
    SerialPortNotFoundError,
    SerialPortOpenError,
    SerialPortPermissionError,
)
from robots.dynamixel.port_lock import PortInUseError

USB_SERIAL_SYSFS = Path("/sys/bus/usb-serial/devices")


class LatencyTimerWarning(UserWarning):
    """The USB serial adapter's latency timer adds milliseconds to every read."""


def usb_latency_timer_path(port: str, sysfs_root: Path = USB_SERIAL_SYSFS) -> Path | None:
    """Where Linux keeps the latency timer of a USB serial port (``/dev/ttyUSB*``), else None."""
    name = Path(os.path.realpath(port)).name
    if not re.fullmatch(r"ttyUSB\d+", name):
        return None
    return sysfs_root / name / "latency_timer"


def check_latency_timer(port: str, sysfs_root: Path = USB_SERIAL_SYSFS) -> int | None:
    """Warn (:class:`LatencyTimerWarning`) if the port's USB latency timer is above 1 ms; return it.

    Returns None when the port is not a USB serial device with a latency timer (e.g. a pty, or an
    adapter whose kernel driver has none).
    """
    path = usb_latency_timer_path(port, sysfs_root)
    if path is None or not path.is_file():
        return None
    latency_ms = int(path.read_text().strip())
    if latency_ms > 1:
        warnings.warn(
            f"the USB latency timer of {port} is {latency_ms} ms, which adds up to {latency_ms} ms "
            f"to every servo read; set it to 1 ms with: echo 1 | sudo tee {path}",
            LatencyTimerWarning,
            stacklevel=3,
        )
    return latency_ms


class ExclusivePortHandler(sdk.PortHandler):
    """The SDK's port handler, opening its tty exclusively (pyserial's ``exclusive`` takes a flock
    on the device before changing any of its settings, so a program that respects tty locks cannot
    use the port at the same time, nor disturb it by opening it) and waiting for replies asleep
    rather than spinning."""

    def setupPort(self, cflag_baud: int) -> bool:  # noqa: N802 (the SDK's name)
        if self.is_open:
            self.closePort()
        self.ser = serial.Serial(
            port=self.port_name,
            baudrate=self.baudrate,
            bytesize=serial.EIGHTBITS,
            timeout=0,
            exclusive=True,
        )
        self.is_open = True
        self.ser.reset_input_buffer()
        self.tx_time_per_byte = (1000.0 / self.baudrate) * 10.0  # ms per byte (10 bits)
        return True

    def readPort(self, length: int) -> bytes:  # noqa: N802 (the SDK's name)
        """Up to ``length`` bytes, waiting (asleep, not spinning) until some arrive or the
        packet's deadline passes. The SDK calls this in a loop and judges its timeout after each
        call: it then only times out after a wait that found nothing, and a client under
        real-time scheduling leaves the CPU to the port's kernel worker and the servos' emulator
        while it waits."""
        data = self.ser.read(length)
        if data:
            return data
        remaining_ms = self.packet_timeout - self.getTimeSinceStart()
        if remaining_ms > 0:
            select.select([self.ser.fileno()], [], [], remaining_ms / 1000.0)
            data = self.ser.read(length)
        return data


def check_port_access(port: str, adapter: str) -> None:
    """Refuse a port that does not exist or that this user may not read and write (``adapter``:
    how the messages call the USB adapter)."""
    if not os.path.exists(port):
        raise _not_found(port, adapter)
    if not os.access(port, os.R_OK | os.W_OK):
        raise _no_permission(port)


def open_exclusive(port: str, baudrate: int, adapter: str) -> sdk.PortHandler:
    """The SDK's handler of ``port``, opened exclusively at ``baudrate``; a failure closes it and
    raises :class:`SerialPortNotFoundError`, :class:`SerialPortPermissionError`,
    :class:`PortInUseError` or :class:`SerialPortOpenError`."""
    handler = ExclusivePortHandler(port)
    try:
        opened = handler.setBaudRate(baudrate)
    except Exception as exc:  # pyserial's SerialException and OSError
        if handler.is_open:
            handler.closePort()
        raise _open_error(exc, port, adapter) from exc
    if not opened:
        if handler.is_open:
            handler.closePort()
        raise SerialPortOpenError(
            f"could not open serial port {port} at {baudrate} baud: {_which_port(adapter)}"
        )
    return handler


def _not_found(port: str, adapter: str) -> SerialPortNotFoundError:
    return SerialPortNotFoundError(
        f"serial port {port} not found: is {adapter} plugged in? ls /dev/ttyUSB*"
    )


def _no_permission(port: str) -> SerialPortPermissionError:
    return SerialPortPermissionError(
        f"no permission to open serial port {port}: add yourself to the dialout group "
        f"(sudo usermod -aG dialout $USER, then log in again)"
    )


def _open_error(exc: Exception, port: str, adapter: str) -> Exception:
    """The error to raise for a failed open of the tty."""
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return _not_found(port, adapter)
    if code in (errno.EACCES, errno.EPERM):
        return _no_permission(port)
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
        real = os.path.realpath(port)
        return PortInUseError(
            f"serial port {port} is in use by another program (it holds the port "
            f"exclusively; see which with: fuser -v {real}): stop it first",
            port,
        )
    return SerialPortOpenError(f"could not open serial port {port}: {exc}: {_which_port(adapter)}")


def _which_port(adapter: str) -> str:
    return f"is it {adapter}? `slac-calibrate ports` lists the ports servos answer on"
