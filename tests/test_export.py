"""slac-export: ONNX parity with PyTorch, streaming = full form, metadata, a torch-free loader,
errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from slac_runtime.history import ACTOR_FRAMES, History
from slac_runtime.policy import OnnxPolicy, PolicyFileError, stochastic_action
from slac_train.checkpoint import load_agent
from slac_train.envs import make_env
from slac_train.export_cli import main as export_main

TOL = 1e-4


def torch_outputs(agent, frames: np.ndarray, actions: np.ndarray):
    policy = agent.policy().eval()
    with torch.no_grad():
        mean, log_std = policy(torch.from_numpy(frames[None]), torch.from_numpy(actions[None]))
    return mean[0].numpy(), log_std[0].numpy()


def test_random_histories_match_pytorch(tiny_dclaw_run, tiny_dclaw_policy):
    agent, _ = load_agent(tiny_dclaw_run)
    policy = OnnxPolicy(tiny_dclaw_policy)
    rng = np.random.default_rng(0)
    for _ in range(5):
        frames = rng.integers(0, 256, (ACTOR_FRAMES, 64, 64, 3), dtype=np.uint8)
        actions = rng.uniform(-1, 1, (ACTOR_FRAMES - 1, 9)).astype(np.float32)
        mean, log_std = torch_outputs(agent, frames, actions)
        out = policy.run_full(frames, actions, deterministic=True)
        np.testing.assert_allclose(out.action, np.tanh(mean), atol=TOL)
        np.testing.assert_allclose(out.mean, mean, atol=TOL)
        np.testing.assert_allclose(out.log_std, log_std, atol=TOL)
        noise = rng.standard_normal(9).astype(np.float32)
        sampled = policy.run_full(frames, actions, deterministic=False, noise=noise).action
        np.testing.assert_allclose(sampled, np.tanh(mean + np.exp(log_std) * noise), atol=TOL)


def test_rollout_histories_streaming_matches_pytorch_and_full_form(
    tiny_dclaw_run, tiny_dclaw_policy
):
    """A real D'Claw rollout, start-of-episode padding included: training's acting inputs (History
    over frames) through PyTorch vs the runtime's streaming ONNX policy, step by step."""
    agent, _ = load_agent(tiny_dclaw_run)
    policy = OnnxPolicy(tiny_dclaw_policy)
    env = make_env("dclaw-turn", seed=3)
    rng = np.random.default_rng(1)
    try:
        obs, _ = env.reset()
        history = History(9, obs.shape)
        history.reset(obs)
        noise = rng.standard_normal(9).astype(np.float32)
        out = policy.reset(obs, deterministic=False, noise=noise)
        for _ in range(14):
            np.testing.assert_array_equal(policy.frames, history.items)
            np.testing.assert_array_equal(policy.actions, history.actions)
            mean, log_std = torch_outputs(agent, history.items, history.actions)
            np.testing.assert_allclose(out.deterministic_action, np.tanh(mean), atol=TOL)
            np.testing.assert_allclose(
                out.action, np.tanh(mean + np.exp(log_std) * noise), atol=TOL
            )
            full = policy.run_full(history.items, history.actions, deterministic=True)
            np.testing.assert_allclose(full.action, out.deterministic_action, atol=TOL)
            action = out.action
            obs, _, term, trunc, _ = env.step(action)
            history.append(action, obs)
            noise = rng.standard_normal(9).astype(np.float32)
            out = policy.step(obs, action, deterministic=False, noise=noise)
    finally:
        env.close()
    np.testing.assert_allclose(
        stochastic_action(out.mean, out.log_std, noise), out.action, atol=1e-6
    )


def test_metadata_describes_the_policy(tiny_dclaw_policy):
    from robots.dclaw import DCLAW

    m = OnnxPolicy(tiny_dclaw_policy).metadata
    assert m.task == "dclaw-turn" and m.robot == "dclaw"
    assert (m.image_height, m.image_width, m.channel_order) == (64, 64, "RGB")
    assert m.history_length == 8 and m.action_dim == 9 and m.feature_dim == 16
    assert m.joint_names == DCLAW.joint_names
    assert m.control_period_s == pytest.approx(0.05) and m.action_repeat == 2
    assert m.training_env_steps > 0 and len(m.checkpoint_sha256) == 64
    assert m.mismatches(DCLAW, (64, 64), 8) == []


def test_onnx_checker_and_inspect(tiny_dclaw_policy, capsys):
    import onnx

    onnx.checker.check_model(onnx.load(str(tiny_dclaw_policy)), full_check=True)
    assert export_main(["--inspect", str(tiny_dclaw_policy)]) == 0
    out = capsys.readouterr().out
    assert "input frames" in out and "tensor(uint8)" in out and "control_period_s" in out


def test_runtime_loads_the_policy_without_torch(tiny_dclaw_policy):
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "import numpy as np\n"
        "from slac_runtime.policy import OnnxPolicy\n"
        f"p = OnnxPolicy({str(tiny_dclaw_policy)!r})\n"
        "frame = np.zeros((64, 64, 3), np.uint8)\n"
        "out = p.reset(frame, deterministic=True)\n"
        "out = p.step(frame, out.action, deterministic=True)\n"
        "assert out.action.shape == (9,) and np.all(np.abs(out.action) <= 1)\n"
        "print('ok', [m for m in ('torch', 'mujoco') if sys.modules.get(m) is not None])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok []"


def test_export_errors_are_one_line(tmp_path, tiny_dclaw_run, capsys):
    assert export_main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    assert export_main([str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert "could not be read" in err and "Traceback" not in err
    ckpt = (
        tiny_dclaw_run
        / "checkpoints"
        / (tiny_dclaw_run / "checkpoints" / "latest").read_text().strip()
    )
    state = torch.load(ckpt, weights_only=True)
    del state["config"]
    no_config = tmp_path / "no-config.pt"
    torch.save(state, no_config)
    assert export_main([str(no_config)]) == 2
    assert "config" in capsys.readouterr().err
    assert export_main([str(tiny_dclaw_run), "-o", str(tmp_path / "missing-dir" / "p.onnx")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_runtime_refuses_bad_policy_files(tmp_path, tiny_dclaw_policy):
    with pytest.raises(PolicyFileError, match="does not exist"):
        OnnxPolicy(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(PolicyFileError, match="could not be loaded"):
        OnnxPolicy(bad)
    import onnx

    model = onnx.load(str(tiny_dclaw_policy))
    del model.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(model, str(plain))
    with pytest.raises(PolicyFileError, match="no SLAC policy metadata"):
        OnnxPolicy(plain)


def test_export_cli_writes_into_run_dir(tiny_dclaw_run, tmp_path):
    out = tmp_path / "p.onnx"
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    result = subprocess.run(
        [sys.executable, "-m", "slac_train.export_cli", str(tiny_dclaw_run), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "exported dclaw-turn policy" in result.stdout
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, readable by others
    assert (
        json.loads(OnnxPolicy(out).session.get_modelmeta().custom_metadata_map["action_repeat"])
        == 2
    )


def test_exporting_an_untrained_checkpoint_warns(tiny_dclaw_run, tmp_path, capsys):
    from slac_train.checkpoint import load_checkpoint

    state = load_checkpoint(tiny_dclaw_run)
    assert state["counters"]["updates"] > 0
    assert export_main([str(tiny_dclaw_run), "--out", str(tmp_path / "trained.onnx")]) == 0
    assert "warning" not in capsys.readouterr().err
    state["counters"].update(updates=0, pretrain_updates=0)
    untrained = tmp_path / "untrained.pt"
    torch.save(state, untrained)
    assert export_main([str(untrained), "--out", str(tmp_path / "untrained.onnx")]) == 0
    err = capsys.readouterr().err
    assert "slac-export: warning:" in err and "0 updates" in err and str(untrained) in err
