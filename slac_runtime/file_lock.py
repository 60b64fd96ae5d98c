"""An exclusive lock on a file that names its holder: one writer per run directory, one owner per
serial port.

The lock is ``fcntl.flock`` on the open file, so the kernel drops it when its holder ends in any
way (Ctrl-C, ``kill -9``, a crash): a lock is never left stale, and a file left behind by a killed
holder is simply taken over. Once the lock is taken, the file holds its holder's details (JSON:
pid, host, start time and whatever else the user adds), so that a refused process can say who
holds it; a clean release deletes the file. Files are created readable and writable by every
user, and an existing one is opened without ``O_CREAT`` (in a sticky directory such as
``/run/lock`` the kernel may refuse that on another user's file); where it may not be written, it
is opened read-only, which is enough to lock it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

_HOLDER_READ_TRIES = 10  # a holder writes its details just after taking the lock: read again ...
_HOLDER_READ_PAUSE_S = 0.02  # ... this long apart
_HOLDER_KEYS = {"pid", "host", "started"}


class LockHeld(RuntimeError):
    """Another process holds the lock; ``holder`` is what its file says about it, or None when
    that is unknown."""

    def __init__(self, path: Path, holder: dict[str, Any] | None):
        super().__init__(f"{path} is held by {holder or 'another process'}")
        self.path = path
        self.holder = holder


class FileLock:
    """The exclusive lock on ``path``, held from :meth:`acquire` until :meth:`release`; ``details``
    are written into the file once it is taken."""

    def __init__(self, path: str | os.PathLike, details: dict[str, Any]):
        self.path = Path(path)
        self.details = details
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FileLock:
        """Take the lock, or raise :class:`LockHeld` with what the holder's file says."""
        if self._fd is not None:
            return self
        while True:
            fd, writable = _open_lock_file(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise LockHeld(self.path, holder) from None
            except BaseException:
                os.close(fd)
                raise
            if _is_file_at(fd, self.path):
                break
            os.close(fd)  # its holder released and deleted this file meanwhile: open the new one
        if writable:  # (a lock file only this process's user may not write: the lock alone holds)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(self.details) + "\n").encode(), 0)
            except BaseException:
                os.close(fd)
                raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Delete the lock file, then let go of the lock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _is_file_at(fd, self.path):
                self.path.unlink()
        except PermissionError:
            pass  # another user's file in a sticky directory: it stays, free, for the next holder
        finally:
            os.close(fd)  # closing the file drops the lock

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """Open (or create, readable and writable by every user) the lock file; return the descriptor
    and whether it is open for writing."""
    while True:
        try:
            return os.open(path, os.O_RDWR), True
        except FileNotFoundError:
            pass
        except PermissionError:
            return os.open(path, os.O_RDONLY), False
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue  # another process created it just now
        os.fchmod(fd, 0o666)  # whatever the umask: the next holder may be another user
        return fd, True


def _is_file_at(fd: int, path: Path) -> bool:
    """True when the open ``fd`` is still the file at ``path``."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The holder's details from its lock file (None if they cannot be read)."""
    for attempt in range(_HOLDER_READ_TRIES):
        if attempt:
            time.sleep(_HOLDER_READ_PAUSE_S)
        try:
            holder = json.loads(os.pread(fd, 65536, 0))
        except (OSError, ValueError):
            continue
        if isinstance(holder, dict) and _HOLDER_KEYS <= holder.keys():
            return holder if _may_be_running(holder) else None
    return None


def _may_be_running(holder: dict[str, Any]) -> bool:
    """False when the details name a process of this host that has ended (a holder that could not
    write its own details left an earlier holder's in the file)."""
    if holder["host"] != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        pass
    return True
