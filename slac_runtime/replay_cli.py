"""``slac-replay``: replay a logged episode on the robot, in simulation, through a policy, or as video.

    slac-replay LOG --summary
    slac-replay LOG --video out.mp4
    slac-replay LOG --policy other.onnx          # per-step action differences on the logged inputs
    slac-replay LOG --sim [--video sim.mp4]      # logged goals on the simulated robot, side by side
    slac-replay LOG --robot dclaw --port PORT    # logged goals on the robot, with their timing
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from slac_runtime.control_loop import RateTimer, format_table
from slac_runtime.episode_log import EpisodeLogWriter, read_episode_log
from slac_runtime.policy import PolicyFileError
from slac_runtime.replay import policy_differences, summarize, write_video
from slac_runtime.robot import find_robot


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slac-replay", description=__doc__.splitlines()[0])
    p.add_argument("log", type=Path, help="an episode log (.slaclog) written by slac-run")
    p.add_argument("--summary", action="store_true", help="print the episode's table")
    p.add_argument("--json", action="store_true", help="print results as JSON lines")
    p.add_argument("--video", type=Path, default=None, help="write an mp4 (frames and joint plots)")
    p.add_argument("--policy", type=Path, default=None, help="re-run this policy on the logged inputs")
    p.add_argument("--sim", action="store_true", help="apply the logged goals to the simulated robot")
    p.add_argument("--robot", default=None, help="replay on this robot (with --port), or the sim's robot")
    p.add_argument("--port", default=None, help="serial port of the robot to replay on")
    p.add_argument("--calibration", type=Path, default=None, help="joint calibration file")
    p.add_argument("--out-log", type=Path, default=None, help="log of the replay on the robot")
    return p.parse_args(argv)


def replay_on_robot(log, robot_name: str, port: str, calibration: Path | None, out_log: Path) -> dict:
    """Send the logged goals with their logged timing; ease in first; log the replay."""
    entry = find_robot(robot_name)
    if not log.ticks:
        raise ValueError(f"{log.path} holds no ticks to replay")
    goals = np.array([t["sent"] for t in log.ticks])
    period = log.header["policy_metadata"]["control_period_s"]
    kwargs = {"port": port}
    if calibration is not None:
        kwargs["calibration"] = calibration
    stop = {"now": False}
    previous = {s: signal.signal(s, lambda *_: stop.update(now=True)) for s in (signal.SIGINT, signal.SIGTERM)}
    header = dict(log.header, replay_of=str(log.path))
    errors = []
    try:
        with entry.make_driver(**kwargs) as robot, EpisodeLogWriter(out_log, header) as out:
            # Ease in from the current pose to the first logged goal at half the velocity limit.
            d = entry.description
            start = robot.read_state().positions
            step = d.velocity_limit * 0.5 * period
            n = max(1, int(np.ceil(np.max(np.abs(goals[0] - start)) / step)))
            timer = RateTimer(period)
            for k in range(1, n + 1):
                timer.wait()
                robot.command(start + (goals[0] - start) * k / n)
            timer = RateTimer(period)
            for i, goal in enumerate(goals):
                if stop["now"]:
                    out.event("stop", reason="signal")
                    break
                lateness, _ = timer.wait()
                state = robot.read_state()
                sent = robot.command(goal)
                if i > 0:
                    errors.append(np.abs(state.positions - log.ticks[i - 1]["positions"]))
                out.tick({"tick": i, "t": time.perf_counter(), "lateness_s": lateness,
                          "positions": state.positions, "velocities": state.velocities,
                          "currents": state.currents, "goal": goal, "sent": sent, "policy": None})
            robot.hold()
            summary = {"replayed_ticks": len(errors) + 1, "log": str(out_log),
                       "max_tracking_error_rad": float(np.max(errors)) if errors else None}
            out.close(summary)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        log = read_episode_log(args.log)
    except (OSError, ValueError) as e:
        print(f"slac-replay: error: cannot read {args.log}: {e}", file=sys.stderr)
        return 2
    if log.truncated:
        last = log.ticks[-1]["tick"] if log.ticks else None
        print(f"slac-replay: warning: {args.log} was cut off (no footer); replaying up to its last "
              f"complete tick ({last})", file=sys.stderr)

    def emit(title: str, result: dict) -> None:
        if args.json:
            print(json.dumps({title: result}))
        else:
            print(f"== {title}\n{format_table(result)}")

    did = False
    try:
        if args.summary or not any([args.video, args.policy, args.sim, args.port]):
            emit("summary", summarize(log))
            did = True
        if args.policy is not None:
            diffs = policy_differences(log, args.policy)
            emit("policy", {"policy": str(args.policy), "steps": len(diffs),
                            "max_abs_diff": float(diffs.max()), "mean_abs_diff": float(diffs.mean()),
                            "per_step": ", ".join(f"{d:.2e}" for d in diffs[:20])
                            + (" ..." if len(diffs) > 20 else "")})
            did = True
        if args.sim:
            robot = args.robot or log.header.get("robot")
            entry = find_robot(robot)
            sim_replay = entry.load_sim_replay()
            video = args.video or args.log.with_suffix(".sim.mp4")
            emit("sim", sim_replay(log, video))
            did = True
        elif args.video is not None:
            path, frames = write_video(log, args.video)
            emit("video", {"video": str(path), "frames": frames})
            did = True
        if args.port is not None:
            robot = args.robot or log.header.get("robot")
            out_log = args.out_log or args.log.with_name(args.log.stem + ".replay.slaclog")
            emit("robot", replay_on_robot(log, robot, args.port, args.calibration, out_log))
            did = True
    except (PolicyFileError, ValueError, OSError, KeyError) as e:
        print(f"slac-replay: error: {e}", file=sys.stderr)
        return 2
    return 0 if did else 1


if __name__ == "__main__":
    sys.exit(main())
