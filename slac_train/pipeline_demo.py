"""``make demo``: the whole pipeline on the embedded default, the virtual D'Claw.

1. a random rollout of ``dclaw-turn`` (mp4 + contact sheet);
2. a policy: the Turn policy shipped with the D'Claw package (``robots/dclaw/policies/turn.onnx``,
   made by ``slac-imitate``; docs/results.md), or with ``--retrain`` / when none is shipped, a
   short training run of small networks (``slac-train``, a few minutes on a CPU: the pipeline,
   not a skilled policy) exported with ``slac-export``;
3. the virtual D'Claw (MuJoCo behind an emulated Dynamixel bus on a pseudo-terminal and a
   simulated camera over ZeroMQ) driven by ``slac-run`` for a few episodes, each starting with the
   valve at 0 and the target at pi (deterministic actions, tanh of the mean);
4. ``slac-replay`` of the last episode as a video, and a summary with the success rate.

Everything lands in ``out/demo/``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from slac_runtime.angles import wrap_angle
from slac_runtime.options import command_parser, int_at_least, option, parse_config

TARGET_ANGLE = math.pi  # dclaw-turn (Fixed): valve from 0 to pi
SUCCESS_ERROR_RAD = 0.1

QUICK_TRAINING = [
    "--encoder-base-channels",
    "8",
    "--feature-dim",
    "64",
    "--z1-dim",
    "16",
    "--z2-dim",
    "64",
    "--model-hidden",
    "64",
    "--actor-critic-hidden",
    "64",
    "--batch-size-actor-critic",
    "32",
    "--batch-size-model",
    "8",
    "--buffer-capacity",
    "10000",
    "--initial-collection-steps",
    "400",
    "--model-pretrain-steps",
    "200",
    "--total-env-steps",
    "1600",
    "--eval-every-env-steps",
    "800",
    "--eval-episodes",
    "1",
    "--device",
    "cpu",
]


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def get_policy(out: Path, retrain: bool) -> Path:
    from slac_runtime.robot import find_robot

    shipped = find_robot("dclaw").default_policy()
    if shipped is not None and not retrain:
        print(f"using the shipped policy {shipped}")
        return shipped
    from slac_train.cli import main as train_main
    from slac_train.export_cli import export_run

    run_dir = out / "quick-run"
    print("no shipped policy: training small networks briefly (the pipeline, not a skilled policy)")
    if not (run_dir / "checkpoints" / "latest").exists():
        code = train_main(["--task", "dclaw-turn", *QUICK_TRAINING, "--run-dir", str(run_dir)])
        if code != 0:
            raise SystemExit(f"training failed with exit code {code}")
    path, _ = export_run(run_dir, out / "policy.onnx")
    print(f"exported {path}")
    return path


def run_episodes(policy: Path, out: Path, episodes: int) -> list[dict]:
    from robots.dclaw.virtual import VirtualDClaw

    results = []
    log_dir = out / "logs"
    (out / "virtual").mkdir(parents=True, exist_ok=True)
    with VirtualDClaw(out / "virtual" / "tty", f"ipc://{out.resolve()}/virtual/camera") as robot:
        print(f"virtual D'Claw: servo port {robot.port}, camera {robot.camera_endpoint}")
        for episode in range(episodes):
            robot.reset_scene(valve_angle=0.0)
            before = set(log_dir.glob("*/*.slaclog"))
            cmd = [
                sys.executable,
                "-m",
                "slac_runtime.run_cli",
                "--robot",
                "dclaw",
                "--camera",
                robot.camera_endpoint,
                "--port",
                robot.port,
                "--policy",
                str(policy),
                "--allow-uncalibrated",
                "--log-dir",
                str(log_dir),
                "--seed",
                str(episode),
                "--quiet",
                "--deterministic",
                "--on-exit",
                "hold",
            ]  # hold: the valve is read as the episode left it
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"slac-run failed:\n{result.stdout}\n{result.stderr}")
            [log] = set(log_dir.glob("*/*.slaclog")) - before
            error = wrap_angle(TARGET_ANGLE - robot.valve_angle())
            results.append(
                {
                    "episode": episode,
                    "log": str(log),
                    "valve_angle": round(robot.valve_angle(), 3),
                    "angle_error": round(error, 3),
                    "success": abs(error) < SUCCESS_ERROR_RAD,
                }
            )
            print(
                f"episode {episode}: valve at {robot.valve_angle():+.2f} rad, error {error:+.2f} rad, "
                f"{'success' if results[-1]['success'] else 'no success'}"
            )
            time.sleep(0.5)
    return results


@dataclass
class DemoConfig:
    """``make demo``'s options."""

    out: Path = option(Path("out/demo"), "folder every file of the demo goes to")
    episodes: int = option(3, "slac-run episodes on the virtual D'Claw", parse=int_at_least(1))
    retrain: bool = option(False, "train a quick policy even if one is shipped")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(
        "python -m slac_train.pipeline_demo",
        DemoConfig,
        "The whole pipeline on the virtual D'Claw.",
    )
    args = parse_config(parser, DemoConfig, argv)
    from robots.mujoco_gl import select_gl_backend

    select_gl_backend()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    step("1/4 a random rollout of dclaw-turn")
    from slac_train import demo

    demo.main(["--task", "dclaw-turn", "--out", str(out)])

    step("2/4 the policy")
    policy = get_policy(out, args.retrain)

    step(f"3/4 slac-run on the virtual D'Claw, {args.episodes} episodes")
    results = run_episodes(policy, out, args.episodes)

    step("4/4 slac-replay of the last episode")
    last = results[-1]["log"]
    env = dict(os.environ)
    for extra in (["--summary"], ["--video", str(out / "last-episode.mp4")]):
        subprocess.run(
            [sys.executable, "-m", "slac_runtime.replay_cli", last, *extra], check=True, env=env
        )

    success = sum(r["success"] for r in results) / len(results)
    summary = {"policy": str(policy), "episodes": results, "success_rate": success}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nsuccess rate over {len(results)} episodes: {success:.0%}   (files in {out}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
