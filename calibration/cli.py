"""``slac-calibrate``: a robot's joint offsets, and the camera crop
that matches the simulator's view.

::

    # interactive, writes the default file
    slac-calibrate joints --robot dclaw --port /dev/ttyUSB0
    # no questions (scripts, tests)
    slac-calibrate joints --robot dclaw --port PORT --yes --out F.json
    slac-calibrate camera --robot dclaw --camera 0 --port /dev/ttyUSB0 --auto
    slac-calibrate camera --robot dclaw --camera tcp://127.0.0.1:5555 --joint-positions reset --auto
    # later: does the calibration still hold? (exit 0 yes, 1 no)
    slac-calibrate camera --robot dclaw --camera 0 --port /dev/ttyUSB0 --check
    # the lens first: print the board, then show it to the camera
    slac-calibrate camera --print-board board.png --square-mm 25
    slac-calibrate camera --robot dclaw --camera 0 --intrinsics
    # which serial port the servos are on
    slac-calibrate ports

Files go to ``--out`` or to the robot's default location (``$SLAC_CALIBRATION_DIR`` or
``~/.config/slac``: ``dclaw-joints.json``, ``dclaw-camera.json``), where ``slac-run`` finds the
joint calibration by itself. docs/calibration.md walks through both steps with a real D'Claw.

Errors are one line on stderr and exit code 2 (``--traceback`` adds the traceback); Ctrl-C or
SIGTERM exits with 130 or 143, writes nothing and leaves the servos' torque off.
"""

from __future__ import annotations

import signal
import sys

from calibration import PROG
from calibration.camera_config import CameraConfig
from calibration.joints_cli import JointsConfig, run_joints
from calibration.ports import PortsConfig, run_ports
from slac_runtime.options import (
    ExitCode,
    OneLineParser,
    UsageError,
    add_options,
    config_from_args,
    error_message,
    run_command,
    signals_interrupt,
)
from slac_runtime.robot import RobotRefused, find_robot

# ---- command line -------------------------------------------------------------------------------


EXIT_CODES = {
    0: "done (with camera --check: the calibrated camera matches the simulator's view)",
    1: "camera --check: the calibrated camera does not match the simulator's view",
    2: "refused or failed (options, files, robot set-up, servo bus); nothing was written",
    130: "interrupted by Ctrl-C (torque off, nothing written)",
    143: "stopped by SIGTERM (the same)",
}

COMMANDS: dict[str, tuple[type, str]] = {
    "joints": (JointsConfig, "servo offsets at the zero pose, and a range check"),
    "camera": (
        CameraConfig,
        "lens, and crop/rotation that makes the camera match the simulator",
    ),
    "ports": (PortsConfig, "the serial ports and the Dynamixel servos answering on each"),
}


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Calibrate a robot's joints and its camera view.",
        exit_codes=EXIT_CODES,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{joints,camera,ports}")
    for name, (config_class, summary) in COMMANDS.items():
        command = sub.add_parser(
            name,
            help=summary,
            description=" ".join(config_class.__doc__.split("``: ", 1)[1].split()),
            prog=f"{PROG} {name}",
            exit_codes=EXIT_CODES,
        )
        add_options(command, config_class)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a one-line usage error already printed
        return int(e.code or 0)
    received: list[int] = []
    # (SIGTERM from docker stop, systemd or timeout as Ctrl-C; Ctrl-C itself raises it already)
    with signals_interrupt(received, (signal.SIGTERM,)):
        try:
            config = config_from_args(COMMANDS[args.command][0], args)
            find_robot(config.robot)
            if isinstance(config, JointsConfig):
                return run_joints(config)
            if isinstance(config, PortsConfig):
                return run_ports(config)
            from robots.mujoco_gl import select_gl_backend

            select_gl_backend()  # before the simulator imports mujoco
            from calibration.camera_cli import run_camera

            return run_camera(config)
        except KeyboardInterrupt:
            name = signal.Signals(received[0]).name if received else "Ctrl-C"
            aborted = f"\n{PROG}: {name}: aborted (torque is off); nothing was written"
            print(aborted, file=sys.stderr)
            return ExitCode.for_signal(received[0] if received else signal.SIGINT)
        except RobotRefused as e:  # the robot or its port refused before torque went on
            raise UsageError(f"{error_message(e)} (nothing moved)") from e
        except (ValueError, KeyError, OSError, RuntimeError) as e:
            raise UsageError(error_message(e)) from e


if __name__ == "__main__":
    sys.exit(main())
