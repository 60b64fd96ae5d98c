"""A :class:`~robots.dynamixel.emulator.ServoBusEmulator` in a process of its own.

The bus process serves the emulator from its own (real-time scheduled, where the system permits)
process, so that nothing in the caller's process -- physics, rendering, scene resets, the GIL --
delays a reply. It exchanges joint readings and goals with the caller's physics through shared
memory (:class:`~robots.dynamixel.physics.SharedJointState`) and answers the caller's inspection
and fault-injection calls over a socket: length-prefixed pickled messages, ``(name, args, kwargs)``
in, ``("ok", result)`` or ``("error", exception)`` out, ``None`` to stop.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from robots.dynamixel.emulated_servo import DEFAULT_MODEL, Mounting
from robots.dynamixel.emulator import ServoBusEmulator
from robots.dynamixel.physics import SharedJointState, SharedMemoryBackend
from slac_runtime.options import signal_handlers

__all__ = ["ServoBusProcess", "request_realtime_scheduling"]

log = logging.getLogger(__name__)

REALTIME_PRIORITY = 10  # SCHED_FIFO priority of the bus process: above every normal process, modest


def request_realtime_scheduling(priority: int = REALTIME_PRIORITY) -> str:
    """Ask for real-time scheduling for this process's threads started from now on; say what it got.

    SCHED_FIFO at ``priority`` where permitted, else a nice of -10, else nothing changes. Returns
    ``"SCHED_FIFO priority N"``, ``"nice -10"`` or ``"normal (...)"``.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return f"SCHED_FIFO priority {priority}"
    except (AttributeError, OSError) as fifo_error:
        try:
            os.nice(-10)
            return "nice -10"
        except OSError as nice_error:
            return f"normal (SCHED_FIFO: {fifo_error}; nice: {nice_error})"


# What the parent may call on the bus process's emulator; each is the ServoBusEmulator method.
_PROXIED_CALLS = frozenset(
    {
        "register",
        "set_register",
        "goals_to_present",
        "goals_to",
        "joint_goals",
        "joint_readings",
        "torque_enabled",
        "take_longest_silence_s",
        "drop_replies",
        "corrupt_replies",
        "set_reply_faults",
        "clear_faults",
        "set_silent",
        "set_hardware_error",
        "set_mounting",
    }
)


class ServoBusProcess:
    """A :class:`ServoBusEmulator` served by its own process, so that nothing in this process
    (physics, rendering, scene resets, the GIL) can delay a reply.

    The process's backend is a :class:`~robots.dynamixel.physics.SharedMemoryBackend` on ``state``:
    this process's physics publishes joint readings into it and applies the goals the bus wrote
    (:meth:`SharedJointState.take_goals`); the bus process never waits for this one. The process
    asks for real-time scheduling (:func:`request_realtime_scheduling`; :attr:`scheduling` says what
    it got), makes the pty link once its bus answers, and ends -- removing the link -- on
    :meth:`stop` or as soon as this process is gone.

    Inspection and fault injection take the same calls as :class:`ServoBusEmulator` (``counters``,
    ``register``, ``set_silent``, ...), answered by the bus process over a command socket. Before
    :meth:`start`, ``state`` must hold a reading of every servo: the servos power up there.
    """

    def __init__(
        self,
        servo_ids: Iterable[int],
        state: SharedJointState,
        *,
        model_number: int | Mapping[int, int] = DEFAULT_MODEL,
        mountings: Mapping[int, Mounting] | None = None,
        link_path: str | os.PathLike,
        seed: int = 0,
        realtime: bool = True,
    ):
        self.servo_ids = sorted(int(i) for i in servo_ids)
        if self.servo_ids != sorted(state.servo_ids):
            raise ValueError(
                f"the shared state holds servos {state.servo_ids}, not {self.servo_ids}"
            )
        self.state = state
        self.link_path = Path(link_path)
        self._config = {
            "servo_ids": self.servo_ids,
            "model_number": model_number if isinstance(model_number, int) else dict(model_number),
            "mountings": dict(mountings or {}),
            "link_path": str(self.link_path.absolute()),
            "seed": int(seed),
            "realtime": bool(realtime),
        }
        self._process: subprocess.Popen | None = None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._pty_name: str | None = None
        self.scheduling: str | None = None  # what the bus process got (request_realtime_scheduling)
        self.pid: int | None = None
        self._final: dict[str, dict] = {}  # counters and reply latency as the process ended

    # --- lifecycle --------------------------------------------------------------------------------
    @property
    def port_path(self) -> str:
        if self._pty_name is None:
            raise RuntimeError("the emulator is not started")
        return str(self.link_path)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 30.0) -> ServoBusProcess:
        if self._process is not None:
            raise RuntimeError("the emulator is already started")
        ours, theirs = socket.socketpair()
        ours.settimeout(timeout_s)
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "robots.dynamixel.bus_process",
                    str(theirs.fileno()),
                    str(self.state.fd),
                ],
                pass_fds=(theirs.fileno(), self.state.fd),
            )
        finally:
            theirs.close()
        self._socket = ours
        try:
            _send_message(ours, self._config)
            status, info = _receive_message(ours)
        except (OSError, EOFError) as exc:
            code = (
                self._process.wait(timeout=5)
                if self._process.poll() is None
                else self._process.returncode
            )
            self._close()
            raise RuntimeError(
                f"the servo-bus process did not start (exit code {code}): {exc}"
            ) from exc
        if status != "ok":
            self._process.wait(timeout=5)
            self._close()
            raise RuntimeError(f"the servo-bus process failed to start: {info}") from info
        ours.settimeout(None)
        self._pty_name, self.scheduling, self.pid = info["pty"], info["scheduling"], info["pid"]
        return self

    def stop(self) -> None:
        """End the bus process (its link is removed); raise if it failed."""
        if self._process is None:
            return
        try:
            self._final = {"counters": self.counters, "reply_latency": self._call("reply_latency")}
            with self._lock:
                _send_message(self._socket, None)
                status, info = _receive_message(self._socket)
        except (OSError, EOFError, RuntimeError):
            status, info = "ok", None  # it had already ended: its exit code tells
        try:
            code = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._close()
        if status != "ok":
            raise RuntimeError("the servo-bus process failed") from info
        if code != 0:
            raise RuntimeError(f"the servo-bus process exited with code {code}")

    def _close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket, self._process, self._pty_name = None, None, None

    def __enter__(self) -> ServoBusProcess:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    # --- the emulator's calls, answered by the bus process ---------------------------------------
    def _call(self, name: str, *args, **kwargs):
        if self._socket is None:
            raise RuntimeError("the emulator is not started")
        with self._lock:
            try:
                _send_message(self._socket, (name, args, kwargs))
                status, result = _receive_message(self._socket)
            except (OSError, EOFError) as exc:
                raise RuntimeError(
                    f"the servo-bus process (pid {self.pid}) is gone: {exc}"
                ) from exc
        if status != "ok":
            raise result
        return result

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the bus process's :attr:`ServoBusEmulator.counters`, plus ``torn_reads``
        (after :meth:`stop`: as the process ended)."""
        if self._socket is None and "counters" in self._final:
            return dict(self._final["counters"])
        return self._call("counters")

    def reply_latency(self) -> dict[str, float | int | None]:
        """:meth:`ServoBusEmulator.reply_latency` of the bus process (after
        :meth:`stop`: as it ended)."""
        if self._socket is None and "reply_latency" in self._final:
            return dict(self._final["reply_latency"])
        return self._call("reply_latency")

    def __getattr__(self, name: str):
        if name in _PROXIED_CALLS:
            return lambda *args, **kwargs: self._call(name, *args, **kwargs)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


def _send_message(sock: socket.socket, message) -> None:
    data = pickle.dumps(message)
    sock.sendall(struct.pack("<I", len(data)) + data)


def _receive_message(sock: socket.socket):
    header = _receive_exactly(sock, 4)
    return pickle.loads(_receive_exactly(sock, struct.unpack("<I", header)[0]))


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise EOFError("the other end closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _serve_process(socket_fd: int, state_fd: int) -> int:
    """The bus process: serve the emulator; answer the parent's calls
    until it says stop or is gone."""
    sock = socket.socket(fileno=socket_fd)
    config = _receive_message(sock)
    scheduling = (
        request_realtime_scheduling() if config["realtime"] else "normal (not requested)"
    )  # before any thread starts: they inherit it
    state = SharedJointState.attach(config["servo_ids"], state_fd)
    emulator = ServoBusEmulator(
        config["servo_ids"],
        SharedMemoryBackend(state),
        model_number=config["model_number"],
        mountings=config["mountings"],
        link_path=config["link_path"],
        seed=config["seed"],
    )
    try:
        emulator.start()
    except BaseException as exc:
        _send_message(sock, ("error", exc))
        raise
    try:
        _send_message(
            sock,
            ("ok", {"pty": emulator.pty_name, "scheduling": scheduling, "pid": os.getpid()}),
        )
        while True:
            try:
                request = _receive_message(sock)
            except (EOFError, ConnectionResetError):
                log.warning("the servo-bus process's parent is gone: stopping")
                return 0
            if request is None:
                break
            name, args, kwargs = request
            try:
                if name == "counters":
                    result = {**emulator.counters, "torn_reads": state.torn_reads}
                elif name in _PROXIED_CALLS or name == "reply_latency":
                    result = getattr(emulator, name)(*args, **kwargs)
                else:
                    raise AttributeError(f"the servo-bus process has no call {name!r}")
            except Exception as exc:  # the caller's mistake: raised again in the parent
                _send_message(sock, ("error", exc))
            else:
                _send_message(sock, ("ok", result))
        emulator.stop()
        _send_message(sock, ("ok", None))
        return 0
    finally:
        emulator.stop()  # a no-op once stopped; removes the link on every way out
        state.close()


def main(socket_fd: int, state_fd: int) -> int:
    logging.basicConfig(level=logging.WARNING, format="servo-bus process: %(message)s")
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when the bus stops.
    with signal_handlers((signal.SIGINT,), signal.SIG_IGN):
        return _serve_process(socket_fd, state_fd)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
