"""slac-sweep: a 2-task x 2-seed grid of tiny runs on a local Ray instance survives a lost worker
(the trial resumes from its checkpoint), writes its results table, and a re-run skips it all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from slac_train.sweep.cli import _signal_local_trials  # noqa: E402
from slac_train.sweep.cli import main as sweep_main  # noqa: E402
from slac_train.sweep.grid import Trial, build_trials, parse_value, variants  # noqa: E402
from slac_train.sweep.trial import ATTEMPT_FILE, stop_attempt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "encoder_base_channels": 4,
    "feature_dim": 16,
    "z1_dim": 4,
    "z2_dim": 8,
    "model_hidden": 16,
    "actor_critic_hidden": 16,
    "batch_size_actor_critic": 8,
    "batch_size_model": 4,
    "buffer_capacity": 2000,
    "model_pretrain_steps": 3,
    "eval_episodes": 1,
    "eval_video": "false",
    "reconstruction_video": "false",
    "max_episode_agent_steps": 10,
    "initial_collection_steps": 10,
    "checkpoint_every_env_steps": 40,
    "eval_every_env_steps": 40,
}
TASKS = ["cartpole-balance", "dclaw-pose-fixed"]


def sweep_args(sweep_dir: Path) -> list[str]:
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    grid = ["--tasks", *TASKS, "--seeds", "0", "1", "--env-steps", "240", "--points", "120", "240"]
    return [*grid, *sets, "--num-cpus", "2", "--sweep-dir", str(sweep_dir)]


def test_grid_names_and_values(tmp_path):
    trials = build_trials(
        ["cartpole-balance"], [0, 1], {"z1_dim": 4}, {"lr_model": "1e-3,1e-4"}, tmp_path
    )
    assert [t.name for t in trials] == [
        "cartpole-balance-lr_model=0.001-s0",
        "cartpole-balance-lr_model=0.001-s1",
        "cartpole-balance-lr_model=0.0001-s0",
        "cartpole-balance-lr_model=0.0001-s1",
    ]
    assert trials[0].values["lr_model"] == 0.001 and trials[0].values["z1_dim"] == 4
    assert trials[3].values["run_dir"] == str(tmp_path.resolve() / "runs" / trials[3].name)
    assert parse_value("false") is False and parse_value("cpu") == "cpu"
    assert variants({}) == [{}]


def test_a_different_grid_in_the_same_sweep_dir_is_refused(tmp_path, capsys):
    base = ["--tasks", "cartpole-balance", "--sweep-dir", str(tmp_path), "--report-only"]
    assert sweep_main([*base, "--set", "z1_dim=4"]) == 0
    assert sweep_main([*base, "--set", "z1_dim=8"]) == 2
    assert "holds a different sweep" in capsys.readouterr().err
    assert sweep_main(["--tasks", "cartpole-balanse", "--sweep-dir", str(tmp_path / "c")]) == 2
    assert "cartpole-balance" in capsys.readouterr().err  # the registry's suggestion
    assert (
        sweep_main(
            ["--tasks", "cartpole-balance", "--set", "nope=1", "--sweep-dir", str(tmp_path / "b")]
        )
        == 2
    )


def _wait_for_mid_run_checkpoint(proc, run_dir: Path, deadline: float) -> dict:
    """The trial's attempt record once it has a checkpoint and is still training."""
    while True:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint of the trial in time"
        attempt = run_dir / "sweep-attempt.json"
        if (run_dir / "checkpoints" / "latest").is_file() and attempt.is_file():
            assert not (run_dir / "sweep-done.json").exists(), "the trial ended before the kill"
            return json.loads(attempt.read_text())
        time.sleep(0.1)


@pytest.mark.slow
def test_sweep_survives_a_lost_worker_and_a_rerun_skips_finished_trials(tmp_path):
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "slac_train.sweep.cli", *sweep_args(sweep_dir)]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    victim = sweep_dir / "runs" / "cartpole-balance-s0"
    try:
        attempt = _wait_for_mid_run_checkpoint(proc, victim, time.monotonic() + 120)
        # the trial's slac-train runs at the sweep's own priority, not Ray's worker niceness
        assert os.getpriority(os.PRIO_PROCESS, attempt["pid"]) == os.nice(0)
        assert attempt["niceness"] == os.nice(0)
        os.kill(attempt["worker_pid"], signal.SIGKILL)  # the Ray worker running the trial
        output = proc.communicate(timeout=240)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    print(f"sweep with a lost worker: {time.monotonic() - started:.0f} s")

    # the victim's trial ran twice: fresh, then resumed from its checkpoint by Ray's retry
    done = json.loads((victim / "sweep-done.json").read_text())
    assert done["resumed"] is True, output
    commands = [
        line
        for line in (sweep_dir / "logs" / f"{victim.name}.log").read_text().splitlines()
        if line.startswith("$ ")
    ]
    assert len(commands) == 2 and "--config" in commands[0] and "--resume" in commands[1]
    kinds = [json.loads(line).get("kind") for line in (victim / "metrics.jsonl").open()]
    assert "resume" in kinds
    for task in TASKS:
        for seed in (0, 1):
            assert (sweep_dir / "runs" / f"{task}-s{seed}" / "sweep-done.json").is_file()

    results = json.loads((sweep_dir / "results.json").read_text())
    assert {row["task"] for row in results["rows"]} == set(TASKS)
    for row in results["rows"]:
        assert row["finished"] == 2 and row["points"]["240"]["stochastic"]["n"] == 2
        assert row["random_policy"]["n"] >= 2  # the collection episodes of both seeds
    table = (sweep_dir / "results.md").read_text()
    assert "| cartpole-balance | - | 2/2 |" in table
    assert all((sweep_dir / "curves" / f"{task}.png").stat().st_size > 0 for task in TASKS)

    # a re-run skips every finished trial without starting Ray, and rewrites the table
    (sweep_dir / "results.md").unlink()
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "nothing to run" in rerun.stdout and (sweep_dir / "results.md").is_file()


def _start_endless_sweep(sweep_dir: Path) -> subprocess.Popen:
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    grid = ["--tasks", "cartpole-balance", "--env-steps", "1000000", "--points", "40"]
    cmd = [sys.executable, "-m", "slac_train.sweep.cli", *grid, *sets, "--num-cpus", "1"]
    return subprocess.Popen(
        [*cmd, "--sweep-dir", str(sweep_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )


def _last_checkpoint(run_dir: Path) -> str:
    return sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1].name


@pytest.mark.slow
def test_sigterm_stops_the_sweep_with_its_trial_checkpointed(tmp_path):
    """Slurm pre-emption, ``docker stop`` or ``timeout`` send SIGTERM to the sweep: each running
    slac-train writes a checkpoint, the results are written as they stand, and it exits 143."""
    signum = signal.SIGTERM
    sweep_dir = tmp_path / "sweep"
    proc = _start_endless_sweep(sweep_dir)
    run_dir = sweep_dir / "runs" / "cartpole-balance-s0"
    log_file = sweep_dir / "logs" / "cartpole-balance-s0.log"
    try:
        attempt = _wait_for_mid_run_checkpoint(proc, run_dir, time.monotonic() + 120)
        before = _last_checkpoint(run_dir)
        proc.send_signal(signum)
        output = proc.communicate(timeout=120)[0]
        deadline = time.monotonic() + 60
        while _alive(attempt["pid"]):
            assert time.monotonic() < deadline, "slac-train outlived its sweep"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = log_file.read_text()
    assert "slac-train: stopped: SIGTERM: checkpoint written to" in log, log
    assert _last_checkpoint(run_dir) > before  # the stop's own checkpoint, after the periodic one
    assert not (run_dir / "sweep-done.json").exists()
    assert proc.returncode == 143, output
    assert "SIGTERM: stopping; every running trial writes a checkpoint" in output
    assert (sweep_dir / "results.md").is_file()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


COUNT_SIGTERMS = """
import signal, sys, time
received = []
signal.signal(signal.SIGTERM, lambda *_: received.append(1))
print("ready", flush=True)
time.sleep(2.0)
sys.exit(len(received))
"""


def test_a_trials_slac_train_gets_one_sigterm_however_many_ask(tmp_path):
    """On a stop, the Ray worker (on the cancel) and the sweep's driver (in case the cancel does not
    arrive) both ask the trial's slac-train to stop; it must see one SIGTERM, since a second stops
    it without its checkpoint. The driver signals only a process that still runs the attempt's
    exact command."""
    run_dir = tmp_path / "runs" / "walker-stand-s0"
    run_dir.mkdir(parents=True)
    trial = Trial("walker-stand", 0, {}, {"run_dir": str(run_dir)})
    command = [sys.executable, "-c", COUNT_SIGTERMS]
    attempt = {"worker_pid": os.getpid(), "host": socket.gethostname(), "command": command}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as train:
        assert train.stdout.readline() == "ready\n"
        (run_dir / ATTEMPT_FILE).write_text(json.dumps(attempt | {"pid": train.pid}))
        _signal_local_trials([trial])  # the driver
        assert stop_attempt(run_dir, train.pid) is False  # the worker, when its cancel arrives
        _signal_local_trials([trial])  # the driver's next look while it waits
        assert train.wait(timeout=10) == 1
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        # the attempt's pid now runs something else: left alone
        (run_dir / ATTEMPT_FILE).write_text(json.dumps(attempt | {"pid": other.pid}))
        _signal_local_trials([trial])
        time.sleep(0.5)
        assert other.poll() is None
        other.kill()
