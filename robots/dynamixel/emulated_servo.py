"""One emulated X-series servo: its control table, the rules a write must pass, and its mounting.

The table (:mod:`robots.dynamixel.control_table`) keeps EEPROM locked while torque is on, refuses
writes to read-only registers and values outside a register's range, and follows Status Return
Level. A servo's :class:`Mounting` maps its joint's angle to the ticks it reports::

    ticks = offset_ticks + sign · angle · 4096/2π          (velocity and current take the sign too)

so a mounting that differs from a robot's nominal calibration is a *planted calibration offset*.
Goal Position is mapped back the same way before it reaches the physics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from robots.dynamixel import control_table as ct
from robots.dynamixel.physics import JointReading
from robots.dynamixel.protocol import ALERT_BIT, Instruction, StatusError, build_status

DEFAULT_MODEL = 1020  # XM430-W350
DEFAULT_CURRENT_MA_PER_UNIT = 2.69  # of a model the control table does not know
READ_INSTRUCTIONS = frozenset({Instruction.READ, Instruction.SYNC_READ, Instruction.BULK_READ})
_VALID_OPERATING_MODES = frozenset(ct.OPERATING_MODES)
# Read-only while the Bus Watchdog has fired: a write to them is answered with a Data Range error.
_GOAL_REGISTERS = (ct.GOAL_PWM, ct.GOAL_CURRENT, ct.GOAL_VELOCITY, ct.GOAL_POSITION)


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


def clamp_signed(value: int, size: int) -> int:
    """``value`` clamped to what a signed register of ``size`` bytes holds."""
    limit = 1 << (8 * size - 1)
    return max(-limit, min(limit - 1, value))


class EmulatedServo:
    """One emulated servo: its control table, its mounting and whether it is silent (unplugged)."""

    def __init__(self, servo_id: int, model_number: int, mounting: Mounting):
        self.table = bytearray(ct.TABLE_SIZE)
        for register in ct.REGISTERS:
            self.table[register.address : register.end] = register.encode(register.default)
        self.set(ct.MODEL_NUMBER, model_number)
        self.set(ct.ID, servo_id)
        model = ct.MODELS.get(model_number)
        self.current_ma_per_unit = (
            model.current_ma_per_unit if model else DEFAULT_CURRENT_MA_PER_UNIT
        )
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

    # --- Bus Watchdog ----------------------------------------------------------------------------
    @property
    def bus_watchdog_fired(self) -> bool:
        return self.table[ct.BUS_WATCHDOG.address] == ct.BUS_WATCHDOG_ERROR

    @property
    def bus_watchdog_window_s(self) -> float | None:
        """The Bus Watchdog's window while it watches (torque on, 1..127 set), else None."""
        units = self.table[ct.BUS_WATCHDOG.address]
        if self.silent or not self.torque_on or not 1 <= units <= 127:
            return None
        return units * ct.BUS_WATCHDOG_UNIT_S

    def fire_bus_watchdog(self) -> None:
        """Hold where it is (Goal Position := Present Position, torque on); Bus Watchdog: -1."""
        self.set(ct.GOAL_POSITION, self.get(ct.PRESENT_POSITION))
        self.table[ct.BUS_WATCHDOG.address] = ct.BUS_WATCHDOG_ERROR

    # --- the joint behind the servo --------------------------------------------------------------
    @property
    def goal_rad(self) -> float:
        """Goal Position as a joint angle (rad), through the mounting."""
        m = self.mounting
        return float(ct.ticks_to_rad(self.get(ct.GOAL_POSITION), m.offset_ticks, m.sign))

    def set_goal_rad(self, goal_rad: float) -> None:
        """Goal Position := the ticks of this joint angle (rad), through the mounting."""
        m = self.mounting
        ticks = int(ct.rad_to_ticks(goal_rad, m.offset_ticks, m.sign))
        self.set(ct.GOAL_POSITION, clamp_signed(ticks, 4))

    def show_reading(self, reading: JointReading, tick_ms: int) -> None:
        """The present registers (position, velocity, current, Moving, Realtime Tick) as the
        mounting turns this joint reading into them."""
        m = self.mounting
        position = int(ct.rad_to_ticks(reading.position_rad, m.offset_ticks, m.sign))
        velocity = int(ct.rad_s_to_velocity_units(reading.velocity_rad_s, m.sign))
        current = int(ct.amps_to_current_units(reading.current_a, self.current_ma_per_unit, m.sign))
        self.set(ct.PRESENT_POSITION, clamp_signed(position, 4))
        self.set(ct.PRESENT_VELOCITY, clamp_signed(velocity, 4))
        self.set(ct.PRESENT_CURRENT, clamp_signed(current, 2))
        self.set(ct.REALTIME_TICK, tick_ms)
        self.set(ct.MOVING, int(abs(velocity) > self.get(ct.MOVING_THRESHOLD)))

    # --- the bus's view --------------------------------------------------------------------------
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
            error = self._check_value(register, value)
            if error:
                return error
        return StatusError.NONE

    def _check_value(self, register: ct.Register, value: int) -> int:
        """The error number writing ``value`` to ``register`` gets (0: accepted)."""
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
        if instruction in READ_INSTRUCTIONS:
            return level >= 1
        return level >= 2
