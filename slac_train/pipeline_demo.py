"""``make demo``: the whole pipeline on the embedded default, the virtual D'Claw.

1. a random rollout of ``dclaw-turn`` (mp4 + contact sheet);
2. a policy: the Turn policy shipped with the D'Claw package (``robots/dclaw/policies/turn.onnx``,
   made by ``slac-imitate``; docs/results.md), or with ``--retrain`` / when none is shipped, a
   short training run of small networks (``slac-train``, a few minutes on a CPU: the pipeline,
   not a skilled policy) exported with ``slac-export``;
3. the virtual D'Claw (MuJoCo behind an emulated Dynamixel bus on a pseudo-terminal and a
   simulated camera over ZeroMQ) driven by ``slac-run`` for a few episodes, each starting with the
   valve at 0 and the target at pi (deterministic actions, tanh of the mean);
4. ``slac-replay`` of the last episode: its summary, an H.264 video (``last-episode.mp4``) and,
   where rerun-sdk is installed, a Rerun recording (``last-episode.rrd``);

each episode is reported as the valve's turn, its error to the target wrapped to [-pi, pi) and
whether it succeeded (within 0.1 rad), and the run as the number of successes.

Everything lands in ``out/demo/``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from slac_runtime.angles import wrap_angle
from slac_runtime.options import (
    CommandError,
    command_parser,
    int_at_least,
    option,
    parse_config,
    run_command,
)

PROG = "python -m slac_train.pipeline_demo"

START_ANGLE = 0.0  # dclaw-turn (Fixed): valve from 0 to pi (rad)
TARGET_ANGLE = math.pi
SUCCESS_ERROR_RAD = 0.1  # the task's success: |wrap(target - valve)| < 0.1 rad

# slac-train's first-run preset: small networks for a few minutes (the pipeline, not a skilled
# policy).
QUICK_TRAINING = ["--preset", "quickstart", "--device", "cpu"]


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
            raise CommandError(f"training failed with exit code {code}")
    path, _ = export_run(run_dir, out / "policy.onnx")
    print(f"exported {path}")
    return path


def episode_result(episode: int, log: Path, start: float, end: float) -> dict:
    """One episode's numbers (rad): where the valve started and ended (not wrapped), how far it
    turned, and its error to the target wrapped to [-pi, pi) (+: it should turn further
    counter-clockwise)."""
    error = wrap_angle(TARGET_ANGLE - end)
    return {
        "episode": episode,
        "log": str(log),
        "start_angle": round(start, 3),
        "valve_angle": round(end, 3),
        "angle_turned": round(end - start, 3),
        "target_angle": round(TARGET_ANGLE, 3),
        "angle_error": round(error, 3),
        "success": abs(error) < SUCCESS_ERROR_RAD,
    }


def describe_episode(result: dict, episodes: int) -> str:
    """Two lines a person reads: the turn, then the error to the target and the verdict."""
    target = result["target_angle"]
    same = f" (= {target - 2 * math.pi:+.2f}: half a turn either way)" if target > 3.14 else ""
    verdict = (
        f"SUCCESS (within {SUCCESS_ERROR_RAD} rad)"
        if result["success"]
        else f"no success (needs to be within {SUCCESS_ERROR_RAD} rad)"
    )
    return (
        f"episode {result['episode'] + 1}/{episodes}: "
        f"the valve turned {result['angle_turned']:+.2f} rad, "
        f"from {result['start_angle']:+.2f} to {result['valve_angle']:+.2f}; "
        f"target {target:+.2f}{same}\n"
        f"  {abs(result['angle_error']):.2f} rad from the target (wrapped error "
        f"{result['angle_error']:+.2f} rad): {verdict}"
    )


def run_episodes(policy: Path, out: Path, episodes: int) -> list[dict]:
    from robots.dclaw.virtual import VirtualDClaw

    results = []
    log_dir = out / "logs"
    (out / "virtual").mkdir(parents=True, exist_ok=True)
    with VirtualDClaw(out / "virtual" / "tty", f"ipc://{out.resolve()}/virtual/camera") as robot:
        print(f"virtual D'Claw: servo port {robot.port}, camera {robot.camera_endpoint}")
        for episode in range(episodes):
            robot.reset_scene(valve_angle=START_ANGLE)
            start = robot.valve_angle()
            before = set(log_dir.glob("*/*.slaclog"))
            # hold: the valve is read as the episode left it
            cmd = robot.slac_run_command(
                policy, log_dir, "--seed", str(episode), "--deterministic", "--on-exit", "hold"
            )
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                print(result.stdout + result.stderr, file=sys.stderr)
                raise CommandError(f"slac-run failed with exit code {result.returncode} (above)")
            [log] = set(log_dir.glob("*/*.slaclog")) - before
            results.append(episode_result(episode, log, start, robot.valve_angle()))
            print(describe_episode(results[-1], episodes), flush=True)
            time.sleep(0.5)
    return results


def replay_last_episode(log: Path, out: Path) -> None:
    """``slac-replay``'s summary and video of ``log`` (and a Rerun recording, where rerun-sdk is
    installed: ``rerun last-episode.rrd`` opens it)."""
    runs = [["--summary"], ["--video", str(out / "last-episode.mp4")]]
    if importlib.util.find_spec("rerun") is not None:
        runs.append(["--rerun", str(out / "last-episode.rrd")])
    for extra in runs:
        subprocess.run(
            [sys.executable, "-m", "slac_runtime.replay_cli", str(log), *extra],
            check=True,
            env=dict(os.environ),
        )


@dataclass
class DemoConfig:
    """``make demo``'s options."""

    out: Path = option(Path("out/demo"), "folder every file of the demo goes to")
    episodes: int = option(3, "slac-run episodes on the virtual D'Claw", parse=int_at_least(1))
    retrain: bool = option(False, "train a quick policy even if one is shipped")


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    parser = command_parser(PROG, DemoConfig, "The whole pipeline on the virtual D'Claw.")
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
    replay_last_episode(Path(results[-1]["log"]), out)

    successes = sum(r["success"] for r in results)
    summary = {
        "policy": str(policy),
        "episodes": results,
        "success_rate": successes / len(results),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    files = ("summary.json", "last-episode.mp4", "last-episode.rrd", "logs/")
    print(
        f"\nsuccess in {successes} of {len(results)} episodes ({successes / len(results):.0%}): "
        f"the valve within {SUCCESS_ERROR_RAD} rad of {TARGET_ANGLE:+.2f} rad\n"
        f"files in {out}/: {', '.join(f for f in files if (out / f).exists())}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
