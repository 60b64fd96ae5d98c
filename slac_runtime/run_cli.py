"""``slac-run``: drive a robot with an exported SLAC policy, camera → ZeroMQ → history → ONNX → servos.

    slac-run --robot dclaw --camera 0 --policy policy.onnx --port /dev/ttyUSB0 --episodes 3

``--camera`` takes an OpenCV index, a device path or a video file (a local ``slac-camera``
publisher is started in its own process), or the endpoint of a running publisher (``tcp://…``,
``ipc://…``). Every episode is logged under ``--log-dir``; ``slac-replay`` reads the logs.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slac_runtime import __version__
from slac_runtime.control_loop import ControlLoop, LoopConfig, SafeStop, format_table
from slac_runtime.episode_log import EpisodeLogWriter
from slac_runtime.frames import FrameSubscriber
from slac_runtime.options import (
    ExitCode,
    OneLineParser,
    UsageError,
    available_cores,
    int_at_least,
    positive_float,
    say,
    thread_count,
)
from slac_runtime.policy import OnnxPolicy, PolicyFileError
from slac_runtime.policy_metadata import file_sha256
from slac_runtime.robot import RobotRefused, default_calibration_path, find_robot


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="slac-run", description=__doc__.splitlines()[0],
                      epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robot", default="dclaw", help="robot name in the slac.robots registry")
    p.add_argument("--camera", required=True,
                   help="OpenCV index (0), device path, video file, or publisher endpoint (tcp://host:port)")
    p.add_argument("--policy", type=Path, default=None,
                   help="exported ONNX policy (default: the robot's shipped policy, if it has one)")
    p.add_argument("--port", default=None, help="serial port of the servo bus (default: the driver's)")
    p.add_argument("--calibration", type=Path, default=None, help="joint calibration file")
    p.add_argument("--allow-uncalibrated", action="store_true",
                   help="run without a joint calibration file (the driver's defaults)")
    p.add_argument("--camera-calibration", type=Path, default=None,
                   help="camera calibration for a local camera (crop/rotation); default: the robot's "
                        "file from `slac-calibrate camera --auto`, if there is one")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--episodes", type=int_at_least(1), default=1, help="number of episodes (default 1)")
    group.add_argument("--duration", type=positive_float, default=None,
                       help="run episodes for this many seconds")
    p.add_argument("--episode-steps", type=int_at_least(1), default=None,
                   help="policy steps per episode (default: the policy's task's, from its metadata)")
    p.add_argument("--log-dir", type=Path, default=Path("logs"), help="where episode logs go")
    p.add_argument("--deterministic", action="store_true", help="tanh(mean) instead of sampling")
    p.add_argument("--on-exit", choices=["relax", "hold"], default="relax",
                   help="leave the robot relaxed (torque off) or holding its pose")
    p.add_argument("--max-frame-age", type=positive_float, default=0.25,
                   help="frames received longer ago than this are stale (s, default 0.25)")
    p.add_argument("--stale-timeout", type=positive_float, default=1.0,
                   help="stop the robot once the camera has been stale this long, i.e. no new frame for "
                        "max-frame-age + stale-timeout (s, default 1.0); the robot is then left as "
                        "--on-exit says")
    p.add_argument("--camera-timeout", type=positive_float, default=5.0,
                   help="wait this long for the camera's first frame before touching the robot (s)")
    p.add_argument("--threads", type=thread_count, default=min(2, available_cores()),
                   help="onnxruntime threads, at most this computer's cores (2: streaming step p99 < 0.5 ms)")
    p.add_argument("--seed", type=int_at_least(0), default=None, help="seed of the policy's action noise")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    p.add_argument("--realtime", action="store_true",
                   help="real-time scheduling (SCHED_FIFO) for the loop, when permitted; only with "
                        "hardware servos (the bus client busy-waits for replies, which would starve an "
                        "emulator or camera process on the same cores)")
    return p.parse_args(argv)


EXIT_CODES_HELP = """exit codes:
  0    every episode ran to its end
  1    fault: an error of the robot, its bus or the software stopped the run (robot made safe)
  2    refused before anything moved (options, policy, calibration, camera, servo settings)
  3    safe stop: a watchdog stopped the robot (stale camera, tracking error, bad frames, overruns)
  130  interrupted by Ctrl-C; 143 by SIGTERM (the episode log is closed and the robot made safe)"""


def is_endpoint(camera: str) -> bool:
    return camera.startswith(("tcp://", "ipc://", "inproc://"))


def start_local_camera(camera: str, size: int, calibration: Path | None) -> tuple[subprocess.Popen, str]:
    """Start ``slac-camera`` in its own process, publishing on a private ipc endpoint."""
    endpoint = f"ipc://{tempfile.gettempdir()}/slac-camera-{os.getpid()}.ipc"
    cmd = [sys.executable, "-m", "slac_runtime.camera", "--camera", camera, "--bind", endpoint,
           "--size", str(size), "--quiet"]
    if calibration is not None:
        cmd += ["--calibration", str(calibration)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, endpoint


def wait_for_camera(frames: FrameSubscriber, args: argparse.Namespace, camera_proc: subprocess.Popen | None,
                    stop: dict[str, Any]) -> None:
    """Wait for the camera's first frame before anything touches the robot; refuse if none comes."""
    deadline = time.monotonic() + args.camera_timeout
    while time.monotonic() < deadline and stop["signal"] is None:
        if camera_proc is not None and camera_proc.poll() is not None:
            lines = [line for line in camera_proc.stderr.read().splitlines() if line.strip()]
            why = lines[-1] if lines else f"exit code {camera_proc.returncode}"
            raise UsageError(f"the camera publisher for --camera {args.camera} exited before its first "
                             f"frame: {why}")
        if frames.latest(timeout_s=0.05) is not None:
            return
    if stop["signal"] is not None:
        return
    where = "" if camera_proc is not None else f" at {args.camera}"
    hint = ("is the camera connected, and is its index or path right? (`ls /dev/video*`)"
            if camera_proc is not None else "is the camera publisher running, and is the endpoint right?")
    raise UsageError(f"no camera frame{where} within --camera-timeout {args.camera_timeout:g} s: {hint}")


def enable_realtime(priority: int = 20) -> str:
    """Real-time (SCHED_FIFO) scheduling for this process, so that other programs cannot delay a
    tick; returns what was done. Needs root or CAP_SYS_NICE (or an rtprio limit); falls back."""
    if not hasattr(os, "sched_setscheduler"):
        return "unavailable on this platform"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return f"SCHED_FIFO priority {priority}"
    except (PermissionError, OSError) as e:
        return f"not permitted ({e.strerror}): run as root, or allow it with `ulimit -r {priority}`"


def unique_dir(path: Path) -> Path:
    """``path``, or ``path-1``, ``path-2``, ... whichever does not exist yet (created)."""
    candidate, n = path, 0
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")


DEFAULT_EPISODE_STEPS = 100  # for policies whose metadata does not say (older exports)


def load_policy(args: argparse.Namespace, entry: Any, scheduling: str) -> tuple[OnnxPolicy, Path]:
    """The policy file, refused unless its metadata agrees with the robot's own safety limits."""
    policy_path = args.policy or entry.default_policy()
    if policy_path is None:
        raise UsageError(f"robot {args.robot!r} ships no default policy: pass --policy FILE.onnx")
    policy = OnnxPolicy(policy_path, threads=args.threads, seed=args.seed,
                        spin=not scheduling.startswith("SCHED_FIFO"))
    problems = policy.metadata.mismatches(entry.description, history_length=policy.frame_history.length)
    if problems:
        raise UsageError(f"policy {policy_path} does not match robot {args.robot!r}: " + "; ".join(problems))
    return policy, Path(policy_path)


def resolve_calibrations(args: argparse.Namespace, entry: Any) -> None:
    """Fill in the robot's default joint and camera calibration files, or refuse to run uncalibrated."""
    if args.calibration is None and not args.allow_uncalibrated:
        default = entry.default_calibration_path()
        if default is not None and default.exists():
            args.calibration = default
        else:
            raise UsageError(
                f"robot {args.robot!r} is not calibrated: run `slac-calibrate joints --robot {args.robot}` "
                "or pass --calibration FILE (or --allow-uncalibrated to use the driver's defaults)"
            )
    if not is_endpoint(args.camera) and args.camera_calibration is None:
        default_camera = default_calibration_path(args.robot, "camera")
        if default_camera.exists():  # written by `slac-calibrate camera --auto`
            args.camera_calibration = default_camera


def run(args: argparse.Namespace, outcome: dict[str, Any]) -> int:
    """Drive the robot; ``outcome`` collects what happened (the signal that stopped it, the summaries)."""
    entry = find_robot(args.robot)
    description = entry.description
    scheduling = enable_realtime() if args.realtime else "normal"
    policy, policy_path = load_policy(args, entry, scheduling)
    m = policy.metadata
    resolve_calibrations(args, entry)
    # Safety limits come from the robot, never from the policy file: the loop's goals move at most
    # the velocity limit per control period, and the driver's own step clip is a net a little above
    # it (so that rounding to whole servo ticks never trips it). The policy's period was checked
    # against the robot's allowed periods above.
    robot_period_s = min(description.control_periods_s, key=lambda p: abs(p - m.control_period_s),
                         default=m.control_period_s)
    driver_kwargs: dict[str, Any] = {"on_exit": args.on_exit,
                                     "max_step_rad": 1.1 * description.max_step_rad(robot_period_s)}
    if args.port is not None:
        driver_kwargs["port"] = args.port
    if args.calibration is not None:
        driver_kwargs["calibration"] = args.calibration
    try:
        config = LoopConfig(
            control_period_s=robot_period_s,
            action_repeat=m.action_repeat,
            episode_policy_steps=args.episode_steps or m.episode_policy_steps or DEFAULT_EPISODE_STEPS,
            deterministic=args.deterministic,
            max_frame_age_s=args.max_frame_age,
            stale_timeout_s=args.stale_timeout,
            seed=args.seed,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    stop: dict[str, Any] = outcome
    stop["signal"] = None
    loop: ControlLoop | None = None

    def on_signal(signum, _frame):
        stop["signal"] = signum
        if loop is not None:
            loop.request_stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    camera_proc = None
    endpoint = args.camera
    summaries: list[dict[str, Any]] = outcome.setdefault("summaries", [])
    try:
        if not is_endpoint(args.camera):
            camera_proc, endpoint = start_local_camera(args.camera, m.image_height, args.camera_calibration)
        header_common = {
            "software": {"slac_runtime": __version__, "python": platform.python_version(),
                         "platform": platform.platform()},
            "policy_path": str(policy_path),
            "policy_sha256": file_sha256(policy_path),
            "policy_metadata": asdict(m),
            "robot": args.robot,
            "port": args.port,
            "camera": args.camera,
            "camera_endpoint": endpoint,
            "joint_calibration": _read_json(args.calibration),
            "camera_calibration": _read_json(args.camera_calibration),
            "loop_config": asdict(config),
            "scheduling": scheduling,
            "started_at": datetime.now(timezone.utc).isoformat(),
        }
        status = None if args.quiet else (lambda s: print("\r" + s, end="", file=sys.stderr, flush=True))
        with FrameSubscriber(endpoint, max_age_s=args.max_frame_age) as frames:
            wait_for_camera(frames, args, camera_proc, stop)  # before anything touches the robot
            if stop["signal"] is not None:
                return ExitCode.for_signal(stop["signal"])
            run_dir = unique_dir(args.log_dir / datetime.now().strftime("%Y%m%d-%H%M%S"))
            with driving(entry.make_driver(**driver_kwargs), outcome) as robot:

                def footer_stats() -> dict[str, Any]:
                    camera = {f"camera_{k}": v for k, v in frames.stats().items()}
                    return {**camera, **(getattr(robot, "stats", None) or {})}

                loop = ControlLoop(robot, frames, policy, config, status=status, footer_stats=footer_stats)
                if stop["signal"] is not None:
                    loop.request_stop()
                run_episodes(args, loop, run_dir, header_common, summaries, stop, status is not None)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if camera_proc is not None:
            camera_proc.terminate()
            try:
                camera_proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                camera_proc.kill()
    if stop["signal"] is not None:
        return ExitCode.for_signal(stop["signal"])
    return ExitCode.OK


@contextmanager
def driving(robot: Any, outcome: dict[str, Any]) -> Iterator[Any]:
    """The robot's own ``with`` block, recording in ``outcome["robot"]`` whether it was left as
    ``--on-exit`` says ("released") or leaving it failed ("release failed")."""
    robot.__enter__()
    outcome["robot"] = "connected"
    exc_info: tuple[Any, Any, Any] = (None, None, None)
    try:
        yield robot
    except BaseException:
        exc_info = sys.exc_info()
        raise
    finally:
        outcome["robot"] = "release failed"
        robot.__exit__(*exc_info)
        outcome["robot"] = "released"


def run_episodes(args: argparse.Namespace, loop: ControlLoop, run_dir: Path, header_common: dict[str, Any],
                 summaries: list[dict[str, Any]], stop: dict[str, Any], live_status: bool) -> None:
    started = time.monotonic()
    episode = 0
    while stop["signal"] is None:
        if args.duration is None and episode >= args.episodes:
            break
        if args.duration is not None and time.monotonic() - started >= args.duration:
            break
        path = run_dir / f"episode-{episode:03d}.slaclog"
        with EpisodeLogWriter(path, dict(header_common, episode=episode)) as log:
            try:
                summary = loop.run_episode(log)
            finally:
                if live_status:
                    print(file=sys.stderr)
        summary["log"] = str(path)
        summaries.append(summary)
        print(f"episode {episode}: {summary['stop_reason']}  log: {path}")
        print(format_table(summary))
        episode += 1


def _read_json(path: Path | None) -> Any:
    if path is None:
        return None
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read calibration file {path}: {e}") from e


def robot_left(args: argparse.Namespace, outcome: dict[str, Any]) -> str:
    """What leaving the driver's ``with`` block did to the robot, in words."""
    state = outcome.get("robot")
    if state is None:
        return "the robot was not touched"
    if state != "released":
        what = "hold" if args.on_exit == "hold" else "relax"
        return f"the robot could not be told to {what} (see the error): check it before going near it"
    if args.on_exit == "hold":
        return "robot left holding its pose (torque on, --on-exit hold)"
    return "robot relaxed (torque off)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcome: dict[str, Any] = {"signal": None}
    try:
        code = run(args, outcome)
    except (UsageError, PolicyFileError, RobotRefused, KeyError) as e:  # nothing moved
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        say("slac-run", "error", f"{message} (nothing moved)")
        return ExitCode.REFUSED
    except SafeStop as e:
        say("slac-run", "safe stop", f"{e}; {robot_left(args, outcome)}")
        return ExitCode.SAFE_STOP
    except Exception as e:  # bus errors and the like: the robot was relaxed/held on the way out
        if args.traceback:
            raise
        cause = e.__context__ if e.__cause__ is None else None  # an error met while stopping
        after = f" (after: {type(cause).__name__}: {cause})" if cause is not None and str(cause) != str(e) else ""
        say("slac-run", "stopped", f"{type(e).__name__}: {e}{after}; {robot_left(args, outcome)}")
        return ExitCode.FAULT
    if outcome["signal"] is not None:
        name = signal.Signals(outcome["signal"]).name
        say("slac-run", "interrupted", f"{name}; {robot_left(args, outcome)}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
