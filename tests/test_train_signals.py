"""slac-train under the signals and accidents of a cluster: SIGTERM in each phase checkpoints and
resumes, a second writer of a run directory is refused, and a resumed run's files hold one history.

The runs use the toy pixel task (tests/slac_toy_task.py) in a real ``slac-train`` process, signalled
from outside as Slurm, ``docker stop`` or ``timeout`` would.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from slac_toy_task import TOY_TASK, toy_task  # noqa: E402
from test_resume import assert_same_state  # noqa: E402

from slac_train.checkpoint import load_checkpoint  # noqa: E402
from slac_train.trainer import Trainer  # noqa: E402
from tests.conftest import cli_flags  # noqa: E402
from tests.train_configs import TINY_NETWORKS, small_test_config  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))
RUNNER = f"""
import sys
sys.path.insert(0, {TESTS!r})
from slac_toy_task import toy_task
from slac_train.cli import main
with toy_task(action_repeat=2, length=24):
    sys.exit(main(sys.argv[1:]))
"""
SMALL = dict(
    **TINY_NETWORKS,
    eval_episodes=1,
    log_every_updates=5,
    device="cpu",
    num_threads=1,
)


def train_process(run_dir: Path, **config) -> subprocess.Popen:
    args = cli_flags(task=TOY_TASK, **SMALL, **config, run_dir=run_dir)
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, *args, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def run_slac_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, timeout=180
    )


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def wait_for(run_dir: Path, proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        if (run_dir / "metrics.jsonl").exists() and ready(records(run_dir)):
            return
        assert time.monotonic() < deadline, "the run did not reach the phase in time"
        time.sleep(0.1)


def stop_with_sigterm(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("slac-train:")]
    assert len(line) == 1 and "SIGTERM" in line[0] and "--resume" in line[0], err
    return line[0]


def assert_one_history(run_dir: Path) -> None:
    """No step appears twice among the episode, evaluation and checkpoint records and eval.csv."""
    rows = records(run_dir)
    for kind in ("episode", "eval", "checkpoint", "train"):
        keys = [
            tuple(r.get(k) for k in ("env_step", "updates", "pretrain_updates", "path"))
            for r in rows
            if r["kind"] == kind
        ]
        assert not [k for k, n in Counter(keys).items() if n > 1], f"{kind} rows repeat"
    episode_steps = [r["env_step"] for r in rows if r["kind"] == "episode"]
    assert episode_steps == sorted(episode_steps)
    if not (run_dir / "eval.csv").exists():
        return
    with open(run_dir / "eval.csv") as f:
        evals = [int(float(row["env_step"])) for row in csv.DictReader(f)]
    assert evals == sorted(set(evals))


def test_sigterm_during_random_collection_checkpoints_and_resumes(tmp_path):
    run_dir = tmp_path / "collect"
    proc = train_process(
        run_dir, initial_collection_steps=200_000, total_env_steps=1_000_000, model_pretrain_steps=2
    )
    wait_for(run_dir, proc, lambda rows: any(r["kind"] == "episode" for r in rows))
    message = stop_with_sigterm(proc)
    assert str(run_dir) in message
    state = load_checkpoint(run_dir)
    counters = state["counters"]
    assert counters["phase"] == "collect" and counters["agent_step"] > 0
    stop = counters["env_step"] + 48
    result = run_slac_train("--resume", str(run_dir), "--total-env-steps", str(stop))
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(run_dir)["counters"]["env_step"] == stop
    assert_one_history(run_dir)


def test_sigterm_during_pretraining_resumes_exactly(tmp_path):
    config = dict(
        initial_collection_steps=20,
        model_pretrain_steps=400,
        total_env_steps=96,
        eval_every_env_steps=48,
        checkpoint_every_env_steps=48,
        eval_video=False,
        reconstruction_video=False,
    )
    run_dir = tmp_path / "pretrain"
    proc = train_process(run_dir, **config)
    wait_for(run_dir, proc, lambda rows: any(r["kind"] == "pretrain" for r in rows))
    stop_with_sigterm(proc)
    counters = load_checkpoint(run_dir)["counters"]
    assert counters["phase"] == "pretrain" and 0 < counters["pretrain_updates"] < 400
    result = run_slac_train("--resume", str(run_dir))
    assert result.returncode == 0, result.stderr

    with toy_task(action_repeat=2, length=24):
        straight = Trainer(
            small_test_config(
                task=TOY_TASK, **{**SMALL, **config}, run_dir=str(tmp_path / "straight")
            )
        )
        with straight:
            straight.train()
    resumed = load_checkpoint(run_dir)
    assert_same_state(straight.agent.state_dict(), resumed["agent"])
    skip = {"elapsed_s", "agent_steps", "env_steps"}
    assert {k: v for k, v in resumed["counters"].items() if k not in skip} == {
        k: v for k, v in straight.counters.items() if k not in skip
    }
    assert_one_history(run_dir)
    pretrain = [r["pretrain_updates"] for r in records(run_dir) if r["kind"] == "pretrain"]
    assert pretrain == sorted(set(pretrain))


def test_sigterm_during_training_and_a_second_writer_is_refused(tmp_path):
    run_dir = tmp_path / "train"
    proc = train_process(
        run_dir,
        initial_collection_steps=20,
        model_pretrain_steps=3,
        total_env_steps=1_000_000,
        eval_every_env_steps=1_000_000,
        eval_video=False,
        reconstruction_video=False,
    )
    wait_for(run_dir, proc, lambda rows: any(r["kind"] == "train" for r in rows))

    second = run_slac_train("--resume", str(run_dir))
    assert second.returncode == 2
    assert f"process {proc.pid} on " in second.stderr and len(second.stderr.splitlines()) == 1
    fresh = run_slac_train("--task", TOY_TASK, *cli_flags(**SMALL), "--run-dir", str(run_dir))
    assert fresh.returncode == 2 and f"process {proc.pid} on " in fresh.stderr

    stop_with_sigterm(proc)
    counters = load_checkpoint(run_dir)["counters"]
    assert counters["phase"] == "train" and counters["updates"] > 0
    stop = counters["env_step"] + 48
    result = run_slac_train("--resume", str(run_dir), "--total-env-steps", str(stop))
    assert result.returncode == 0, result.stderr
    final = load_checkpoint(run_dir)["counters"]
    assert final["env_step"] == stop and final["updates"] > counters["updates"]
    assert_one_history(run_dir)


def test_resume_cuts_files_back_to_the_checkpoint(tmp_path):
    """A run killed after its checkpoint (its files ran ahead) resumes with one history, the same
    as an uninterrupted run's."""
    config = small_test_config(
        task=TOY_TASK,
        total_env_steps=144,
        initial_collection_steps=20,
        model_pretrain_steps=5,
        eval_every_env_steps=24,
        checkpoint_every_env_steps=1_000_000,
        reconstruction_video=False,
        log_every_updates=5,
    )
    with toy_task(action_repeat=2, length=24):
        with Trainer(config.replace(run_dir=str(tmp_path / "straight"))) as straight:
            straight.train()
        run_dir = tmp_path / "killed"
        with Trainer(config.replace(run_dir=str(run_dir))) as first:
            first.train(stop_at_env_step=48)
            shutil.copytree(run_dir / "checkpoints", tmp_path / "saved")
            first.train(stop_at_env_step=120)  # files run ahead of the saved checkpoint
        shutil.rmtree(run_dir / "checkpoints")
        shutil.copytree(tmp_path / "saved", run_dir / "checkpoints")
        assert (run_dir / "videos" / "eval-0000000096.mp4").exists()
        with Trainer.resume(run_dir) as resumed:
            assert not (run_dir / "videos" / "eval-0000000096.mp4").exists()
            resumed.train()
    assert_one_history(run_dir)
    assert (run_dir / "eval.csv").read_text().splitlines()[0].startswith("env_step")

    def steps(path: Path, kind: str) -> list[int]:
        return [r["env_step"] for r in records(path) if r["kind"] == kind]

    for kind in ("episode", "eval"):
        assert steps(run_dir, kind) == steps(tmp_path / "straight", kind)
    with open(run_dir / "eval.csv") as a, open(tmp_path / "straight" / "eval.csv") as b:
        assert [r["return_mean"] for r in csv.DictReader(a)] == [
            r["return_mean"] for r in csv.DictReader(b)
        ]
    assert_same_state(straight.agent.state_dict(), resumed.agent.state_dict())


def test_progress_through_a_pipe_is_plain_lines_per_phase(tmp_path):
    result = run_slac_train(
        "--task",
        TOY_TASK,
        *cli_flags(**SMALL),
        *cli_flags(initial_collection_steps=20, model_pretrain_steps=3, total_env_steps=96),
        *cli_flags(eval_video=False, reconstruction_video=False, run_dir=tmp_path / "piped"),
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout + result.stderr
    lines = [x for x in result.stdout.splitlines() if x.startswith("progress: ")]
    phases = [x.split()[1] for x in lines]
    assert phases[:3] == ["collect", "pretrain", "train"], result.stdout
    assert all("phase ETA" in x and "run " in x for x in lines)


def test_run_lock_names_its_holder_and_is_never_stale(tmp_path):
    import pytest

    from slac_train.run_lock import RunInUseError, RunLock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from slac_train.run_lock import RunLock; "
            "lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInUseError, match=f"process {holder.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "lock").exists()  # left by the killed process, but no longer locked
    with RunLock(tmp_path) as lock:
        assert lock.held
    assert not (tmp_path / "lock").exists()
