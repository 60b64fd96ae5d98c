"""One owner per robot: the servo port's lock, and every command that talks to servos refused
(exit 2, naming the holder, before a byte is sent) while another process holds the port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import serial

from robots.dclaw import DCLAW
from robots.dclaw.virtual import VirtualDClaw
from robots.dynamixel.bus import DynamixelBus, SerialPortNotFoundError
from robots.dynamixel.port_lock import PortInUseError, PortLock, lock_path
from slac_runtime.episode_log import EpisodeLogWriter, read_episode_log
from slac_runtime.robot import RobotRefused
from tests.virtual_robot import episode_logs, run_slac_run, wait_for_ticks

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
# A process that takes the port ("lock": the lock alone; "bus": a DynamixelBus), says so, and holds
# it until a line or the end of its stdin.
HOLDER = """
import sys
from robots.dynamixel.bus import DynamixelBus
from robots.dynamixel.port_lock import PortLock
kind, port = sys.argv[1:3]
owner = PortLock(port).acquire() if kind == "lock" else DynamixelBus(port)
if kind == "bus":
    owner.open()
print("holding", flush=True)
sys.stdin.readline()
owner.release() if kind == "lock" else owner.close()
"""


@pytest.fixture
def hold():
    """``hold(port, kind)``: a holder process, started and holding when it returns."""
    procs: list[subprocess.Popen] = []

    def start(port: str | Path, kind: str = "bus") -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, kind, str(port), "--marker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        procs.append(proc)
        line = proc.stdout.readline()
        assert line == "holding\n", proc.stderr.read()
        return proc

    yield start
    for proc in procs:  # let go cleanly: a lock file is left only by a killed holder
        try:
            proc.communicate("", timeout=30)
        finally:
            proc.kill()


def names_holder(message: str, holder: subprocess.Popen) -> bool:
    """The one-line refusal names the holder's pid, command line and host."""
    return (
        f"is in use by pid {holder.pid} (python -c ... " in message
        and "--marker, started " in message
        and f" on {socket.gethostname()}): stop it first" in message
    )


@pytest.fixture
def pty_port():
    """A bare pty: the path a bus opens, and the master end where its bytes arrive."""
    master, slave = os.openpty()
    os.set_blocking(master, False)
    yield os.ttyname(slave), master
    os.close(master)
    os.close(slave)


def bytes_written(master: int) -> bytes:
    try:
        return os.read(master, 4096)
    except BlockingIOError:
        return b""


# --- the lock ---------------------------------------------------------------------------------


def test_a_second_process_is_refused_naming_the_holder(tmp_path, hold):
    port = tmp_path / "ttyUSB0"
    port.touch()
    holder = hold(port, "lock")
    with pytest.raises(PortInUseError) as refused:
        PortLock(port).acquire()
    assert isinstance(refused.value, RobotRefused)
    assert names_holder(str(refused.value), holder), refused.value
    assert f"serial port {port} is in use" in str(refused.value)
    assert refused.value.holder["pid"] == holder.pid


def test_a_killed_holder_leaves_no_lock(tmp_path, hold):
    port = tmp_path / "ttyUSB0"
    port.touch()
    holder = hold(port, "lock")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    assert lock_path(port).exists()  # left behind by the kill, with the dead holder's details
    with PortLock(port) as lock:  # taken at once, not refused
        assert lock.held
        assert f'"pid": {os.getpid()}' in lock_path(port).read_text()
    assert not lock_path(port).exists()  # a clean release deletes it


def test_a_symlink_and_its_target_are_one_port(tmp_path, hold):
    port = tmp_path / "ttyUSB0"
    port.touch()
    link = tmp_path / "dclaw-tty"
    link.symlink_to(port)
    assert lock_path(link) == lock_path(port)
    holder = hold(port, "lock")
    with pytest.raises(PortInUseError) as refused:
        PortLock(link).acquire()
    assert f"serial port {link} ({port}) is in use by pid {holder.pid}" in str(refused.value)


# --- the bus on a bare pty ----------------------------------------------------------------------


def test_a_second_bus_is_refused_before_writing_a_byte(pty_port, hold):
    port, master = pty_port
    holder = hold(port, "bus")
    bus = DynamixelBus(port, retries=0)
    with pytest.raises(PortInUseError) as refused:
        bus.open()
        bus.ping([1])  # reached only if the port was not refused: it would write a packet
    assert names_holder(str(refused.value), holder), refused.value
    assert not bus.is_open
    assert bytes_written(master) == b""
    # The tty itself is held exclusively: a program that respects tty locks cannot join either.
    with pytest.raises(serial.SerialException, match="exclusively lock"):
        serial.Serial(port, exclusive=True)


def test_a_tty_held_by_another_program_is_refused_and_the_lock_let_go(pty_port):
    port, master = pty_port
    other = serial.Serial(port, exclusive=True)
    try:
        with pytest.raises(PortInUseError, match=f"serial port {port} is in use by another prog"):
            DynamixelBus(port).open()
    finally:
        other.close()
    assert not lock_path(port).exists()
    bus = DynamixelBus(port, retries=0)
    bus.open()  # the port is free once the other program closed it
    assert lock_path(port).exists()
    bus.close()
    assert not lock_path(port).exists()
    serial.Serial(port, exclusive=True).close()  # and the tty too
    assert bytes_written(master) == b""


def test_a_missing_port_is_a_refusal(tmp_path):
    with pytest.raises(SerialPortNotFoundError) as refused:
        DynamixelBus(str(tmp_path / "ttyUSB0")).open()
    assert isinstance(refused.value, RobotRefused) and isinstance(refused.value, FileNotFoundError)
    assert not lock_path(tmp_path / "ttyUSB0").exists()


# --- slac-replay and slac-calibrate -------------------------------------------------------------


def short_log(path: Path) -> Path:
    """A complete episode log slac-replay accepts for the D'Claw: three ticks at the reset pose."""
    header = {
        "robot": "dclaw",
        "policy_metadata": {"control_period_s": 0.05, "joint_names": list(DCLAW.joint_names)},
    }
    pose = list(DCLAW.reset_pose)
    with EpisodeLogWriter(path, header) as log:
        for tick in range(3):
            log.tick({"tick": tick, "t": 0.05 * tick, "positions": pose, "goal": pose})
        log.close({"ticks": 3, "stop_reason": "episode complete"})
    return path


def command(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_replay_and_calibrate_are_refused_naming_the_holder(pty_port, hold, tmp_path):
    port, master = pty_port
    holder = hold(port, "bus")
    log = short_log(tmp_path / "episode-000.slaclog")
    replay = command(
        "slac_runtime.replay_cli",
        str(log),
        "--robot",
        "dclaw",
        "--port",
        port,
        "--out-log",
        str(tmp_path / "replay.slaclog"),
        "--quiet",
    )
    assert replay.returncode == 2, replay.stderr
    assert names_holder(replay.stderr, holder) and "(nothing moved)" in replay.stderr
    calibrate = command(
        "calibration.cli",
        "joints",
        "--robot",
        "dclaw",
        "--port",
        port,
        "--yes",
        "--no-range-check",
        "--out",
        str(tmp_path / "joints.json"),
        env={"SLAC_CALIBRATION_DIR": str(tmp_path / "config")},
    )
    assert calibrate.returncode == 2, calibrate.stderr
    assert names_holder(calibrate.stderr, holder) and "(nothing moved)" in calibrate.stderr
    assert not (tmp_path / "joints.json").exists()
    assert bytes_written(master) == b""


def test_replay_on_a_missing_port_is_a_refusal(tmp_path):
    log = short_log(tmp_path / "episode-000.slaclog")
    replay = command(
        "slac_runtime.replay_cli", str(log), "--robot", "dclaw", "--port", str(tmp_path / "nope")
    )
    assert replay.returncode == 2, replay.stderr
    assert "not found" in replay.stderr and "(nothing moved)" in replay.stderr


# --- slac-run on the virtual D'Claw -------------------------------------------------------------


@pytest.fixture
def virtual_dclaw(tmp_path):
    with VirtualDClaw(tmp_path / "tty", f"ipc://{tmp_path}/camera") as robot:
        yield robot


# slac-run's main, imported first and started on a line from stdin: a second run reaches the port
# within a second of its start, while the first one's short episode still runs.
PRIMED_SLAC_RUN = (
    "import sys; from slac_runtime.run_cli import main; sys.stdin.readline(); "
    "sys.exit(main(sys.argv[1:]))"
)


def test_a_second_slac_run_is_refused_and_the_first_runs_on(
    virtual_dclaw, tiny_dclaw_policy, tmp_path
):
    second_argv = virtual_dclaw.slac_run_command(
        tiny_dclaw_policy, tmp_path / "second", "--episode-steps", "2"
    )
    options = second_argv[second_argv.index("slac_runtime.run_cli") + 1 :]
    second = subprocess.Popen(
        [sys.executable, "-c", PRIMED_SLAC_RUN, *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    first = run_slac_run(
        tiny_dclaw_policy, virtual_dclaw, tmp_path / "first", "--episode-steps", "30", wait=False
    )
    try:
        wait_for_ticks(tmp_path / "first", 1)
        _, err = second.communicate("go\n", timeout=60)
        first_ran_on = first.poll() is None  # when the second was refused
        torque_on = all(virtual_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)
        _, err_first = first.communicate(timeout=60)
    finally:
        second.kill()
        first.kill()
    assert second.returncode == 2, err
    assert f"is in use by pid {first.pid} (python -m slac_runtime.run_cli --robot dclaw" in err
    assert err.splitlines()[-1].endswith("(nothing moved)"), err
    assert not episode_logs(tmp_path / "second")
    assert first_ran_on, f"the first run ended before the second was refused: {err_first}"
    assert torque_on
    assert first.returncode == 0, err_first
    [path] = episode_logs(tmp_path / "first")
    log = read_episode_log(path)
    assert log.footer["stop_reason"] == "episode complete"
    assert log.footer["ticks"] == 60  # 30 policy steps, action repeat 2
    assert not [e for e in log.events if e["event"] in ("safe_stop", "error")]


def test_a_run_after_a_killed_holder_gets_the_port(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    holder = run_slac_run(
        tiny_dclaw_policy, virtual_dclaw, tmp_path / "killed", "--episode-steps", "200", wait=False
    )
    try:
        wait_for_ticks(tmp_path / "killed", 1)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        holder.kill()
    assert lock_path(virtual_dclaw.port).exists()  # the killed holder's file, with no lock on it
    result = run_slac_run(
        tiny_dclaw_policy, virtual_dclaw, tmp_path / "next", "--episode-steps", "3"
    )
    assert result.returncode == 0, result.stderr
    assert "episode complete" in result.stdout
    assert not lock_path(virtual_dclaw.port).exists()


def test_slac_run_on_a_missing_port_is_a_refusal(virtual_dclaw, tiny_dclaw_policy, tmp_path):
    argv = virtual_dclaw.slac_run_command(tiny_dclaw_policy, tmp_path / "logs")
    argv[argv.index("--port") + 1] = str(tmp_path / "ttyUSB9")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert f"serial port {tmp_path / 'ttyUSB9'} not found" in result.stderr
    assert result.stderr.rstrip().endswith("(nothing moved)"), result.stderr
