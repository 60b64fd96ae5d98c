"""The emulated bus answers like a servo: its port link appears only once it answers, the Bus
Watchdog stops a servo nobody talks to, and the bus process serves the emulator's calls, reports
its reply latency and dies with its parent.

The Bus Watchdog's timing is checked on an injected clock that moves only when the test says, so
the window's edge is exact however busy the computer is; the bus process, which keeps the real
clock, is checked against what it measured itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
from dynamixel_sdk import COMM_SUCCESS, GroupSyncWrite, PacketHandler, PortHandler

from robots.dynamixel import control_table as ct
from robots.dynamixel.bus_process import ServoBusProcess
from robots.dynamixel.emulator import ServoBusEmulator
from robots.dynamixel.physics import JointReading, KinematicBackend, SharedJointState
from robots.dynamixel.protocol import StatusError
from tests.virtual_robot import wait_for

pytestmark = pytest.mark.timeout(60)

IDS = [1, 2, 3]
WINDOW_UNITS = 5  # Bus Watchdog window: 5 x 20 ms = 100 ms
WINDOW_S = WINDOW_UNITS * 0.02
EDGE_S = 0.001  # how far inside or outside the window the fake clock steps


class FakeClock:
    """A monotonic clock (s) that moves only when the test advances it."""

    def __init__(self, start_s: float = 1000.0):
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def shared_state(positions_rad: dict[int, float]) -> SharedJointState:
    state = SharedJointState(sorted(positions_rad))
    state.write_readings({i: JointReading(q) for i, q in positions_rad.items()})
    return state


@pytest.fixture(params=["thread", "process"])
def bus(request, tmp_path):
    """The bus in both modes; the thread's backend moves slowly, so that a stop shows."""
    link = tmp_path / "ttyBUS"
    if request.param == "thread":
        backend = KinematicBackend(dict.fromkeys(IDS, 0.0), max_velocity_rad_s=0.5)
        with ServoBusEmulator(IDS, backend, link_path=link) as emulator:
            yield emulator
    else:
        state = shared_state(dict.fromkeys(IDS, 0.0))
        try:
            with ServoBusProcess(IDS, state, link_path=link) as emulator:
                yield emulator
        finally:
            state.close()


class PatientPortHandler(PortHandler):
    """The SDK's port handler, waiting up to 2 s for a reply instead of its ~34 ms: these tests
    check the emulator's answers, not how soon a busy computer schedules the client again."""

    def setPacketTimeout(self, packet_length):  # noqa: N802 (the SDK's name)
        super().setPacketTimeout(packet_length)
        self.packet_timeout += 2000.0  # ms


@contextmanager
def open_sdk(bus):
    port = PatientPortHandler(bus.port_path)
    assert port.openPort() and port.setBaudRate(1_000_000)
    try:
        yield port, PacketHandler(2.0)
    finally:
        port.closePort()


@pytest.fixture
def sdk(bus):
    with open_sdk(bus) as handles:
        yield handles


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def bus_on_a_fake_clock(tmp_path, clock):
    """The bus served by a thread, its clock and its joints' physics on ``clock``."""
    backend = KinematicBackend(dict.fromkeys(IDS, 0.0), max_velocity_rad_s=0.5, clock=clock)
    with ServoBusEmulator(IDS, backend, link_path=tmp_path / "ttyBUS", clock=clock) as emulator:
        yield emulator


def write(sdk, servo_id: int, register: ct.Register, value: int) -> tuple[int, int]:
    port, packets = sdk
    data = list(register.encode(value))
    result, error = packets.writeTxRx(port, servo_id, register.address, len(data), data)
    assert result == COMM_SUCCESS, packets.getTxRxResult(result)
    return error


def read(sdk, servo_id: int, register: ct.Register) -> int:
    port, packets = sdk
    data, result, error = packets.readTxRx(port, servo_id, register.address, register.size)
    assert result == COMM_SUCCESS, packets.getTxRxResult(result)
    return register.decode(bytes(data))


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_link_appears_only_once_the_bus_answers(tmp_path, mode):
    link = tmp_path / "ttyBUS"
    answered: list[int] = []

    def open_at_once_and_ping() -> None:
        while not os.path.lexists(link):
            time.sleep(0.0002)
        port = PatientPortHandler(str(link))
        assert port.openPort()
        model, result, _ = PacketHandler(2.0).ping(port, 1)
        port.closePort()
        answered.append(result)

    client = threading.Thread(target=open_at_once_and_ping, daemon=True)
    client.start()
    state = shared_state(dict.fromkeys(IDS, 0.0)) if mode == "process" else None
    bus = (
        ServoBusEmulator(IDS, link_path=link)
        if state is None
        else ServoBusProcess(IDS, state, link_path=link)
    )
    with bus:
        client.join(timeout=10)
    if state is not None:
        state.close()
    assert answered == [COMM_SUCCESS]
    assert not os.path.lexists(link)


def test_the_bus_watchdog_stops_a_servo_nobody_talks_to(bus_on_a_fake_clock, clock):
    bus = bus_on_a_fake_clock
    with open_sdk(bus) as sdk:
        assert write(sdk, 1, ct.TORQUE_ENABLE, 1) == 0
        goal = int(ct.rad_to_ticks(1.0, 2048, 1))
        assert write(sdk, 1, ct.GOAL_POSITION, goal) == 0
        assert write(sdk, 1, ct.BUS_WATCHDOG, WINDOW_UNITS) == 0
        for _ in range(5):  # an instruction just inside the window each time keeps it fed
            clock.advance(WINDOW_S - EDGE_S)
            assert read(sdk, 1, ct.BUS_WATCHDOG) == WINDOW_UNITS
        assert bus.counters.get("bus_watchdog_errors", 0) == 0
        assert bus.take_longest_silence_s() == pytest.approx(WINDOW_S - EDGE_S)
        # Just past the window: the next packet finds the servo stopped, on its way to the goal.
        clock.advance(WINDOW_S + EDGE_S)
        assert read(sdk, 1, ct.BUS_WATCHDOG) == ct.BUS_WATCHDOG_ERROR  # reads -1
        assert bus.counters["bus_watchdog_errors"] == 1  # only the servo that watched
        assert bus.take_longest_silence_s() == pytest.approx(WINDOW_S + EDGE_S)
        frozen = bus.register(1, ct.GOAL_POSITION)
        walked_rad = 0.5 * 6 * WINDOW_S  # 0.5 rad/s for the 0.6 s the clock moved
        assert frozen == pytest.approx(int(ct.rad_to_ticks(walked_rad, 2048, 1)), abs=20)
        assert frozen == bus.register(1, ct.PRESENT_POSITION)
        assert bus.torque_enabled(1)  # it holds where it is
        clock.advance(1.0)
        assert abs(bus.register(1, ct.PRESENT_POSITION) - frozen) <= 1  # and stays there
        # The goals are read-only now: a write is refused with a Data Range error, a sync write
        # ignored.
        assert write(sdk, 1, ct.GOAL_POSITION, goal) == StatusError.DATA_RANGE
        assert write(sdk, 1, ct.GOAL_VELOCITY, 10) == StatusError.DATA_RANGE
        port, packets = sdk
        group = GroupSyncWrite(port, packets, ct.GOAL_POSITION.address, ct.GOAL_POSITION.size)
        group.addParam(1, list(ct.GOAL_POSITION.encode(goal)))
        assert group.txPacket() == COMM_SUCCESS
        assert read(sdk, 1, ct.GOAL_POSITION) == frozen
        # Writing 0 clears the error; the goals take writes again.
        assert write(sdk, 1, ct.BUS_WATCHDOG, 0) == 0
        assert read(sdk, 1, ct.BUS_WATCHDOG) == 0
        assert write(sdk, 1, ct.GOAL_POSITION, goal) == 0
        assert read(sdk, 1, ct.GOAL_POSITION) == goal


def test_the_bus_watchdog_watches_only_while_torque_is_on(bus, sdk):
    assert write(sdk, 2, ct.BUS_WATCHDOG, 1) == 0  # 20 ms, torque off
    time.sleep(0.1)
    assert read(sdk, 2, ct.BUS_WATCHDOG) == 1
    assert write(sdk, 2, ct.BUS_WATCHDOG, 128) == StatusError.DATA_RANGE  # 1..127 only


def test_the_watchdog_fires_with_nothing_on_the_bus(bus_on_a_fake_clock, clock):
    """A window set from outside (test setup) starts counting at once; the serving loop's timer
    stops the servo with no packet on the bus, judging the silence on its clock."""
    bus = bus_on_a_fake_clock
    bus.set_register(3, ct.TORQUE_ENABLE, 1)
    bus.set_register(3, ct.BUS_WATCHDOG, WINDOW_UNITS)
    clock.advance(WINDOW_S + EDGE_S)
    assert wait_for(
        lambda: bus.register(3, ct.BUS_WATCHDOG) == ct.BUS_WATCHDOG_ERROR, timeout_s=5.0
    )
    assert bus.take_longest_silence_s() == pytest.approx(WINDOW_S + EDGE_S)
    assert bus.counters["bus_watchdog_errors"] == 1


def test_the_longest_silence_counts_only_while_a_watchdog_watches(bus_on_a_fake_clock, clock):
    """take_longest_silence_s: the silences the Bus Watchdog judges, the one going on included,
    measured afresh after each call."""
    bus = bus_on_a_fake_clock
    with open_sdk(bus) as sdk:
        read(sdk, 1, ct.PRESENT_POSITION)
        clock.advance(5.0)  # torque off, no window: a pause nobody judges
        read(sdk, 1, ct.PRESENT_POSITION)
        assert bus.take_longest_silence_s() == 0.0
        assert write(sdk, 1, ct.TORQUE_ENABLE, 1) == 0
        assert write(sdk, 1, ct.BUS_WATCHDOG, 100) == 0  # a 2 s window
        clock.advance(0.4)
        read(sdk, 1, ct.PRESENT_POSITION)
        clock.advance(0.1)
        assert bus.take_longest_silence_s() == pytest.approx(0.4)
        clock.advance(0.25)
        assert bus.take_longest_silence_s() == pytest.approx(0.35)  # 0.1 + 0.25 since the read


def test_the_bus_process_watchdog_fires_with_nothing_on_the_bus(tmp_path):
    """The bus process keeps the real clock: its timer fires on its own, never before the window
    passed by its own measure."""
    state = shared_state(dict.fromkeys(IDS, 0.0))
    try:
        with ServoBusProcess(IDS, state, link_path=tmp_path / "ttyBUS") as bus:
            bus.set_register(3, ct.TORQUE_ENABLE, 1)
            bus.set_register(3, ct.BUS_WATCHDOG, WINDOW_UNITS)
            assert wait_for(
                lambda: bus.register(3, ct.BUS_WATCHDOG) == ct.BUS_WATCHDOG_ERROR, timeout_s=5.0
            )
            assert bus.take_longest_silence_s() > WINDOW_S
            assert bus.counters["bus_watchdog_errors"] == 1
    finally:
        state.close()


def test_reply_latency_is_measured(bus, sdk):
    """Every reply is counted by the time its client has it, and each latency lies inside the
    round trip the client timed around it (one monotonic clock for both processes)."""
    assert bus.reply_latency()["count"] == 0
    round_trips_s = []
    for _ in range(20):
        sent_s = time.monotonic()
        read(sdk, 1, ct.PRESENT_POSITION)
        round_trips_s.append(time.monotonic() - sent_s)
    latency = bus.reply_latency()
    assert latency["count"] == 20
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert latency["max_ms"] <= 1000 * max(round_trips_s)


def test_the_bus_process_serves_the_emulators_calls(tmp_path):
    state = shared_state({1: 0.0, 2: 0.5, 3: -0.5})
    with ServoBusProcess(IDS, state, link_path=tmp_path / "tty") as bus:
        assert bus.scheduling and bus.pid != os.getpid()
        assert bus.register(2, "Present Position") == int(ct.rad_to_ticks(0.5, 2048, 1))
        # Goals the bus writes reach the physics side once per change, never twice.
        bus.set_register(1, ct.TORQUE_ENABLE, 1)
        goals, torque = state.take_goals()
        assert torque == {1: True, 2: False, 3: False} and goals[2] == pytest.approx(0.5, abs=0.002)
        assert state.take_goals() is None
        state.write_readings({1: JointReading(0.2), 2: JointReading(0.5), 3: JointReading(-0.5)})
        bus.goals_to_present()
        assert bus.joint_goals()[1] == pytest.approx(0.2, abs=0.002)
        assert bus.joint_readings()[1].position_rad == 0.2
        bus.goals_to({3: 0.4})  # where the physics put it: the servo holds exactly there
        assert bus.joint_goals()[3] == pytest.approx(0.4, abs=0.002)
        assert bus.joint_goals()[1] == pytest.approx(0.2, abs=0.002)  # the others keep theirs
        assert state.take_goals()[0][3] == pytest.approx(0.4, abs=0.002)
        with pytest.raises(ValueError, match=r"no servo with ID \[7\]"):
            bus.goals_to({7: 0.0})
        bus.set_silent(2)
        bus.drop_replies(1)
        bus.clear_faults()
        with pytest.raises(KeyError, match="no servo with ID 7"):
            bus.torque_enabled(7)
        assert bus.counters["torn_reads"] == 0
    assert bus.counters["rx_bytes"] == 0  # kept from when the process ended
    state.close()


def test_the_bus_process_dies_with_its_parent(tmp_path):
    link = tmp_path / "tty"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\n"
                "from robots.dynamixel.bus_process import ServoBusProcess\n"
                "from robots.dynamixel.physics import JointReading, SharedJointState\n"
                "state = SharedJointState([1])\n"
                "state.write_readings({1: JointReading(0.0)})\n"
                f"bus = ServoBusProcess([1], state, link_path={str(link)!r}).start()\n"
                "print(bus.pid, flush=True)\n"
                "time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child_pid = int(parent.stdout.readline())
    assert os.path.islink(link)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (os.path.lexists(link) or _alive(child_pid)):
        time.sleep(0.05)
    assert not _alive(child_pid) and not os.path.lexists(link)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split()[2] == "Z"
