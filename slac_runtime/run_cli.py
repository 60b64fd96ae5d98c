"""``slac-run``: drive a robot with an exported SLAC policy,
camera → ZeroMQ → history → ONNX → servos.

    slac-run --robot dclaw --camera 0 --policy policy.onnx --port /dev/ttyUSB0 --episodes 3

``--camera`` takes an OpenCV index, a device path or a video file (a local ``slac-camera``
publisher is started in its own process), or the endpoint of a running publisher (``tcp://…``,
``ipc://…``). Every episode is logged under ``--log-dir``; ``slac-replay`` reads the logs.
Without ``--policy`` it runs the robot's shipped policy; its first line names the policy file, its
task and the robot. A simulated camera names its scene, and a policy whose task needs another one
is refused.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slac_runtime import __version__
from slac_runtime.control_loop import (
    MAX_FRAME_AGE_LIMIT_S,
    STALE_TIMEOUT_LIMIT_S,
    ControlLoop,
    LoopConfig,
    SafeStop,
    format_table,
)
from slac_runtime.episode_log import EpisodeLogWriter
from slac_runtime.frames import (
    FIRST_FRAME_TIMEOUT_S,
    FRAMES_UNTIL_SOURCE_KNOWN,
    FrameSubscriber,
    describe_shape,
    is_endpoint,
)
from slac_runtime.options import (
    Check,
    CommandError,
    ExitCode,
    UsageError,
    available_cores,
    check_options,
    command_parser,
    error_message,
    float_in,
    int_at_least,
    option,
    parse_config,
    positive_float,
    run_command,
    say,
    thread_count,
)
from slac_runtime.policy import OnnxPolicy, PolicyFileError
from slac_runtime.policy_metadata import file_sha256
from slac_runtime.robot import (
    DEFAULT_ROBOT,
    ON_EXIT_CHOICES,
    RobotRefused,
    default_calibration_path,
    find_robot,
)
from slac_runtime.status_line import StatusLine
from slac_runtime.stop_request import StopRequest
from slac_runtime.view_match import MATCH_THRESHOLD, match_score, passes
from slac_runtime.view_match import describe as describe_match


@dataclass
class RunConfig:
    """``slac-run``'s options."""

    camera: str = option(
        "",
        "OpenCV index (0), device path, video file or stream, or the endpoint of a "
        "frame publisher (tcp://host:port, ipc://path)",
        required=True,
    )
    robot: str = option(DEFAULT_ROBOT, "robot name in the slac.robots registry")
    policy: Path | None = option(
        None, "exported ONNX policy (default: the robot's shipped policy, if it has one)"
    )
    port: str | None = option(None, "serial port of the servo bus (default: the driver's)")
    joint_calibration: Path | None = option(
        None,
        "joint calibration file (default: the robot's file from `slac-calibrate joints`)",
        aliases=["calibration"],
    )
    allow_uncalibrated: bool = option(
        False, "run without a joint calibration file (the driver's defaults)"
    )
    camera_calibration: Path | None = option(
        None,
        "camera calibration for a local camera (crop/rotation); default: the robot's file from "
        "`slac-calibrate camera --auto`, if there is one",
    )
    episodes: int = option(1, "number of episodes", parse=int_at_least(1), exclusive="length")
    duration: float | None = option(
        None,
        "run episodes for this many seconds (instead of --episodes)",
        parse=positive_float,
        exclusive="length",
    )
    episode_steps: int | None = option(
        None,
        "policy steps per episode (default: the policy's task's, from its metadata)",
        parse=int_at_least(1),
    )
    log_dir: Path = option(Path("logs"), "where episode logs go")
    deterministic: bool = option(False, "tanh(mean) instead of sampling")
    on_exit: str = option(
        ON_EXIT_CHOICES[0],
        "leave the robot relaxed (torque off) or holding its pose",
        choices=list(ON_EXIT_CHOICES),
    )
    max_frame_age: float = option(
        0.25,
        "frames that arrived longer ago than this are stale: the goal is held (s)",
        parse=Check(
            float,
            lambda v: 0 < v <= MAX_FRAME_AGE_LIMIT_S,
            f"a positive number of seconds, at most {MAX_FRAME_AGE_LIMIT_S:g} (an older frame "
            "shows where the robot was, not where it is)",
            "seconds",
        ),
    )
    stale_timeout: float = option(
        1.0,
        "stop the robot once the camera has been stale this long, i.e. no new frame for "
        "max-frame-age + stale-timeout (s); the robot is then left as --on-exit says",
        parse=Check(
            float,
            lambda v: 0 < v <= STALE_TIMEOUT_LIMIT_S,
            f"a positive number of seconds, at most {STALE_TIMEOUT_LIMIT_S:g} (a camera silent "
            "for longer is dead: stop, fix it and start again)",
            "seconds",
        ),
    )
    camera_timeout: float = option(
        FIRST_FRAME_TIMEOUT_S,
        "wait this long for the camera's first frame before touching the robot (s)",
        parse=positive_float,
    )
    threads: int = option(
        min(2, available_cores()),
        "onnxruntime threads, at most this computer's cores (2: streaming step p99 < 0.5 ms)",
        parse=thread_count,
    )
    seed: int | None = option(None, "seed of the policy's action noise", parse=int_at_least(0))
    quiet: bool = option(False, "no live status line")
    bus_watchdog: float | None = option(
        None,
        "the servos stop on their own when no goal has arrived for this long while goals stream "
        "(s; Dynamixel Bus Watchdog, 20 ms steps); default: the driver's, 0.2 s on the D'Claw",
        parse=float_in(0.02, 2.54, "a number of seconds"),
    )
    realtime: bool = option(
        False,
        "real-time scheduling (SCHED_FIFO) for the loop, when permitted (root or "
        "CAP_SYS_NICE): other programs on the same cores can then neither delay a tick nor leave "
        "the servos' Bus Watchdog without goals",
    )

    def __post_init__(self) -> None:
        check_options(self)
        if not self.camera:
            raise ValueError("argument --camera: give a camera or a frame publisher's endpoint")


def parse_args(argv: list[str] | None = None) -> RunConfig:
    parser = command_parser(
        "slac-run",
        RunConfig,
        " ".join(__doc__.split("\n\n")[0].split()),
        exit_codes=EXIT_CODES,
    )
    return parse_config(parser, RunConfig, argv)


EXIT_CODES = {
    0: "every episode ran to its end",
    1: "fault: an error of the robot, its bus or the software stopped the run (robot made safe)",
    2: "refused before anything moved (options, policy, calibration, camera, servo settings)",
    3: "safe stop: a watchdog stopped the robot (stale camera, tracking error, bad frames, "
    "overruns)",
    130: "interrupted by Ctrl-C; 143 by SIGTERM (the episode log is closed and the robot made "
    "safe)",
}


def start_local_camera(
    camera: str, size: int, fps: float, calibration: Path | None
) -> tuple[subprocess.Popen, str]:
    """Start ``slac-camera`` in its own process, publishing ``fps`` frames per second on a private
    ipc endpoint."""
    endpoint = f"ipc://{tempfile.gettempdir()}/slac-camera-{os.getpid()}.ipc"
    cmd = [
        sys.executable,
        "-m",
        "slac_runtime.camera",
        "--camera",
        camera,
        "--camera-bind",
        endpoint,
        "--size",
        str(size),
        "--fps",
        f"{fps:g}",
        "--quiet",
    ]
    if calibration is not None:
        cmd += ["--camera-calibration", str(calibration)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, endpoint


# Messages in a row that a policy cannot use, before its first usable frame, that refuse the run:
# a publisher of the wrong size, channels or format sends nothing else.
START_REJECTS = 5


def wait_for_camera(
    frames: FrameSubscriber,
    args: RunConfig,
    camera_proc: subprocess.Popen | None,
    stop: StopRequest,
) -> None:
    """Wait for the camera's usable frames (``FRAMES_UNTIL_SOURCE_KNOWN``: the scene check needs
    the source) before anything touches the robot; refuse if none comes, or if what comes is not a
    frame the policy can use (saying what arrived)."""
    deadline = time.monotonic() + args.camera_timeout
    where = "" if camera_proc is not None else f" at {args.camera}"
    needs = "SLAC frames" if frames.expect is None else f"{describe_shape(frames.expect)} frames"
    while time.monotonic() < deadline and not stop.requested:
        if camera_proc is not None and camera_proc.poll() is not None:
            lines = [line for line in camera_proc.stderr.read().splitlines() if line.strip()]
            why = lines[-1] if lines else f"exit code {camera_proc.returncode}"
            raise UsageError(
                f"the camera publisher for --camera {args.camera} exited before its first "
                f"frame: {why}"
            )
        if (
            frames.latest(timeout_s=0.05) is not None
            and frames.received >= FRAMES_UNTIL_SOURCE_KNOWN
        ):
            return
        if frames.malformed_in_a_row >= START_REJECTS:
            raise UsageError(
                f"the camera{where} sends messages this policy cannot use ({frames.malformed} "
                f"rejected, none usable; the policy needs {needs}); the last: "
                f"{frames.last_malformed_reason}"
            )
    if stop.requested:
        return
    if frames.malformed:
        raise UsageError(
            f"no usable camera frame{where} within --camera-timeout {args.camera_timeout:g} s: "
            f"{frames.malformed} messages arrived and were rejected (the policy needs {needs}); "
            f"the last: {frames.last_malformed_reason}"
        )
    hint = (
        "is the camera connected, and is its index or path right? (`ls /dev/video*`)"
        if camera_proc is not None
        else "is the camera publisher running, and is the endpoint right?"
    )
    raise UsageError(
        f"no camera frame{where} within --camera-timeout {args.camera_timeout:g} s: {hint}"
    )


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


def load_policy(args: RunConfig, entry: Any, scheduling: str) -> tuple[OnnxPolicy, Path]:
    """The policy file, refused unless its metadata agrees with the robot's own safety limits."""
    policy_path = args.policy or entry.default_policy()
    if policy_path is None:
        raise UsageError(f"robot {args.robot!r} ships no default policy: pass --policy FILE.onnx")
    if not Path(policy_path).is_file():
        what = "a directory" if Path(policy_path).is_dir() else "not found"
        raise UsageError(f"--policy {policy_path}: {what}; give an exported .onnx policy file")
    policy = OnnxPolicy(
        policy_path,
        threads=args.threads,
        seed=args.seed,
        spin=not scheduling.startswith("SCHED_FIFO"),
    )
    problems = policy.metadata.mismatches(
        entry.description, history_length=policy.frame_history.length
    )
    if problems:
        raise UsageError(
            f"policy {policy_path} does not match robot {args.robot!r}: " + "; ".join(problems)
        )
    return policy, Path(policy_path)


def loaded_line(args: RunConfig, policy_path: Path, metadata: Any) -> str:
    """What this run drives with what, in one line: the policy file (the robot's shipped policy
    when no --policy was given), its task and the robot."""
    shipped = "" if args.policy else f" (robot {args.robot}'s shipped policy: no --policy given)"
    return f"policy {policy_path}{shipped}: task {metadata.task}, on robot {args.robot}"


def check_scene(source: dict[str, str] | None, metadata: Any, entry: Any, args: RunConfig) -> None:
    """Refuse a simulated camera whose scene is not the one the policy's task needs (a Pose policy
    before the valve). A real camera names no scene: nothing to check."""
    scene = (source or {}).get("scene")
    needed = entry.scene_for_task(metadata.task)
    if scene is None or needed is None or scene == needed:
        return
    what = source.get("source", "the camera")
    raise UsageError(
        f"the camera at {args.camera} shows the {scene} scene ({what}), but the policy is for "
        f"task {metadata.task}, which needs the {needed} scene: start the virtual robot with "
        f"`slac-virtual-robot --robot {args.robot} --scene {needed}`, or run a policy for the "
        f"{scene} scene"
    )


def resolve_calibrations(args: RunConfig, entry: Any) -> None:
    """Fill in the robot's default joint and camera calibration files, or
    refuse to run uncalibrated."""
    if args.joint_calibration is None and not args.allow_uncalibrated:
        default = entry.default_calibration_path()
        if default is not None and default.exists():
            args.joint_calibration = default
        else:
            raise UsageError(
                f"robot {args.robot!r} is not calibrated: run `slac-calibrate joints --robot "
                f"{args.robot}` or pass --joint-calibration FILE (or --allow-uncalibrated to use "
                "the driver's defaults)"
            )
    if not is_endpoint(args.camera) and args.camera_calibration is None:
        default_camera = default_calibration_path(args.robot, "camera")
        if default_camera.exists():  # written by `slac-calibrate camera --auto`
            args.camera_calibration = default_camera


def robot_control_period(description: Any, metadata: Any) -> float:
    """The robot's allowed control period nearest the policy's (checked to agree when loaded)."""
    return min(
        description.control_periods_s,
        key=lambda p: abs(p - metadata.control_period_s),
        default=metadata.control_period_s,
    )


def driver_options(args: RunConfig, description: Any, period_s: float) -> dict[str, Any]:
    """The driver's arguments. Safety limits come from the robot, never from the policy file: the
    loop's goals move at most the velocity limit per control period, and the driver's own step clip
    is a net a little above it (so that rounding to whole servo ticks never trips it)."""
    kwargs: dict[str, Any] = {
        "on_exit": args.on_exit,
        "max_step_rad": 1.1 * description.max_step_rad(period_s),
    }
    if args.port is not None:
        kwargs["port"] = args.port
    if args.joint_calibration is not None:
        kwargs["calibration"] = args.joint_calibration
    if args.bus_watchdog is not None:
        kwargs["watchdog_s"] = args.bus_watchdog
    return kwargs


def loop_config(args: RunConfig, metadata: Any, period_s: float) -> LoopConfig:
    try:
        return LoopConfig(
            control_period_s=period_s,
            action_repeat=metadata.action_repeat,
            episode_policy_steps=args.episode_steps
            or metadata.episode_policy_steps
            or DEFAULT_EPISODE_STEPS,
            deterministic=args.deterministic,
            max_frame_age_s=args.max_frame_age,
            stale_timeout_s=args.stale_timeout,
            seed=args.seed,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e


def log_header(
    args: RunConfig,
    policy_path: Path,
    metadata: Any,
    endpoint: str,
    config: LoopConfig,
    scheduling: str,
) -> dict[str, Any]:
    """What every episode log of this run starts with."""
    return {
        "software": {
            "slac_runtime": __version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "policy_path": str(policy_path),
        "policy_sha256": file_sha256(policy_path),
        "policy_metadata": asdict(metadata),
        "robot": args.robot,
        "port": args.port,
        "camera": args.camera,
        "camera_endpoint": endpoint,
        "joint_calibration": _read_json(args.joint_calibration),
        "camera_calibration": _read_json(args.camera_calibration),
        "camera_intrinsics": _camera_intrinsics(args.camera_calibration),
        "loop_config": asdict(config),
        "scheduling": scheduling,
        "started_at": datetime.now(timezone.utc).isoformat(),
    }


@contextmanager
def new_run_dir(log_dir: Path) -> Iterator[Path]:
    """This run's log directory, ``LOG_DIR/<date-time>``, created now so that an unwritable
    ``--log-dir`` refuses the run before anything moves; removed again, with any parent this
    made, if the run leaves nothing in it."""
    path = Path(log_dir) / datetime.now().strftime("%Y%m%d-%H%M%S")
    missing = [p for p in reversed(path.parents) if not p.exists()]  # outermost first
    try:
        run_dir = unique_dir(path)
    except OSError as e:
        raise UsageError(
            f"cannot create a log directory under --log-dir {log_dir}: {e.strerror or e}; "
            "choose a writable --log-dir"
        ) from e
    try:
        yield run_dir
    finally:
        for p in [run_dir, *reversed(missing)]:
            try:
                p.rmdir()  # only if empty
            except OSError:
                break


@contextmanager
def subscribe(endpoint: str, args: RunConfig, metadata: Any) -> Iterator[FrameSubscriber]:
    """The frame subscriber, taking only frames of the policy's size (others are malformed)."""
    try:
        frames = FrameSubscriber(
            endpoint,
            max_age_s=args.max_frame_age,
            expect=(metadata.image_height, metadata.image_width, 3),
        )
    except (OSError, ValueError) as e:
        raise UsageError(f"--camera {args.camera}: {e}") from e
    with frames:
        yield frames


@contextmanager
def camera_endpoint(
    args: RunConfig, size: int, period_s: float
) -> Iterator[tuple[subprocess.Popen | None, str]]:
    """The endpoint to subscribe to: ``--camera`` itself, or that of a local ``slac-camera`` process
    started for it, publishing a frame per control period ``period_s`` (and stopped afterwards)."""
    if is_endpoint(args.camera):
        yield None, args.camera
        return
    proc, endpoint = start_local_camera(args.camera, size, 1.0 / period_s, args.camera_calibration)
    try:
        yield proc, endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(args: RunConfig, outcome: dict[str, Any], stop: StopRequest) -> int:
    """Drive the robot until the episodes end or ``stop`` is requested; ``outcome`` collects
    what happened (how the robot was left, the summaries)."""
    entry = find_robot(args.robot)
    scheduling = enable_realtime() if args.realtime else "normal"
    policy, policy_path = load_policy(args, entry, scheduling)
    m = policy.metadata
    print(loaded_line(args, policy_path, m), flush=True)
    resolve_calibrations(args, entry)
    period_s = robot_control_period(entry.description, m)
    config = loop_config(args, m, period_s)
    summaries: list[dict[str, Any]] = outcome.setdefault("summaries", [])
    with (
        stop.installed(),
        new_run_dir(args.log_dir) as run_dir,
        camera_endpoint(args, m.image_height, period_s) as (camera_proc, endpoint),
    ):
        header = log_header(args, policy_path, m, endpoint, config, scheduling)
        status = None if args.quiet else StatusLine()
        with subscribe(endpoint, args, m) as frames:
            wait_for_camera(frames, args, camera_proc, stop)  # before anything touches the robot
            if stop.requested:
                return stop.exit_code
            check_scene(frames.source, m, entry, args)  # a simulated camera names its scene
            header["camera_source"] = frames.source
            header["camera_settings"] = camera_settings(frames.source, args)
            with driving(
                entry.make_driver(**driver_options(args, entry.description, period_s)), outcome
            ) as robot:
                header["camera_match"] = camera_match_at_start(entry, robot, frames, m)

                def footer_stats() -> dict[str, Any]:
                    camera = {f"camera_{k}": v for k, v in frames.stats().items()}
                    return {**camera, **(getattr(robot, "stats", None) or {})}

                loop = ControlLoop(
                    robot,
                    frames,
                    policy,
                    config,
                    status=None if status is None else status.show,
                    footer_stats=footer_stats,
                    stop_requested=lambda: stop.requested,
                )
                run_episodes(args, loop, run_dir, header, summaries, stop, status)
    return stop.exit_code if stop.requested else ExitCode.OK


def camera_match_at_start(entry: Any, robot: Any, frames: FrameSubscriber, metadata: Any) -> dict:
    """How well the newest camera frame matches the task camera's render at the robot's joint
    state (the valve at angle 0), printed in one line, with a warning below the threshold; the
    record for the log header. Not measured where the robot has no simulator installed."""
    scene = entry.scene_for_task(metadata.task) or "valve"
    record: dict[str, Any] = {"threshold": MATCH_THRESHOLD, "scene": scene, "valve_angle_rad": 0.0}
    frame, q = frames.latest(), robot.read_state().positions
    try:  # the simulator (mujoco) is no part of the robot-side install
        expected = entry.load_task_view()(q, size=metadata.image_height, scene=scene)
    except (ImportError, RuntimeError) as e:
        print(f"camera match: not measured ({error_message(e)})", flush=True)
        return dict(record, score=None, not_measured=error_message(e))
    score = match_score(frame.image, expected)
    print(f"camera {describe_match(score)} against the {scene} task view at this pose", flush=True)
    if not passes(score):
        say(
            "slac-run",
            "warning",
            f"the camera does not look like the task view the policy was trained on (match "
            f"{score:.3f} < {MATCH_THRESHOLD:.2f}): check it with `slac-calibrate camera --check`",
        )
    return dict(record, score=round(score, 4), passes=passes(score))


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


def run_episodes(
    args: RunConfig,
    loop: ControlLoop,
    run_dir: Path,
    header_common: dict[str, Any],
    summaries: list[dict[str, Any]],
    stop: StopRequest,
    status: StatusLine | None,
) -> None:
    started = time.monotonic()
    episode = 0
    while not stop.requested:
        if args.duration is None and episode >= args.episodes:
            break
        if args.duration is not None and time.monotonic() - started >= args.duration:
            break
        path = run_dir / f"episode-{episode:03d}.slaclog"
        with EpisodeLogWriter(path, dict(header_common, episode=episode)) as log:
            try:
                summary = loop.run_episode(log)
            finally:
                if status is not None:
                    status.end()
        summary["log"] = str(path)
        summaries.append(summary)
        print(f"episode {episode}: {summary['stop_reason']}  log: {path}")
        print(format_table(summary))
        if summary["stale_ticks"]:
            say(
                "slac-run",
                "warning",
                f"episode {episode}: the goal was held for {summary['stale_ticks']} policy steps "
                f"because the newest camera frame was older than --max-frame-age "
                f"{args.max_frame_age:g} s; check the camera",
            )
        episode += 1


def _read_json(path: Path | None) -> Any:
    if path is None:
        return None
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # ValueError: not JSON, not UTF-8
        raise UsageError(f"cannot read calibration file {path}: {e}") from e


def _camera_intrinsics(path: Path | None) -> dict[str, Any] | None:
    """The lens the local camera's frames are undistorted with (docs/calibration.md), or None:
    no camera calibration, one without a lens, or a camera publishing from elsewhere."""
    if path is None:
        return None
    from slac_runtime.preprocessing import CameraCalibration

    try:
        lens = CameraCalibration.load(path).intrinsics
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read camera calibration file {path}: {e}") from e
    return None if lens is None else lens.to_dict()


def camera_settings(source: dict[str, str] | None, args: RunConfig) -> dict[str, Any] | None:
    """The capture settings the camera reports in its source message, for the log header (None
    when it reports none); a warning when auto-exposure or auto white balance is on. Settings
    that do not parse refuse the run."""
    from slac_runtime.camera.settings_options import auto_warning
    from slac_runtime.camera_settings import CameraSettings

    try:
        settings = CameraSettings.from_source(source)
    except ValueError as e:
        raise UsageError(f"the camera at {args.camera} sends settings that do not read: {e}") from e
    if settings is None:
        return None
    warning = auto_warning(settings, f"the camera at {args.camera}")
    if warning:
        say("slac-run", "warning", warning)
    return settings.to_dict()


def robot_left(args: RunConfig, outcome: dict[str, Any]) -> str:
    """What leaving the driver's ``with`` block did to the robot, in words."""
    state = outcome.get("robot")
    if state is None:
        return "the robot was not touched"
    if state != "released":
        what = "hold" if args.on_exit == "hold" else "relax"
        return (
            f"the robot could not be told to {what} (see the error): check it before going near it"
        )
    if args.on_exit == "hold":
        return "robot left holding its pose (torque on, --on-exit hold)"
    return "robot relaxed (torque off)"


def main(argv: list[str] | None = None) -> int:
    return run_command("slac-run", _main, argv)


def _main(argv: list[str]) -> int:
    args = parse_args(argv)
    outcome: dict[str, Any] = {}
    stop = StopRequest(second_signal_stops_at_once=False)
    try:
        code = run(args, outcome, stop)
    except (UsageError, PolicyFileError, RobotRefused, KeyError) as e:
        if outcome.get("robot") is None:  # raised before the robot was connected
            raise UsageError(f"{error_message(e)} (nothing moved)") from e
        # A refusal met once the robot was connected (a hold it could not do): a fault.
        raise CommandError(
            f"{error_message(e)}; {robot_left(args, outcome)}", ExitCode.FAULT, "stopped"
        ) from e
    except SafeStop as e:
        raise CommandError(
            f"{e}; {robot_left(args, outcome)}", ExitCode.SAFE_STOP, "safe stop"
        ) from e
    except Exception as e:  # bus errors and the like: the robot was relaxed/held on the way out
        cause = e.__context__ if e.__cause__ is None else None  # an error met while stopping
        after = (
            f" (after: {type(cause).__name__}: {cause})"
            if cause is not None and str(cause) != str(e)
            else ""
        )
        raise CommandError(
            f"{type(e).__name__}: {e}{after}; {robot_left(args, outcome)}",
            ExitCode.FAULT,
            "stopped",
        ) from e
    if stop.requested:
        say("slac-run", "interrupted", f"{stop.signal_name}; {robot_left(args, outcome)}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
