"""Command-line plumbing shared by the runtime's commands: option checks, one-line errors, exit codes.

Every number a user types is checked where it enters, by the parser, and a bad one is reported in
one line that names the option, what it got and what it needs::

    slac-run: error: argument --threads: must be an integer from 1 to 2 (this computer's cores), got 1000

Exit codes tell a script what happened (:class:`ExitCode`).
"""

from __future__ import annotations

import argparse
import enum
import math
import os
import sys
from collections.abc import Callable
from typing import NoReturn


class ExitCode(enum.IntEnum):
    """What a runtime command's exit status means."""

    OK = 0  # every episode ran to its end
    FAULT = 1  # stopped by an error of the robot, its bus or the software: the robot was made safe
    REFUSED = 2  # refused before anything moved: fix the command line, the policy or the robot set-up
    SAFE_STOP = 3  # a watchdog stopped the robot (stale camera, tracking error, bad frames, overruns)
    # Stopped by a signal: 128 + its number (130 for Ctrl-C, 143 for SIGTERM), as shells report it.

    @staticmethod
    def for_signal(signum: int) -> int:
        return 128 + int(signum)


class UsageError(RuntimeError):
    """A problem the user can fix before anything moves; printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) with a pointer to ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(int(ExitCode.REFUSED), f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number above zero (times, ages, durations in seconds)."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return float(value)


def int_at_least(low: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer of at least {low}, got {text!r}")
        return int(value)

    check.__name__ = f"integer >= {low}"
    return check


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_count(text: str) -> int:
    """1 .. the cores this process may use: more threads than cores starve the servo bus and camera."""
    value = _number(text, int)
    cores = available_cores()
    if not 1 <= value <= cores:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 1 to {cores} (this computer's cores), got {text!r}"
        )
    return int(value)


def say(prog: str, kind: str, message: object) -> None:
    """One line on stderr: ``prog: kind: message``."""
    print(f"{prog}: {kind}: {message}", file=sys.stderr, flush=True)
