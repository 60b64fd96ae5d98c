"""One owner per serial port: an exclusive lock on a file named after the port.

Every command that talks to servos takes the lock before it opens the port, so a second command on
the same robot is refused before it sends a byte, with a message that names the first one.

The lock (:class:`slac_runtime.file_lock.FileLock`) is ``fcntl.flock`` on a file named after the
device's real path, e.g.
``/run/lock/slac-port_dev_ttyUSB0.lock`` (in the temp directory where ``/run/lock`` is not
writable): a symlink to a port and the port itself are one port. The kernel drops a flock when
its holder ends in any way (Ctrl-C, ``kill -9``, a crash), so a lock is never left stale; a file
left behind by a killed holder is simply taken over. The file holds its holder's pid, host,
command line and the time it took the port (JSON), written once the lock is taken; a clean release
deletes it.

The lock guards against programs of this toolkit. The bus also opens the tty exclusively (a flock
on the device itself), which keeps out any other program that respects tty locks.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from slac_runtime.file_lock import FileLock, LockHeld
from slac_runtime.robot import RobotRefused

RUN_LOCK_DIR = Path("/run/lock")
COMMAND_SHOWN_CHARS = 100  # a longer holder's command line is cut short in messages


class PortInUseError(RobotRefused):
    """Another process holds the serial port; ``holder`` is what its lock file says about it (pid,
    host, started, command), or None when that is unknown."""

    def __init__(self, message: str, port: str, holder: dict[str, Any] | None = None):
        super().__init__(message)
        self.port = port
        self.holder = holder


def lock_dir() -> Path:
    """``/run/lock`` where this user may create files there, else the temp directory."""
    if RUN_LOCK_DIR.is_dir() and os.access(RUN_LOCK_DIR, os.W_OK | os.X_OK):
        return RUN_LOCK_DIR
    return Path(tempfile.gettempdir())


def lock_path(port: str | os.PathLike) -> Path:
    """The lock file of ``port``: named after the device's real path (symlinks resolved)."""
    real = os.path.realpath(port)
    return lock_dir() / f"slac-port{real.replace('/', '_')}.lock"


def command_line() -> str:
    """This process's command line as a user typed it: ``slac-run --robot dclaw ...`` or
    ``python -m package.module ...``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name != "__main__":
        head = ["python", "-m", spec.name.removesuffix(".__main__")]
    elif sys.argv[0] == "-c":
        head = ["python", "-c", "..."]
    else:
        head = [os.path.basename(sys.argv[0]) or "python"]
    return shlex.join(head + sys.argv[1:])


class PortLock:
    """The exclusive lock on one serial port, held from :meth:`acquire` until :meth:`release`."""

    def __init__(self, port: str | os.PathLike):
        self.port = str(port)
        self.path = lock_path(port)
        self._lock: FileLock | None = None

    @property
    def held(self) -> bool:
        return self._lock is not None

    def acquire(self) -> PortLock:
        """Take the lock, or raise :class:`PortInUseError` naming the process that holds it."""
        if self._lock is not None:
            return self
        details = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command_line(),
            "port": os.path.realpath(self.port),
        }
        try:
            self._lock = FileLock(self.path, details).acquire()
        except LockHeld as e:
            holder = e.holder if e.holder is not None and "command" in e.holder else None
            message = in_use_message(self.port, holder, self.path)
            raise PortInUseError(message, self.port, holder) from None
        return self

    def release(self) -> None:
        """Delete the lock file, then let go of the lock."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def __enter__(self) -> PortLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def in_use_message(port: str, holder: dict[str, Any] | None, path: Path) -> str:
    """``serial port P is in use by pid N (COMMAND, started 12:03:04 on HOST): stop it first``."""
    real = os.path.realpath(port)
    name = port if real == port else f"{port} ({real})"
    if holder is None:
        return (
            f"serial port {name} is in use by another process (it holds {path}; see who with: "
            f"fuser -v {path}): stop it first"
        )
    command = str(holder["command"])
    if len(command) > COMMAND_SHOWN_CHARS:
        command = command[: COMMAND_SHOWN_CHARS - 4] + " ..."
    return (
        f"serial port {name} is in use by pid {holder['pid']} ({command}, started "
        f"{_when(holder['started'])} on {holder['host']}): stop it first"
    )


def _when(started: str) -> str:
    """A lock's start time as ``12:03:04`` today, else ``2026-01-31 12:03:04``."""
    try:
        moment = datetime.fromisoformat(started).astimezone()
    except (TypeError, ValueError):
        return str(started)
    if moment.date() == datetime.now().astimezone().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")
