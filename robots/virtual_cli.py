"""``slac-virtual-robot --robot NAME [options]``: start a robot's virtual twin (simulation behind
emulated hardware), found by name in the ``slac.robots`` registry. The robot's own options follow
(``slac-virtual-robot --robot dclaw --help``)."""

from __future__ import annotations

import sys

from slac_runtime.options import ExitCode, OneLineParser, error_message, say
from slac_runtime.robot import find_robot, list_robots


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = OneLineParser(prog="slac-virtual-robot", add_help=False)
    p.add_argument("--robot", default="dclaw")
    p.add_argument("-h", "--help", action="store_true")
    known, rest = p.parse_known_args(argv)
    try:
        entry = find_robot(known.robot)
        virtual_main = entry.load_virtual()
    except (KeyError, RuntimeError) as e:
        say(
            "slac-virtual-robot",
            "error",
            f"{error_message(e)} (robots: {', '.join(list_robots())})",
        )
        return ExitCode.REFUSED
    if known.help:
        rest = ["--help"]
    from robots.mujoco_gl import select_gl_backend

    select_gl_backend()  # before the virtual robot imports mujoco
    return virtual_main(rest)


if __name__ == "__main__":
    sys.exit(main())
