"""benchmarks/learning/run_experiment.py (a slac-sweep of one task): a Ctrl-C (or a timeout's SIGINT
to the process group) leaves a resumable checkpoint and a report of the curve so far."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli_flags
from tests.train_configs import TINY_NETWORKS

ROOT = Path(__file__).resolve().parents[1]
TINY = cli_flags(
    **{**TINY_NETWORKS, "z2_dim": 16, "buffer_capacity": 5000},
    initial_collection_steps=200,
    model_pretrain_steps=2,
    eval_episodes=1,
    checkpoint_every_env_steps=100000,
    eval_video=False,
    reconstruction_video=False,
)


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_checkpoints_and_reports(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "learning" / "run_experiment.py"),
        "--task",
        "cartpole-balance",
        "--preset",
        "paper",
        "--env-steps",
        "50000",
        "--eval-every",
        "400",
        "--seeds",
        "0",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--runs-root",
        str(runs),
        "--out",
        str(out),
        "--extra",
        *TINY,
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    sweep_dir = runs / "cartpole-balance-paper-50k"
    eval_csv = sweep_dir / "runs" / "cartpole-balance-s0" / "eval.csv"
    try:
        deadline = time.monotonic() + 240
        while not (
            eval_csv.exists() and len(eval_csv.read_text().splitlines()) >= 3
        ):  # header + 2 evaluations
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no evaluation within 4 minutes"
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C or `timeout -s INT` does
        output = proc.communicate(timeout=240)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    trial_log = (sweep_dir / "logs" / "cartpole-balance-s0.log").read_text()
    assert "checkpoint written" in trial_log, trial_log
    run_dir = eval_csv.parent
    assert (run_dir / "checkpoints" / "latest").exists()
    result = json.loads((out / "cartpole-balance-paper-50k.json").read_text())
    stopped = result["stopped_at_env_step"]["0"]
    assert 400 <= stopped < 50_000 and "stopped after" in result["commands"]["0"]
    assert (
        len(result["evaluations"]["0"]) >= 2 and (out / "cartpole-balance-paper-50k.png").exists()
    )
    history = result["commands"]["0"].split("  &&  ")
    assert history[0].startswith("slac-train --task cartpole-balance --seed 0")
    assert len(history) == 2 and "slac_train.cli --config" in history[1]
    assert not (run_dir / "sweep-done.json").exists()  # a re-run resumes it
