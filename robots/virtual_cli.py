"""``slac-virtual-robot --robot NAME [options]``: start a robot's virtual twin (simulation behind
emulated hardware), found by name in the ``slac.robots`` registry. The robot's own options follow
(``slac-virtual-robot --robot dclaw --help``)."""

from __future__ import annotations

import sys

from slac_runtime.options import OneLineParser, UsageError, error_message, run_command
from slac_runtime.robot import DEFAULT_ROBOT, find_robot, list_robots

PROG = "slac-virtual-robot"


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    p = OneLineParser(prog=PROG, add_help=False, shared_options=False)
    p.add_argument("--robot", default=DEFAULT_ROBOT)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--version", action="store_true")
    known, rest = p.parse_known_args(argv)
    if known.version:
        from slac_runtime import __version__

        print(f"{PROG} {__version__}")
        return 0
    try:
        entry = find_robot(known.robot)
        virtual_main = entry.load_virtual()
    except (KeyError, RuntimeError) as e:
        raise UsageError(f"{error_message(e)} (robots: {', '.join(list_robots())})") from e
    if known.help:
        rest = ["--help"]
    from robots.mujoco_gl import select_gl_backend

    select_gl_backend()  # before the virtual robot imports mujoco
    return virtual_main(rest)


if __name__ == "__main__":
    sys.exit(main())
