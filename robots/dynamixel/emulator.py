"""A Dynamixel Protocol 2.0 servo bus, emulated on a pseudo-terminal.

Clients -- ROBOTIS's unmodified ``dynamixel_sdk``, our drivers -- open the emulator's port by path
exactly like a USB serial adapter::

    from robots.dynamixel.emulated_servo import Mounting
    from robots.dynamixel.emulator import ServoBusEmulator
    from robots.dynamixel.physics import KinematicBackend

    ids = [10, 11, 12]
    backend = KinematicBackend({i: 0.0 for i in ids})           # joint angles, rad
    with ServoBusEmulator(ids, backend, link_path="/tmp/bus/ttyDCLAW",
                          mountings={i: Mounting(offset_ticks=2048, sign=1) for i in ids}) as bus:
        ...  # open "/tmp/bus/ttyDCLAW" (== bus.port_path) with the SDK at any baud rate

The bus is put together from one module per job:

- each servo, its X-series control table and its :class:`~robots.dynamixel.emulated_servo.Mounting`
  (ticks = offset_ticks + sign · angle · 4096/2π): :mod:`robots.dynamixel.emulated_servo`;
- the answers to PING, READ, WRITE, SYNC/BULK READ and WRITE and REBOOT:
  :mod:`robots.dynamixel.servo_instructions`;
- dropped and corrupted replies: :mod:`robots.dynamixel.reply_faults`;
- the pty, its serving thread and the reply latency: :mod:`robots.dynamixel.pty_port`;
- the physics, in joint units: :class:`~robots.dynamixel.physics.ServoBackend`;
- the bus in a process of its own: :mod:`robots.dynamixel.bus_process`.

This module joins them: the servos' goals go to the physics after every write and its readings
into the present registers before every read, the Bus Watchdog is kept, and the servos are open to
inspection and fault injection from any thread. The baud rate and Return Delay Time are ignored:
replies leave as soon as they are built.

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
:meth:`~ServoBusEmulator.take_longest_silence_s` reports the longest interval between instruction
packets while a Bus Watchdog watched: the silences the watchdog judges, as the servos saw them.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from robots.dynamixel import control_table as ct
from robots.dynamixel.emulated_servo import DEFAULT_MODEL, EmulatedServo, Mounting
from robots.dynamixel.physics import JointReading, KinematicBackend, ServoBackend
from robots.dynamixel.protocol import Packet, PacketStream
from robots.dynamixel.pty_port import PtyPort
from robots.dynamixel.reply_faults import ReplyFaults
from robots.dynamixel.servo_instructions import InstructionHandler

__all__ = ["ServoBusEmulator"]

log = logging.getLogger(__name__)

PARTIAL_PACKET_WAIT_S = 0.02  # how soon the serving loop looks again at a partly received packet
REALTIME_TICK_MS = 32768  # the Realtime Tick register counts milliseconds modulo this


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
    host is runs in its own process: :class:`~robots.dynamixel.bus_process.ServoBusProcess`.
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
        ids = _checked_ids(servo_ids)
        mountings = dict(mountings or {})
        unknown = sorted(set(mountings) - set(ids))
        if unknown:
            raise ValueError(f"mountings given for IDs {unknown} that are not on the bus {ids}")
        models = (
            model_number if isinstance(model_number, Mapping) else dict.fromkeys(ids, model_number)
        )
        self._servos = {
            i: EmulatedServo(i, int(models.get(i, DEFAULT_MODEL)), mountings.get(i, Mounting()))
            for i in ids
        }
        self.backend = backend if backend is not None else KinematicBackend(dict.fromkeys(ids, 0.0))
        self.link_path = Path(link_path) if link_path is not None else None
        self._lock = threading.RLock()
        self._stream = PacketStream()
        self._clock = clock
        self._start_time = clock()
        self._counters: collections.Counter[str] = collections.Counter()
        self._faults = ReplyFaults(seed, self._counters)
        self._instructions = InstructionHandler(
            self._servos, self._counters, self._faults, self._refresh_present, self._apply_goals
        )
        self._port = PtyPort(
            self._answer, self._wait_timeout, link_path=self.link_path, clock=clock
        )
        self._last_instruction_s = clock()  # when the last instruction packet arrived
        self._longest_silence_s = 0.0  # while a Bus Watchdog watched, since take_longest_silence_s

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def port_path(self) -> str:
        """The path clients open: ``link_path`` if given, else the pty's /dev/pts/N."""
        return self._port.port_path

    @property
    def pty_name(self) -> str | None:
        """The pty's /dev/pts/N while started."""
        return self._port.pty_name

    @property
    def running(self) -> bool:
        return self._port.running

    @property
    def error(self) -> BaseException | None:
        """What stopped the serving thread, if anything."""
        return self._port.error

    def start(self) -> ServoBusEmulator:
        if self._port.started:
            raise RuntimeError("the emulator is already started")
        with self._lock:
            self._initialise_goals()
        self._port.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the pty, remove the link; re-raise what
        broke the thread, if anything."""
        self._port.stop()

    def __enter__(self) -> ServoBusEmulator:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    # --- the serving thread's calls ---------------------------------------------------------------
    def _answer(self, data: bytes, received_s: float) -> bytes:
        """The replies to the packets ``data`` completes (``b""``: a timeout or a wake-up)."""
        with self._lock:
            self._check_bus_watchdogs(received_s)  # before this packet resets the timer
            self._counters["rx_bytes"] += len(data)
            events = self._stream.feed(data) if data else self._stream.poll()
            replies = []
            for event in events:
                if isinstance(event, Packet) and not event.is_status:
                    self._last_instruction_s = received_s  # any instruction feeds the watchdogs
                replies.append(self._instructions.handle(event))
            return b"".join(replies)

    def _wait_timeout(self) -> float | None:
        """How long the serving loop may sleep: until a partial packet expires or a Bus Watchdog
        fires, whichever is first (None: until a byte arrives)."""
        with self._lock:
            timeouts = [PARTIAL_PACKET_WAIT_S] if self._stream.pending else []
            windows = [w for s in self._servos.values() if (w := s.bus_watchdog_window_s)]
            if windows:
                deadline_s = self._last_instruction_s + min(windows)
                timeouts.append(max(0.0, deadline_s - self._clock()) + 1e-4)
        return min(timeouts) if timeouts else None

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
            servo.fire_bus_watchdog()
            self._counters["bus_watchdog_errors"] += 1
        self._apply_goals()
        log.warning(
            "Bus Watchdog error on servos %s: no instruction for %.0f ms; they hold where they are",
            [s.get(ct.ID) for s in fired],
            1000 * silence_s,
        )

    # --- physics exchange (called with the lock held) ---------------------------------------------
    def _initialise_goals(self) -> None:
        """At power-up a servo's Goal Position equals its Present Position."""
        self._refresh_present()
        for servo in self._servos.values():
            servo.set(ct.GOAL_POSITION, servo.get(ct.PRESENT_POSITION))
        self._apply_goals()

    def _joint_goals(self) -> dict[int, float]:
        return {servo_id: servo.goal_rad for servo_id, servo in self._servos.items()}

    def _apply_goals(self) -> None:
        torque = {servo_id: servo.torque_on for servo_id, servo in self._servos.items()}
        self.backend.apply(self._joint_goals(), torque)

    def _refresh_present(self) -> None:
        readings = self.backend.read()
        missing = sorted(set(self._servos) - set(readings))
        if missing:
            raise RuntimeError(f"the servo backend gave no reading for servo IDs {missing}")
        tick_ms = int((self._clock() - self._start_time) * 1000) % REALTIME_TICK_MS
        for servo_id, servo in self._servos.items():
            servo.show_reading(readings[servo_id], tick_ms)

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
            return {**self._counters, **self._port.counters}

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
        self._port.wake()

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
                self._servos[servo_id].set_goal_rad(goal)
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
        handed to the port (:meth:`~robots.dynamixel.pty_port.PtyPort.reply_latency`)."""
        return self._port.reply_latency()

    def _servo(self, servo_id: int) -> EmulatedServo:
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
            self._faults.drop(count, servo_id)

    def corrupt_replies(self, count: int, servo_id: int | None = None) -> None:
        """Send the next ``count`` status packets (of ``servo_id``, or of
        any servo) with a wrong CRC."""
        with self._lock:
            self._faults.corrupt(count, servo_id)

    def set_reply_faults(
        self, drop_probability: float = 0.0, corrupt_probability: float = 0.0
    ) -> None:
        """Drop / corrupt every status packet with these probabilities (seeded by ``seed``)."""
        with self._lock:
            self._faults.set_probabilities(drop_probability, corrupt_probability)

    def clear_faults(self) -> None:
        """Forget pending drops/corruptions and reply-fault
        probabilities, un-silence every servo."""
        with self._lock:
            self._faults.clear()
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
            goal_rad = servo.goal_rad
            servo.mounting = Mounting(offset_ticks, sign)
            servo.set_goal_rad(goal_rad)
            self._apply_goals()


def _checked_ids(servo_ids: Iterable[int]) -> list[int]:
    """The bus's servo IDs, sorted; ValueError unless at least one, distinct, in 0..252."""
    ids = sorted(int(i) for i in servo_ids)
    if not ids:
        raise ValueError("the emulated bus needs at least one servo ID")
    if len(set(ids)) != len(ids) or not all(0 <= i <= 252 for i in ids):
        raise ValueError(f"servo IDs must be distinct integers in 0..252, got {ids}")
    return ids
