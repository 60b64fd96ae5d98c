"""A pseudo-terminal that serial clients open by path, answered from a thread of this process.

The serving thread waits for bytes (or a timeout its owner chooses), hands them to ``answer`` and
writes what comes back to the port. It times each answer, from the bytes received to the reply
handed to the port: :meth:`PtyPort.reply_latency`. A reply is counted before it leaves, so a client
holding a reply finds it counted. The pty's link (``link_path``) appears only once the thread
serves, so a client that opens it is answered.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import select
import termios
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

LATENCY_SAMPLES = 100_000  # reply latencies kept for the percentiles (the count and max: all-time)
_STOP = b"x"  # the byte on the stop pipe that ends the serving loop (others only wake it)
_WAKE = b"w"
_SEND_TIMEOUT_S = 0.2  # how long a reply waits for a full port buffer to drain before it is lost


class PtyPort:
    """A pty served by a thread.

    Args:
        answer: ``answer(data, received_s) -> reply bytes``, called from the serving thread with
            each chunk read (``b""`` after a timeout or a wake-up) and the clock's time it arrived.
        wait_timeout: how long the thread may wait for bytes (s; None: until a byte arrives).
        link_path: if given, a symlink to the pty, made by :meth:`start` once the thread serves and
            removed by :meth:`stop`.
        clock: the clock ``received_s`` and the reply latency are taken on (s, monotonic).
    """

    def __init__(
        self,
        answer: Callable[[bytes, float], bytes],
        wait_timeout: Callable[[], float | None],
        *,
        link_path: Path | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.link_path = link_path
        self._answer = answer
        self._wait_timeout = wait_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._counters: collections.Counter[str] = collections.Counter()
        self._latency_s: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)
        self._latency_count = 0
        self._latency_max_s = 0.0
        self._master_fd: int | None = None
        self._slave_fd: int | None = None
        self._slave_name: str | None = None
        self._stop_r: int | None = None
        self._stop_w: int | None = None
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()
        self._made_link = False
        self.error: BaseException | None = None  # what stopped the serving thread, if anything

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def pty_name(self) -> str | None:
        """The pty's /dev/pts/N while started."""
        return self._slave_name

    @property
    def port_path(self) -> str:
        """The path clients open: ``link_path`` if given, else the pty's /dev/pts/N."""
        if self._slave_name is None:
            raise RuntimeError("the emulator is not started")
        return str(self.link_path) if self.link_path is not None else self._slave_name

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave, termios.TCSANOW)  # no echo, no CR/LF translation, 8 bits through
            os.set_blocking(master, False)
            self._slave_name = os.ttyname(slave)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        # We keep the slave open ourselves so the master never sees a hang-up between clients.
        self._master_fd, self._slave_fd = master, slave
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(
            target=self._serve, name=f"dynamixel-emulator:{self._slave_name}", daemon=True
        )
        self._thread.start()
        try:
            if not self._serving.wait(timeout=5.0):
                raise RuntimeError("the emulator thread did not start serving within 5 s")
            if self.link_path is not None:
                self._make_link(self._slave_name)  # only now: a client that opens it is answered
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop serving, close the pty, remove the link; re-raise what
        broke the thread, if anything."""
        if self._thread is None:
            return
        os.write(self._stop_w, _STOP)
        self._thread.join(timeout=5.0)
        if self._thread.is_alive():
            raise RuntimeError("the emulator thread did not stop within 5 s")
        self._thread = None
        for fd in (self._master_fd, self._slave_fd, self._stop_r, self._stop_w):
            if fd is not None:
                os.close(fd)
        self._master_fd = self._slave_fd = self._stop_r = self._stop_w = None
        if self._made_link and self.link_path is not None and self.link_path.is_symlink():
            self.link_path.unlink()
        self._made_link = False
        self._serving.clear()
        if self.error is not None:
            raise RuntimeError("the Dynamixel emulator thread failed") from self.error

    def wake(self) -> None:
        """Make the serving loop ask ``wait_timeout`` again."""
        if self._stop_w is not None:
            os.write(self._stop_w, _WAKE)

    def _make_link(self, target: str) -> None:
        link = self.link_path
        assert link is not None
        if link.is_symlink() and not link.exists():
            link.unlink()  # a dangling link left by an emulator that died
        if link.exists() or link.is_symlink():
            raise FileExistsError(
                f"{link} already exists: stop the emulator that owns it, or choose "
                "another link_path"
            )
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        self._made_link = True

    # --- what went through ----------------------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        """A snapshot: tx_bytes (written to the port), tx_overflow_bytes (lost to a full buffer)."""
        with self._lock:
            return dict(self._counters)

    def reply_latency(self) -> dict[str, float | int | None]:
        """How long answers took: from the bytes received to the reply handed to the port
        (counted before it is written). ``count`` and ``max_ms`` cover every reply; the
        percentiles the last :data:`LATENCY_SAMPLES` (None before the first reply)."""
        with self._lock:
            samples = sorted(self._latency_s)
            count, max_s = self._latency_count, self._latency_max_s

        def percentile_ms(q: float) -> float | None:
            if not samples:
                return None
            return 1000.0 * samples[min(len(samples) - 1, int(round(q / 100 * (len(samples) - 1))))]

        return {
            "count": count,
            "p50_ms": percentile_ms(50),
            "p99_ms": percentile_ms(99),
            "max_ms": 1000.0 * max_s if count else None,
        }

    # --- serving thread -------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            self._serving.set()
            while True:
                readable, _, _ = select.select(
                    [self._master_fd, self._stop_r], [], [], self._wait_timeout()
                )
                if self._stop_r in readable and _STOP in os.read(self._stop_r, 64):
                    return
                data = b""
                if self._master_fd in readable:
                    try:
                        data = os.read(self._master_fd, 4096)
                    except BlockingIOError:
                        continue
                received_s = self._clock()
                replies = self._answer(data, received_s)
                if replies:
                    # Recorded before the reply leaves: a client that has its reply may ask for
                    # the count at once, and must find this reply in it.
                    self._record_latency(self._clock() - received_s)
                    self._send(replies)
        except BaseException as exc:  # recorded, logged and re-raised by stop()
            self.error = exc
            log.exception("Dynamixel emulator on %s stopped", self._slave_name)

    def _record_latency(self, latency_s: float) -> None:
        with self._lock:
            self._latency_s.append(latency_s)
            self._latency_count += 1
            self._latency_max_s = max(self._latency_max_s, latency_s)

    def _send(self, data: bytes) -> None:
        # Count before writing: a client may act on the reply before this thread runs again.
        with self._lock:
            self._counters["tx_bytes"] += len(data)
        view = memoryview(data)
        deadline = time.monotonic() + _SEND_TIMEOUT_S
        while view:
            try:
                written = os.write(self._master_fd, view)
                view = view[written:]
            except BlockingIOError:
                # Nobody is reading the port and its buffer is full: wait a little, then give up.
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([], [self._master_fd], [], remaining)[1]:
                    with self._lock:
                        self._counters["tx_overflow_bytes"] += len(view)
                        self._counters["tx_bytes"] -= len(view)
                    return
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                raise
