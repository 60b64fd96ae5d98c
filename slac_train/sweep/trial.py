"""One trial, as a Ray task runs it: ``slac-train`` in a subprocess, fresh or resumed.

The run directory decides how it starts: with ``checkpoints/latest`` it is resumed (``slac-train
--resume``), otherwise started from the trial's config file. ``sweep-done.json`` is written in the
run directory when slac-train exits 0; a trial that has it is skipped. A slac-train killed by a
signal it could not catch (SIGKILL, the OOM killer) raises :class:`TrialLost`, which Ray retries;
a Ray worker that dies takes its slac-train with it (SIGTERM: a checkpoint at the next safe point)
and Ray retries the task, whose next attempt waits for that run to let go of its lock, then
resumes it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DONE_MARKER = "sweep-done.json"
ATTEMPT_FILE = "sweep-attempt.json"
STOP_MARKER = "sweep-stop-"  # + the pid of the attempt's slac-train, once SIGTERM was sent to it
STOPPED = (130, 143)  # slac-train stopped by SIGINT / SIGTERM, its checkpoint written


class TrialLost(RuntimeError):
    """slac-train died without an exit status of its own (killed): retry from the checkpoint."""


class TrialFailed(RuntimeError):
    """slac-train exited with an error status (bad configuration, NaN loss): not retried."""


def _die_with_parent() -> None:
    """In the child: SIGTERM when the process that started it (the Ray worker) dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def is_done(values: dict[str, Any]) -> bool:
    """True when the trial's run finished a budget at least as large as ``values``' budget."""
    marker = Path(values["run_dir"]) / DONE_MARKER
    if not marker.is_file():
        return False
    return json.loads(marker.read_text()).get("total_env_steps", 0) >= values["total_env_steps"]


def command(values: dict[str, Any], config_file: Path, threads: int, device: str) -> list[str]:
    """The slac-train command for the trial's next attempt."""
    run_dir = Path(values["run_dir"])
    system = ["--threads", str(threads), "--device", device, "--no-progress"]
    base = [sys.executable, "-m", "slac_train.cli"]
    if (run_dir / "checkpoints" / "latest").is_file():
        budget = ["--total-env-steps", str(values["total_env_steps"])]
        return [*base, "--resume", str(run_dir), *budget, *system]
    return [*base, "--config", str(config_file), *system]


def _wait_for_lock(run_dir: Path, timeout_s: float = 600.0) -> None:
    """Wait until no process holds the run's lock (an earlier attempt writing its checkpoint)."""
    from slac_train.run_lock import RunInUseError, RunLock

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            RunLock(run_dir).acquire().release()
            return
        except RunInUseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _set_aside_unstarted(run_dir: Path) -> None:
    """A run killed before its first checkpoint cannot be resumed: move it aside, start anew."""
    if run_dir.exists() and not (run_dir / "checkpoints" / "latest").is_file():
        if any(run_dir.iterdir()):
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.unstarted-{int(time.time())}"))


def stop_attempt(run_dir: Path, pid: int) -> bool:
    """SIGTERM an attempt's slac-train, once: the Ray worker (on a cancel) and the sweep's driver
    (in case a cancel does not arrive, and again each second while it waits) may all ask, and a
    SIGTERM more than a second after the first stops slac-train at once, without its checkpoint.
    Whoever creates the attempt's stop marker first sends it; True if sent now."""
    try:
        os.close(os.open(run_dir / f"{STOP_MARKER}{pid}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _run(cmd: list[str], log_path: Path, run_dir: Path) -> int:
    """Run slac-train, its output appended to ``log_path``; a cancel (KeyboardInterrupt in this
    worker) is passed on as SIGTERM and waited for, so that the run checkpoints."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        niceness = os.nice(0)  # slac-train inherits the Ray worker's priority
        if niceness > 0:
            log.write(
                f"note: this Ray worker runs at niceness {niceness}, so slac-train gets a small "
                "share of a busy CPU; start the cluster's nodes with RAY_worker_niceness=0\n"
            )
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
        attempt = {
            "worker_pid": os.getpid(),
            "pid": proc.pid,
            "host": socket.gethostname(),
            "niceness": niceness,
            "command": cmd,
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ATTEMPT_FILE).write_text(json.dumps(attempt) + "\n")
        try:
            while True:
                try:
                    # short waits: Ray's cancel raises KeyboardInterrupt between Python instructions
                    return proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
                except KeyboardInterrupt:
                    stop_attempt(run_dir, proc.pid)
        finally:
            (run_dir / f"{STOP_MARKER}{proc.pid}").unlink(missing_ok=True)


def run_trial(
    values: dict[str, Any], config_file: str, log_file: str, threads: int, device: str
) -> dict[str, Any]:
    """Run (or resume) one trial to its budget; the record of how it ended."""
    run_dir = Path(values["run_dir"])
    if is_done(values):
        return {**json.loads((run_dir / DONE_MARKER).read_text()), "skipped": True}
    if run_dir.exists():
        _wait_for_lock(run_dir)
    _set_aside_unstarted(run_dir)
    cmd = command(values, Path(config_file), threads, device)
    started = time.monotonic()
    code = _run(cmd, Path(log_file), run_dir)
    record = {
        "exit_code": code,
        "resumed": "--resume" in cmd,
        "wall_s": round(time.monotonic() - started, 1),
        "host": socket.gethostname(),
        "total_env_steps": values["total_env_steps"],
    }
    if code == 0:
        (run_dir / DONE_MARKER).write_text(json.dumps(record) + "\n")
        return {**record, "skipped": False}
    if code < 0:
        raise TrialLost(f"slac-train for {run_dir.name} was killed by signal {-code}")
    if code in STOPPED:
        return {**record, "skipped": False, "stopped": True}
    raise TrialFailed(f"slac-train for {run_dir.name} exited with {code}; see {log_file}")
