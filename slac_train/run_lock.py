"""One writer per run directory: an advisory lock on ``<run_dir>/lock``.

The lock is :class:`slac_runtime.file_lock.FileLock`, an ``fcntl.flock`` on an open file, so the
kernel releases it when the holding process ends in any way (Ctrl-C, SIGKILL, a crash): a lock is
never left stale (a file left by a killed process is simply taken over). The file names its holder
(pid, host, start time) so that a refused writer can say who holds the run; a clean release
deletes it.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from slac_runtime.file_lock import FileLock, LockHeld

LOCK_FILE = "lock"


class RunInUseError(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """The exclusive lock on a run directory, held from :meth:`acquire` until :meth:`release`."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._lock: FileLock | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunInUseError` naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        details = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        try:
            self._lock = FileLock(self.path, details).acquire()
        except LockHeld as e:
            raise RunInUseError(
                f"{self.path.parent} is being written by {_describe(e.holder)}; "
                f"wait for it to finish or stop it (Ctrl-C or SIGTERM) first"
            ) from None
        return self

    def release(self) -> None:
        """Delete the lock file, then let go of the lock (a waiting writer re-checks the file)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @property
    def held(self) -> bool:
        return self._lock is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(holder: dict | None) -> str:
    """``process 1234 on host-a (since 2026-01-01T12:00:00+00:00)`` from the lock file's details."""
    if holder is None:
        return "another process"
    return f"process {holder['pid']} on {holder['host']} (since {holder['started']})"
