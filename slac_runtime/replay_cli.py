"""``slac-replay``: replay a logged episode on the robot, in simulation,
through a policy, or as video.

    slac-replay LOG                            # the episode's table (also --summary)
    slac-replay LOG --video out.mp4            # camera frames beside joint/goal plots
    slac-replay LOG --policy other.onnx        # per-step action differences on the logged inputs
    slac-replay LOG --sim [--video sim.mp4]    # logged goals on the simulated robot, side by side
    slac-replay LOG --robot dclaw --port PORT  # logged goals on the robot, with their timing

A log cut off by a kill is used up to its last complete tick, and a log with corrupt records
without them (with a warning naming their byte offsets and the ticks lost). A replay on the
robot eases in from the current pose, sends the logged goals through the driver (which clips them
as in ``slac-run``), stops cleanly on Ctrl-C or SIGTERM, and writes its own episode log
(``--out-log``, default ``LOG``'s name with ``.replay``), whose footer holds the tracking error
between the replayed and the logged joint positions.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slac_runtime.control_loop import format_table
from slac_runtime.episode_log import EpisodeLog, EpisodeLogWriter, read_episode_log
from slac_runtime.log_series import control_period_s
from slac_runtime.log_summary import summarize
from slac_runtime.log_video import write_video
from slac_runtime.options import (
    CommandError,
    ExitCode,
    UsageError,
    command_parser,
    error_message,
    option,
    parse_config,
    run_command,
    say,
)
from slac_runtime.policy import PolicyFileError
from slac_runtime.policy_rerun import policy_differences
from slac_runtime.rerun_export import RerunMissingError, export_rerun
from slac_runtime.robot import ON_EXIT_CHOICES, RobotRefused, find_robot, list_robots
from slac_runtime.robot_replay import RobotReplayConfig, check_replayable, replay_on_robot
from slac_runtime.status_line import StatusLine
from slac_runtime.stop_request import StopRequest


@dataclass
class ReplayConfig:
    """``slac-replay``'s options."""

    log: Path = option(
        None, "an episode log (.slaclog) written by slac-run", positional=True, required=True
    )
    summary: bool = option(False, "print the episode's table (the default)")
    json: bool = option(False, "print results as JSON lines")
    video: Path | None = option(
        None, "write an mp4: camera frames and joint plots (with --sim: the side-by-side video)"
    )
    rerun: Path | None = option(
        None,
        "write the episode as a Rerun recording (.rrd): frames, joints, goals, policy outputs and "
        "timing on one timeline (needs rerun-sdk: pip install 'slac-robot[viz]')",
    )
    rerun_spawn: bool = option(False, "open the episode in a Rerun viewer started here")
    policy: Path | None = option(None, "re-run this ONNX policy on the logged inputs")
    sim: bool = option(False, "apply the logged goals to the simulated robot")
    robot: str | None = option(None, "robot name (default: the log's robot)")
    port: str | None = option(None, "replay on the robot at this serial port")
    joint_calibration: Path | None = option(
        None,
        "joint calibration file (default: the robot's file from `slac-calibrate joints`)",
        aliases=["calibration"],
    )
    allow_uncalibrated: bool = option(
        False, "replay without a joint calibration file (the driver's defaults)"
    )
    on_exit: str = option(
        ON_EXIT_CHOICES[0],
        "leave the robot relaxed (torque off) or holding its pose after a replay",
        choices=list(ON_EXIT_CHOICES),
    )
    out_log: Path | None = option(
        None, "episode log of the replay on the robot (default: next to LOG, '.replay')"
    )
    quiet: bool = option(False, "no live status line")


EXIT_CODES = {
    0: "done (a replay on the robot ran to its end)",
    1: "fault: an error of the robot, its bus or the software stopped the replay (robot made safe)",
    2: "refused before anything moved (options, log, policy, calibration)",
    3: "safe stop: the replay stopped itself (overruns)",
    130: "interrupted by Ctrl-C; 143 by SIGTERM (the replay's log is closed and the robot made "
    "safe)",
}


def parse_args(argv: list[str] | None = None) -> ReplayConfig:
    parser = command_parser(
        "slac-replay",
        ReplayConfig,
        " ".join(__doc__.split("\n\n")[0].split()),
        exit_codes=EXIT_CODES,
    )
    return parse_config(parser, ReplayConfig, argv)


def default_out_log(log_path: Path) -> Path:
    """``episode-000.replay.slaclog`` beside the log, or ``.replay-1``, ``-2``, ... if taken."""
    candidate = log_path.with_name(f"{log_path.stem}.replay.slaclog")
    k = 1
    while candidate.exists():
        candidate = log_path.with_name(f"{log_path.stem}.replay-{k}.slaclog")
        k += 1
    return candidate


def choose_calibration(args: ReplayConfig, log: EpisodeLog, entry) -> Path | None:
    """``--joint-calibration``, else the robot's default calibration file, else the driver's
    defaults when the log was recorded with them too (or with ``--allow-uncalibrated``)."""
    if args.joint_calibration is not None:
        return args.joint_calibration
    default = entry.default_calibration_path()
    if default is not None and default.exists():
        return default
    if args.allow_uncalibrated or log.header.get("joint_calibration") is None:
        return None
    raise UsageError(
        f"{args.log} was recorded with a joint calibration, but none is given: pass "
        "--joint-calibration FILE (or --allow-uncalibrated to use the driver's defaults)"
    )


def replay_driver_options(
    args: ReplayConfig, description: Any, period_s: float, calibration: Path | None
) -> dict[str, Any]:
    """The same safety net as slac-run: the driver clips each goal step a little above the velocity
    limit (the logged goals already respect it)."""
    kwargs: dict[str, Any] = {
        "port": args.port,
        "on_exit": args.on_exit,
        "max_step_rad": 1.1 * description.max_step_rad(period_s),
    }
    if calibration is not None:
        kwargs["calibration"] = calibration
    return kwargs


def run_on_robot(
    args: ReplayConfig, log: EpisodeLog, robot_name: str, stop: StopRequest
) -> dict[str, Any]:
    """Replay on the robot at ``args.port``; a signal (``stop``) stops it after the current
    tick."""
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
    header = dict(
        log.header,
        replay_of=str(args.log),
        port=args.port,
        joint_calibration=_read_json(calibration) if calibration else None,
    )
    status = None if args.quiet else StatusLine()
    connected = False
    try:
        with (
            stop.installed(),
            entry.make_driver(
                **replay_driver_options(args, description, period, calibration)
            ) as robot,
            EpisodeLogWriter(out_path, header) as out,
        ):
            connected = True
            try:
                return replay_on_robot(
                    log,
                    robot,
                    out,
                    RobotReplayConfig(),
                    stop_requested=lambda: stop.requested,
                    status=None if status is None else status.show,
                )
            finally:
                if status is not None:
                    status.end()
    except (RobotRefused, ValueError) as e:
        if not connected:
            raise
        # Met once the robot was connected (a hold it could not do, say): not a refusal.
        raise RuntimeError(f"after the replay started: {error_message(e)}") from e


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read calibration file {path}: {e}") from e


def read_log(args: ReplayConfig) -> tuple[EpisodeLog, str | None]:
    """The log (a warning on stderr if it was cut off or has corrupt records) and the robot to
    replay it on, checked."""
    try:
        log = read_episode_log(args.log)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {args.log}: {e}") from e
    warning = log.diagnosis()
    if warning:
        say("slac-replay", "warning", warning)
    robot_name = args.robot or log.header.get("robot")
    if args.robot is not None and args.port is None and not args.sim:
        raise UsageError(
            "--robot replays on a robot only with --port PORT (or in simulation with --sim)"
        )
    if (args.sim or args.port is not None) and not robot_name:
        raise UsageError(f"{args.log} names no robot: pass --robot NAME")
    return log, robot_name


def joint_groups(robot_name: str | None) -> tuple[int, ...]:
    """The robot's joint groups, a row of the video's plots each; () (one row) for a log that
    names no robot or one not installed here: its video needs nothing else of the robot."""
    if robot_name is None or robot_name not in list_robots():
        return ()
    return find_robot(robot_name).description.joint_groups


def policy_report(log: EpisodeLog, policy: Path) -> dict[str, Any]:
    diffs = policy_differences(log, policy)
    return {
        "policy": str(policy),
        "steps": len(diffs),
        "max_abs_diff": float(diffs.max()),
        "mean_abs_diff": float(diffs.mean()),
        "identical": bool(diffs.max() == 0.0),
        "per_step": " ".join(f"{d:.2e}" for d in diffs[:20]) + (" ..." if len(diffs) > 20 else ""),
    }


def robot_exit_code(result: dict[str, Any], stop: StopRequest) -> int:
    """A robot replay's exit code: 0 complete, 128 + the signal that stopped it, 3 a safe stop."""
    if result["stop_reason"] == "replay complete":
        return ExitCode.OK
    say("slac-replay", "replay stopped", result["stop_reason"])
    if stop.requested:
        return stop.exit_code
    return ExitCode.SAFE_STOP


def run(args: ReplayConfig) -> int:
    log, robot_name = read_log(args)

    def emit(title: str, result: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps({title: result}), flush=True)
        else:
            print(f"== {title}\n{format_table(result)}", flush=True)

    if args.summary or not any(
        [args.video, args.policy, args.sim, args.port, args.rerun, args.rerun_spawn]
    ):
        emit("summary", summarize(log))
    if args.rerun is not None or args.rerun_spawn:
        emit("rerun", export_rerun(log, args.rerun, spawn=args.rerun_spawn))
    if args.policy is not None:
        emit("policy", policy_report(log, args.policy))
    if args.sim:
        sim_replay = find_robot(robot_name).load_sim_replay()  # imports the simulator (MuJoCo)
        emit("sim", sim_replay(log, args.video or args.log.with_suffix(".sim.mp4")))
    elif args.video is not None:
        path, frames = write_video(log, args.video, joint_groups=joint_groups(robot_name))
        emit("video", {"video": str(path), "frames": frames})
    if args.port is not None:
        stop = StopRequest(second_signal_stops_at_once=False)
        result = run_on_robot(args, log, robot_name, stop)
        emit("robot", result)
        return robot_exit_code(result, stop)
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    return run_command("slac-replay", _main, argv)


def _main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        return int(run(args))
    except (UsageError, PolicyFileError, RerunMissingError, ValueError, KeyError) as e:
        raise UsageError(error_message(e)) from e  # nothing moved: fix the command
    except RobotRefused as e:  # the robot or its port refused before torque went on
        raise UsageError(f"{error_message(e)} (nothing moved)") from e
    except Exception as e:  # bus errors and the like: the robot was relaxed/held on the way out
        cause = f" (after: {e.__context__})" if e.__context__ is not None else ""
        raise CommandError(f"{type(e).__name__}: {e}{cause}", ExitCode.FAULT, "stopped") from e


if __name__ == "__main__":
    sys.exit(main())
