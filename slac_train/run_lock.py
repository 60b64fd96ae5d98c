"""One writer per run directory: an advisory lock on ``<run_dir>/lock``.

The lock is ``fcntl.flock`` on an open file, so the kernel releases it when the holding process
ends in any way (Ctrl-C, SIGKILL, a crash): a lock is never left stale (a file left by a killed
process is simply taken over). The file names its holder (pid, host, start time) so that a refused
writer can say who holds the run; a clean release deletes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

LOCK_FILE = "lock"


class RunInUseError(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """The exclusive lock on a run directory, held from :meth:`acquire` until :meth:`release`."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._file = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunInUseError` naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            handle = open(self.path, "a+")  # not "w": the holder's details stay readable
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = _describe(handle.read())
                handle.close()
                raise RunInUseError(
                    f"{self.path.parent} is being written by {holder}; "
                    f"wait for it to finish or stop it (Ctrl-C or SIGTERM) first"
                ) from None
            if _same_file(handle, self.path):
                break
            handle.close()  # its holder released and deleted this file meanwhile: open anew
        handle.seek(0)
        handle.truncate()
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        handle.write(json.dumps(holder) + "\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        """Delete the lock file, then let go of the lock (a waiting writer re-checks the file)."""
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(handle, path: Path) -> bool:
    """True when the open ``handle`` is still the file at ``path``."""
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _describe(text: str) -> str:
    """``process 1234 on host-a (since 2026-01-01T12:00:00+00:00)`` from the lock file's text."""
    try:
        holder = json.loads(text)
        return f"process {holder['pid']} on {holder['host']} (since {holder['started']})"
    except (ValueError, KeyError, TypeError):
        return "another process"
