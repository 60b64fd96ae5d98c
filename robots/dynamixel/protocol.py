"""Dynamixel Protocol 2.0 packets: building, parsing, CRC-16 and byte stuffing.

Packet layout (all multi-byte fields little-endian)::

    FF FF FD 00 | ID | LEN_L LEN_H | INST | PARAMS ... | CRC_L CRC_H
    header        id   length        instruction         CRC-16 over every byte before it

``length`` counts the instruction, the (stuffed) parameters and the two CRC bytes. A status packet
(a servo's reply) has instruction ``0x55`` and its first parameter is the error byte.

Byte stuffing keeps the header pattern out of the body: wherever ``FF FF FD`` appears in the
instruction + parameters, an extra ``FD`` is inserted after it (``FF FF FD`` -> ``FF FF FD FD``);
the length and CRC are computed over the stuffed bytes. The receiver removes the extra ``FD``.

Check vector (spec): a ping of ID 1 is ``FF FF FD 00 01 03 00 01 19 4E``.
"""

from __future__ import annotations

import enum
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HEADER = b"\xff\xff\xfd\x00"
STUFFING_PATTERN = b"\xff\xff\xfd"
BROADCAST_ID = 0xFE
MAX_ID = 0xFC  # highest ID a servo may have (252)
MIN_PACKET_LENGTH = 3  # the LENGTH field: instruction + CRC, no parameters
MAX_PACKET_LENGTH = 1024  # largest LENGTH we accept (the SDK's buffer size)
HEADER_SIZE = 7  # FF FF FD 00 ID LEN_L LEN_H


class Instruction(enum.IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    CLEAR = 0x10
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    BULK_READ = 0x92
    BULK_WRITE = 0x93


class StatusError(enum.IntEnum):
    """The error number in the low 7 bits of a status packet's error byte."""

    NONE = 0
    RESULT_FAIL = 1  # failed to process the instruction
    INSTRUCTION = 2  # undefined instruction, or ACTION without REG_WRITE
    CRC = 3  # the instruction packet's CRC did not match
    DATA_RANGE = 4  # data out of the register's range
    DATA_LENGTH = 5  # data shorter than the register
    DATA_LIMIT = 6  # data beyond a configured limit
    ACCESS = 7  # read-only / locked / undefined address


ALERT_BIT = 0x80  # set in every status packet while the servo has a hardware error


def _make_crc_table(poly: int = 0x8005) -> tuple[int, ...]:
    """CRC-16 lookup table for a non-reflected CRC with the given polynomial."""
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes | bytearray | Iterable[int], crc: int = 0) -> int:
    """CRC-16 of Protocol 2.0 (polynomial 0x8005, initial value 0, not reflected, no final XOR)."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc


def stuff(body: bytes) -> bytes:
    """Insert ``FD`` after every ``FF FF FD`` in an instruction + parameters body."""
    if STUFFING_PATTERN not in body:
        return bytes(body)
    out = bytearray()
    for byte in body:
        out.append(byte)
        if byte == 0xFD and len(out) >= 3 and out[-3] == 0xFF and out[-2] == 0xFF:
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    """Remove the ``FD`` that :func:`stuff` inserted after every ``FF FF FD``."""
    if STUFFING_PATTERN not in body:
        return bytes(body)
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        out.append(body[i])
        if body[i] == 0xFD and len(out) >= 3 and out[-3] == 0xFF and out[-2] == 0xFF:
            if i + 1 < n and body[i + 1] == 0xFD:
                i += 1  # skip the stuffed byte
        i += 1
    return bytes(out)


class PacketError(ValueError):
    """A byte sequence that is not a valid Protocol 2.0 packet."""


class CrcError(PacketError):
    """A complete packet whose CRC does not match; ``servo_id`` and
    ``instruction`` are as received."""

    def __init__(self, message: str, servo_id: int, instruction: int):
        super().__init__(message)
        self.servo_id = servo_id
        self.instruction = instruction


@dataclass(frozen=True)
class Packet:
    """A decoded packet: ``params`` are unstuffed. For a status packet
    ``params[0]`` is the error."""

    servo_id: int
    instruction: int
    params: bytes = b""

    @property
    def is_status(self) -> bool:
        return self.instruction == Instruction.STATUS

    @property
    def error(self) -> int:
        """The status packet's error byte (alert bit 0x80 | error number)."""
        if not self.is_status:
            raise ValueError("only status packets carry an error byte")
        return self.params[0]

    @property
    def data(self) -> bytes:
        """The status packet's data (the parameters after the error byte)."""
        if not self.is_status:
            raise ValueError("only status packets carry a data field")
        return self.params[1:]

    def encode(self) -> bytes:
        return build_packet(self.servo_id, self.instruction, self.params)


def build_packet(servo_id: int, instruction: int, params: bytes | Sequence[int] = b"") -> bytes:
    """Encode one packet: header, ID, length, instruction, stuffed parameters, CRC."""
    if not 0 <= servo_id <= BROADCAST_ID:
        raise ValueError(f"servo ID {servo_id} outside 0..{BROADCAST_ID}")
    if not 0 <= instruction <= 0xFF:
        raise ValueError(f"instruction {instruction} is not a byte")
    body = stuff(bytes([instruction]) + bytes(params))
    length = len(body) + 2
    if length > MAX_PACKET_LENGTH:
        raise ValueError(f"packet length {length} exceeds {MAX_PACKET_LENGTH}")
    head = HEADER + bytes([servo_id]) + struct.pack("<H", length)
    without_crc = head + body
    return without_crc + struct.pack("<H", crc16(without_crc))


def build_status(servo_id: int, error: int = 0, data: bytes | Sequence[int] = b"") -> bytes:
    """Encode a status packet (a servo's reply): instruction 0x55, error byte, then the data."""
    return build_packet(servo_id, Instruction.STATUS, bytes([error & 0xFF]) + bytes(data))


def parse_packet(raw: bytes) -> Packet:
    """Decode exactly one complete packet; raise :class:`PacketError` / :class:`CrcError`."""
    raw = bytes(raw)
    if len(raw) < HEADER_SIZE + MIN_PACKET_LENGTH:
        raise PacketError(f"packet too short ({len(raw)} bytes): {raw.hex(' ')}")
    if raw[:4] != HEADER:
        raise PacketError(f"packet does not start with the header FF FF FD 00: {raw[:4].hex(' ')}")
    length = struct.unpack_from("<H", raw, 5)[0]
    if length < MIN_PACKET_LENGTH or HEADER_SIZE + length != len(raw):
        raise PacketError(f"length field {length} does not match the {len(raw)}-byte packet")
    crc_received = struct.unpack_from("<H", raw, len(raw) - 2)[0]
    crc_computed = crc16(raw[:-2])
    if crc_received != crc_computed:
        raise CrcError(
            f"CRC mismatch: packet says {crc_received:04X}, bytes give {crc_computed:04X}",
            servo_id=raw[4],
            instruction=raw[7],
        )
    body = unstuff(raw[HEADER_SIZE:-2])
    return Packet(servo_id=raw[4], instruction=body[0], params=body[1:])


class PacketStream:
    """Incremental parser for a byte stream: feed bytes, get packets (or errors) as they complete.

    Bytes before a header are skipped (counted in ``skipped_bytes``). A packet whose length field is
    impossible loses its first byte and the search resumes. A partial packet that waits longer than
    ``stale_after_s`` for its remaining bytes is dropped the same way, so that one truncated packet
    cannot stall the stream.
    """

    def __init__(self, stale_after_s: float = 0.05, clock=time.monotonic):
        self._buffer = bytearray()
        self._partial_since: float | None = None
        self._stale_after_s = stale_after_s
        self._clock = clock
        self.skipped_bytes = 0

    def feed(self, data: bytes) -> list[Packet | PacketError]:
        errors = self._expire_stale()
        self._buffer += data
        return errors + self._drain()

    def poll(self) -> list[Packet | PacketError]:
        """Drop a stale partial packet, if any, and parse what follows it."""
        return self._expire_stale() + self._drain()

    def _expire_stale(self) -> list[Packet | PacketError]:
        if (
            self._partial_since is None
            or self._clock() - self._partial_since <= self._stale_after_s
        ):
            return []
        error = PacketError(f"incomplete packet: only {len(self._buffer)} bytes arrived")
        self.skipped_bytes += 1
        self._drop(1)
        return [error]

    def _drop(self, count: int) -> None:
        del self._buffer[:count]
        self._partial_since = None

    def _drain(self) -> list[Packet | PacketError]:
        out: list[Packet | PacketError] = []
        buf = self._buffer
        while True:
            start = buf.find(HEADER)
            if start < 0:
                # keep a possible header prefix at the end
                keep = 0
                for k in (3, 2, 1):
                    if len(buf) >= k and buf[-k:] == HEADER[:k]:
                        keep = k
                        break
                self.skipped_bytes += len(buf) - keep
                self._drop(len(buf) - keep)
                return out
            if start:
                self.skipped_bytes += start
                self._drop(start)
            if len(buf) < HEADER_SIZE:
                return out
            length = buf[5] | (buf[6] << 8)
            if not MIN_PACKET_LENGTH <= length <= MAX_PACKET_LENGTH:
                out.append(PacketError(f"impossible length field {length}"))
                self.skipped_bytes += 1
                self._drop(1)
                continue
            total = HEADER_SIZE + length
            if len(buf) < total:
                if self._partial_since is None:
                    self._partial_since = self._clock()
                return out
            raw = bytes(buf[:total])
            self._drop(total)
            try:
                out.append(parse_packet(raw))
            except PacketError as exc:
                out.append(exc)

    @property
    def pending(self) -> int:
        """Bytes waiting for the rest of a packet."""
        return len(self._buffer)
