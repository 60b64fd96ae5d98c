"""slac-train smoke tests: every artefact of a run, --list-tasks, bad input, Ctrl-C and --resume."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slac_train.cli import main
from slac_train.envs import task_names
from tests.conftest import cli_flags, short_run_flags
from tests.train_configs import tiny_train_values

SMALL = cli_flags(**tiny_train_values(model_pretrain_steps=6, num_threads=1))


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    return subprocess.run(
        [sys.executable, "-m", "slac_train.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_run_artefacts(run_dir: Path) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    assert config["action_repeat"] >= 1 and config["decoder_std"] > 0  # resolved, logged values
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert {"episode", "train", "eval", "checkpoint"} <= kinds
    assert any("model/loss" in r and "critic/loss" in r for r in records if r["kind"] == "train")
    assert (run_dir / "eval.csv").read_text().startswith("env_step,")
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    latest = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    assert latest.is_file()
    assert (run_dir / "curve.png").read_bytes()[:4] == b"\x89PNG"
    for kind in ("eval", "reconstruction"):
        videos = list((run_dir / "videos").glob(f"{kind}-*.mp4"))
        assert videos and videos[0].stat().st_size > 1000, f"no {kind} video"
    assert_tensorboard_on_env_steps(run_dir, records)


def assert_tensorboard_on_env_steps(run_dir: Path, records: list[dict]) -> None:
    """Every TensorBoard scalar sits at a simulator step a metrics record has; evaluations carry a
    strip of frames; the random collection's returns are kept for the curve's reference line."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from slac_train.checkpoint import load_checkpoint

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    env_steps = {r["env_step"] for r in records}
    for tag in events.Tags()["scalars"]:
        assert {e.step for e in events.Scalars(tag)} <= env_steps, tag
    pretrain = {r["env_step"] for r in records if r["kind"] == "pretrain"}
    for tag in [t for t in events.Tags()["scalars"] if t.startswith("pretrain/")]:
        assert {e.step for e in events.Scalars(tag)} <= pretrain, tag
    assert "eval/episode_frames" in events.Tags()["images"]
    [video] = events.Images("eval/episode")[-1:]  # the evaluation episode, animated
    assert video.encoded_image_string[:6] == b"GIF89a" and video.width == 64
    from PIL import Image

    gif = Image.open(io.BytesIO(video.encoded_image_string))
    assert gif.n_frames > 1
    state = load_checkpoint(run_dir)
    collected = [r for r in records if r["kind"] == "episode" and r["phase"] == "collect"]
    assert state["random_returns"] == [r["train/episode_return"] for r in collected]


def test_cartpole_run_leaves_every_artefact(tmp_path, capsys):
    run_dir = tmp_path / "cartpole"
    code = main(
        [
            "--task",
            "cartpole-swingup",
            *SMALL,
            *short_run_flags(episode_steps=15, total_env_steps=120, eval_every_env_steps=60),
            "--run-dir",
            str(run_dir),
        ]
    )
    assert code == 0
    assert "done: 120 env steps" in capsys.readouterr().out
    assert_run_artefacts(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["action_repeat"] == 4 and config["decoder_std"] == pytest.approx(0.1**0.5)


@pytest.mark.skipif("dclaw-turn" not in task_names(), reason="dclaw-turn is not registered yet")
def test_dclaw_run_leaves_every_artefact(tmp_path):
    run_dir = tmp_path / "dclaw"
    code = main(
        [
            "--task",
            "dclaw-turn",
            *SMALL,
            *short_run_flags(episode_steps=10, total_env_steps=60, eval_every_env_steps=30),
            "--run-dir",
            str(run_dir),
        ]
    )
    assert code == 0
    assert_run_artefacts(run_dir)
    rows = (run_dir / "eval.csv").read_text().splitlines()
    assert len(rows) >= 2


def test_list_tasks(capsys):
    assert main(["--list-tasks"]) == 0
    out = capsys.readouterr().out
    assert "cartpole-swingup" in out and "action_repeat" in out and "cheetah-run" in out


def test_unknown_task_is_one_line_exit_2():
    result = run_cli("--task", "cheetah-runn")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "unknown task 'cheetah-runn'" in lines[0] and "cheetah-run" in lines[0]


def test_invalid_value_is_explained(capsys):
    assert main(["--task", "cartpole-swingup", "--batch-size-model", "0", "--device", "cpu"]) == 2
    assert "batch_size_model must be" in capsys.readouterr().err


def test_ctrl_c_writes_a_checkpoint_and_resume_finishes(tmp_path):
    from slac_train.checkpoint import load_checkpoint

    run_dir = tmp_path / "interrupted"
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    args = [
        "--task",
        "cartpole-swingup",
        *SMALL,
        *short_run_flags(episode_steps=15, total_env_steps=1000000, eval_every_env_steps=1000000),
        "--no-eval-video",
        "--no-reconstruction-video",
        "--run-dir",
        str(run_dir),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "slac_train.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        metrics = run_dir / "metrics.jsonl"
        deadline = time.time() + 90
        while time.time() < deadline and not (
            metrics.exists() and '"kind": "train"' in metrics.read_text()
        ):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # while the agent is learning
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "checkpoint written" in err
    state = load_checkpoint(run_dir)
    assert state["counters"]["phase"] == "train" and state["counters"]["updates"] > 0

    result = run_cli("--resume", str(run_dir), "--z2-dim", "9")
    assert result.returncode == 2 and "cannot change z2_dim" in result.stderr
    stop = state["counters"]["env_step"] + 60
    result = run_cli("--resume", str(run_dir), "--total-env-steps", str(stop))
    assert result.returncode == 0, result.stderr
    assert f"done: {stop} env steps" in result.stdout
    assert load_checkpoint(run_dir)["counters"]["phase"] == "done"


def test_preset_config_file_and_options_in_that_order(tmp_path, monkeypatch):
    from slac_train import cli
    from slac_train.config import PRESETS

    built = {}

    class Recorder:
        def __init__(self, config):
            built["config"] = config
            raise KeyboardInterrupt  # stop before anything is trained

    monkeypatch.setattr("slac_train.trainer.Trainer", Recorder)
    config_file = tmp_path / "run.toml"
    config_file.write_text('task = "cartpole-swingup"\nz1_dim = 8\nlr_model = 5e-4\n')
    code = cli.main(
        ["--preset", "cpu-small", "--config", str(config_file), "--z1-dim", "12", "--device", "cpu"]
    )
    assert code == 130
    config = built["config"]
    assert config.task == "cartpole-swingup" and config.z1_dim == 12  # option > file > preset
    assert config.lr_model == 5e-4 and config.feature_dim == PRESETS["cpu-small"]["feature_dim"]

    (tmp_path / "run.json").write_text(json.dumps({"task": "cartpole-swingup", "lr_model": 1e-3}))
    assert cli.main(["--config", str(tmp_path / "run.json"), "--device", "cpu"]) == 130
    assert built["config"].lr_model == 1e-3 and built["config"].feature_dim == 256


def test_config_file_refuses_unknown_fields_and_wrong_types(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('task = "cartpole-swingup"\nlr_modle = 1e-3\nz1_dim = "big"\n')
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown field 'lr_modle' (did you mean 'lr_model'?)" in err
    assert "z1_dim must be int, got 'big'" in err
    with pytest.raises(SystemExit) as refused:
        main(["--preset", "cpu-small", "--resume", str(tmp_path)])
    assert refused.value.code == 2


def test_preset_cpu_small_is_the_benchmarks_preset():
    from slac_train.config import PRESETS, TrainConfig

    cpu = TrainConfig(task="cartpole-swingup", **PRESETS["cpu-small"])
    assert cpu.lr_model == 1e-3 and cpu.init_log_alpha == -2.3 and cpu.model_pretrain_steps == 2000
    assert TrainConfig(task="cartpole-swingup", **PRESETS["paper"]) == TrainConfig(
        task="cartpole-swingup"
    )


def test_a_budget_inside_the_random_collection_is_refused(capsys):
    code = main(["--task", "cartpole-swingup", "--total-env-steps", "100", "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "never be updated" in err and "10,000 agent steps x action repeat 4" in err


def test_resume_refuses_a_damaged_checkpoint_and_a_slac_imitate_run(tmp_path, capsys):
    from slac_train.checkpoint import save_checkpoint

    damaged = tmp_path / "damaged"
    path = save_checkpoint(damaged, "ckpt-0000000100-0000000010", {"config": {}, "pad": [0] * 999})
    path.write_bytes(path.read_bytes()[:300])  # a copy cut short
    assert main(["--resume", str(damaged)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "damaged or incomplete" in err, err

    imitated = tmp_path / "imitated"
    save_checkpoint(imitated, "ckpt-bc-00000002", {"config": {}, "imitation": {}, "counters": {}})
    assert main(["--resume", str(imitated)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a slac-imitate checkpoint" in err, err
    assert f"--init-policy {imitated}" in err


def test_print_config_of_a_run_whose_config_json_is_damaged_names_the_file(tmp_path, capsys):
    (tmp_path / "config.json").write_text("")
    assert main(["--resume", str(tmp_path), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{tmp_path / 'config.json'} is not a JSON config" in err
