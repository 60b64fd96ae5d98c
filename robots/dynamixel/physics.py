"""The physics behind emulated servos: the :class:`ServoBackend` interface and a kinematic backend.

A backend works in joint units (radians, rad/s, amperes), keyed by servo ID. The emulator
(:mod:`robots.dynamixel.emulator`) converts between these and the servos' raw register values
through each servo's :class:`~robots.dynamixel.emulated_servo.Mounting` (tick offset and sign),
which is where planted calibration errors live.

Contract (all calls come from the emulator's thread, one at a time):

- ``apply(goals_rad, torque_enabled)`` -- called once when the emulator starts and after every
  instruction that wrote to any servo: the goal angle (rad) and torque state of every servo.
  A servo with torque off must not be driven towards its goal.
- ``read()`` -- called whenever a servo's present values are about to be read from the bus (once
  per read instruction, for all servos at once, so a sync read is one consistent snapshot):
  return a :class:`JointReading` for every servo ID.

The backend keeps its own clock: a MuJoCo backend may step its simulation in real time on its own
thread and exchange goals/readings under a lock; :class:`KinematicBackend` integrates lazily to
the current time whenever it is called. Physics in another process is reached through
:class:`SharedJointState` (shared memory) with :class:`SharedMemoryBackend` on the bus's side.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class JointReading:
    """One servo's present state in joint units."""

    position_rad: float
    velocity_rad_s: float = 0.0
    current_a: float = 0.0


class ServoBackend(abc.ABC):
    """Physics for a set of servos, in joint units (see the module docstring for the contract)."""

    @abc.abstractmethod
    def apply(self, goals_rad: Mapping[int, float], torque_enabled: Mapping[int, bool]) -> None:
        """Take the latest goal angle (rad) and torque state of every servo."""

    @abc.abstractmethod
    def read(self) -> Mapping[int, JointReading]:
        """The present position/velocity/current of every servo, now."""


class KinematicBackend(ServoBackend):
    """Each joint tracks its goal to first order with a speed limit; no dynamics, no gravity.

    With torque on, the joint velocity is
    ``clip((goal − position) / time_constant_s, ±max_velocity)`` (integrated exactly between
    calls); the current is proportional to the tracking error. With torque off the joint stays
    where it is and draws no current.
    """

    def __init__(
        self,
        initial_positions_rad: Mapping[int, float],
        max_velocity_rad_s: float = 4.8,  # XM430-W350 no-load speed, 46 rpm
        time_constant_s: float = 0.02,
        current_a_per_rad: float = 2.0,
        max_current_a: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_velocity_rad_s <= 0 or time_constant_s <= 0:
            raise ValueError("max_velocity_rad_s and time_constant_s must be positive")
        self.max_velocity_rad_s = float(max_velocity_rad_s)
        self.time_constant_s = float(time_constant_s)
        self.current_a_per_rad = float(current_a_per_rad)
        self.max_current_a = float(max_current_a)
        self._clock = clock
        self._position = {int(i): float(q) for i, q in initial_positions_rad.items()}
        self._velocity = dict.fromkeys(self._position, 0.0)
        self._goal = dict(self._position)
        self._torque = dict.fromkeys(self._position, False)
        self._last_time = clock()

    def apply(self, goals_rad: Mapping[int, float], torque_enabled: Mapping[int, bool]) -> None:
        self._advance()
        for servo_id, goal in goals_rad.items():
            if servo_id in self._goal:
                self._goal[servo_id] = float(goal)
        for servo_id, on in torque_enabled.items():
            if servo_id in self._torque:
                self._torque[servo_id] = bool(on)

    def read(self) -> dict[int, JointReading]:
        self._advance()
        readings = {}
        for servo_id, position in self._position.items():
            if self._torque[servo_id]:
                error = self._goal[servo_id] - position
                current = max(
                    -self.max_current_a, min(self.max_current_a, self.current_a_per_rad * error)
                )
            else:
                current = 0.0
            readings[servo_id] = JointReading(position, self._velocity[servo_id], current)
        return readings

    def _advance(self) -> None:
        now = self._clock()
        dt = max(0.0, now - self._last_time)
        self._last_time = now
        tau, vmax = self.time_constant_s, self.max_velocity_rad_s
        for servo_id, position in self._position.items():
            if not self._torque[servo_id]:
                self._velocity[servo_id] = 0.0
                continue
            error = self._goal[servo_id] - position
            direction = math.copysign(1.0, error)
            saturated_for = (abs(error) - vmax * tau) / vmax  # time until the speed limit lets go
            if saturated_for >= dt:
                position += direction * vmax * dt
                velocity = direction * vmax
            else:
                if saturated_for > 0:
                    position += direction * vmax * saturated_for
                    error = self._goal[servo_id] - position
                    dt_left = dt - saturated_for
                else:
                    dt_left = dt
                decay = math.exp(-dt_left / tau)
                position = self._goal[servo_id] - error * decay
                velocity = error * decay / tau
            self._position[servo_id] = position
            self._velocity[servo_id] = velocity


class SharedJointState:
    """Joint readings and goals exchanged between two processes through one shared memory block.

    One process steps the physics and *publishes* readings (:meth:`write_readings`); the other
    serves the bus and *commands* goals and torque (:meth:`write_goals`). Each side's block is
    guarded by a sequence counter (odd while being written), so neither side ever waits for the
    other: a reader that meets a write in progress retries briefly, then keeps its last good copy.

    The block is an anonymous memory file (``memfd``): :attr:`fd` is passed to the child process,
    which opens the same state with :meth:`attach`. Layout (little-endian, 8-byte slots)::

        [readings_seq, goals_seq] int64
        readings  float64[3 * n]   position rad, velocity rad/s, current A per servo
        goals     float64[n]       goal angle, rad
        torque    float64[n]       1.0 torque on, 0.0 off
    """

    _RETRIES = 100

    def __init__(self, servo_ids: list[int], fd: int | None = None):
        import ctypes
        import mmap
        import os

        self.servo_ids = [int(i) for i in servo_ids]
        n = len(self.servo_ids)
        size = 8 * (2 + 5 * n)
        if fd is None:
            fd = os.memfd_create("dynamixel-joint-state")
            os.ftruncate(fd, size)
        self.fd = fd
        self._memory = mmap.mmap(fd, size)
        self._seq = (ctypes.c_int64 * 2).from_buffer(self._memory, 0)
        self._readings = (ctypes.c_double * (3 * n)).from_buffer(self._memory, 16)
        self._goals = (ctypes.c_double * n).from_buffer(self._memory, 16 + 24 * n)
        self._torque = (ctypes.c_double * n).from_buffer(self._memory, 16 + 32 * n)
        self._last_readings: list[float] = [0.0] * (3 * n)
        self._applied_goals_seq = 0
        self.torn_reads = 0  # readings a writer kept busy past the retries: the last copy was used

    @classmethod
    def attach(cls, servo_ids: list[int], fd: int) -> SharedJointState:
        """The state another process created and passed on as ``fd``."""
        return cls(servo_ids, fd)

    # --- the physics side ------------------------------------------------------------------------
    def write_readings(self, readings: Mapping[int, JointReading]) -> None:
        values = []
        for servo_id in self.servo_ids:
            r = readings[servo_id]
            values += (r.position_rad, r.velocity_rad_s, r.current_a)
        self._seq[0] += 1
        self._readings[:] = values
        self._seq[0] += 1

    def take_goals(self) -> tuple[dict[int, float], dict[int, bool]] | None:
        """The goals and torque the bus wrote since the last call, or None if nothing new (or a
        write is in progress: the next call gets it)."""
        seq = self._seq[1]
        if seq == self._applied_goals_seq or seq % 2:
            return None
        goals, torque = self._goals[:], self._torque[:]
        if self._seq[1] != seq:
            return None
        self._applied_goals_seq = seq
        return dict(zip(self.servo_ids, goals)), {
            i: t != 0.0 for i, t in zip(self.servo_ids, torque)
        }

    # --- the bus side ----------------------------------------------------------------------------
    def write_goals(
        self, goals_rad: Mapping[int, float], torque_enabled: Mapping[int, bool]
    ) -> None:
        goals = [float(goals_rad[i]) for i in self.servo_ids]
        torque = [1.0 if torque_enabled[i] else 0.0 for i in self.servo_ids]
        self._seq[1] += 1
        self._goals[:] = goals
        self._torque[:] = torque
        self._seq[1] += 1

    def read_readings(self) -> dict[int, JointReading]:
        for _ in range(self._RETRIES):
            seq = self._seq[0]
            if seq % 2:
                continue
            values = self._readings[:]
            if self._seq[0] == seq:
                self._last_readings = values
                break
        else:
            self.torn_reads += 1
            values = self._last_readings
        return {
            servo_id: JointReading(*values[3 * k : 3 * k + 3])
            for k, servo_id in enumerate(self.servo_ids)
        }

    def close(self) -> None:
        import os

        del self._seq, self._readings, self._goals, self._torque
        self._memory.close()
        os.close(self.fd)


class SharedMemoryBackend(ServoBackend):
    """The bus side of a :class:`SharedJointState`: reads what the physics process published and
    hands goals to it, never waiting on the physics process."""

    def __init__(self, state: SharedJointState):
        self.state = state

    def apply(self, goals_rad: Mapping[int, float], torque_enabled: Mapping[int, bool]) -> None:
        self.state.write_goals(goals_rad, torque_enabled)

    def read(self) -> dict[int, JointReading]:
        return self.state.read_readings()
