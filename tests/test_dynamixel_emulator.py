"""The servo-bus emulator on a pty, driven by ROBOTIS's unmodified
dynamixel_sdk (and by raw bytes)."""

from __future__ import annotations

import math
import time

import pytest
import serial
from dynamixel_sdk import (
    COMM_RX_CORRUPT,
    COMM_RX_TIMEOUT,
    COMM_SUCCESS,
    GroupBulkRead,
    GroupBulkWrite,
    GroupSyncRead,
    GroupSyncWrite,
    PacketHandler,
    PortHandler,
)

from robots.dynamixel import control_table as ct
from robots.dynamixel import protocol as p
from robots.dynamixel.emulated_servo import Mounting
from robots.dynamixel.emulator import ServoBusEmulator
from robots.dynamixel.physics import JointReading, KinematicBackend, ServoBackend
from tests import dynamixel_packets as packets

pytestmark = pytest.mark.timeout(60)

IDS = [1, 2, 3]
START_RAD = {1: 0.0, 2: 0.5, 3: -0.5}


def fast_backend() -> KinematicBackend:
    return KinematicBackend(START_RAD, max_velocity_rad_s=100.0, time_constant_s=0.002)


@pytest.fixture
def emulator(tmp_path):
    with ServoBusEmulator(
        IDS, fast_backend(), link_path=tmp_path / "ttyEMU", model_number={1: 1030, 2: 1020, 3: 1000}
    ) as emu:
        yield emu


@pytest.fixture
def sdk(emulator):
    port = PortHandler(emulator.port_path)
    assert port.openPort() and port.setBaudRate(1_000_000)
    yield port, PacketHandler(2.0)
    port.closePort()


@pytest.fixture
def raw(emulator):
    """A plain serial connection for byte-level checks: exchange(packet) -> status packets."""
    ser = serial.Serial(emulator.port_path, 1_000_000, timeout=0.05)

    def exchange(packet: bytes, wait_s: float = 0.1) -> list:
        ser.reset_input_buffer()
        ser.write(packet)
        stream, events, deadline = p.PacketStream(), [], time.monotonic() + wait_s
        while time.monotonic() < deadline:
            events += stream.feed(ser.read(4096))
        return events

    yield exchange
    ser.close()


def test_link_and_lifecycle(tmp_path):
    link = tmp_path / "dev" / "ttyBUS"
    emu = ServoBusEmulator([5], link_path=link)
    with pytest.raises(RuntimeError, match="not started"):
        _ = emu.port_path
    with emu:
        assert link.is_symlink() and emu.port_path == str(link) and emu.running
        with pytest.raises(FileExistsError, match="already exists"):
            ServoBusEmulator([6], link_path=link).start()
    assert not link.exists() and not emu.running
    # a dangling link left behind by a dead emulator is replaced
    link.symlink_to(tmp_path / "gone")
    with ServoBusEmulator([5], link_path=link) as emu:
        assert link.resolve().name.isdigit()
    with ServoBusEmulator([5]) as emu:  # no link: the pty's own path
        assert emu.port_path.startswith("/dev/pts/")


def test_ping_and_unknown_id(sdk, emulator):
    port, ph = sdk
    for servo_id, model in ((1, 1030), (2, 1020), (3, 1000)):
        assert ph.ping(port, servo_id) == (model, COMM_SUCCESS, 0)
    assert ph.ping(port, 9)[1] == COMM_RX_TIMEOUT
    assert emulator.counters["rx_ping"] == 4


def test_broadcast_ping_replies_in_id_order(sdk, raw):
    port, ph = sdk
    found, result = ph.broadcastPing(port)
    assert result == COMM_SUCCESS
    assert found == {1: [1030, 46], 2: [1020, 46], 3: [1000, 46]}
    replies = raw(packets.ping_packet(p.BROADCAST_ID))
    assert [r.servo_id for r in replies] == IDS
    assert replies[0].data == bytes([0x06, 0x04, 46])


def test_read_write_and_register_rules(sdk, emulator):
    port, ph = sdk
    assert ph.read1ByteTxRx(port, 2, ct.OPERATING_MODE.address) == (3, COMM_SUCCESS, 0)
    assert ph.read1ByteTxRx(port, 2, ct.RETURN_DELAY_TIME.address) == (250, COMM_SUCCESS, 0)
    assert ph.write1ByteTxRx(port, 2, ct.RETURN_DELAY_TIME.address, 0) == (COMM_SUCCESS, 0)
    assert ph.read1ByteTxRx(port, 2, ct.RETURN_DELAY_TIME.address) == (0, COMM_SUCCESS, 0)
    assert ph.write4ByteTxRx(port, 2, ct.GOAL_POSITION.address, 1000) == (COMM_SUCCESS, 0)
    assert ph.read4ByteTxRx(port, 2, ct.GOAL_POSITION.address) == (1000, COMM_SUCCESS, 0)
    assert emulator.register(2, "Goal Position") == 1000
    # read-only register, EEPROM while torque is on, value out of range, beyond the table
    assert ph.write2ByteTxRx(port, 2, ct.MODEL_NUMBER.address, 1) == (
        COMM_SUCCESS,
        p.StatusError.ACCESS,
    )
    assert ph.write1ByteTxRx(port, 2, ct.TORQUE_ENABLE.address, 1) == (COMM_SUCCESS, 0)
    assert ph.write1ByteTxRx(port, 2, ct.OPERATING_MODE.address, 4) == (
        COMM_SUCCESS,
        p.StatusError.ACCESS,
    )
    assert ph.write1ByteTxRx(port, 2, ct.TORQUE_ENABLE.address, 2) == (
        COMM_SUCCESS,
        p.StatusError.DATA_RANGE,
    )
    assert ph.write4ByteTxRx(port, 2, ct.GOAL_POSITION.address, 5000) == (
        COMM_SUCCESS,
        p.StatusError.DATA_LIMIT,
    )
    assert ph.readTxRx(port, 2, 140, 20)[1:] == (COMM_SUCCESS, p.StatusError.ACCESS)
    assert emulator.register(2, "Operating Mode") == 3
    assert emulator.counters["rejected_writes"] == 4


def test_present_values_follow_the_backend_through_the_mounting(tmp_path):
    class Fixed(ServoBackend):
        def __init__(self):
            self.applied = None

        def apply(self, goals_rad, torque_enabled):
            self.applied = (dict(goals_rad), dict(torque_enabled))

        def read(self):
            return {7: JointReading(0.25, -1.0, 0.5), 8: JointReading(0.25, -1.0, 0.5)}

    backend = Fixed()
    mountings = {7: Mounting(2048, 1), 8: Mounting(1000, -1)}
    with ServoBusEmulator([7, 8], backend, mountings=mountings, model_number=1030) as emu:
        quarter = 0.25 / ct.RAD_PER_TICK
        assert emu.register(7, "Present Position") == round(2048 + quarter)
        assert emu.register(8, "Present Position") == round(1000 - quarter)
        assert emu.register(7, "Present Velocity") == round(-1.0 / ct.RAD_S_PER_VELOCITY_UNIT)
        assert emu.register(8, "Present Velocity") == round(1.0 / ct.RAD_S_PER_VELOCITY_UNIT)
        assert emu.register(7, "Present Current") == round(500 / 2.69)
        # at power-up the goal is the present position; torque is off
        goals, torque = backend.applied
        assert goals[8] == pytest.approx(0.25, abs=ct.RAD_PER_TICK) and torque == {
            7: False,
            8: False,
        }
        emu.set_mounting(8, 1100, -1)  # planting an offset keeps the physical goal
        assert backend.applied[0][8] == pytest.approx(0.25, abs=ct.RAD_PER_TICK)
        assert emu.register(8, "Present Position") == round(1100 - quarter)


def test_sync_write_then_sync_read(sdk, emulator):
    port, ph = sdk
    writer = GroupSyncWrite(port, ph, ct.GOAL_POSITION.address, 4)
    goals = {1: 1500, 2: 2500, 3: 3500}
    for servo_id, ticks in goals.items():
        writer.addParam(servo_id, list(ticks.to_bytes(4, "little")))
    assert writer.txPacket() == COMM_SUCCESS
    torque = GroupSyncWrite(port, ph, ct.TORQUE_ENABLE.address, 1)
    for servo_id in IDS:
        torque.addParam(servo_id, [1])
    assert torque.txPacket() == COMM_SUCCESS
    reader = GroupSyncRead(port, ph, ct.STATE_ADDRESS, ct.STATE_SIZE)
    for servo_id in IDS:
        reader.addParam(servo_id)
    deadline = time.monotonic() + 2.0
    while True:
        assert reader.txRxPacket() == COMM_SUCCESS
        present = {
            i: ct.decode_value(ct.encode_value(reader.getData(i, 132, 4), 4), signed=True)
            for i in IDS
        }
        if present == goals or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert present == goals
    assert all(emulator.torque_enabled(i) for i in IDS)
    assert emulator.counters["rx_sync_write"] == 2 and "replies" in emulator.counters


def test_sync_and_bulk_read_reply_in_the_order_asked(raw):
    replies = raw(packets.sync_read_packet(ct.MODEL_NUMBER.address, 2, [3, 1, 2]))
    assert [(r.servo_id, r.data) for r in replies] == [
        (3, b"\xe8\x03"),
        (1, b"\x06\x04"),
        (2, b"\xfc\x03"),
    ]
    replies = raw(
        packets.bulk_read_packet(
            [
                (2, ct.ID.address, 1),
                (3, ct.MODEL_NUMBER.address, 2),
                (1, ct.OPERATING_MODE.address, 1),
            ]
        )
    )
    assert [(r.servo_id, r.data) for r in replies] == [(2, b"\x02"), (3, b"\xe8\x03"), (1, b"\x03")]


def test_bulk_read_and_bulk_write_with_the_sdk(sdk, emulator):
    port, ph = sdk
    writer = GroupBulkWrite(port, ph)
    writer.addParam(1, ct.LED.address, 1, [1])
    writer.addParam(3, ct.GOAL_POSITION.address, 4, list((2100).to_bytes(4, "little")))
    assert writer.txPacket() == COMM_SUCCESS
    reader = GroupBulkRead(port, ph)
    reader.addParam(1, ct.LED.address, 1)
    reader.addParam(3, ct.GOAL_POSITION.address, 4)
    reader.addParam(2, ct.MODEL_NUMBER.address, 2)
    assert reader.txRxPacket() == COMM_SUCCESS
    assert reader.getData(1, ct.LED.address, 1) == 1
    assert reader.getData(3, ct.GOAL_POSITION.address, 4) == 2100
    assert reader.getData(2, ct.MODEL_NUMBER.address, 2) == 1020
    assert emulator.counters["rx_bulk_write"] == 1 and emulator.counters["rx_bulk_read"] == 1


def test_stuffed_values_cross_the_bus_both_ways(sdk, emulator):
    port, ph = sdk
    # Homing Offset -131073 = bytes FF FF FD FF: the write carries the pattern, so does the reply.
    assert ph.write4ByteTxRx(port, 1, ct.HOMING_OFFSET.address, (-131073) & 0xFFFFFFFF) == (
        COMM_SUCCESS,
        0,
    )
    assert emulator.register(1, ct.HOMING_OFFSET) == -131073
    value, result, error = ph.read4ByteTxRx(port, 1, ct.HOMING_OFFSET.address)
    assert (value, result, error) == ((-131073) & 0xFFFFFFFF, COMM_SUCCESS, 0)


def test_a_state_reply_that_needs_stuffing_reaches_the_sdk_intact():
    # Present Velocity -1 (FF FF FF FF) followed by Present Position 3069 (FD 0B 00 00) puts
    # FF FF FD in the reply's body: the emulator stuffs it and the SDK unstuffs it.
    class Still(ServoBackend):
        def apply(self, goals_rad, torque_enabled):
            pass

        def read(self):
            return {
                4: JointReading((3069 - 2048) * ct.RAD_PER_TICK, -ct.RAD_S_PER_VELOCITY_UNIT, 0.0)
            }

    with ServoBusEmulator([4], Still()) as emu:
        port, ph = PortHandler(emu.port_path), PacketHandler(2.0)
        assert port.openPort()
        try:
            reader = GroupSyncRead(port, ph, ct.STATE_ADDRESS, ct.STATE_SIZE)
            reader.addParam(4)
            assert reader.txRxPacket() == COMM_SUCCESS
            assert reader.getData(4, ct.PRESENT_VELOCITY.address, 4) == 0xFFFFFFFF
            assert reader.getData(4, ct.PRESENT_POSITION.address, 4) == 3069
        finally:
            port.closePort()
        assert emu.counters["tx_bytes"] == 11 + ct.STATE_SIZE + 1  # one stuffed byte


def test_bad_crc_gets_a_crc_error_status_and_broadcasts_are_ignored(raw, emulator):
    bad = bytearray(packets.read_packet(2, ct.PRESENT_POSITION.address, 4))
    bad[-1] ^= 0x55
    replies = raw(bytes(bad))
    assert len(replies) == 1 and replies[0].servo_id == 2
    assert replies[0].error == p.StatusError.CRC and replies[0].data == b""
    bad = bytearray(packets.sync_read_packet(ct.PRESENT_POSITION.address, 4, IDS))
    bad[-2] ^= 0x01
    assert raw(bytes(bad)) == []
    assert emulator.counters["rx_crc_errors"] == 2
    # noise on the line is skipped
    assert [r.servo_id for r in raw(b"\x00\xff\x13" + packets.ping_packet(3))] == [3]


def test_dropped_and_corrupted_replies(sdk, emulator):
    port, ph = sdk
    emulator.drop_replies(1, servo_id=2)
    assert ph.ping(port, 1)[1] == COMM_SUCCESS  # another servo is unaffected
    assert ph.ping(port, 2)[1] == COMM_RX_TIMEOUT
    assert ph.ping(port, 2)[1] == COMM_SUCCESS
    emulator.corrupt_replies(1)
    assert ph.ping(port, 3)[1] == COMM_RX_CORRUPT
    assert ph.ping(port, 3)[1] == COMM_SUCCESS
    counters = emulator.counters
    assert counters["dropped_replies"] == 1 and counters["corrupted_replies"] == 1
    emulator.set_reply_faults(drop_probability=1.0)
    assert ph.ping(port, 1)[1] == COMM_RX_TIMEOUT
    emulator.clear_faults()
    assert ph.ping(port, 1)[1] == COMM_SUCCESS


def test_silent_servo_neither_answers_nor_acts(sdk, emulator):
    port, ph = sdk
    emulator.set_silent(2)
    assert ph.ping(port, 2)[1] == COMM_RX_TIMEOUT
    writer = GroupSyncWrite(port, ph, ct.LED.address, 1)
    for servo_id in IDS:
        writer.addParam(servo_id, [1])
    writer.txPacket()
    reader = GroupSyncRead(port, ph, ct.LED.address, 1)
    for servo_id in IDS:
        reader.addParam(servo_id)
    assert reader.txRxPacket() == COMM_RX_TIMEOUT  # the SDK waits for servo 2 in vain
    emulator.set_silent(2, False)
    assert emulator.register(2, "LED") == 0 and emulator.register(3, "LED") == 1


def test_hardware_error_sets_the_alert_bit_until_reboot(sdk, emulator):
    port, ph = sdk
    assert ph.write1ByteTxRx(port, 3, ct.TORQUE_ENABLE.address, 1) == (COMM_SUCCESS, 0)
    emulator.set_hardware_error(3, 0x24)  # overheating + overload
    assert not emulator.torque_enabled(3)
    assert ph.read1ByteTxRx(port, 3, ct.HARDWARE_ERROR_STATUS.address) == (
        0x24,
        COMM_SUCCESS,
        p.ALERT_BIT,
    )
    assert ph.write1ByteTxRx(port, 3, ct.TORQUE_ENABLE.address, 1) == (
        COMM_SUCCESS,
        p.ALERT_BIT | p.StatusError.RESULT_FAIL,
    )
    assert ct.describe_hardware_error(0x24) == "overheating, overload"
    assert ph.reboot(port, 3) == (COMM_SUCCESS, 0)
    assert ph.write1ByteTxRx(port, 3, ct.TORQUE_ENABLE.address, 1) == (COMM_SUCCESS, 0)


def test_status_return_level_and_unsupported_instructions(sdk, raw):
    port, ph = sdk
    assert ph.write1ByteTxRx(port, 1, ct.STATUS_RETURN_LEVEL.address, 1) == (COMM_SUCCESS, 0)
    assert (
        raw(packets.write_packet(1, ct.LED.address, b"\x01")) == []
    )  # level 1: no reply to writes
    assert len(raw(packets.read_packet(1, ct.LED.address, 1))) == 1
    replies = raw(p.build_packet(2, p.Instruction.FACTORY_RESET, b"\xff"))
    assert replies[0].error == p.StatusError.INSTRUCTION


def test_kinematic_backend_tracks_at_the_speed_limit_then_settles():
    now = [0.0]
    backend = KinematicBackend(
        {1: 0.0}, max_velocity_rad_s=2.0, time_constant_s=0.05, clock=lambda: now[0]
    )
    backend.apply({1: 1.0}, {1: False})
    now[0] = 1.0
    assert backend.read()[1] == JointReading(0.0, 0.0, 0.0)  # torque off: stays put
    backend.apply({1: 1.0}, {1: True})
    now[0] = 1.2
    reading = backend.read()[1]
    assert reading.position_rad == pytest.approx(0.4) and reading.velocity_rad_s == pytest.approx(
        2.0
    )
    assert reading.current_a > 0
    # saturated until 0.1 rad from the goal (at t = 1.45), then exponential with tau = 0.05
    now[0] = 1.55
    reading = backend.read()[1]
    assert reading.position_rad == pytest.approx(1.0 - 0.1 * math.exp(-2.0))
    assert reading.velocity_rad_s == pytest.approx(0.1 * math.exp(-2.0) / 0.05)
