"""How emulated servos answer Protocol 2.0 instruction packets.

PING (also broadcast: every servo, in ID order), READ, WRITE, SYNC_READ and BULK_READ (replies in
the order the IDs were asked), SYNC_WRITE and BULK_WRITE (no reply) and REBOOT (clears a hardware
error). A unicast instruction with a bad CRC is answered with a CRC error status; a broadcast one is
ignored; an instruction the servos do not know gets an Instruction error. Every reply passes
through Status Return Level and the planted reply faults (:mod:`robots.dynamixel.reply_faults`).
Not thread-safe: the emulator calls it under its lock.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Callable

from robots.dynamixel import control_table as ct
from robots.dynamixel.emulated_servo import READ_INSTRUCTIONS, EmulatedServo
from robots.dynamixel.protocol import (
    BROADCAST_ID,
    CrcError,
    Instruction,
    Packet,
    PacketError,
    StatusError,
)
from robots.dynamixel.reply_faults import ReplyFaults

WRITE_INSTRUCTIONS = frozenset(
    {Instruction.WRITE, Instruction.SYNC_WRITE, Instruction.BULK_WRITE, Instruction.REBOOT}
)


class InstructionHandler:
    """Answers each packet from the bus on behalf of ``servos`` (ID -> servo, renumbered in place
    when a servo's ID is written), counting what it handled in ``counters``.

    ``refresh_present`` is called before a read instruction is answered, ``apply_goals`` after a
    write instruction was handled: the physics exchange around the control tables.
    """

    def __init__(
        self,
        servos: dict[int, EmulatedServo],
        counters: collections.Counter[str],
        faults: ReplyFaults,
        refresh_present: Callable[[], None],
        apply_goals: Callable[[], None],
    ):
        self._servos = servos
        self._counters = counters
        self._faults = faults
        self._refresh_present = refresh_present
        self._apply_goals = apply_goals
        self._handlers = {
            Instruction.PING: self._ping,
            Instruction.READ: self._read,
            Instruction.WRITE: self._write,
            Instruction.SYNC_READ: self._sync_read,
            Instruction.SYNC_WRITE: self._sync_write,
            Instruction.BULK_READ: self._bulk_read,
            Instruction.BULK_WRITE: self._bulk_write,
            Instruction.REBOOT: self._reboot,
        }

    def handle(self, event: Packet | PacketError) -> bytes:
        """The status packets answering one packet (or packet error) from the bus."""
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
        if event.is_status:
            self._counters["rx_status_ignored"] += 1  # another device's reply, not for us
            return b""
        return self._instruction(event)

    def _instruction(self, packet: Packet) -> bytes:
        try:
            name = Instruction(packet.instruction).name.lower()
        except ValueError:
            name = "unknown"
        self._counters[f"rx_{name}"] += 1
        if packet.servo_id != BROADCAST_ID and packet.servo_id not in self._servos:
            return b""
        if packet.instruction in READ_INSTRUCTIONS:
            self._refresh_present()
        replies = self._handlers.get(packet.instruction, self._unsupported)(packet)
        if packet.instruction in WRITE_INSTRUCTIONS:
            self._apply_goals()
        return b"".join(replies)

    def _targets(self, packet: Packet) -> list[EmulatedServo]:
        if packet.servo_id == BROADCAST_ID:
            return [s for _, s in sorted(self._servos.items()) if not s.silent]
        servo = self._servos[packet.servo_id]
        return [] if servo.silent else [servo]

    def _reply(
        self,
        servo: EmulatedServo,
        statuses: list[bytes],
        instruction: int,
        answers: bool | None = None,
    ) -> bytes:
        """Pass a servo's status packets through Status Return Level and the planted reply faults.

        ``answers`` overrides the Status Return Level check (a write to that register is answered
        according to the level it found).
        """
        if not (servo.replies_to(instruction) if answers is None else answers):
            return b""
        return self._faults.pass_on(servo.get(ct.ID), statuses)

    # --- one method per instruction ---------------------------------------------------------------
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

    def _write_table(self, servo: EmulatedServo, address: int, data: bytes) -> int:
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
