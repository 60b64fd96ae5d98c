"""Protocol 2.0 instruction packets as a client sends them, for driving the emulator byte by byte
(the product's clients send theirs through ROBOTIS's ``dynamixel_sdk``)."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

from robots.dynamixel.protocol import BROADCAST_ID, Instruction, build_packet


def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def ping_packet(servo_id: int) -> bytes:
    return build_packet(servo_id, Instruction.PING)


def read_packet(servo_id: int, address: int, length: int) -> bytes:
    return build_packet(servo_id, Instruction.READ, _u16(address) + _u16(length))


def write_packet(servo_id: int, address: int, data: bytes) -> bytes:
    return build_packet(servo_id, Instruction.WRITE, _u16(address) + bytes(data))


def sync_read_packet(address: int, length: int, servo_ids: Sequence[int]) -> bytes:
    return build_packet(
        BROADCAST_ID, Instruction.SYNC_READ, _u16(address) + _u16(length) + bytes(servo_ids)
    )


def sync_write_packet(address: int, length: int, data_by_id: Mapping[int, bytes]) -> bytes:
    params = bytearray(_u16(address) + _u16(length))
    for servo_id, data in data_by_id.items():
        if len(data) != length:
            raise ValueError(
                f"sync write of {length} bytes got {len(data)} bytes for servo {servo_id}"
            )
        params += bytes([servo_id]) + bytes(data)
    return build_packet(BROADCAST_ID, Instruction.SYNC_WRITE, params)


def bulk_read_packet(requests: Sequence[tuple[int, int, int]]) -> bytes:
    """``requests``: (servo ID, address, length) per servo, in the order the replies should come."""
    params = bytearray()
    for servo_id, address, length in requests:
        params += bytes([servo_id]) + _u16(address) + _u16(length)
    return build_packet(BROADCAST_ID, Instruction.BULK_READ, params)


def bulk_write_packet(writes: Sequence[tuple[int, int, bytes]]) -> bytes:
    """``writes``: (servo ID, address, data) per servo."""
    params = bytearray()
    for servo_id, address, data in writes:
        params += bytes([servo_id]) + _u16(address) + _u16(len(data)) + bytes(data)
    return build_packet(BROADCAST_ID, Instruction.BULK_WRITE, params)
