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
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import re
import select
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import dynamixel_sdk as sdk
import serial
from dynamixel_sdk.protocol2_packet_handler import PKT_ERROR, PKT_ID, PKT_PARAMETER0

try:  # pyserial's POSIX port raises termios.error (not an OSError) when the device goes away
    import termios

    _TERMIOS_ERRORS: tuple[type[BaseException], ...] = (termios.error,)
except ImportError:  # Windows
    _TERMIOS_ERRORS = ()

from robots.dynamixel import control_table as ct
from robots.dynamixel.port_lock import PortInUseError, PortLock
from robots.dynamixel.protocol import ALERT_BIT, StatusError
from slac_runtime.robot import RobotRefused

log = logging.getLogger(__name__)

USB_SERIAL_SYSFS = Path("/sys/bus/usb-serial/devices")
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


class _ExclusivePortHandler(sdk.PortHandler):
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
        if not os.path.exists(self.port):
            raise self._not_found()
        if not os.access(self.port, os.R_OK | os.W_OK):
            raise self._no_permission()
        owner = PortLock(self.port).acquire()  # before the tty is touched: its holder is busy
        try:
            check_latency_timer(self.port)
            port = _ExclusivePortHandler(self.port)
            try:
                opened = port.setBaudRate(self.baudrate)
            except Exception as exc:  # pyserial's SerialException and OSError
                if port.is_open:
                    port.closePort()
                raise self._open_error(exc) from exc
            if not opened:
                if port.is_open:
                    port.closePort()
                raise DynamixelError(
                    f"could not open serial port {self.port} at {self.baudrate} baud"
                )
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

    def _not_found(self) -> SerialPortNotFoundError:
        return SerialPortNotFoundError(
            f"serial port {self.port} not found: is {self.adapter} plugged in? ls /dev/ttyUSB*"
        )

    def _no_permission(self) -> SerialPortPermissionError:
        return SerialPortPermissionError(
            f"no permission to open serial port {self.port}: add yourself to the dialout group "
            f"(sudo usermod -aG dialout $USER, then log in again)"
        )

    def _open_error(self, exc: Exception) -> Exception:
        """The error to raise for a failed open of the tty."""
        code = getattr(exc, "errno", None)
        if code == errno.ENOENT:
            return self._not_found()
        if code in (errno.EACCES, errno.EPERM):
            return self._no_permission()
        if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
            real = os.path.realpath(self.port)
            return PortInUseError(
                f"serial port {self.port} is in use by another program (it holds the port "
                f"exclusively; see which with: fuser -v {real}): stop it first",
                self.port,
            )
        return DynamixelError(f"could not open serial port {self.port}: {exc}")

    def label(self, servo_id: int) -> str:
        name = self.servo_names.get(servo_id)
        return f"servo {servo_id} ({name})" if name else f"servo {servo_id}"

    def _labels(self, servo_ids: Iterable[int]) -> str:
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
                f"{self._labels(silent)} did not answer a ping on {self.port} ({self.retries + 1} "
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
                    data, result, error = self._read_sync_reply(port, servo_id, size, heard)
                    if result != sdk.COMM_SUCCESS:
                        failed_id, failure = servo_id, self._describe_result(result)
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
                raise self._sync_read_failure(address, size, servo_ids, heard, failed_id, failure)
        self._raise_for_errors(errors, f"sync read at address {address}")
        short = [i for i, data in replies.items() if len(data) != size]
        if short:
            raise DynamixelError(
                f"{self._labels(short)} returned fewer than {size} bytes to a sync read at "
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
                    failure = self._describe_result(result)
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

    def _read_sync_reply(
        self, port: sdk.PortHandler, servo_id: int, size: int, heard: set[int]
    ) -> tuple[list[int], int, int]:
        """The SDK's ``readRx`` for one servo's reply to a sync read -- (data, result, error) --
        also noting in ``heard`` every servo whose reply packet arrived meanwhile (readRx skips
        the packets of other servos while it waits for this one's)."""
        while True:
            packet, result = self._packets.rxPacket(port, False)
            if result != sdk.COMM_SUCCESS:
                return [], result, 0
            heard.add(packet[PKT_ID])
            if packet[PKT_ID] == servo_id:
                first = PKT_PARAMETER0 + 1
                return packet[first : first + size], result, packet[PKT_ERROR]

    def _sync_read_failure(
        self,
        address: int,
        size: int,
        servo_ids: Sequence[int],
        heard: set[int],
        failed_id: int,
        failure: str,
    ) -> ServoCommunicationError:
        """The error for a sync read whose last attempt failed: "no servo answered" when no reply
        arrived at all, else the servos whose replies were missing (a wait for a missing reply
        reads every later reply too) or the one whose reply was corrupt."""
        what = (
            f"a sync read of {size} bytes at address {address} on {self.port} after "
            f"{self.retries + 1} attempts ({failure})"
        )
        timed_out = failure == "no reply"
        if timed_out and not heard:
            return ServoCommunicationError(
                f"no servo answered {what}: {self.none_answered_advice}", servo_ids
            )
        missing = [i for i in servo_ids if i not in heard] if timed_out else [failed_id]
        return ServoCommunicationError(
            f"{self._labels(missing)} did not answer {what}: check "
            f"{'its' if len(missing) == 1 else 'their'} cable and power",
            missing,
        )

    def _describe_result(self, result: int) -> str:
        if result == sdk.COMM_RX_TIMEOUT:
            return "no reply"
        if result == sdk.COMM_RX_CORRUPT:
            return "corrupt reply"
        return self._packets.getTxRxResult(result).replace("[TxRxResult] ", "")

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
                    lambda p, i=servo_id: self._read_byte(p, i, ct.HARDWARE_ERROR_STATUS.address),
                    check_errors=False,
                )
            details = "; ".join(
                f"{self.label(i)}: {ct.describe_hardware_error(s)} (Hardware Error "
                f"Status 0x{s:02X})"
                for i, s in statuses.items()
            )
            raise ServoHardwareError(
                f"hardware error reported during a {what}: {details}. The servo has turned its "
                "torque off; remove the cause (load, heat, supply voltage), then power-cycle or "
                "reboot the servo",
                statuses,
            )
        for servo_id, error in errors.items():
            number = error & ~ALERT_BIT
            if number:
                reason = self._packets.getRxPacketError(number).replace("[RxPacketError] ", "")
                raise ServoStatusError(
                    f"{self.label(servo_id)} refused a {what}: {reason} (error {number})",
                    servo_id,
                    number,
                )

    def _read_byte(self, port, servo_id: int, address: int):
        data, result, error = self._packets.readTxRx(port, servo_id, address, 1)
        return (data[0] if result == sdk.COMM_SUCCESS and data else 0), result, error
