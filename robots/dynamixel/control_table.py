"""The X-series (XM430 / XH430) control table, model numbers and unit conversions.

Addresses and sizes follow ROBOTIS's control table for the XM430/XH430 with Protocol 2.0. The EEPROM
area (addresses below 64) is writable only while torque is off. Multi-byte values are
little-endian; ``signed`` registers are two's complement.

Units:
- position: 4096 ticks per turn (2π/4096 rad per tick), signed 32-bit;
- velocity: 0.229 rpm per unit, signed 32-bit;
- current: model-dependent mA per unit (≈2.69 mA on XM430, 1.34 mA on XH430), signed 16-bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EEPROM_END = 64  # addresses below this are EEPROM (locked while torque is on)
TABLE_SIZE = 148  # bytes of the table we model (0 .. Backup Ready 147)

TICKS_PER_TURN = 4096
RAD_PER_TICK = 2.0 * math.pi / TICKS_PER_TURN
RPM_PER_VELOCITY_UNIT = 0.229
RAD_S_PER_VELOCITY_UNIT = RPM_PER_VELOCITY_UNIT * 2.0 * math.pi / 60.0

OPERATING_MODE_POSITION = 3
OPERATING_MODES = {
    0: "current",
    1: "velocity",
    3: "position",
    4: "extended position",
    5: "current-based position",
    16: "PWM",
}

# Drive Mode (10) bits the drivers care about.
DRIVE_MODE_REVERSE = 0x01  # bit 0: the servo turns the other way (positions mirrored)
DRIVE_MODE_TORQUE_ON_BY_GOAL = 0x08  # bit 3: writing a goal turns torque on

# Bus Watchdog (98): 0 off (writing 0 also clears the error), 1..127 arms a window of that many
# 20 ms units, monitored while torque is on; when no instruction packet arrives within the window
# the servo stops, the register reads -1 (byte 0xFF) and the goal registers refuse writes.
BUS_WATCHDOG_UNIT_S = 0.020
BUS_WATCHDOG_MAX_UNITS = 127
BUS_WATCHDOG_ERROR = 0xFF  # the register's byte in Bus Watchdog Error (-1 as a signed byte)

BAUD_RATE_CODES = {
    0: 9_600,
    1: 57_600,
    2: 115_200,
    3: 1_000_000,
    4: 2_000_000,
    5: 3_000_000,
    6: 4_000_000,
    7: 4_500_000,
}


@dataclass(frozen=True)
class Register:
    """One control-table entry. ``writable`` is False for read-only registers."""

    name: str
    address: int
    size: int
    signed: bool = False
    writable: bool = True
    default: int = 0
    minimum: int | None = None  # valid range of a written value (None: the size's full range)
    maximum: int | None = None

    @property
    def eeprom(self) -> bool:
        return self.address < EEPROM_END

    @property
    def end(self) -> int:
        return self.address + self.size

    def encode(self, value: int) -> bytes:
        return encode_value(value, self.size, self.signed)

    def decode(self, data: bytes) -> int:
        return decode_value(data, self.signed)


def _r(name, address, size, **kw) -> Register:
    return Register(name, address, size, **kw)


# EEPROM area
MODEL_NUMBER = _r("Model Number", 0, 2, writable=False)
MODEL_INFORMATION = _r("Model Information", 2, 4, writable=False)
FIRMWARE_VERSION = _r("Firmware Version", 6, 1, writable=False, default=46)
ID = _r("ID", 7, 1, default=1, minimum=0, maximum=252)
BAUD_RATE = _r("Baud Rate", 8, 1, default=1, minimum=0, maximum=7)
RETURN_DELAY_TIME = _r("Return Delay Time", 9, 1, default=250)  # 2 µs per unit
DRIVE_MODE = _r("Drive Mode", 10, 1, maximum=13)
OPERATING_MODE = _r("Operating Mode", 11, 1, default=OPERATING_MODE_POSITION, maximum=16)
SECONDARY_ID = _r("Secondary ID", 12, 1, default=255)
PROTOCOL_TYPE = _r("Protocol Type", 13, 1, default=2, minimum=1, maximum=2)
HOMING_OFFSET = _r("Homing Offset", 20, 4, signed=True, minimum=-1_044_479, maximum=1_044_479)
MOVING_THRESHOLD = _r("Moving Threshold", 24, 4, default=10, maximum=1023)
TEMPERATURE_LIMIT = _r("Temperature Limit", 31, 1, default=80, maximum=100)
MAX_VOLTAGE_LIMIT = _r("Max Voltage Limit", 32, 2, default=160, minimum=95, maximum=160)
MIN_VOLTAGE_LIMIT = _r("Min Voltage Limit", 34, 2, default=95, minimum=95, maximum=160)
PWM_LIMIT = _r("PWM Limit", 36, 2, default=885, maximum=885)
CURRENT_LIMIT = _r("Current Limit", 38, 2, default=1193, maximum=1193)
VELOCITY_LIMIT = _r("Velocity Limit", 44, 4, default=200, maximum=1023)
MAX_POSITION_LIMIT = _r("Max Position Limit", 48, 4, default=4095, maximum=4095)
MIN_POSITION_LIMIT = _r("Min Position Limit", 52, 4, default=0, maximum=4095)
SHUTDOWN = _r("Shutdown", 63, 1, default=52)
# RAM area
TORQUE_ENABLE = _r("Torque Enable", 64, 1, maximum=1)
LED = _r("LED", 65, 1, maximum=1)
STATUS_RETURN_LEVEL = _r("Status Return Level", 68, 1, default=2, maximum=2)
REGISTERED_INSTRUCTION = _r("Registered Instruction", 69, 1, writable=False)
HARDWARE_ERROR_STATUS = _r("Hardware Error Status", 70, 1, writable=False)
VELOCITY_I_GAIN = _r("Velocity I Gain", 76, 2, default=1920, maximum=16383)
VELOCITY_P_GAIN = _r("Velocity P Gain", 78, 2, default=100, maximum=16383)
POSITION_D_GAIN = _r("Position D Gain", 80, 2, maximum=16383)
POSITION_I_GAIN = _r("Position I Gain", 82, 2, maximum=16383)
POSITION_P_GAIN = _r("Position P Gain", 84, 2, default=800, maximum=16383)
FEEDFORWARD_2ND_GAIN = _r("Feedforward 2nd Gain", 88, 2, maximum=16383)
FEEDFORWARD_1ST_GAIN = _r("Feedforward 1st Gain", 90, 2, maximum=16383)
BUS_WATCHDOG = _r("Bus Watchdog", 98, 1, maximum=127)  # 20 ms per unit; reads 0xFF (-1) on error
GOAL_PWM = _r("Goal PWM", 100, 2, signed=True, minimum=-885, maximum=885)
GOAL_CURRENT = _r("Goal Current", 102, 2, signed=True, minimum=-1193, maximum=1193)
GOAL_VELOCITY = _r("Goal Velocity", 104, 4, signed=True, minimum=-1023, maximum=1023)
PROFILE_ACCELERATION = _r("Profile Acceleration", 108, 4, maximum=32767)
PROFILE_VELOCITY = _r("Profile Velocity", 112, 4, maximum=32767)
GOAL_POSITION = _r("Goal Position", 116, 4, signed=True, minimum=-1_048_575, maximum=1_048_575)
REALTIME_TICK = _r("Realtime Tick", 120, 2, writable=False)  # ms, wraps at 32768
MOVING = _r("Moving", 122, 1, writable=False)
MOVING_STATUS = _r("Moving Status", 123, 1, writable=False)
PRESENT_PWM = _r("Present PWM", 124, 2, signed=True, writable=False)
PRESENT_CURRENT = _r("Present Current", 126, 2, signed=True, writable=False)
PRESENT_VELOCITY = _r("Present Velocity", 128, 4, signed=True, writable=False)
PRESENT_POSITION = _r("Present Position", 132, 4, signed=True, writable=False)
VELOCITY_TRAJECTORY = _r("Velocity Trajectory", 136, 4, signed=True, writable=False)
POSITION_TRAJECTORY = _r("Position Trajectory", 140, 4, signed=True, writable=False)
PRESENT_INPUT_VOLTAGE = _r("Present Input Voltage", 144, 2, writable=False, default=120)  # 0.1 V
PRESENT_TEMPERATURE = _r("Present Temperature", 146, 1, writable=False, default=30)  # °C
BACKUP_READY = _r("Backup Ready", 147, 1, writable=False)

REGISTERS: tuple[Register, ...] = tuple(
    v for v in dict(globals()).values() if isinstance(v, Register)
)
REGISTERS_BY_NAME = {r.name: r for r in REGISTERS}

# One sync read covers the whole state: Present Current 126 (2) +
# Velocity 128 (4) + Position 132 (4).
STATE_ADDRESS = PRESENT_CURRENT.address
STATE_SIZE = PRESENT_POSITION.end - PRESENT_CURRENT.address  # 10 bytes

# Hardware Error Status bits (address 70).
HARDWARE_ERROR_BITS = {
    0: "input voltage error",
    2: "overheating",
    3: "motor encoder error",
    4: "electrical shock",
    5: "overload",
}


def describe_hardware_error(status: int) -> str:
    """Human-readable list of the bits set in a Hardware Error Status value."""
    names = [name for bit, name in HARDWARE_ERROR_BITS.items() if status & (1 << bit)]
    unknown = status & ~sum(1 << bit for bit in HARDWARE_ERROR_BITS)
    if unknown:
        names.append(f"unknown bits 0x{unknown:02X}")
    return ", ".join(names) if names else "no error"


@dataclass(frozen=True)
class Model:
    number: int
    name: str
    current_ma_per_unit: float
    current_limit: int  # default Current Limit (units)


MODELS: dict[int, Model] = {
    m.number: m
    for m in (
        Model(1030, "XM430-W210", 2.69, 1193),
        Model(1020, "XM430-W350", 2.69, 1193),
        Model(1010, "XH430-W210", 1.34, 648),
        Model(1000, "XH430-W350", 1.34, 648),
        Model(1050, "XH430-V210", 1.34, 689),
        Model(1040, "XH430-V350", 1.34, 689),
    )
}


def model_name(number: int) -> str:
    """The name of Dynamixel model ``number`` (its MODEL_NUMBER register), or says it is unknown."""
    model = MODELS.get(number)
    return model.name if model else f"unknown model {number}"


# --- raw values -----------------------------------------------------------------------------------


def encode_value(value: int, size: int, signed: bool = False) -> bytes:
    """Little-endian bytes of ``value``; raises ValueError if it does not fit."""
    return int(value).to_bytes(size, "little", signed=signed)


def decode_value(data: bytes, signed: bool = False) -> int:
    return int.from_bytes(bytes(data), "little", signed=signed)


# --- unit conversions (vectorised) ----------------------------------------------------------------


def ticks_to_rad(ticks, offset_ticks=0, sign=1) -> np.ndarray:
    """joint angle (rad) = sign · (ticks − offset) · 2π/4096."""
    return (
        np.asarray(sign, dtype=np.float64)
        * (np.asarray(ticks, dtype=np.float64) - offset_ticks)
        * RAD_PER_TICK
    )


def rad_to_ticks(angle_rad, offset_ticks=0, sign=1) -> np.ndarray:
    """The nearest tick (int64) of a joint angle: ticks = offset + sign · angle · 4096/2π."""
    ticks = (
        np.asarray(offset_ticks, dtype=np.float64)
        + np.asarray(sign, dtype=np.float64)
        * np.asarray(angle_rad, dtype=np.float64)
        / RAD_PER_TICK
    )
    return np.rint(ticks).astype(np.int64)


def velocity_units_to_rad_s(units, sign=1) -> np.ndarray:
    return (
        np.asarray(sign, dtype=np.float64)
        * np.asarray(units, dtype=np.float64)
        * RAD_S_PER_VELOCITY_UNIT
    )


def rad_s_to_velocity_units(velocity_rad_s, sign=1) -> np.ndarray:
    return np.rint(
        np.asarray(sign, dtype=np.float64)
        * np.asarray(velocity_rad_s, dtype=np.float64)
        / RAD_S_PER_VELOCITY_UNIT
    ).astype(np.int64)


def current_units_to_amps(units, current_ma_per_unit, sign=1) -> np.ndarray:
    return (
        np.asarray(sign, dtype=np.float64)
        * np.asarray(units, dtype=np.float64)
        * np.asarray(current_ma_per_unit, dtype=np.float64)
        * 1e-3
    )


def amps_to_current_units(current_a, current_ma_per_unit, sign=1) -> np.ndarray:
    return np.rint(
        np.asarray(sign, dtype=np.float64)
        * np.asarray(current_a, dtype=np.float64)
        * 1e3
        / np.asarray(current_ma_per_unit, dtype=np.float64)
    ).astype(np.int64)
