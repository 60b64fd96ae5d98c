"""The emulated bus answers like a servo: its port link appears only once it answers, the Bus
Watchdog stops a servo nobody talks to, and the bus process serves the emulator's calls, reports
its reply latency and dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from dynamixel_sdk import COMM_SUCCESS, GroupSyncWrite, PacketHandler, PortHandler

from robots.dynamixel import control_table as ct
from robots.dynamixel.emulator import (
    BUS_WATCHDOG_ERROR,
    KinematicBackend,
    ServoBusEmulator,
    ServoBusProcess,
    SharedJointState,
)
from robots.dynamixel.physics import JointReading
from robots.dynamixel.protocol import StatusError

pytestmark = pytest.mark.timeout(60)

IDS = [1, 2, 3]
WINDOW_UNITS = 5  # Bus Watchdog window: 5 x 20 ms = 100 ms
MARGIN_S = 0.1


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


@pytest.fixture
def sdk(bus):
    port = PortHandler(bus.port_path)
    assert port.openPort() and port.setBaudRate(1_000_000)
    yield port, PacketHandler(2.0)
    port.closePort()


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
        port = PortHandler(str(link))
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


def test_the_bus_watchdog_stops_a_servo_nobody_talks_to(bus, sdk):
    assert write(sdk, 1, ct.TORQUE_ENABLE, 1) == 0
    goal = int(ct.rad_to_ticks(1.0, 2048, 1))
    assert write(sdk, 1, ct.GOAL_POSITION, goal) == 0
    assert write(sdk, 1, ct.BUS_WATCHDOG, WINDOW_UNITS) == 0
    for _ in range(6):  # instructions every 50 ms keep it fed for 300 ms, three windows
        time.sleep(0.05)
        assert read(sdk, 1, ct.BUS_WATCHDOG) == WINDOW_UNITS
    time.sleep(WINDOW_UNITS * 0.02 + MARGIN_S)  # silence past the window
    assert bus.counters["bus_watchdog_errors"] == 1  # only the servo that watched
    assert bus.register(1, ct.BUS_WATCHDOG) == BUS_WATCHDOG_ERROR  # reads -1
    frozen = bus.register(1, ct.GOAL_POSITION)
    assert frozen != goal and frozen == pytest.approx(bus.register(1, ct.PRESENT_POSITION), abs=20)
    assert bus.torque_enabled(1)  # it holds where it is
    # The goals are read-only now: a write is refused with a Data Range error, a sync write ignored.
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


def test_the_watchdog_fires_on_a_set_register_too(bus):
    """A window set from outside (test setup) starts counting at once, with no packet on the bus."""
    bus.set_register(3, ct.TORQUE_ENABLE, 1)
    bus.set_register(3, ct.BUS_WATCHDOG, WINDOW_UNITS)
    time.sleep(WINDOW_UNITS * 0.02 + MARGIN_S)
    assert bus.register(3, ct.BUS_WATCHDOG) == BUS_WATCHDOG_ERROR


def test_reply_latency_is_measured(bus, sdk):
    assert bus.reply_latency()["count"] == 0
    for _ in range(20):
        read(sdk, 1, ct.PRESENT_POSITION)
    latency = bus.reply_latency()
    assert latency["count"] == 20
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"] < 1000


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
                "from robots.dynamixel.emulator import ServoBusProcess, SharedJointState\n"
                "from robots.dynamixel.physics import JointReading\n"
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
