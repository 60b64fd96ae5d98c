"""A Dynamixel Protocol 2.0 bus client on ROBOTIS's ``dynamixel_sdk``:
retries, counters, clear errors.

Every transaction that expects replies is retried (``retries`` extra attempts) when a reply is
missing, corrupt, or reports a CRC error; ``stats`` counts read and write transactions, retries
and failures. What cannot be fixed by retrying raises an exception that names the servo:

- :class:`ServoCommunicationError` -- a servo stayed silent or kept sending corrupt replies;
- :class:`ServoHardwareError` -- a servo's status carries the alert bit: its Hardware Error Status
  (overload, overheating, ...) is read and reported;
- :class:`ServoStatusError` -- a servo refused an instruction (access, range, length errors);
- :class:`BusDisconnectedError` -- the serial link itself failed (an I/O error on the port: cable,
  power, adapter unplugged, or an emulator's process gone); it names the port.

Opening the port is refused (a :class:`~slac_runtime.robot.RobotRefused`: nothing was sent) when
the port does not exist (:class:`SerialPortNotFoundError`), may not be opened
(:class:`SerialPortPermissionError`), or another process owns it
(:class:`~robots.dynamixel.port_lock.PortInUseError`, naming that process). A bus owns its port
from :meth:`DynamixelBus.open` to :meth:`DynamixelBus.close`: it holds the port's
:class:`~robots.dynamixel.port_lock.PortLock` and keeps the tty itself open exclusively.

Drivers built on the bus raise :class:`ServoConfigurationError` (servo registers that contradict
what the driver needs) and :class:`BusWatchdogError` (servos stopped by their Bus Watchdog).

A sync write (the per-tick goal positions) gets no reply by design of the protocol, so it cannot
be confirmed; torque changes are therefore written to each servo with a confirmed write.

The exceptions are defined in :mod:`robots.dynamixel.errors` and exported here; opening the port
is :mod:`robots.dynamixel.serial_port`, and reading what the servos' replies say
:mod:`robots.dynamixel.bus_replies`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import dynamixel_sdk as sdk

try:  # pyserial's POSIX port raises termios.error (not an OSError) when the device goes away
    import termios

    _TERMIOS_ERRORS: tuple[type[BaseException], ...] = (termios.error,)
except ImportError:  # Windows
    _TERMIOS_ERRORS = ()

from robots.dynamixel import control_table as ct
from robots.dynamixel.bus_replies import (
    describe_result,
    hardware_error,
    read_byte,
    read_sync_reply,
    status_error,
    sync_read_failure,
)
from robots.dynamixel.errors import (
    BusDisconnectedError,
    BusWatchdogError,
    DynamixelError,
    SerialPortNotFoundError,
    SerialPortOpenError,
    SerialPortPermissionError,
    ServoCommunicationError,
    ServoConfigurationError,
    ServoHardwareError,
    ServoStatusError,
)
from robots.dynamixel.port_lock import PortInUseError, PortLock
from robots.dynamixel.protocol import ALERT_BIT, StatusError
from robots.dynamixel.serial_port import (
    USB_SERIAL_SYSFS,
    LatencyTimerWarning,
    check_latency_timer,
    check_port_access,
    open_exclusive,
    usb_latency_timer_path,
)

__all__ = [
    "MAX_RETRIES",
    "USB_SERIAL_SYSFS",
    "BusDisconnectedError",
    "BusWatchdogError",
    "DynamixelBus",
    "DynamixelError",
    "LatencyTimerWarning",
    "PortInUseError",
    "SerialPortNotFoundError",
    "SerialPortOpenError",
    "SerialPortPermissionError",
    "ServoCommunicationError",
    "ServoConfigurationError",
    "ServoHardwareError",
    "ServoStatusError",
    "check_latency_timer",
    "usb_latency_timer_path",
]

log = logging.getLogger(__name__)

# More extra attempts than this only hide a broken bus: each can wait ~34 ms for a reply, so a
# transaction gives up within about 0.7 s.
MAX_RETRIES = 20
_SUPPORTED_BAUD_RATES = (
    9600,
    19200,
    38400,
    57600,
    115200,
    230400,
    460800,
    500000,
    576000,
    921600,
    1000000,
    1152000,
    2000000,
    2500000,
    3000000,
    3500000,
    4000000,
)


class DynamixelBus:
    """One serial port with Protocol 2.0 servos on it.

    Args:
        port: the serial device path (a USB adapter, or an emulator's pty).
        baudrate: the bus speed (the servos' Baud Rate register must agree).
        retries: extra attempts (0..20) for a transaction whose replies are missing or corrupt.
        servo_names: optional ID -> name, used in error messages ("servo 21 (MF21)").
        adapter: how error messages call the USB adapter.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 1_000_000,
        retries: int = 3,
        servo_names: Mapping[int, str] | None = None,
        adapter: str = "the Dynamixel USB adapter",
    ):
        if (
            not isinstance(baudrate, int)
            or isinstance(baudrate, bool)
            or baudrate not in _SUPPORTED_BAUD_RATES
        ):
            raise ValueError(
                f"baud rate {baudrate!r} is not supported; use one of {_SUPPORTED_BAUD_RATES}"
            )
        if (
            not isinstance(retries, int)
            or isinstance(retries, bool)
            or not 0 <= retries <= MAX_RETRIES
        ):
            raise ValueError(f"retries must be an integer in 0..{MAX_RETRIES}, got {retries!r}")
        self.port = str(port)
        self.baudrate = baudrate
        self.retries = retries
        self.servo_names = dict(servo_names or {})
        self.adapter = adapter
        self.stats = {"reads": 0, "writes": 0, "retries": 0, "failures": 0}
        # Seconds from a sync read's request sent to its last reply received (answered attempts):
        # the servos' reply latency as this client sees it, scheduling delays included.
        self.read_latencies_s: collections.deque[float] = collections.deque(maxlen=100_000)
        self._port: sdk.PortHandler | None = None
        self._owner: PortLock | None = None  # held while the port is open
        self._packets = sdk.PacketHandler(2.0)
        self._lock = threading.Lock()
        self._last_instruction_s: float | None = None  # monotonic time the last packet was sent
        self._longest_silence_s = 0.0  # since the last take_longest_silence_s()
        self.link_failed = False  # an I/O error on the port since it was opened

    def read_latency_ms(self) -> dict[str, float | None]:
        """p50, p99 and max of :attr:`read_latencies_s`, in milliseconds (None before any read)."""
        values = sorted(self.read_latencies_s)
        if not values:
            return {
                "read_latency_p50_ms": None,
                "read_latency_p99_ms": None,
                "read_latency_max_ms": None,
            }

        def at(q: float) -> float:
            return 1e3 * values[min(len(values) - 1, int(round(q * (len(values) - 1))))]

        return {
            "read_latency_p50_ms": at(0.5),
            "read_latency_p99_ms": at(0.99),
            "read_latency_max_ms": at(1.0),
        }

    # --- port --------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Take the port's lock, then open the port exclusively at the bus's baud rate.

        Raises a refusal (nothing is sent): :class:`SerialPortNotFoundError`,
        :class:`SerialPortPermissionError`, or :class:`PortInUseError` naming the process that
        holds the port."""
        if self._port is not None:
            return
        check_port_access(self.port, self.adapter)
        owner = PortLock(self.port).acquire()  # before the tty is touched: its holder is busy
        try:
            check_latency_timer(self.port)
            port = open_exclusive(self.port, self.baudrate, self.adapter)
        except BaseException:
            owner.release()
            raise
        self._port = port
        self._owner = owner
        self.link_failed = False
        self._last_instruction_s = None
        self._longest_silence_s = 0.0

    def close(self) -> None:
        """Close the port, then release its lock."""
        if self._port is not None:
            port, self._port = self._port, None
            owner, self._owner = self._owner, None
            try:
                port.closePort()
            finally:
                if owner is not None:
                    owner.release()

    def label(self, servo_id: int) -> str:
        name = self.servo_names.get(servo_id)
        return f"servo {servo_id} ({name})" if name else f"servo {servo_id}"

    def labels(self, servo_ids: Iterable[int]) -> str:
        """``servo 10 (FFR), servo 11 (FFM)``: :meth:`label` of each, comma-separated."""
        return ", ".join(self.label(i) for i in servo_ids)

    @property
    def none_answered_advice(self) -> str:
        """What to check when no servo on the bus answers at all."""
        return (
            f"check the servos' 12 V power supply and the cable from {self.adapter} to the "
            "first servo"
        )

    def _sdk_port(self) -> sdk.PortHandler:
        if self._port is None:
            raise DynamixelError(f"the bus on {self.port} is not open")
        # Our lock serialises transactions; a transaction cut short (e.g. by Ctrl-C) may have left
        # the SDK's busy flag set, which would refuse every later one.
        self._port.is_using = False
        # Every caller sends an instruction packet next: note the silence on the bus before it.
        now = time.monotonic()
        if self._last_instruction_s is not None:
            self._longest_silence_s = max(self._longest_silence_s, now - self._last_instruction_s)
        self._last_instruction_s = now
        return self._port

    def take_longest_silence_s(self) -> float:
        """The longest time (s) between two instruction packets sent since the last call, counting
        the silence up to now; resets the measure. A servo's Bus Watchdog sees these silences."""
        with self._lock:
            longest = self._longest_silence_s
            if self._last_instruction_s is not None:
                longest = max(longest, time.monotonic() - self._last_instruction_s)
            self._longest_silence_s = 0.0
            return longest

    @contextmanager
    def _link_errors(self) -> Iterator[None]:
        """Turn an I/O error of the serial port (OSError, which includes pyserial's SerialException,
        or termios.error) into a :class:`BusDisconnectedError` that names the port and what to
        check."""
        try:
            yield
        except (OSError, *_TERMIOS_ERRORS) as exc:
            self.stats["failures"] += 1
            self.link_failed = True
            args = exc.args
            if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
                detail = f"[Errno {args[0]}] {args[1]}"
            else:
                detail = str(exc) or type(exc).__name__
            raise BusDisconnectedError(
                f"the serial link on {self.port} failed ({detail}): check {self.adapter} is "
                "plugged in, the servos' 12 V power and their bus cable; for a virtual robot, that "
                "its process is still running",
                self.port,
            ) from exc

    # --- transactions ----------------------------------------------------------------------------
    def ping(self, servo_ids: Iterable[int]) -> dict[int, int]:
        """Ping each servo; return ID -> model number, or raise naming
        every servo that stayed silent."""
        models, silent = {}, []
        for servo_id in servo_ids:
            try:
                models[servo_id] = self._unicast(
                    "ping", servo_id, lambda p, i=servo_id: self._packets.ping(p, i)
                )
            except ServoCommunicationError:
                silent.append(servo_id)
        if silent and not models and len(silent) > 1:
            raise ServoCommunicationError(
                f"no servo answered a ping on {self.port} ({len(silent)} servos, "
                f"{self.retries + 1} {'attempt' if self.retries == 0 else 'attempts'} each): "
                f"{self.none_answered_advice}",
                silent,
            )
        if silent:
            raise ServoCommunicationError(
                f"{self.labels(silent)} did not answer a ping on {self.port} ({self.retries + 1} "
                "attempts each): check the cables, the 12 V supply and the servo IDs",
                silent,
            )
        return models

    def broadcast_ping(self) -> dict[int, tuple[int, int]]:
        """ID -> (model number, firmware version) of every servo answering a broadcast PING; it
        waits for the whole ID range (about 0.8 s at 1 Mbaud). Nothing is retried: a reply lost to
        noise is missing."""
        with self._lock, self._link_errors():
            answers, _result = self._packets.broadcastPing(self._sdk_port())
        self.stats["reads"] += 1
        return {servo_id: (model, fw) for servo_id, (model, fw) in answers.items()}

    def read(self, servo_id: int, register: ct.Register) -> int:
        """Read one register of one servo (a confirmed read with retries)."""
        data = self._unicast(
            f"read of {register.name}",
            servo_id,
            lambda p: self._packets.readTxRx(p, servo_id, register.address, register.size),
        )
        return register.decode(bytes(data))

    def write(
        self, servo_id: int, register: ct.Register, value: int, allow_alert: bool = False
    ) -> None:
        """Write one register of one servo and wait for its confirmation (with retries).

        ``allow_alert`` accepts a confirmation that carries the hardware-error alert bit (turning
        torque off on a servo that has shut down is still a success).
        """
        data = list(register.encode(value))
        self._unicast(
            f"write of {register.name}",
            servo_id,
            lambda p: (
                None,
                *self._packets.writeTxRx(p, servo_id, register.address, register.size, data),
            ),
            allow_alert=allow_alert,
        )

    def hardware_error_status(self, servo_id: int) -> int:
        return self.read(servo_id, ct.HARDWARE_ERROR_STATUS)

    def sync_write(self, register: ct.Register, values_by_id: Mapping[int, int]) -> None:
        """One sync write of a register to several servos (no reply: unconfirmed by protocol)."""
        with self._lock, self._link_errors():
            port = self._sdk_port()
            group = sdk.GroupSyncWrite(port, self._packets, register.address, register.size)
            for servo_id, value in values_by_id.items():
                if not group.addParam(servo_id, list(register.encode(int(value)))):
                    raise DynamixelError(
                        f"could not add {self.label(servo_id)} to a sync write of {register.name}"
                    )
            self.stats["writes"] += 1
            result = group.txPacket()
            if result != sdk.COMM_SUCCESS:
                self.stats["failures"] += 1
                raise DynamixelError(
                    f"sync write of {register.name} on {self.port} failed: "
                    f"{self._packets.getTxRxResult(result)}"
                )

    def sync_read(self, address: int, size: int, servo_ids: Sequence[int]) -> dict[int, bytes]:
        """One sync read of ``size`` bytes at ``address`` from several servos; ID -> raw bytes.

        The whole transaction is retried if any reply is missing or corrupt; the error names the
        servos whose replies were missing in the last attempt, or says that no servo answered.
        """
        servo_ids = list(servo_ids)
        ph = self._packets
        with self._lock, self._link_errors():
            self.stats["reads"] += 1
            failure = ""
            failed_id = servo_ids[0]
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats["retries"] += 1
                heard: set[int] = set()  # servos whose reply arrived in this attempt
                port = self._sdk_port()
                sent_at = time.perf_counter()
                result = ph.syncReadTx(port, address, size, servo_ids, len(servo_ids), False)
                if result != sdk.COMM_SUCCESS:
                    port.is_using = False
                    failure = f"could not send: {ph.getTxRxResult(result)}"
                    continue
                replies, errors = {}, {}
                for servo_id in servo_ids:
                    data, result, error = read_sync_reply(ph, port, servo_id, size, heard)
                    if result != sdk.COMM_SUCCESS:
                        failed_id, failure = servo_id, describe_result(ph, result)
                        break
                    if error & ~ALERT_BIT == StatusError.CRC:
                        failed_id, failure = (
                            servo_id,
                            "the servo reported a CRC error in our packet",
                        )
                        break
                    replies[servo_id], errors[servo_id] = bytes(data), error
                else:
                    self.read_latencies_s.append(time.perf_counter() - sent_at)
                    port.is_using = False
                    break
                port.is_using = False
            else:
                self.stats["failures"] += 1
                raise sync_read_failure(
                    f"a sync read of {size} bytes at address {address} on {self.port} after "
                    f"{self.retries + 1} attempts ({failure})",
                    failure,
                    servo_ids,
                    heard,
                    failed_id,
                    self.label,
                    self.none_answered_advice,
                )
        self._raise_for_errors(errors, f"sync read at address {address}")
        short = [i for i, data in replies.items() if len(data) != size]
        if short:
            raise DynamixelError(
                f"{self.labels(short)} returned fewer than {size} bytes to a sync read at "
                f"address {address}"
            )
        return replies

    def _unicast(
        self,
        what: str,
        servo_id: int,
        transaction,
        allow_alert: bool = False,
        check_errors: bool = True,
    ):
        """Run ``transaction(port) -> (value, result, error)`` with retries; return ``value``.

        Then raise for the status error byte, unless ``check_errors`` is False; ``allow_alert``
        accepts (and logs) a bare hardware-error alert.
        """
        with self._lock, self._link_errors():
            self.stats["reads" if what == "ping" or what.startswith("read") else "writes"] += 1
            failure = ""
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats["retries"] += 1
                port = self._sdk_port()
                value, result, error = transaction(port)
                port.is_using = False
                if result != sdk.COMM_SUCCESS:
                    failure = describe_result(self._packets, result)
                    continue
                if error & ~ALERT_BIT == StatusError.CRC:
                    failure = "the servo reported a CRC error in our packet"
                    continue
                break
            else:
                self.stats["failures"] += 1
                raise ServoCommunicationError(
                    f"{self.label(servo_id)} did not answer a {what} on {self.port} after "
                    f"{self.retries + 1} attempts ({failure}): check its cable and power",
                    [servo_id],
                )
        if check_errors:
            if allow_alert and error == ALERT_BIT:
                log.warning(
                    "%s reports a hardware error (accepted for this %s)", self.label(servo_id), what
                )
            else:
                self._raise_for_errors({servo_id: error}, what)
        return value

    def _raise_for_errors(self, errors: Mapping[int, int], what: str) -> None:
        """Raise for status error bytes: hardware alerts first (with
        their Hardware Error Status)."""
        alerts = [i for i, e in errors.items() if e & ALERT_BIT]
        if alerts:
            statuses = {}
            for servo_id in alerts:
                # This read's own reply carries the alert bit too; it is expected here.
                statuses[servo_id] = self._unicast(
                    "read of Hardware Error Status",
                    servo_id,
                    lambda p, i=servo_id: read_byte(
                        self._packets, p, i, ct.HARDWARE_ERROR_STATUS.address
                    ),
                    check_errors=False,
                )
            raise hardware_error(statuses, what, self.label)
        for servo_id, error in errors.items():
            number = error & ~ALERT_BIT
            if number:
                raise status_error(self._packets, servo_id, number, what, self.label)
