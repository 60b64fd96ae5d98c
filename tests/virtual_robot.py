"""Helpers for end-to-end tests against the virtual D'Claw (real pty, real sockets, real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_slac_run(policy: Path, robot, log_dir: Path, *extra: str, timeout: float = 120,
                 wait: bool = True):
    cmd = [sys.executable, "-m", "slac_runtime.run_cli", "--robot", "dclaw", "--camera", robot.camera_endpoint,
           "--port", robot.port, "--policy", str(policy), "--allow-uncalibrated", "--log-dir", str(log_dir),
           "--quiet", "--seed", "0", *extra]
    env = dict(os.environ)
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def episode_logs(log_dir: Path) -> list[Path]:
    return sorted(Path(log_dir).glob("*/episode-*.slaclog"))
