"""``slac-replay``: replay a logged episode on the robot, in simulation, through a policy, or as video.

    slac-replay LOG                               # the episode's table (also --summary)
    slac-replay LOG --video out.mp4               # camera frames beside joint/goal plots
    slac-replay LOG --policy other.onnx           # per-step action differences on the logged inputs
    slac-replay LOG --sim [--video sim.mp4]       # logged goals on the simulated robot, side by side
    slac-replay LOG --robot dclaw --port PORT     # logged goals on the robot, with their timing

A log cut off by a kill is used up to its last complete tick (with a warning). A replay on the
robot eases in from the current pose, sends the logged goals through the driver (which clips them
as in ``slac-run``), stops cleanly on Ctrl-C or SIGTERM, and writes its own episode log
(``--out-log``, default ``LOG``'s name with ``.replay``), whose footer holds the tracking error
between the replayed and the logged joint positions.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from slac_runtime.control_loop import format_table
from slac_runtime.episode_log import EpisodeLog, EpisodeLogWriter, read_episode_log
from slac_runtime.policy import PolicyFileError
from slac_runtime.replay import (
    RobotReplayConfig,
    check_replayable,
    control_period_s,
    policy_differences,
    replay_on_robot,
    summarize,
    truncation_warning,
    write_video,
)
from slac_runtime.robot import find_robot


class UsageError(RuntimeError):
    """A problem the user can fix from the command line; printed as one line, exit code 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slac-replay", description=__doc__.splitlines()[0])
    p.add_argument("log", type=Path, help="an episode log (.slaclog) written by slac-run")
    p.add_argument("--summary", action="store_true", help="print the episode's table (the default)")
    p.add_argument("--json", action="store_true", help="print results as JSON lines")
    p.add_argument("--video", type=Path, default=None,
                   help="write an mp4: camera frames and joint plots (with --sim: the side-by-side video)")
    p.add_argument("--policy", type=Path, default=None, help="re-run this ONNX policy on the logged inputs")
    p.add_argument("--sim", action="store_true", help="apply the logged goals to the simulated robot")
    p.add_argument("--robot", default=None, help="robot name (default: the log's robot)")
    p.add_argument("--port", default=None, help="replay on the robot at this serial port")
    p.add_argument("--calibration", type=Path, default=None, help="joint calibration file")
    p.add_argument("--allow-uncalibrated", action="store_true",
                   help="replay without a joint calibration file (the driver's defaults)")
    p.add_argument("--on-exit", choices=["relax", "hold"], default="relax",
                   help="leave the robot relaxed (torque off) or holding its pose after a replay")
    p.add_argument("--out-log", type=Path, default=None,
                   help="episode log of the replay on the robot (default: next to LOG, '.replay')")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    return p.parse_args(argv)


def default_out_log(log_path: Path) -> Path:
    """``episode-000.replay.slaclog`` beside the log, or ``.replay-1``, ``-2``, ... if taken."""
    candidate = log_path.with_name(f"{log_path.stem}.replay.slaclog")
    k = 1
    while candidate.exists():
        candidate = log_path.with_name(f"{log_path.stem}.replay-{k}.slaclog")
        k += 1
    return candidate


def choose_calibration(args: argparse.Namespace, log: EpisodeLog, entry) -> Path | None:
    """``--calibration``, else the robot's default calibration file, else the driver's defaults
    when the log was recorded with them too (or with ``--allow-uncalibrated``)."""
    if args.calibration is not None:
        return args.calibration
    default = entry.default_calibration_path()
    if default is not None and default.exists():
        return default
    if args.allow_uncalibrated or log.header.get("joint_calibration") is None:
        return None
    raise UsageError(
        f"{args.log} was recorded with a joint calibration, but none is given: pass --calibration FILE "
        f"(or --allow-uncalibrated to use the driver's defaults)"
    )


def run_on_robot(args: argparse.Namespace, log: EpisodeLog, robot_name: str) -> dict[str, Any]:
    """Replay on the robot at ``args.port``; a signal stops it after the current tick."""
    entry = find_robot(robot_name)
    description = entry.description
    check_replayable(log, description)
    period = control_period_s(log)
    period_problem = description.check_control_period(period)
    if period_problem is not None:  # the log is a file like any other: its period sets no speed
        raise UsageError(f"{args.log}: the log's {period_problem}")
    calibration = choose_calibration(args, log, entry)
    out_path = args.out_log or default_out_log(args.log)
    if out_path.exists():
        raise UsageError(f"--out-log {out_path} exists: choose another file")
    # The same safety net as slac-run: the driver clips each goal step a little above the
    # velocity limit (the logged goals already respect it).
    driver_kwargs: dict[str, Any] = {
        "port": args.port,
        "on_exit": args.on_exit,
        "max_step_rad": 1.1 * description.max_step_rad(period),
    }
    if calibration is not None:
        driver_kwargs["calibration"] = calibration
    header = dict(log.header, replay_of=str(args.log), port=args.port,
                  joint_calibration=_read_json(calibration) if calibration else None)
    stop = {"requested": False}

    def on_signal(signum, _frame):
        stop["requested"] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = None if args.quiet else (lambda s: print("\r" + s, end="", file=sys.stderr, flush=True))
    try:
        with entry.make_driver(**driver_kwargs) as robot, EpisodeLogWriter(out_path, header) as out:
            try:
                return replay_on_robot(log, robot, out, RobotReplayConfig(),
                                       stop_requested=lambda: stop["requested"], status=status)
            finally:
                if status:
                    print(file=sys.stderr)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read calibration file {path}: {e}") from e


def run(args: argparse.Namespace) -> int:
    try:
        log = read_episode_log(args.log)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {args.log}: {e}") from e
    warning = truncation_warning(log)
    if warning:
        print(f"slac-replay: warning: {warning}", file=sys.stderr)
    robot_name = args.robot or log.header.get("robot")
    if args.robot is not None and args.port is None and not args.sim:
        raise UsageError("--robot replays on a robot only with --port PORT (or in simulation with --sim)")
    if (args.sim or args.port is not None) and not robot_name:
        raise UsageError(f"{args.log} names no robot: pass --robot NAME")

    def emit(title: str, result: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps({title: result}), flush=True)
        else:
            print(f"== {title}\n{format_table(result)}", flush=True)

    if args.summary or not any([args.video, args.policy, args.sim, args.port]):
        emit("summary", summarize(log))
    if args.policy is not None:
        diffs = policy_differences(log, args.policy)
        emit("policy", {"policy": str(args.policy), "steps": len(diffs),
                        "max_abs_diff": float(diffs.max()), "mean_abs_diff": float(diffs.mean()),
                        "identical": bool(diffs.max() == 0.0),
                        "per_step": " ".join(f"{d:.2e}" for d in diffs[:20]) + (" ..." if len(diffs) > 20 else "")})
    if args.sim:
        sim_replay = find_robot(robot_name).load_sim_replay()  # imports the simulator (MuJoCo)
        video = args.video or args.log.with_suffix(".sim.mp4")
        emit("sim", sim_replay(log, video))
    elif args.video is not None:
        path, frames = write_video(log, args.video)
        emit("video", {"video": str(path), "frames": frames})
    if args.port is not None:
        result = run_on_robot(args, log, robot_name)
        emit("robot", result)
        if result["stop_reason"] != "replay complete":
            print(f"slac-replay: replay stopped: {result['stop_reason']}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (UsageError, PolicyFileError, ValueError, KeyError) as e:  # nothing moved: fix the command
        if args.traceback:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"slac-replay: error: {message}", file=sys.stderr)
        return 2
    except Exception as e:  # bus errors and the like: the robot was relaxed/held on the way out
        if args.traceback:
            raise
        cause = f" (after: {e.__context__})" if e.__context__ is not None else ""
        print(f"slac-replay: stopped: {type(e).__name__}: {e}{cause}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
