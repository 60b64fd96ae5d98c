"""A Dynamixel Protocol 2.0 servo bus, emulated on a pseudo-terminal.

Clients -- ROBOTIS's unmodified ``dynamixel_sdk``, our drivers -- open the emulator's port by path
exactly like a USB serial adapter::

    from robots.dynamixel.emulator import KinematicBackend, Mounting, ServoBusEmulator

    ids = [10, 11, 12]
    backend = KinematicBackend({i: 0.0 for i in ids})           # joint angles, rad
    with ServoBusEmulator(ids, backend, link_path="/tmp/bus/ttyDCLAW",
                          mountings={i: Mounting(offset_ticks=2048, sign=1) for i in ids}) as bus:
        ...  # open "/tmp/bus/ttyDCLAW" (== bus.port_path) with the SDK at any baud rate

Each servo has an X-series control table (:mod:`robots.dynamixel.control_table`): EEPROM locked
while torque is on, read-only registers, range checks, Status Return Level. The emulator answers
PING (also broadcast: every servo, in ID order), READ, WRITE, SYNC_READ and BULK_READ (replies in
the order the IDs were asked), SYNC_WRITE and BULK_WRITE (no reply) and REBOOT (clears a hardware
error). A unicast instruction with a bad CRC is answered with a CRC error status; a broadcast one is
ignored. The baud rate and Return Delay Time are ignored: replies leave as soon as they are built.

Physics is pluggable (:class:`~robots.dynamixel.physics.ServoBackend`, in joint units). Each servo's
:class:`Mounting` maps the backend's joint angle to the ticks the servo reports::

    ticks = offset_ticks + sign · angle · 4096/2π          (velocity and current take the sign too)

so a mounting that differs from a robot's nominal calibration is a *planted calibration offset*.
Goal Position is mapped back the same way before it reaches the backend.

Fault injection (thread-safe, any time): :meth:`~ServoBusEmulator.drop_replies`,
:meth:`~ServoBusEmulator.corrupt_replies` (by count, optionally for one servo),
:meth:`~ServoBusEmulator.set_reply_faults` (by probability, seeded),
:meth:`~ServoBusEmulator.set_silent` (a servo that never answers nor acts),
:meth:`~ServoBusEmulator.set_hardware_error` (sets Hardware Error Status, turns torque off, raises
the alert bit in the servo's status packets) and :meth:`~ServoBusEmulator.set_mounting`.
:attr:`~ServoBusEmulator.counters` counts what was handled.

Like a real servo, the emulator does not move Goal Position when torque is switched on: a client
that enables torque without first writing the goal sees the joint jump to the stale goal.

The X-series Bus Watchdog (98, units of 20 ms) is emulated: while a servo's torque is on and its
window is 1..127, an interval between instruction packets (any instruction on the bus) longer than
the window stops the servo -- Goal Position becomes Present Position, torque stays on -- and Bus
Watchdog reads -1 (0xFF); Goal PWM/Current/Velocity/Position then refuse writes with a Data Range
error (a sync or bulk write of them is ignored) until 0 is written to Bus Watchdog. The serving
loop checks the windows on a timer, so a servo stops even when nothing arrives.

:meth:`~ServoBusEmulator.reply_latency` reports how long replies took, from a request packet fully
received to its reply handed to the port (p50/p99/max and a count); a reply is counted before it
leaves, so a client holding a reply finds it counted.
:meth:`~ServoBusEmulator.take_longest_silence_s` reports the longest interval between instruction
packets while a Bus Watchdog watched: the silences the watchdog judges, as the servos saw them.

:class:`ServoBusEmulator` serves from a thread of the caller's process; :class:`ServoBusProcess`
runs one in its own real-time-scheduled process, exchanging joint readings and goals with the
caller's physics through shared memory (:class:`~robots.dynamixel.physics.SharedJointState`).
"""

from __future__ import annotations

import collections
import errno
import logging
import math
import os
import pickle
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from robots.dynamixel import control_table as ct
from robots.dynamixel.physics import (
    JointReading,
    KinematicBackend,
    ServoBackend,
    SharedJointState,
    SharedMemoryBackend,
)
from robots.dynamixel.protocol import (
    ALERT_BIT,
    BROADCAST_ID,
    CrcError,
    Instruction,
    Packet,
    PacketError,
    PacketStream,
    StatusError,
    build_status,
)

__all__ = [
    "JointReading",
    "KinematicBackend",
    "Mounting",
    "ServoBackend",
    "ServoBusEmulator",
    "ServoBusProcess",
    "SharedJointState",
    "mountings_from_calibration",
    "request_realtime_scheduling",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = 1020  # XM430-W350
_WRITE_INSTRUCTIONS = {
    Instruction.WRITE,
    Instruction.SYNC_WRITE,
    Instruction.BULK_WRITE,
    Instruction.REBOOT,
}
_READ_INSTRUCTIONS = {Instruction.READ, Instruction.SYNC_READ, Instruction.BULK_READ}
_VALID_OPERATING_MODES = set(ct.OPERATING_MODES)
BUS_WATCHDOG_UNIT_S = 0.020  # one unit of Bus Watchdog (98)
BUS_WATCHDOG_ERROR = 0xFF  # Bus Watchdog reads -1 once it has fired
# Read-only while the Bus Watchdog has fired: a write to them is answered with a Data Range error.
_GOAL_REGISTERS = (ct.GOAL_PWM, ct.GOAL_CURRENT, ct.GOAL_VELOCITY, ct.GOAL_POSITION)
LATENCY_SAMPLES = (
    100_000  # reply latencies kept for the percentiles (the count and max are all-time)
)


@dataclass(frozen=True)
class Mounting:
    """How a servo's ticks relate to its joint's angle:
    angle = sign · (ticks − offset_ticks) · 2π/4096."""

    offset_ticks: float = 2048
    sign: int = 1

    def __post_init__(self) -> None:
        if self.sign not in (1, -1):
            raise ValueError(f"mounting sign must be 1 or -1, got {self.sign!r}")


def mountings_from_calibration(calibration) -> dict[int, Mounting]:
    """Mountings that a :class:`~robots.dynamixel.calibration.JointCalibration`
    describes exactly."""
    return {j.motor_id: Mounting(j.offset_ticks, j.sign) for j in calibration.joints}


class _Servo:
    """One emulated servo: its control table and fault flags."""

    def __init__(self, servo_id: int, model_number: int, mounting: Mounting):
        self.table = bytearray(ct.TABLE_SIZE)
        for register in ct.REGISTERS:
            self.table[register.address : register.end] = register.encode(register.default)
        self.set(ct.MODEL_NUMBER, model_number)
        self.set(ct.ID, servo_id)
        model = ct.MODELS.get(model_number)
        self.current_ma_per_unit = model.current_ma_per_unit if model else 2.69
        if model:
            self.set(ct.CURRENT_LIMIT, model.current_limit)
        self.mounting = mounting
        self.silent = False

    def get(self, register: ct.Register) -> int:
        return register.decode(self.table[register.address : register.end])

    def set(self, register: ct.Register, value: int) -> None:
        self.table[register.address : register.end] = register.encode(value)

    @property
    def torque_on(self) -> bool:
        return bool(self.table[ct.TORQUE_ENABLE.address])

    @property
    def hardware_error(self) -> int:
        return self.table[ct.HARDWARE_ERROR_STATUS.address]

    @property
    def bus_watchdog_fired(self) -> bool:
        return self.table[ct.BUS_WATCHDOG.address] == BUS_WATCHDOG_ERROR

    @property
    def bus_watchdog_window_s(self) -> float | None:
        """The Bus Watchdog's window while it watches (torque on, 1..127 set), else None."""
        units = self.table[ct.BUS_WATCHDOG.address]
        if self.silent or not self.torque_on or not 1 <= units <= 127:
            return None
        return units * BUS_WATCHDOG_UNIT_S

    def status(self, error: int = 0, data: bytes = b"", servo_id: int | None = None) -> bytes:
        if self.hardware_error:
            error |= ALERT_BIT
        return build_status(self.get(ct.ID) if servo_id is None else servo_id, error, data)

    def read(self, address: int, length: int) -> tuple[int, bytes]:
        if length < 1 or address + length > ct.TABLE_SIZE:
            return StatusError.ACCESS, b""
        return StatusError.NONE, bytes(self.table[address : address + length])

    def check_write(self, address: int, data: bytes) -> int:
        """The error number this write would get (0: accepted), without applying it."""
        end = address + len(data)
        if not data or end > ct.TABLE_SIZE:
            return StatusError.ACCESS
        for register in ct.REGISTERS:
            if register.end <= address or register.address >= end:
                continue
            if not register.writable or (register.eeprom and self.torque_on):
                return StatusError.ACCESS
            if register.address < address or register.end > end:
                return StatusError.DATA_LENGTH  # only part of a multi-byte register
            value = register.decode(data[register.address - address : register.end - address])
            low = register.minimum if register.minimum is not None else -math.inf
            high = register.maximum if register.maximum is not None else math.inf
            if not low <= value <= high:
                return StatusError.DATA_RANGE
            if register is ct.OPERATING_MODE and value not in _VALID_OPERATING_MODES:
                return StatusError.DATA_RANGE
            if register is ct.TORQUE_ENABLE and value and self.hardware_error:
                return StatusError.RESULT_FAIL
            if register in _GOAL_REGISTERS and self.bus_watchdog_fired:
                return StatusError.DATA_RANGE
            if (
                register is ct.GOAL_POSITION
                and self.get(ct.OPERATING_MODE) == ct.OPERATING_MODE_POSITION
            ):
                if not self.get(ct.MIN_POSITION_LIMIT) <= value <= self.get(ct.MAX_POSITION_LIMIT):
                    return StatusError.DATA_LIMIT
        return StatusError.NONE

    def replies_to(self, instruction: int) -> bool:
        level = self.get(ct.STATUS_RETURN_LEVEL)
        if instruction == Instruction.PING:
            return True
        if instruction in _READ_INSTRUCTIONS:
            return level >= 1
        return level >= 2


class ServoBusEmulator:
    """Emulated X-series servos on a pseudo-terminal, served from a background thread.

    Args:
        servo_ids: the IDs on the bus (0..252).
        backend: the physics (joint units); default: a :class:`KinematicBackend` with every joint
            at 0.
        model_number: the model of every servo, or a mapping ID -> model (default XM430-W350).
        mountings: ID -> :class:`Mounting` (default offset 2048, sign +1 for every servo).
        link_path: if given, a symlink to the pty, made by :meth:`start` once the bus answers and
            removed by :meth:`stop`; clients open this path.
        seed: seeds the random reply faults.
        clock: the emulator's clock (s, monotonic): when packets arrive, so the Bus Watchdog's
            windows and the reply latency, and the Realtime Tick register. Tests inject a fake clock
            to time the Bus Watchdog exactly; waits on the port stay on the real clock.

    The serving thread shares its process (and the GIL) with whoever started it: fine for tests
    with a :class:`KinematicBackend`. A bus that must answer within a servo's time however busy its
    host is runs in its own process: :class:`ServoBusProcess`.
    """

    def __init__(
        self,
        servo_ids: Iterable[int],
        backend: ServoBackend | None = None,
        *,
        model_number: int | Mapping[int, int] = DEFAULT_MODEL,
        mountings: Mapping[int, Mounting] | None = None,
        link_path: str | os.PathLike | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        ids = sorted(int(i) for i in servo_ids)
        if not ids:
            raise ValueError("the emulated bus needs at least one servo ID")
        if len(set(ids)) != len(ids) or not all(0 <= i <= 252 for i in ids):
            raise ValueError(f"servo IDs must be distinct integers in 0..252, got {ids}")
        mountings = dict(mountings or {})
        unknown = sorted(set(mountings) - set(ids))
        if unknown:
            raise ValueError(f"mountings given for IDs {unknown} that are not on the bus {ids}")
        models = (
            model_number if isinstance(model_number, Mapping) else dict.fromkeys(ids, model_number)
        )
        self._servos = {
            i: _Servo(i, int(models.get(i, DEFAULT_MODEL)), mountings.get(i, Mounting()))
            for i in ids
        }
        self.backend = backend if backend is not None else KinematicBackend(dict.fromkeys(ids, 0.0))
        self.link_path = Path(link_path) if link_path is not None else None
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._stream = PacketStream()
        self._clock = clock
        self._start_time = clock()
        self._counters: collections.Counter[str] = collections.Counter()
        self._pending_drops: collections.Counter = (
            collections.Counter()
        )  # ID or None (any) -> count
        self._pending_corruptions: collections.Counter = collections.Counter()
        self._drop_probability = 0.0
        self._corrupt_probability = 0.0
        self._master_fd: int | None = None
        self._slave_fd: int | None = None
        self._slave_name: str | None = None
        self._stop_r: int | None = None
        self._stop_w: int | None = None
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()
        self._made_link = False
        self._last_instruction_s = clock()  # when the last instruction packet arrived
        self._longest_silence_s = 0.0  # while a Bus Watchdog watched, since take_longest_silence_s
        self._latency_s: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)
        self._latency_count = 0
        self._latency_max_s = 0.0
        self.error: BaseException | None = None  # what stopped the serving thread, if anything

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def port_path(self) -> str:
        """The path clients open: ``link_path`` if given, else the pty's /dev/pts/N."""
        if self._slave_name is None:
            raise RuntimeError("the emulator is not started")
        return str(self.link_path) if self.link_path is not None else self._slave_name

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ServoBusEmulator:
        if self._thread is not None:
            raise RuntimeError("the emulator is already started")
        with self._lock:
            self._initialise_goals()
        master, slave = os.openpty()
        try:
            tty.setraw(slave, termios.TCSANOW)  # no echo, no CR/LF translation, 8 bits through
            os.set_blocking(master, False)
            self._slave_name = os.ttyname(slave)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        # We keep the slave open ourselves so the master never sees a hang-up between clients.
        self._master_fd, self._slave_fd = master, slave
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(
            target=self._serve, name=f"dynamixel-emulator:{self._slave_name}", daemon=True
        )
        self._thread.start()
        try:
            if not self._serving.wait(timeout=5.0):
                raise RuntimeError("the emulator thread did not start serving within 5 s")
            if self.link_path is not None:
                self._make_link(self._slave_name)  # only now: a client that opens it is answered
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, close the pty, remove the link; re-raise what
        broke the thread, if anything."""
        if self._thread is None:
            return
        os.write(self._stop_w, _STOP)
        self._thread.join(timeout=5.0)
        if self._thread.is_alive():
            raise RuntimeError("the emulator thread did not stop within 5 s")
        self._thread = None
        for fd in (self._master_fd, self._slave_fd, self._stop_r, self._stop_w):
            if fd is not None:
                os.close(fd)
        self._master_fd = self._slave_fd = self._stop_r = self._stop_w = None
        if self._made_link and self.link_path is not None and self.link_path.is_symlink():
            self.link_path.unlink()
        self._made_link = False
        self._serving.clear()
        if self.error is not None:
            raise RuntimeError("the Dynamixel emulator thread failed") from self.error

    def __enter__(self) -> ServoBusEmulator:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def _make_link(self, target: str) -> None:
        link = self.link_path
        assert link is not None
        if link.is_symlink() and not link.exists():
            link.unlink()  # a dangling link left by an emulator that died
        if link.exists() or link.is_symlink():
            raise FileExistsError(
                f"{link} already exists: stop the emulator that owns it, or choose "
                "another link_path"
            )
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        self._made_link = True

    # --- serving thread -------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            self._serving.set()
            while True:
                readable, _, _ = select.select(
                    [self._master_fd, self._stop_r], [], [], self._wait_timeout()
                )
                if self._stop_r in readable and _STOP in os.read(self._stop_r, 64):
                    return
                data = b""
                if self._master_fd in readable:
                    try:
                        data = os.read(self._master_fd, 4096)
                    except BlockingIOError:
                        continue
                received_s = self._clock()
                with self._lock:
                    self._check_bus_watchdogs(received_s)  # before this packet resets the timer
                    self._counters["rx_bytes"] += len(data)
                    events = self._stream.feed(data) if data else self._stream.poll()
                    replies = b"".join(self._handle_event(event, received_s) for event in events)
                if replies:
                    # Recorded before the reply leaves: a client that has its reply may ask for
                    # the count at once, and must find this reply in it.
                    self._record_latency(self._clock() - received_s)
                    self._send(replies)
        except BaseException as exc:  # recorded, logged and re-raised by stop()
            self.error = exc
            log.exception("Dynamixel emulator on %s stopped", self._slave_name)

    def _wait_timeout(self) -> float | None:
        """How long the serving loop may sleep: until a partial packet expires or a Bus Watchdog
        fires, whichever is first (None: until a byte arrives)."""
        with self._lock:
            timeouts = [0.02] if self._stream.pending else []
            windows = [w for s in self._servos.values() if (w := s.bus_watchdog_window_s)]
            if windows:
                deadline_s = self._last_instruction_s + min(windows)
                timeouts.append(max(0.0, deadline_s - self._clock()) + 1e-4)
        return min(timeouts) if timeouts else None

    def _wake(self) -> None:
        """Make the serving loop recompute its timeout (a register was set from outside)."""
        if self._stop_w is not None:
            os.write(self._stop_w, b"w")

    def _record_latency(self, latency_s: float) -> None:
        with self._lock:
            self._latency_s.append(latency_s)
            self._latency_count += 1
            self._latency_max_s = max(self._latency_max_s, latency_s)

    def _check_bus_watchdogs(self, now_s: float) -> None:
        """Stop every servo whose Bus Watchdog window passed without an instruction packet: its goal
        becomes its present position (it holds there, torque on) and Bus Watchdog reads -1."""
        windows = [(s, w) for s in self._servos.values() if (w := s.bus_watchdog_window_s)]
        if not windows:
            return
        silence_s = now_s - self._last_instruction_s
        self._longest_silence_s = max(self._longest_silence_s, silence_s)
        fired = [servo for servo, window_s in windows if silence_s > window_s]
        if not fired:
            return
        self._refresh_present()
        for servo in fired:
            servo.set(ct.GOAL_POSITION, servo.get(ct.PRESENT_POSITION))
            servo.table[ct.BUS_WATCHDOG.address] = BUS_WATCHDOG_ERROR
            self._counters["bus_watchdog_errors"] += 1
        self._apply_goals()
        log.warning(
            "Bus Watchdog error on servos %s: no instruction for %.0f ms; they hold where they are",
            [s.get(ct.ID) for s in fired],
            1000 * silence_s,
        )

    def _send(self, data: bytes) -> None:
        # Count before writing: a client may act on the reply before this thread runs again.
        with self._lock:
            self._counters["tx_bytes"] += len(data)
        view = memoryview(data)
        deadline = time.monotonic() + 0.2
        while view:
            try:
                written = os.write(self._master_fd, view)
                view = view[written:]
            except BlockingIOError:
                # Nobody is reading the port and its buffer is full: wait a little, then give up.
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([], [self._master_fd], [], remaining)[1]:
                    with self._lock:
                        self._counters["tx_overflow_bytes"] += len(view)
                        self._counters["tx_bytes"] -= len(view)
                    return
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                raise

    # --- packet handling (called with the lock held) ----------------------------------------------
    def _handle_event(self, event: Packet | PacketError, received_s: float) -> bytes:
        if isinstance(event, CrcError):
            self._counters["rx_crc_errors"] += 1
            servo = self._servos.get(event.servo_id)
            if servo is None or servo.silent:
                return b""
            return self._reply(servo, [servo.status(StatusError.CRC)], event.instruction)
        if isinstance(event, PacketError):
            self._counters["rx_malformed"] += 1
            return b""
        self._counters["rx_packets"] += 1
        packet = event
        if packet.is_status:
            self._counters["rx_status_ignored"] += 1  # another device's reply, not for us
            return b""
        self._last_instruction_s = received_s  # any instruction packet feeds the Bus Watchdogs
        try:
            name = Instruction(packet.instruction).name.lower()
        except ValueError:
            name = "unknown"
        self._counters[f"rx_{name}"] += 1
        if packet.servo_id != BROADCAST_ID and packet.servo_id not in self._servos:
            return b""
        if packet.instruction in _READ_INSTRUCTIONS:
            self._refresh_present()
        handler = {
            Instruction.PING: self._ping,
            Instruction.READ: self._read,
            Instruction.WRITE: self._write,
            Instruction.SYNC_READ: self._sync_read,
            Instruction.SYNC_WRITE: self._sync_write,
            Instruction.BULK_READ: self._bulk_read,
            Instruction.BULK_WRITE: self._bulk_write,
            Instruction.REBOOT: self._reboot,
        }.get(packet.instruction, self._unsupported)
        replies = handler(packet)
        if packet.instruction in _WRITE_INSTRUCTIONS:
            self._apply_goals()
        return b"".join(replies)

    def _targets(self, packet: Packet) -> list[_Servo]:
        if packet.servo_id == BROADCAST_ID:
            return [s for _, s in sorted(self._servos.items()) if not s.silent]
        servo = self._servos[packet.servo_id]
        return [] if servo.silent else [servo]

    def _reply(
        self, servo: _Servo, statuses: list[bytes], instruction: int, answers: bool | None = None
    ) -> bytes:
        """Pass a servo's status packets through Status Return Level and the injected reply faults.

        ``answers`` overrides the Status Return Level check (a write to that register is answered
        according to the level it found).
        """
        if not (servo.replies_to(instruction) if answers is None else answers):
            return b""
        out = []
        servo_id = servo.get(ct.ID)
        for status in statuses:
            if (
                self._take(self._pending_drops, servo_id)
                or self._rng.random() < self._drop_probability
            ):
                self._counters["dropped_replies"] += 1
                continue
            if (
                self._take(self._pending_corruptions, servo_id)
                or self._rng.random() < self._corrupt_probability
            ):
                self._counters["corrupted_replies"] += 1
                status = status[:-1] + bytes([status[-1] ^ 0xFF])
            self._counters["replies"] += 1
            out.append(status)
        return b"".join(out)

    @staticmethod
    def _take(pending: collections.Counter, servo_id: int) -> bool:
        for key in (servo_id, None):
            if pending[key] > 0:
                pending[key] -= 1
                return True
        return False

    def _ping(self, packet: Packet) -> list[bytes]:
        replies = []
        for servo in self._targets(packet):
            data = ct.MODEL_NUMBER.encode(servo.get(ct.MODEL_NUMBER)) + bytes(
                [servo.get(ct.FIRMWARE_VERSION)]
            )
            replies.append(self._reply(servo, [servo.status(0, data)], packet.instruction))
        return replies

    def _read(self, packet: Packet) -> list[bytes]:
        if packet.servo_id == BROADCAST_ID:
            return []
        servo_list = self._targets(packet)
        if not servo_list:
            return []
        servo = servo_list[0]
        if len(packet.params) != 4:
            return [self._reply(servo, [servo.status(StatusError.DATA_LENGTH)], packet.instruction)]
        address, length = struct.unpack("<HH", packet.params)
        error, data = servo.read(address, length)
        return [self._reply(servo, [servo.status(error, data)], packet.instruction)]

    def _write(self, packet: Packet) -> list[bytes]:
        replies = []
        for servo in self._targets(packet):
            answers = servo.replies_to(packet.instruction)
            if len(packet.params) < 3:
                error = StatusError.DATA_LENGTH
            else:
                address = struct.unpack_from("<H", packet.params)[0]
                error = self._write_table(servo, address, packet.params[2:])
            if packet.servo_id != BROADCAST_ID:
                replies.append(
                    self._reply(servo, [servo.status(error)], packet.instruction, answers)
                )
        return replies

    def _write_table(self, servo: _Servo, address: int, data: bytes) -> int:
        error = servo.check_write(address, data)
        if error:
            self._counters["rejected_writes"] += 1
            return error
        old_id = servo.get(ct.ID)
        servo.table[address : address + len(data)] = data
        new_id = servo.get(ct.ID)
        if new_id != old_id:
            if new_id in self._servos:
                servo.set(ct.ID, old_id)
                return StatusError.DATA_RANGE
            self._servos[new_id] = self._servos.pop(old_id)
        return StatusError.NONE

    def _sync_read(self, packet: Packet) -> list[bytes]:
        if packet.servo_id != BROADCAST_ID or len(packet.params) < 5:
            return []
        address, length = struct.unpack_from("<HH", packet.params)
        return self._read_replies(
            packet, [(servo_id, address, length) for servo_id in packet.params[4:]]
        )

    def _read_replies(self, packet: Packet, requests: list[tuple[int, int, int]]) -> list[bytes]:
        """One status reply per (servo ID, address, length), in the
        order asked; silent servos skip."""
        replies = []
        for servo_id, address, length in requests:
            servo = self._servos.get(servo_id)
            if servo is None or servo.silent:
                continue
            error, data = servo.read(address, length)
            replies.append(self._reply(servo, [servo.status(error, data)], packet.instruction))
        return replies

    def _sync_write(self, packet: Packet) -> list[bytes]:
        if packet.servo_id != BROADCAST_ID or len(packet.params) < 4:
            return []
        address, length = struct.unpack_from("<HH", packet.params)
        body = packet.params[4:]
        if length < 1 or len(body) % (length + 1):
            self._counters["rx_malformed"] += 1
            return []
        for i in range(0, len(body), length + 1):
            servo = self._servos.get(body[i])
            if servo is not None and not servo.silent:
                self._write_table(servo, address, body[i + 1 : i + 1 + length])
        return []

    def _bulk_read(self, packet: Packet) -> list[bytes]:
        if packet.servo_id != BROADCAST_ID or not packet.params or len(packet.params) % 5:
            return []
        requests = [
            struct.unpack_from("<BHH", packet.params, i) for i in range(0, len(packet.params), 5)
        ]
        return self._read_replies(packet, requests)

    def _bulk_write(self, packet: Packet) -> list[bytes]:
        if packet.servo_id != BROADCAST_ID:
            return []
        params, i = packet.params, 0
        writes = []
        while i + 5 <= len(params):
            servo_id, address, length = struct.unpack_from("<BHH", params, i)
            data = params[i + 5 : i + 5 + length]
            if len(data) != length:
                break
            writes.append((servo_id, address, data))
            i += 5 + length
        if i != len(params):
            self._counters["rx_malformed"] += 1
            return []
        for servo_id, address, data in writes:
            servo = self._servos.get(servo_id)
            if servo is not None and not servo.silent:
                self._write_table(servo, address, data)
        return []

    def _reboot(self, packet: Packet) -> list[bytes]:
        replies = []
        for servo in self._targets(packet):
            servo.set(ct.HARDWARE_ERROR_STATUS, 0)
            servo.set(ct.TORQUE_ENABLE, 0)
            if packet.servo_id != BROADCAST_ID:
                replies.append(self._reply(servo, [servo.status(0)], packet.instruction))
        return replies

    def _unsupported(self, packet: Packet) -> list[bytes]:
        self._counters["rx_unsupported"] += 1
        if packet.servo_id == BROADCAST_ID:
            return []
        return [
            self._reply(s, [s.status(StatusError.INSTRUCTION)], packet.instruction)
            for s in self._targets(packet)
        ]

    # --- physics exchange ------------------------------------------------------------------------
    def _initialise_goals(self) -> None:
        """At power-up a servo's Goal Position equals its Present Position."""
        self._refresh_present()
        for servo in self._servos.values():
            servo.set(ct.GOAL_POSITION, servo.get(ct.PRESENT_POSITION))
        self._apply_goals()

    def _joint_goals(self) -> dict[int, float]:
        goals = {}
        for servo_id, servo in self._servos.items():
            m = servo.mounting
            goals[servo_id] = float(
                ct.ticks_to_rad(servo.get(ct.GOAL_POSITION), m.offset_ticks, m.sign)
            )
        return goals

    def _apply_goals(self) -> None:
        torque = {servo_id: servo.torque_on for servo_id, servo in self._servos.items()}
        self.backend.apply(self._joint_goals(), torque)

    def _refresh_present(self) -> None:
        readings = self.backend.read()
        missing = sorted(set(self._servos) - set(readings))
        if missing:
            raise RuntimeError(f"the servo backend gave no reading for servo IDs {missing}")
        tick_ms = int((self._clock() - self._start_time) * 1000) % 32768
        for servo_id, servo in self._servos.items():
            reading = readings[servo_id]
            m = servo.mounting
            position = int(ct.rad_to_ticks(reading.position_rad, m.offset_ticks, m.sign))
            velocity = int(ct.rad_s_to_velocity_units(reading.velocity_rad_s, m.sign))
            current = int(
                ct.amps_to_current_units(reading.current_a, servo.current_ma_per_unit, m.sign)
            )
            servo.set(ct.PRESENT_POSITION, _clamp_signed(position, 4))
            servo.set(ct.PRESENT_VELOCITY, _clamp_signed(velocity, 4))
            servo.set(ct.PRESENT_CURRENT, _clamp_signed(current, 2))
            servo.set(ct.REALTIME_TICK, tick_ms)
            servo.set(ct.MOVING, int(abs(velocity) > servo.get(ct.MOVING_THRESHOLD)))

    # --- inspection (thread-safe) -----------------------------------------------------------------
    @property
    def servo_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._servos)

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot: rx_bytes, rx_packets, rx_<instruction>, rx_crc_errors, rx_malformed, replies,
        dropped_replies, corrupted_replies, rejected_writes, tx_bytes, ..."""
        with self._lock:
            return dict(self._counters)

    def register(self, servo_id: int, register: ct.Register | str) -> int:
        """The value of a register of one servo (present values are refreshed first)."""
        register = ct.REGISTERS_BY_NAME[register] if isinstance(register, str) else register
        with self._lock:
            if register.address >= ct.REALTIME_TICK.address:
                self._refresh_present()
            return self._servo(servo_id).get(register)

    def set_register(self, servo_id: int, register: ct.Register | str, value: int) -> None:
        """Set a register directly, bypassing the access and range checks (test setup)."""
        register = ct.REGISTERS_BY_NAME[register] if isinstance(register, str) else register
        with self._lock:
            self._servo(servo_id).set(register, value)
            if register is ct.BUS_WATCHDOG or register is ct.TORQUE_ENABLE:
                self._last_instruction_s = self._clock()  # the window starts now
            self._apply_goals()
        self._wake()

    def goals_to_present(self) -> None:
        """Set every Goal Position to the Present Position (as at power-up), e.g. after the
        backend's joints were moved by hand, so that the servos hold where they are instead of going
        back."""
        with self._lock:
            self._initialise_goals()

    def goals_to(self, joint_goals_rad: Mapping[int, float]) -> None:
        """Set these servos' Goal Position to a joint angle each (rad, through the mounting), e.g.
        after the backend's joints were put there by hand, so that the servos hold exactly there.
        Servos not named keep their goals."""
        unknown = sorted(set(joint_goals_rad) - set(self._servos))
        if unknown:
            raise ValueError(f"no servo with ID {unknown} on this bus")
        with self._lock:
            self._refresh_present()
            for servo_id, goal in joint_goals_rad.items():
                servo = self._servos[servo_id]
                m = servo.mounting
                ticks = int(ct.rad_to_ticks(goal, m.offset_ticks, m.sign))
                servo.set(ct.GOAL_POSITION, _clamp_signed(ticks, 4))
            self._apply_goals()

    def joint_goals(self) -> dict[int, float]:
        """Each servo's Goal Position as the backend sees it: a joint angle
        (rad), through the mounting."""
        with self._lock:
            return self._joint_goals()

    def joint_readings(self) -> dict[int, JointReading]:
        """The backend's present readings (joint units), taken under the emulator's lock."""
        with self._lock:
            return dict(self.backend.read())

    def torque_enabled(self, servo_id: int) -> bool:
        with self._lock:
            return self._servo(servo_id).torque_on

    def take_longest_silence_s(self) -> float:
        """The longest interval (s) between two instruction packets arriving while a servo's Bus
        Watchdog watched (torque on, window set), since the last call, the silence up to now
        included; resets the measure. This is the silence the Bus Watchdogs judge: stamped when
        the serving loop reads a packet, so a late serving loop counts too."""
        with self._lock:
            longest = self._longest_silence_s
            if any(s.bus_watchdog_window_s for s in self._servos.values()):
                longest = max(longest, self._clock() - self._last_instruction_s)
            self._longest_silence_s = 0.0
            return longest

    def reply_latency(self) -> dict[str, float | int | None]:
        """How long the bus took to answer: from a request packet fully received to its reply
        handed to the port (counted before it is written). ``count`` and ``max_ms`` cover every
        reply; the percentiles the last :data:`LATENCY_SAMPLES` (None before the first reply)."""
        with self._lock:
            samples = sorted(self._latency_s)
            count, max_s = self._latency_count, self._latency_max_s

        def percentile_ms(q: float) -> float | None:
            if not samples:
                return None
            return 1000.0 * samples[min(len(samples) - 1, int(round(q / 100 * (len(samples) - 1))))]

        return {
            "count": count,
            "p50_ms": percentile_ms(50),
            "p99_ms": percentile_ms(99),
            "max_ms": 1000.0 * max_s if count else None,
        }

    def _servo(self, servo_id: int) -> _Servo:
        try:
            return self._servos[servo_id]
        except KeyError:
            raise KeyError(
                f"no servo with ID {servo_id} on the emulated bus {sorted(self._servos)}"
            ) from None

    # --- fault injection (thread-safe) ------------------------------------------------------------
    def drop_replies(self, count: int, servo_id: int | None = None) -> None:
        """Swallow the next ``count`` status packets (of ``servo_id``, or of any servo)."""
        with self._lock:
            self._pending_drops[servo_id] += int(count)

    def corrupt_replies(self, count: int, servo_id: int | None = None) -> None:
        """Send the next ``count`` status packets (of ``servo_id``, or of
        any servo) with a wrong CRC."""
        with self._lock:
            self._pending_corruptions[servo_id] += int(count)

    def set_reply_faults(
        self, drop_probability: float = 0.0, corrupt_probability: float = 0.0
    ) -> None:
        """Drop / corrupt every status packet with these probabilities (seeded by ``seed``)."""
        for p in (drop_probability, corrupt_probability):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"probability {p} outside [0, 1]")
        with self._lock:
            self._drop_probability = float(drop_probability)
            self._corrupt_probability = float(corrupt_probability)

    def clear_faults(self) -> None:
        """Forget pending drops/corruptions and reply-fault
        probabilities, un-silence every servo."""
        with self._lock:
            self._pending_drops.clear()
            self._pending_corruptions.clear()
            self._drop_probability = self._corrupt_probability = 0.0
            for servo in self._servos.values():
                servo.silent = False

    def set_silent(self, servo_id: int, silent: bool = True) -> None:
        """A silent servo neither answers nor acts on anything (as if unplugged)."""
        with self._lock:
            self._servo(servo_id).silent = bool(silent)

    def set_hardware_error(self, servo_id: int, status: int = 0x20) -> None:
        """Set Hardware Error Status (default: overload); nonzero also turns the servo's torque off.

        Its status packets then carry the alert bit, and torque cannot be enabled until a REBOOT
        (or ``set_hardware_error(servo_id, 0)``).
        """
        with self._lock:
            servo = self._servo(servo_id)
            servo.set(ct.HARDWARE_ERROR_STATUS, status)
            if status:
                servo.set(ct.TORQUE_ENABLE, 0)
            self._apply_goals()

    def set_mounting(self, servo_id: int, offset_ticks: float, sign: int = 1) -> None:
        """Plant a calibration offset: the servo now reports
        ticks = offset + sign · angle · 4096/2π.

        The joint keeps its physical goal: Goal Position is re-expressed in the new ticks.
        """
        with self._lock:
            servo = self._servo(servo_id)
            old = servo.mounting
            goal_rad = ct.ticks_to_rad(servo.get(ct.GOAL_POSITION), old.offset_ticks, old.sign)
            servo.mounting = Mounting(offset_ticks, sign)
            goal_ticks = int(ct.rad_to_ticks(goal_rad, offset_ticks, sign))
            servo.set(ct.GOAL_POSITION, _clamp_signed(goal_ticks, 4))
            self._apply_goals()


_STOP = b"x"  # the byte on the stop pipe that ends the serving loop (others only wake it)


def _clamp_signed(value: int, size: int) -> int:
    limit = 1 << (8 * size - 1)
    return max(-limit, min(limit - 1, value))


# --- the bus in its own process -------------------------------------------------------------------
REALTIME_PRIORITY = 10  # SCHED_FIFO priority of the bus process: above every normal process, modest


def request_realtime_scheduling(priority: int = REALTIME_PRIORITY) -> str:
    """Ask for real-time scheduling for this process's threads started from now on; say what it got.

    SCHED_FIFO at ``priority`` where permitted, else a nice of -10, else nothing changes. Returns
    ``"SCHED_FIFO priority N"``, ``"nice -10"`` or ``"normal (...)"``.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return f"SCHED_FIFO priority {priority}"
    except (AttributeError, OSError) as fifo_error:
        try:
            os.nice(-10)
            return "nice -10"
        except OSError as nice_error:
            return f"normal (SCHED_FIFO: {fifo_error}; nice: {nice_error})"


# What the parent may call on the bus process's emulator; each is the ServoBusEmulator method.
_PROXIED_CALLS = frozenset(
    {
        "register",
        "set_register",
        "goals_to_present",
        "goals_to",
        "joint_goals",
        "joint_readings",
        "torque_enabled",
        "take_longest_silence_s",
        "drop_replies",
        "corrupt_replies",
        "set_reply_faults",
        "clear_faults",
        "set_silent",
        "set_hardware_error",
        "set_mounting",
    }
)


class ServoBusProcess:
    """A :class:`ServoBusEmulator` served by its own process, so that nothing in this process
    (physics, rendering, scene resets, the GIL) can delay a reply.

    The process's backend is a :class:`~robots.dynamixel.physics.SharedMemoryBackend` on ``state``:
    this process's physics publishes joint readings into it and applies the goals the bus wrote
    (:meth:`SharedJointState.take_goals`); the bus process never waits for this one. The process
    asks for real-time scheduling (:func:`request_realtime_scheduling`; :attr:`scheduling` says what
    it got), makes the pty link once its bus answers, and ends -- removing the link -- on
    :meth:`stop` or as soon as this process is gone.

    Inspection and fault injection take the same calls as :class:`ServoBusEmulator` (``counters``,
    ``register``, ``set_silent``, ...), answered by the bus process over a command socket. Before
    :meth:`start`, ``state`` must hold a reading of every servo: the servos power up there.
    """

    def __init__(
        self,
        servo_ids: Iterable[int],
        state: SharedJointState,
        *,
        model_number: int | Mapping[int, int] = DEFAULT_MODEL,
        mountings: Mapping[int, Mounting] | None = None,
        link_path: str | os.PathLike,
        seed: int = 0,
        realtime: bool = True,
    ):
        self.servo_ids = sorted(int(i) for i in servo_ids)
        if self.servo_ids != sorted(state.servo_ids):
            raise ValueError(
                f"the shared state holds servos {state.servo_ids}, not {self.servo_ids}"
            )
        self.state = state
        self.link_path = Path(link_path)
        self._config = {
            "servo_ids": self.servo_ids,
            "model_number": model_number if isinstance(model_number, int) else dict(model_number),
            "mountings": dict(mountings or {}),
            "link_path": str(self.link_path.absolute()),
            "seed": int(seed),
            "realtime": bool(realtime),
        }
        self._process: subprocess.Popen | None = None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._pty_name: str | None = None
        self.scheduling: str | None = None  # what the bus process got (request_realtime_scheduling)
        self.pid: int | None = None
        self._final: dict[str, dict] = {}  # counters and reply latency as the process ended

    # --- lifecycle --------------------------------------------------------------------------------
    @property
    def port_path(self) -> str:
        if self._pty_name is None:
            raise RuntimeError("the emulator is not started")
        return str(self.link_path)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 30.0) -> ServoBusProcess:
        if self._process is not None:
            raise RuntimeError("the emulator is already started")
        ours, theirs = socket.socketpair()
        ours.settimeout(timeout_s)
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "robots.dynamixel.emulator",
                    str(theirs.fileno()),
                    str(self.state.fd),
                ],
                pass_fds=(theirs.fileno(), self.state.fd),
            )
        finally:
            theirs.close()
        self._socket = ours
        try:
            _send_message(ours, self._config)
            status, info = _receive_message(ours)
        except (OSError, EOFError) as exc:
            code = (
                self._process.wait(timeout=5)
                if self._process.poll() is None
                else self._process.returncode
            )
            self._close()
            raise RuntimeError(
                f"the servo-bus process did not start (exit code {code}): {exc}"
            ) from exc
        if status != "ok":
            self._process.wait(timeout=5)
            self._close()
            raise RuntimeError(f"the servo-bus process failed to start: {info}") from info
        ours.settimeout(None)
        self._pty_name, self.scheduling, self.pid = info["pty"], info["scheduling"], info["pid"]
        return self

    def stop(self) -> None:
        """End the bus process (its link is removed); raise if it failed."""
        if self._process is None:
            return
        try:
            self._final = {"counters": self.counters, "reply_latency": self._call("reply_latency")}
            with self._lock:
                _send_message(self._socket, None)
                status, info = _receive_message(self._socket)
        except (OSError, EOFError, RuntimeError):
            status, info = "ok", None  # it had already ended: its exit code tells
        try:
            code = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._close()
        if status != "ok":
            raise RuntimeError("the servo-bus process failed") from info
        if code != 0:
            raise RuntimeError(f"the servo-bus process exited with code {code}")

    def _close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket, self._process, self._pty_name = None, None, None

    def __enter__(self) -> ServoBusProcess:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    # --- the emulator's calls, answered by the bus process ---------------------------------------
    def _call(self, name: str, *args, **kwargs):
        if self._socket is None:
            raise RuntimeError("the emulator is not started")
        with self._lock:
            try:
                _send_message(self._socket, (name, args, kwargs))
                status, result = _receive_message(self._socket)
            except (OSError, EOFError) as exc:
                raise RuntimeError(
                    f"the servo-bus process (pid {self.pid}) is gone: {exc}"
                ) from exc
        if status != "ok":
            raise result
        return result

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the bus process's :attr:`ServoBusEmulator.counters`, plus ``torn_reads``
        (after :meth:`stop`: as the process ended)."""
        if self._socket is None and "counters" in self._final:
            return dict(self._final["counters"])
        return self._call("counters")

    def reply_latency(self) -> dict[str, float | int | None]:
        """:meth:`ServoBusEmulator.reply_latency` of the bus process (after
        :meth:`stop`: as it ended)."""
        if self._socket is None and "reply_latency" in self._final:
            return dict(self._final["reply_latency"])
        return self._call("reply_latency")

    def __getattr__(self, name: str):
        if name in _PROXIED_CALLS:
            return lambda *args, **kwargs: self._call(name, *args, **kwargs)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


def _send_message(sock: socket.socket, message) -> None:
    data = pickle.dumps(message)
    sock.sendall(struct.pack("<I", len(data)) + data)


def _receive_message(sock: socket.socket):
    header = _receive_exactly(sock, 4)
    return pickle.loads(_receive_exactly(sock, struct.unpack("<I", header)[0]))


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise EOFError("the other end closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _serve_process(socket_fd: int, state_fd: int) -> int:
    """The bus process: serve the emulator; answer the parent's calls
    until it says stop or is gone."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when the bus stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=socket_fd)
    config = _receive_message(sock)
    scheduling = (
        request_realtime_scheduling() if config["realtime"] else "normal (not requested)"
    )  # before any thread starts: they inherit it
    state = SharedJointState.attach(config["servo_ids"], state_fd)
    emulator = ServoBusEmulator(
        config["servo_ids"],
        SharedMemoryBackend(state),
        model_number=config["model_number"],
        mountings=config["mountings"],
        link_path=config["link_path"],
        seed=config["seed"],
    )
    try:
        emulator.start()
    except BaseException as exc:
        _send_message(sock, ("error", exc))
        raise
    try:
        _send_message(
            sock,
            ("ok", {"pty": emulator._slave_name, "scheduling": scheduling, "pid": os.getpid()}),
        )
        while True:
            try:
                request = _receive_message(sock)
            except (EOFError, ConnectionResetError):
                log.warning("the servo-bus process's parent is gone: stopping")
                return 0
            if request is None:
                break
            name, args, kwargs = request
            try:
                if name == "counters":
                    result = {**emulator.counters, "torn_reads": state.torn_reads}
                elif name in _PROXIED_CALLS or name == "reply_latency":
                    result = getattr(emulator, name)(*args, **kwargs)
                else:
                    raise AttributeError(f"the servo-bus process has no call {name!r}")
            except Exception as exc:  # the caller's mistake: raised again in the parent
                _send_message(sock, ("error", exc))
            else:
                _send_message(sock, ("ok", result))
        emulator.stop()
        _send_message(sock, ("ok", None))
        return 0
    finally:
        emulator.stop()  # a no-op once stopped; removes the link on every way out
        state.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="servo-bus process: %(message)s")
    sys.exit(_serve_process(int(sys.argv[1]), int(sys.argv[2])))
