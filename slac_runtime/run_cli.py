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
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slac_runtime import __version__
from slac_runtime.control_loop import ControlLoop, LoopConfig, SafeStop, format_table
from slac_runtime.episode_log import EpisodeLogWriter
from slac_runtime.frames import FrameSubscriber
from slac_runtime.policy import OnnxPolicy, PolicyFileError
from slac_runtime.policy_metadata import file_sha256
from slac_runtime.robot import default_calibration_path, find_robot


class UsageError(RuntimeError):
    """A problem the user can fix from the command line; printed as one line, exit code 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slac-run", description=__doc__.splitlines()[0])
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
    group.add_argument("--episodes", type=int, default=1, help="number of episodes (default 1)")
    group.add_argument("--duration", type=float, default=None, help="run episodes for this many seconds")
    p.add_argument("--episode-steps", type=int, default=None,
                   help="policy steps per episode (default: the policy's task's, from its metadata)")
    p.add_argument("--log-dir", type=Path, default=Path("logs"), help="where episode logs go")
    p.add_argument("--deterministic", action="store_true", help="tanh(mean) instead of sampling")
    p.add_argument("--on-exit", choices=["relax", "hold"], default="relax",
                   help="leave the robot relaxed (torque off) or holding its pose")
    p.add_argument("--max-frame-age", type=float, default=0.25, help="older frames are stale (s)")
    p.add_argument("--stale-timeout", type=float, default=1.0, help="relax after stale this long (s)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads (2: streaming step p99 < 0.5 ms)")
    p.add_argument("--seed", type=int, default=None, help="seed of the policy's action noise")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    p.add_argument("--realtime", action="store_true",
                   help="real-time scheduling (SCHED_FIFO) for the loop, when permitted; only with "
                        "hardware servos (the bus client busy-waits for replies, which would starve an "
                        "emulator or camera process on the same cores)")
    return p.parse_args(argv)


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
    time.sleep(0.2)
    if proc.poll() is not None:
        raise UsageError(f"the camera publisher for --camera {camera} exited: {proc.stderr.read().strip()}")
    return proc, endpoint


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


def run(args: argparse.Namespace) -> int:
    entry = find_robot(args.robot)
    description = entry.description
    policy_path = args.policy or entry.default_policy()
    if policy_path is None:
        raise UsageError(f"robot {args.robot!r} ships no default policy: pass --policy FILE.onnx")
    scheduling = enable_realtime() if args.realtime else "normal"
    policy = OnnxPolicy(policy_path, threads=args.threads, seed=args.seed,
                        spin=not scheduling.startswith("SCHED_FIFO"))
    m = policy.metadata
    problems = m.mismatches(description, history_length=policy.frame_history.length)
    if problems:
        raise UsageError(f"policy {policy_path} does not match robot {args.robot!r}: " + "; ".join(problems))
    if args.calibration is None and not args.allow_uncalibrated:
        default = entry.default_calibration_path()
        if default is not None and default.exists():
            args.calibration = default
        else:
            raise UsageError(
                f"robot {args.robot!r} is not calibrated: run `slac-calibrate joints --robot {args.robot}` "
                "or pass --calibration FILE (or --allow-uncalibrated to use the driver's defaults)"
            )

    camera_proc = None
    endpoint = args.camera
    if not is_endpoint(args.camera) and args.camera_calibration is None:
        default_camera = default_calibration_path(args.robot, "camera")
        if default_camera.exists():  # written by `slac-calibrate camera --auto`
            args.camera_calibration = default_camera
    if not is_endpoint(args.camera):
        camera_proc, endpoint = start_local_camera(args.camera, m.image_height, args.camera_calibration)
    stop = {"requested": False}
    loop: ControlLoop | None = None

    def on_signal(signum, _frame):
        stop["requested"] = True
        if loop is not None:
            loop.request_stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    run_dir = unique_dir(args.log_dir / datetime.now().strftime("%Y%m%d-%H%M%S"))
    summaries: list[dict[str, Any]] = []
    try:
        # The loop limits each goal step to the velocity limit; the driver's own step clip is a
        # safety net a little above it (so that rounding to whole servo ticks never trips it).
        driver_kwargs: dict[str, Any] = {
            "on_exit": args.on_exit,
            "max_step_rad": 1.1 * description.velocity_limit * m.control_period_s,
        }
        if args.port is not None:
            driver_kwargs["port"] = args.port
        if args.calibration is not None:
            driver_kwargs["calibration"] = args.calibration
        config = LoopConfig(
            control_period_s=m.control_period_s,
            action_repeat=m.action_repeat,
            episode_policy_steps=args.episode_steps or m.episode_policy_steps or DEFAULT_EPISODE_STEPS,
            deterministic=args.deterministic,
            max_frame_age_s=args.max_frame_age,
            stale_timeout_s=args.stale_timeout,
            seed=args.seed,
        )
        header_common = {
            "software": {"slac_runtime": __version__, "python": platform.python_version(),
                         "platform": platform.platform()},
            "policy_path": str(policy_path),
            "policy_sha256": file_sha256(Path(policy_path)),
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
        with FrameSubscriber(endpoint, max_age_s=args.max_frame_age) as frames, \
                entry.make_driver(**driver_kwargs) as robot:
            def footer_stats() -> dict[str, Any]:
                camera = {f"camera_{k}": v for k, v in frames.stats().items()}
                return {**camera, **(getattr(robot, "stats", None) or {})}

            loop = ControlLoop(robot, frames, policy, config, status=status, footer_stats=footer_stats)
            if stop["requested"]:
                loop.request_stop()
            started = time.monotonic()
            episode = 0
            while not stop["requested"]:
                if args.duration is None and episode >= args.episodes:
                    break
                if args.duration is not None and time.monotonic() - started >= args.duration:
                    break
                path = run_dir / f"episode-{episode:03d}.slaclog"
                with EpisodeLogWriter(path, dict(header_common, episode=episode)) as log:
                    try:
                        summary = loop.run_episode(log)
                    finally:
                        if status:
                            print(file=sys.stderr)
                summary["log"] = str(path)
                summaries.append(summary)
                print(f"episode {episode}: {summary['stop_reason']}  log: {path}")
                print(format_table(summary))
                episode += 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if camera_proc is not None:
            camera_proc.terminate()
            try:
                camera_proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                camera_proc.kill()
    return 0 if summaries else 1


def _read_json(path: Path | None) -> Any:
    if path is None:
        return None
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read calibration file {path}: {e}") from e


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (UsageError, PolicyFileError, KeyError) as e:  # nothing moved: fix the command line
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"slac-run: error: {message}", file=sys.stderr)
        return 2
    except SafeStop as e:
        print(f"slac-run: safe stop: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # bus errors and the like: the robot was relaxed/held on the way out
        if args.traceback:
            raise
        cause = f" (after: {e.__context__})" if e.__context__ is not None else ""
        print(f"slac-run: stopped: {type(e).__name__}: {e}{cause}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
