"""Helpers for end-to-end tests against the virtual D'Claw (real pty,
real sockets, real processes)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from slac_runtime.episode_log import read_episode_log


def run_slac_run(
    policy: Path, robot, log_dir: Path, *extra: str, timeout: float = 120, wait: bool = True
):
    cmd = robot.slac_run_command(policy, log_dir, "--seed", "0", *extra)
    env = dict(os.environ)
    if not wait:
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def episode_logs(log_dir: Path) -> list[Path]:
    return sorted(Path(log_dir).glob("*/episode-*.slaclog"))


def wait_for_ticks(log_dir: Path, ticks: int = 0, timeout_s: float = 60.0) -> None:
    """Wait until slac-run has started an episode log holding at least ``ticks`` ticks."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logs = episode_logs(log_dir)
        try:
            if logs and len(read_episode_log(logs[0]).ticks) >= ticks:
                return
        except ValueError:  # the file exists but its first bytes are not written yet
            pass
        time.sleep(0.05)


def wait_for(condition, timeout_s: float = 2.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout_s`` of real time passed (False): for
    what has no reply to wait on (a sync write handled, a watchdog fired)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True
