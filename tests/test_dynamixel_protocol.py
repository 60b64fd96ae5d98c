"""Protocol 2.0 packets byte for byte: check vectors, CRC, stuffing, and
agreement with ROBOTIS's SDK."""

from __future__ import annotations

import random

import pytest
from dynamixel_sdk import GroupBulkRead, GroupBulkWrite, GroupSyncWrite, PacketHandler
from dynamixel_sdk.protocol2_packet_handler import Protocol2PacketHandler

from robots.dynamixel import protocol as p
from tests import dynamixel_packets as packets


def h(text: str) -> bytes:
    return bytes.fromhex(text)


class CapturePort:
    """Stands in for the SDK's PortHandler and records what the SDK would put on the wire."""

    def __init__(self):
        self.written: list[bytes] = []

    @property
    def is_using(self):
        return False  # nothing is ever received here, so the port is never left busy

    @is_using.setter
    def is_using(self, value):
        pass

    def clearPort(self):
        pass

    def writePort(self, packet):
        self.written.append(bytes(packet))
        return len(packet)

    def readPort(self, length):
        return b""

    def setPacketTimeout(self, packet_length):
        pass

    def setPacketTimeoutMillis(self, msec):
        pass

    def isPacketTimeout(self):
        return True

    def getBaudRate(self):
        return 1_000_000


def test_ping_check_vector():
    assert packets.ping_packet(1) == h("FF FF FD 00 01 03 00 01 19 4E")


def test_crc_matches_known_values_and_the_sdk():
    assert p.crc16(h("FF FF FD 00 01 03 00 01")) == 0x4E19
    sdk = Protocol2PacketHandler()
    rng = random.Random(0)
    for n in (0, 1, 7, 64, 300):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert p.crc16(data) == sdk.updateCRC(0, list(data), n)
    # incremental use equals one pass
    data = bytes(range(200))
    assert p.crc16(data[100:], p.crc16(data[:100])) == p.crc16(data)


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        # e-manual examples (ID 1): read Present Position, write 512 to Goal Position, replies
        (lambda: packets.read_packet(1, 132, 4), "FF FF FD 00 01 07 00 02 84 00 04 00 1D 15"),
        (
            lambda: packets.write_packet(1, 116, (512).to_bytes(4, "little")),
            "FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89",
        ),
        (lambda: p.build_status(1, 0, h("06 04 26")), "FF FF FD 00 01 07 00 55 00 06 04 26 65 5D"),
        (
            lambda: p.build_status(1, 0, (166).to_bytes(4, "little")),
            "FF FF FD 00 01 08 00 55 00 A6 00 00 00 8C C0",
        ),
        (lambda: p.build_status(1, 0), "FF FF FD 00 01 04 00 55 00 A1 0C"),
    ],
)
def test_instruction_and_status_packets_byte_for_byte(packet, expected):
    assert packet() == h(expected)


def test_status_packet_parses_back():
    raw = p.build_status(7, p.ALERT_BIT | p.StatusError.ACCESS, h("01 02"))
    packet = p.parse_packet(raw)
    assert packet.is_status and packet.servo_id == 7
    assert packet.error == 0x87 and packet.data == h("01 02")


def test_packets_equal_what_the_sdk_sends():
    ph = PacketHandler(2.0)
    port = CapturePort()

    ph.ping(port, 12)
    assert port.written[-1] == packets.ping_packet(12)

    ph.readTxRx(port, 21, 132, 4)
    assert port.written[-1] == packets.read_packet(21, 132, 4)

    ph.writeTxOnly(port, 30, 116, 4, [0x00, 0x08, 0x00, 0x00])
    assert port.written[-1] == packets.write_packet(30, 116, (2048).to_bytes(4, "little"))

    ph.syncReadTx(port, 126, 10, [10, 11, 12], 3, False)
    assert port.written[-1] == packets.sync_read_packet(126, 10, [10, 11, 12])

    goals = {10: 1024, 11: 2048, 12: 3000}
    group = GroupSyncWrite(port, ph, 116, 4)
    for servo_id, ticks in goals.items():
        group.addParam(servo_id, list(ticks.to_bytes(4, "little")))
    group.txPacket()
    assert port.written[-1] == packets.sync_write_packet(
        116, 4, {i: t.to_bytes(4, "little") for i, t in goals.items()}
    )

    bulk = GroupBulkRead(port, ph)
    bulk.addParam(10, 132, 4)
    bulk.addParam(20, 126, 10)
    bulk.txPacket()
    assert port.written[-1] == packets.bulk_read_packet([(10, 132, 4), (20, 126, 10)])

    bulk_write = GroupBulkWrite(port, ph)
    bulk_write.addParam(10, 64, 1, [1])
    bulk_write.addParam(20, 116, 4, [0, 8, 0, 0])
    bulk_write.txPacket()
    assert port.written[-1] == packets.bulk_write_packet(
        [(10, 64, b"\x01"), (20, 116, h("00 08 00 00"))]
    )


def test_stuffing_examples():
    assert p.stuff(h("03 FF FF FD 00")) == h("03 FF FF FD FD 00")
    assert p.stuff(h("FF FF FD")) == h("FF FF FD FD")
    assert p.stuff(h("FF FF FD FD")) == h("FF FF FD FD FD")
    assert p.stuff(h("FF FD FF FF")) == h("FF FD FF FF")
    assert p.unstuff(h("03 FF FF FD FD 00")) == h("03 FF FF FD 00")


def test_stuffing_round_trip_on_random_bytes():
    rng = random.Random(1)
    for _ in range(2000):
        body = bytes(
            rng.choice((0xFF, 0xFD, 0x00, rng.randrange(256))) for _ in range(rng.randrange(1, 24))
        )
        stuffed = p.stuff(body)
        assert p.unstuff(stuffed) == body
        # after stuffing, every FF FF FD is followed by FD: no header can appear in a body
        for i in range(len(stuffed) - 2):
            if stuffed[i : i + 3] == p.STUFFING_PATTERN:
                assert i + 3 < len(stuffed) and stuffed[i + 3] == 0xFD


def test_a_packet_that_needs_stuffing():
    # Homing Offset (20) := -131073 = 0xFFFDFFFF, whose bytes FF FF FD need stuffing.
    value = (-131073).to_bytes(4, "little", signed=True)
    assert value == h("FF FF FD FF")
    raw = packets.write_packet(1, 20, value)
    # length 10 = inst + 2 address + 4 data + 1 stuffed FD + 2 CRC
    assert raw[:12] == h("FF FF FD 00 01 0A 00 03 14 00 FF FF") and raw[12:14] == h("FD FD")
    assert raw[-2:] == p.crc16(raw[:-2]).to_bytes(2, "little")
    parsed = p.parse_packet(raw)
    assert (parsed.servo_id, parsed.instruction, parsed.params) == (
        1,
        p.Instruction.WRITE,
        h("14 00") + value,
    )


def test_the_sdks_unstuffed_instruction_packets_are_accepted():
    # dynamixel-sdk 4.1.0 computes the stuffed packet but discards it (txPacket ignores the return
    # value of addStuffing), so it sends FF FF FD unstuffed. Our parser accepts that form too.
    value = (-131073).to_bytes(4, "little", signed=True)
    ph, port = PacketHandler(2.0), CapturePort()
    ph.writeTxOnly(port, 1, 20, 4, list(value))
    sent = port.written[-1]
    assert sent == h("FF FF FD 00 01 09 00 03 14 00 FF FF FD FF AD 05")
    assert p.parse_packet(sent) == p.parse_packet(packets.write_packet(1, 20, value))


def test_parse_rejects_bad_packets():
    good = packets.read_packet(1, 132, 4)
    with pytest.raises(p.CrcError) as info:
        p.parse_packet(good[:-1] + bytes([good[-1] ^ 1]))
    assert info.value.servo_id == 1 and info.value.instruction == p.Instruction.READ
    with pytest.raises(p.PacketError, match="header"):
        p.parse_packet(b"\x00" + good[1:])
    with pytest.raises(p.PacketError, match="length"):
        p.parse_packet(good + b"\x00")
    with pytest.raises(p.PacketError, match="short"):
        p.parse_packet(good[:6])


def test_packet_stream_reassembles_and_resynchronises():
    stream = p.PacketStream()
    a, b = packets.ping_packet(3), packets.write_packet(4, 20, h("FF FF FD FF"))
    corrupt = a[:-1] + bytes([a[-1] ^ 0xFF])
    wire = b"\x12\x34" + a + corrupt + b
    events = []
    for i in range(0, len(wire), 3):  # arrives in small pieces
        events += stream.feed(wire[i : i + 3])
    assert [type(e) for e in events] == [p.Packet, p.CrcError, p.Packet]
    assert events[0] == p.Packet(3, p.Instruction.PING)
    assert events[2].params == h("14 00 FF FF FD FF")
    assert stream.skipped_bytes == 2 and stream.pending == 0


def test_packet_stream_drops_a_stale_partial_packet():
    now = [0.0]
    stream = p.PacketStream(stale_after_s=0.05, clock=lambda: now[0])
    assert stream.feed(packets.ping_packet(1)[:8]) == []
    now[0] = 1.0
    events = stream.feed(packets.ping_packet(2))
    assert any(isinstance(e, p.PacketError) for e in events)
    assert p.Packet(2, p.Instruction.PING) in events


def test_build_packet_validates():
    with pytest.raises(ValueError):
        p.build_packet(0xFF, p.Instruction.PING)
    with pytest.raises(ValueError):
        packets.sync_write_packet(116, 4, {1: b"\x00"})
