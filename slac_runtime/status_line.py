"""A live status line that suits where it is written: rewritten in place (``\\r``) on a terminal;
through a pipe or into a log file, a plain newline-terminated line at most every ``every_s``
seconds, so that a log holds readable lines rather than a screenful of carriage returns.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

PLAIN_EVERY_S = 10.0  # the status written at most this often when it cannot be rewritten in place


class StatusLine:
    """One live status line on ``stream`` (stderr by default).

    ``interactive``: rewrite the line in place (default: when ``stream`` is a terminal).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        every_s: float = PLAIN_EVERY_S,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self.every_s = every_s
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._clock = clock
        self._last = -float("inf")
        self.open = False  # a rewritten line is on screen without its newline

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def show(self, text: str) -> None:
        """The status now: on a terminal, over the previous one; else a line, if ``every_s``
        passed since the last."""
        if self.interactive:
            print(f"\r{text}", end="", file=self.stream, flush=True)
            self.open = True
            return
        now = self._clock()
        if now - self._last >= self.every_s:
            self._last = now
            print(text, file=self.stream, flush=True)

    def end(self) -> None:
        """Finish the line on screen (so that what follows starts on a line of its own)."""
        if self.open:
            print(file=self.stream, flush=True)
            self.open = False

    def message(self, text: str) -> None:
        """A line of its own, below the status."""
        self.end()
        print(text, file=self.stream, flush=True)
