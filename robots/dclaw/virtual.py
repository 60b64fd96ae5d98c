"""The virtual D'Claw: the MuJoCo claw stepped in real time behind a Dynamixel bus emulator on a
pseudo-terminal, and a simulated camera publishing over ZeroMQ in the runtime's frame format
(with source messages naming the scene it renders).

The bus is answered by its own process (:class:`~robots.dynamixel.bus_process.ServoBusProcess`,
real-time scheduled where permitted), which exchanges joint readings and goals with the simulation
thread through shared memory: physics, rendering and scene resets in this process never delay a
reply.

The real driver, the real ``dynamixel-sdk``, real sockets and the real runtime run against it
unchanged::

    slac-virtual-robot --robot dclaw --port-link /tmp/dclaw/tty --camera-bind tcp://127.0.0.1:5555
    slac-run --robot dclaw --port /tmp/dclaw/tty --camera tcp://127.0.0.1:5555 --allow-uncalibrated

Faults for tests: planted calibration offsets, dropped or corrupted replies, a silent servo, a
frozen camera. A "wide" camera view (larger field of view, rolled, off-centre, optionally through a
distorting lens) emulates a real camera that still needs calibrating, and a printed calibration
board can be held up in front of it (:meth:`VirtualDClaw.show_board`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robots.dclaw.description import CONTROL_PERIOD_S, DCLAW
from robots.dclaw.driver import DEFAULT_CALIBRATION
from robots.dclaw.wide_view import WideView
from robots.dynamixel.bus_process import ServoBusProcess
from robots.dynamixel.emulated_servo import Mounting, mountings_from_calibration
from robots.dynamixel.emulator import ServoBusEmulator
from robots.dynamixel.physics import JointReading, ServoBackend, SharedJointState
from robots.virtual_camera import (
    DEFAULT_POSE_S,
    BoardInView,
    Lens,
    LensWarp,
    read_printed_sheet,
    rendered_camera_settings,
)
from slac_runtime.frames import DEFAULT_CAMERA_ENDPOINT, FramePublisher
from slac_runtime.options import (
    Check,
    ExitCode,
    OneLineParser,
    UsageError,
    check_options,
    command_parser,
    finite_float,
    float_in,
    int_at_least,
    int_in,
    non_negative_float,
    option,
    parse_config,
    positive_float,
    run_command,
)
from slac_runtime.preprocessing import DEFAULT_OUTPUT_SIZE
from slac_runtime.stop_request import StopRequest

TORQUE_CONSTANT_NM_PER_A = 1.78  # XM430-W350: 4.1 N·m stall torque at 2.3 A
STEP_SLEEP_S = 0.002  # the simulation thread wakes this often to catch up with the wall clock
MAX_SUBSTEPS_PER_LOCK = (
    4  # simulator steps (10 ms) between exchanges of goals and readings with the bus
)
BUS_MODES = ("process", "thread")


class MuJoCoServoBackend(ServoBackend):
    """The servos' physics: a :class:`~robots.dclaw.sim.DClawSim`, guarded by a lock.

    A servo with torque off exerts no force (the joint moves freely); goals become the position
    actuators' controls. Currents are actuator torques over the
    servo's torque constant.
    """

    def __init__(self, sim, lock: threading.RLock):
        self.sim = sim
        self.lock = lock
        self._index = {motor_id: i for i, motor_id in enumerate(DCLAW.motor_ids)}
        self.torque = np.zeros(DCLAW.num_joints, dtype=bool)

    def apply(self, goals_rad: Mapping[int, float], torque_enabled: Mapping[int, bool]) -> None:
        with self.lock:
            goals = self.sim.joint_goals()
            for motor_id, goal in goals_rad.items():
                goals[self._index[motor_id]] = goal
            for motor_id, on in torque_enabled.items():
                self.torque[self._index[motor_id]] = bool(on)
            self.sim.set_torque_enabled(self.torque)
            self.sim.set_joint_goals(goals)

    def read(self) -> dict[int, JointReading]:
        with self.lock:
            q = self.sim.joint_positions()
            v = self.sim.joint_velocities()
            f = self.sim.actuator_forces()
        return {
            motor_id: JointReading(float(q[i]), float(v[i]), float(f[i] / TORQUE_CONSTANT_NM_PER_A))
            for motor_id, i in self._index.items()
        }


class VirtualDClaw:
    """The virtual robot: simulation thread, servo-bus emulator and camera publisher.

    Args:
        port_link: the path clients open (a symlink to the emulator's pty).
        camera_bind: ZeroMQ endpoint the camera publishes on (``tcp://127.0.0.1:5555``, ``ipc://…``).
        scene: "valve" or "pose".
        fps: camera frames per second.
        camera_size: side of the published task-camera frames (pixels).
        wide_view: publish a :class:`WideView` instead of the task camera's 64x64 frames.
        planted_offsets: motor ID -> ticks added to the servo's true zero (a miscalibrated robot).
        initial_pose: "reset" (the Turn reset pose) or "zero" (fingers straight down).
        real_time_factor: simulated seconds per wall-clock second.
        bus: "process" (the bus answered by its own process) or "thread" (by a thread of this
            process, sharing its GIL and the simulation's lock: only for measuring the difference).
    """

    def __init__(
        self,
        port_link: str | Path,
        camera_bind: str,
        scene: str = "valve",
        fps: float = 1.0 / CONTROL_PERIOD_S,
        camera_size: int = 64,
        wide_view: WideView | None = None,
        planted_offsets: Mapping[int, float] | None = None,
        initial_pose: str = "reset",
        valve_angle: float = 0.0,
        real_time_factor: float = 1.0,
        seed: int = 0,
        show_goal: bool = False,
        bus: str = "process",
    ):
        from robots.dclaw.sim import DClawSim

        if initial_pose not in ("reset", "zero"):
            raise ValueError(f"initial_pose must be 'reset' or 'zero', got {initial_pose!r}")
        if bus not in BUS_MODES:
            raise ValueError(f"bus must be one of {BUS_MODES}, got {bus!r}")
        self.lock = threading.RLock()
        self.sim = DClawSim(scene, render_size=camera_size, show_goal=show_goal)
        q0 = np.zeros(DCLAW.num_joints) if initial_pose == "zero" else np.asarray(DCLAW.reset_pose)
        self.sim.reset(
            joint_positions=q0, valve_angle=valve_angle
        ) if self.sim.has_valve else self.sim.reset(joint_positions=q0)
        self.backend = MuJoCoServoBackend(self.sim, self.lock)
        mountings = mountings_from_calibration(DEFAULT_CALIBRATION)
        for motor_id, delta in (planted_offsets or {}).items():
            base = mountings[motor_id]
            mountings[motor_id] = Mounting(base.offset_ticks + delta, base.sign)
        self.joint_state: SharedJointState | None = None
        self.emulator: ServoBusProcess | ServoBusEmulator
        if bus == "process":
            self.joint_state = SharedJointState(DCLAW.motor_ids)
            self.joint_state.write_readings(self.backend.read())  # the servos power up here
            self.emulator = ServoBusProcess(
                DCLAW.motor_ids,
                self.joint_state,
                mountings=mountings,
                link_path=port_link,
                seed=seed,
            )
        else:
            self.emulator = ServoBusEmulator(
                DCLAW.motor_ids, self.backend, mountings=mountings, link_path=port_link, seed=seed
            )
        self.camera_bind = camera_bind
        self.fps = float(fps)
        self.camera_size = int(camera_size)
        self.wide_view = wide_view
        self.real_time_factor = float(real_time_factor)
        self.publisher: FramePublisher | None = None
        self._lens_warp: LensWarp | None = None
        self._board: tuple[BoardInView, float, float | None] | None = None  # shown at, until
        self.camera_frozen = False
        self.frames_published = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._bus_goals_paused = False
        self.error: BaseException | None = None
        if wide_view is not None:
            self._setup_wide_view(wide_view)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def port(self) -> str:
        return self.emulator.port_path

    @property
    def camera_endpoint(self) -> str:
        if self.publisher is None:
            raise RuntimeError("the virtual D'Claw is not started")
        return self.publisher.endpoint

    def slac_run_command(self, policy: str | Path, log_dir: str | Path, *extra: str) -> list[str]:
        """The ``slac-run`` command line that drives this robot with ``policy`` (uncalibrated, no
        status line), logging under ``log_dir``; ``extra`` options are appended."""
        return [
            sys.executable,
            "-m",
            "slac_runtime.run_cli",
            "--robot",
            "dclaw",
            "--camera",
            self.camera_endpoint,
            "--port",
            self.port,
            "--policy",
            str(policy),
            "--allow-uncalibrated",
            "--log-dir",
            str(log_dir),
            "--quiet",
            *extra,
        ]

    def start(self) -> VirtualDClaw:
        """Start the simulation thread and the camera, then the bus; its port link appears last,
        once the bus answers. What started is stopped again if a later part fails to start (the
        camera's endpoint in use, the port link taken)."""
        self.emulator.link_path.parent.mkdir(parents=True, exist_ok=True)
        # Its frames say which scene they show: slac-run refuses a policy for another scene's task.
        view = self.wide_view
        width, height = (self.camera_size,) * 2 if view is None else (view.width, view.height)
        settings = rendered_camera_settings(width, height, self.fps)
        source = {"source": "virtual dclaw", "scene": self.sim.scene, **settings.to_source()}
        self.publisher = FramePublisher(self.camera_bind, source=source)
        try:
            self._thread = threading.Thread(target=self._run, name="virtual-dclaw", daemon=True)
            self._thread.start()
            if not self._ready.wait(timeout=30):
                raise RuntimeError("the virtual D'Claw's simulation thread did not start")
            if self.error is not None:
                raise RuntimeError(
                    f"the virtual D'Claw failed to start: {self.error}"
                ) from self.error
            self.emulator.start()
        except BaseException:
            self._shut_down()  # the simulation thread frees its GL context before the exit
            raise
        return self

    def stop(self) -> None:
        self._shut_down()
        if self.error is not None:
            raise RuntimeError(
                f"the virtual D'Claw's simulation thread failed: {self.error}"
            ) from self.error

    def _shut_down(self) -> None:
        """Stop the simulation thread (it closes the simulator), the bus and the camera."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.emulator.stop()
        if self.joint_state is not None:
            self.joint_state.close()
            self.joint_state = None
        if self.publisher is not None:
            self.publisher.close()

    def __enter__(self) -> VirtualDClaw:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- faults and scene control ----------------------------------------------------------------
    def freeze_camera(self, frozen: bool = True) -> None:
        """Stop (or resume) publishing frames, as a camera that stops delivering would."""
        self.camera_frozen = frozen

    def show_board(
        self,
        sheet: np.ndarray | str | Path,
        px_per_mm: float | None = None,
        seconds: float | None = None,
        pose_s: float = DEFAULT_POSE_S,
    ) -> None:
        """Hold a printed calibration board up in front of the wide-view camera, moving it through
        its poses (:func:`~robots.virtual_camera.board_poses`, ``pose_s`` each) for ``seconds``
        (None: until :meth:`hide_board`). ``sheet``: a PNG written by ``slac-calibrate camera
        --print-board`` (it records its print size), or a grey image and its ``px_per_mm``."""
        if self.wide_view is None:
            raise ValueError("a calibration board is shown to the wide-view camera only")
        if isinstance(sheet, (str, Path)):
            sheet, px_per_mm = read_printed_sheet(sheet)
        if px_per_mm is None:
            raise ValueError("give the sheet's print resolution (px_per_mm)")
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        warp = self._lens_warp or self.wide_view.lens_warp()
        board = BoardInView(sheet, px_per_mm, warp, pose_s=pose_s)
        now = time.monotonic()
        self._board = (board, now, None if seconds is None else now + seconds)

    def hide_board(self) -> None:
        """Take the calibration board out of view."""
        self._board = None

    @property
    def board_in_view(self) -> BoardInView | None:
        shown = self._board
        if shown is None or (shown[2] is not None and time.monotonic() >= shown[2]):
            return None
        return shown[0]

    def reset_valve(self, angle: float = 0.0) -> None:
        with self.lock:
            self.sim.set_valve_angle(angle)

    def reset_scene(self, valve_angle: float = 0.0) -> None:
        """Reset between episodes, as ROBEL's setup does with its valve motor: the claw at rest in
        its reset pose (clear of the spokes), the valve at ``valve_angle``, the servos' goals at
        that pose (torque stays as it was). Turning only the valve under a claw left
        among the spokes makes them collide and kicks the valve away from ``valve_angle``."""
        pose = np.asarray(DCLAW.reset_pose, dtype=float)
        with self.lock:
            # Until the bus has taken the pose as its goals, goals it wrote earlier (a client's last
            # hold, a write still in flight) are stale: applied now, they would pull the claw out
            # of the pose on a machine busy enough to delay the bus process.
            self._bus_goals_paused = True
            if self.joint_state is not None and (pending := self.joint_state.take_goals()):
                self.backend.apply({}, pending[1])  # the torque the bus set stands; not its goals
            self.sim.set_joint_positions(pose, np.zeros(DCLAW.num_joints))
            self.sim.set_joint_goals(pose)
            if self.sim.has_valve:
                self.sim.set_valve_angle(valve_angle)
            self._publish_readings()
        try:
            # The bus lock, then ours: never ours first.
            self.emulator.goals_to(dict(zip(DCLAW.motor_ids, pose.tolist())))
        finally:
            with self.lock:
                self._bus_goals_paused = False  # the bus's newest goals are now the pose's

    def valve_angle(self) -> float:
        with self.lock:
            return self.sim.valve_angle()

    def joint_positions(self) -> np.ndarray:
        with self.lock:
            return self.sim.joint_positions()

    def randomize_visuals(self, seed: int) -> dict:
        """Draw lights, colours and a camera jitter around this robot's camera (the wide view's,
        if it has one)."""
        with self.lock:
            return self.sim.randomize_visuals(np.random.default_rng(seed))

    # -- the exchange with a bus process (called with the lock held) -------------------------------
    def _apply_bus_goals(self) -> None:
        """Apply the goals and torque the bus wrote since the last call (never older ones again);
        none while :meth:`reset_scene` waits for the bus to take the reset pose as its goals."""
        if self._bus_goals_paused or self.joint_state is None:
            return
        if (new := self.joint_state.take_goals()) is not None:
            self.backend.apply(*new)

    def _publish_readings(self) -> None:
        if self.joint_state is not None:
            self.joint_state.write_readings(self.backend.read())

    # -- the simulation thread --------------------------------------------------------------------
    def _setup_wide_view(self, view: WideView) -> None:
        self._lens_warp = view.aim(self.sim)

    def _render(self) -> np.ndarray:
        """Render the camera's frame; the lock is held only while the scene is copied."""
        view = self.wide_view
        if view is None:
            with self.lock:
                renderer = self.sim.update_scene()
            return renderer.render().copy()
        warp = self._lens_warp
        render_w, render_h = view.render_size if warp is None else warp.render_size
        with self.lock:
            renderer = self.sim.update_scene(height=render_h, width=render_w)
        image = renderer.render()
        if warp is not None:
            image = warp.warp(image)
        else:
            image = view.window(image)
        shown = self._board
        if shown is not None and self.board_in_view is not None:
            board, since, _ = shown
            image = board.show(image, time.monotonic() - since)
        return image

    def _run(self) -> None:
        try:
            period = 1.0 / self.fps
            self._render()  # make the GL context in this thread
            self._ready.set()
            start = time.monotonic()
            next_frame = start
            sim_start = self.sim.time
            dt = self.sim.model.opt.timestep
            while not self._stop.is_set():
                now = time.monotonic()
                target = sim_start + (now - start) * self.real_time_factor
                # Catch up in short bursts, exchanging goals and readings with the bus in between.
                with self.lock:
                    self._apply_bus_goals()
                while self.sim.time + dt <= target and not self._stop.is_set():
                    with self.lock:
                        self._apply_bus_goals()
                        stepped = self.sim.step_until(
                            min(target, self.sim.time + MAX_SUBSTEPS_PER_LOCK * dt)
                        )
                        self._publish_readings()
                    if stepped == 0:
                        break
                if now >= next_frame:
                    if not self.camera_frozen:
                        capture_time = time.time()
                        image = self._render()
                        self.publisher.publish(image, timestamp=capture_time)
                        self.frames_published += 1
                    next_frame += period
                    if next_frame < now:  # fell behind: skip frames rather than burst
                        next_frame = now + period
                time.sleep(STEP_SLEEP_S)
        except BaseException as e:  # reported by stop(); the thread must not die silently
            self.error = e
            self._ready.set()
        finally:
            with self.lock:
                self.sim.close()


def parse_offsets(text: str | None) -> dict[int, float]:
    """``"10=+25,21=-40"`` -> {10: 25.0, 21: -40.0} (ticks)."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        try:
            motor_id, ticks = int(key), float(value)
        except ValueError:
            raise ValueError(f"takes ID=ticks,ID=ticks (10=+25,21=-40), got {text!r}") from None
        if motor_id not in DCLAW.motor_ids:
            raise ValueError(f"{motor_id} is not a D'Claw motor ID {DCLAW.motor_ids}")
        out[motor_id] = ticks
    return out


@dataclass
class VirtualRobotConfig:
    """``slac-virtual-robot --robot dclaw``'s options."""

    scene: str = option("valve", "the simulated scene", choices=["valve", "pose"])
    port_link: Path = option(
        Path("/tmp/slac-virtual-dclaw/tty"), "path of the emulated serial port"
    )
    camera_bind: str = option(
        DEFAULT_CAMERA_ENDPOINT,
        "ZeroMQ endpoint the camera publishes on (tcp://*:5555 serves other computers too)",
    )
    fps: float = option(
        1.0 / CONTROL_PERIOD_S,
        "camera frames per second (one per control period)",
        parse=Check(float, lambda v: v > 0, "a positive number of frames per second"),
    )
    camera_size: int = option(
        DEFAULT_OUTPUT_SIZE,
        "side of the published frames (pixels)",
        parse=int_in(8, 1024, "a number of pixels"),
    )
    wide_view: bool = option(
        False, "publish an uncalibrated 320x240 view (wider, rolled 3 degrees, off-centre)"
    )
    wide_fovy: float = option(
        60.0,
        "the wide view's vertical field of view, of its camera matrix (degrees)",
        parse=float_in(20, 120, "degrees"),
    )
    lens_k1: float = option(
        0.0,
        "the wide view's lens: radial term k1 (OpenCV's model; -0.35: barrel)",
        parse=finite_float,
    )
    lens_k2: float = option(0.0, "the wide view's lens: radial term k2", parse=finite_float)
    lens_p1: float = option(0.0, "the wide view's lens: tangential term p1", parse=finite_float)
    lens_p2: float = option(0.0, "the wide view's lens: tangential term p2", parse=finite_float)
    show_board: Path | None = option(
        None,
        "hold this printed calibration board (a PNG from slac-calibrate camera --print-board) up "
        "to the wide-view camera, moving it through a sequence of poses",
    )
    board_seconds: float | None = option(
        None,
        "with --show-board: take the board away after this many seconds (default: never)",
        parse=positive_float,
    )
    board_pose_seconds: float = option(
        DEFAULT_POSE_S, "with --show-board: seconds at each pose", parse=positive_float
    )
    plant_offsets: str | None = option(None, "miscalibrate servos: 'ID=ticks,ID=ticks'")
    initial_pose: str = option("reset", "the claw's pose at the start", choices=["reset", "zero"])
    valve_angle: float = option(0.0, "the valve's angle at the start (rad)", parse=finite_float)
    drop_replies: float = option(
        0.0, "probability that a reply is lost", parse=float_in(0, 1, "a probability")
    )
    corrupt_replies: float = option(
        0.0, "probability of a reply with a bad CRC", parse=float_in(0, 1, "a probability")
    )
    silent_servo: int | None = option(None, "this servo never answers", parse=int_at_least(0))
    freeze_camera_after: float | None = option(
        None, "stop publishing after this many seconds", parse=non_negative_float
    )
    visual_seed: int | None = option(
        None, "randomise lights/colours/camera with this seed", parse=int_at_least(0)
    )
    duration: float | None = option(
        None, "stop after this many seconds (default: Ctrl-C or SIGTERM)", parse=positive_float
    )
    seed: int = option(0, "seed of the simulation's randomness", parse=int_at_least(0))

    def __post_init__(self) -> None:
        check_options(self)
        lens = (self.lens_k1, self.lens_k2, self.lens_p1, self.lens_p2)
        if not self.wide_view and (any(lens) or self.show_board is not None):
            raise ValueError(
                "--lens-k1, --lens-k2, --lens-p1, --lens-p2 and --show-board are for the "
                "--wide-view camera: add --wide-view"
            )


def build_parser() -> OneLineParser:
    return command_parser(
        "slac-virtual-robot --robot dclaw",
        VirtualRobotConfig,
        "The virtual D'Claw: MuJoCo behind a servo-bus emulator and a camera publisher.",
        exit_codes={
            0: "stopped (--duration, Ctrl-C or SIGTERM)",
            1: "the simulation failed",
            2: "refused (options, a --port-link or --camera-bind another program holds)",
        },
    )


def _serve(robot: VirtualDClaw, args: VirtualRobotConfig, stop: threading.Event) -> None:
    """Run until ``stop`` is set (a signal), ``--duration`` or a simulation error; freeze the
    camera when told."""
    scheduling = getattr(robot.emulator, "scheduling", None)
    print(f"virtual D'Claw: servo port {robot.port}  camera {robot.camera_endpoint}", flush=True)
    print(
        f"  the {args.scene} scene in real time; the bus answered by "
        f"{'its own process (' + scheduling + ')' if scheduling else 'a thread'}; "
        f"camera {robot.fps:g} fps{' (wide view)' if args.wide_view else ''}",
        flush=True,
    )
    view = robot.wide_view
    if view is not None and not view.lens.is_pinhole:
        lens = view.lens
        print(
            f"  the wide view's lens: k1 {lens.k1:g} k2 {lens.k2:g} p1 {lens.p1:g} p2 {lens.p2:g}",
            flush=True,
        )
    if robot.board_in_view is not None:
        how_long = "" if args.board_seconds is None else f" for {args.board_seconds:g} s"
        print(f"  the board {args.show_board} is held up to the camera{how_long}", flush=True)
    print(
        "  serving until Ctrl-C or SIGTERM"
        if args.duration is None
        else f"  serving for {args.duration:g} s (Ctrl-C stops sooner)",
        flush=True,
    )
    started = time.monotonic()
    while not stop.wait(0.1):
        elapsed = time.monotonic() - started
        if args.freeze_camera_after is not None and elapsed >= args.freeze_camera_after:
            robot.freeze_camera()
        if args.duration is not None and elapsed >= args.duration:
            break
        if robot.error is not None:
            break


def describe_bus(counters: Mapping[str, int], latency: Mapping[str, Any]) -> str:
    """The bus's counters and reply latency as a line a person reads."""
    counts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(counters.items()))
    if latency.get("count"):
        replies = (
            f"{latency['count']:,} replies (reply latency p50 {latency['p50_ms']:.2f} ms, "
            f"p99 {latency['p99_ms']:.2f} ms, max {latency['max_ms']:.2f} ms)"
        )
    else:
        replies = "no replies (reply latency: none measured)"
    return f"bus: {replies}" + (f"; {counts}" if counts else "")


def check_port_link(path: Path) -> None:
    """Refuse a ``--port-link`` that another program holds (a dangling link is taken over)."""
    if path.exists():
        owner = (
            "another virtual robot serves it"
            if path.is_symlink()
            else "it is a file this command did not make"
        )
        raise UsageError(
            f"--port-link {path} is in use: {owner}; stop it, or choose another --port-link"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--port-link {path}: cannot make its folder: {e}") from e


def main(argv: list[str] | None = None) -> int:
    return run_command("slac-virtual-robot", _main, argv)


def _main(argv: list[str]) -> int:
    args = parse_config(build_parser(), VirtualRobotConfig, argv)
    try:
        offsets = parse_offsets(args.plant_offsets)
    except ValueError as e:
        raise UsageError(f"argument --plant-offsets: {e}") from e
    check_port_link(args.port_link)
    try:
        wide_view = (
            WideView(
                fovy_deg=args.wide_fovy,
                lens=Lens(args.lens_k1, args.lens_k2, args.lens_p1, args.lens_p2),
            )
            if args.wide_view
            else None
        )
        if wide_view is not None and not wide_view.lens.is_pinhole:
            wide_view.lens_warp()  # refuses a lens no camera can have, before anything starts
        sheet = read_printed_sheet(args.show_board) if args.show_board is not None else None
    except (OSError, ValueError) as e:
        raise UsageError(str(e)) from e
    print(
        f"starting the virtual D'Claw ({args.scene} scene) on {args.port_link} and "
        f"{args.camera_bind} ...",
        flush=True,
    )
    robot = VirtualDClaw(
        args.port_link,
        args.camera_bind,
        scene=args.scene,
        fps=args.fps,
        camera_size=args.camera_size,
        wide_view=wide_view,
        planted_offsets=offsets,
        initial_pose=args.initial_pose,
        valve_angle=args.valve_angle,
        seed=args.seed,
    )
    if args.visual_seed is not None:
        robot.randomize_visuals(args.visual_seed)
    if sheet is not None:
        robot.show_board(*sheet, seconds=args.board_seconds, pose_s=args.board_pose_seconds)
    try:
        robot.start()
    except OSError as e:  # the camera's endpoint is taken or cannot be bound
        raise UsageError(f"argument --camera-bind: {e}") from e
    stop = threading.Event()  # what _serve waits on; a signal sets it
    with StopRequest(on_request=stop.set, second_signal_stops_at_once=False).installed():
        try:
            if args.drop_replies or args.corrupt_replies:
                robot.emulator.set_reply_faults(args.drop_replies, args.corrupt_replies)
            if args.silent_servo is not None:
                robot.emulator.set_silent(args.silent_servo)
            _serve(robot, args, stop)
        finally:
            robot.stop()  # raises what broke the simulation, if anything (exit code 1)
        print(
            f"virtual D'Claw stopped: {robot.frames_published:,} frames published; "
            + describe_bus(robot.emulator.counters, robot.emulator.reply_latency()),
            flush=True,
        )
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
