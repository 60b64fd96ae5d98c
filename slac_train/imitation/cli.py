"""``slac-imitate``: distil a state-based teacher into the encoder + actor the robot runs.

    slac-imitate --task dclaw-turn --teacher dclaw-turn-table --run-dir runs/turn-bc
    slac-export runs/turn-bc --out turn.onnx
    slac-imitate --list-teachers

Every field of :class:`slac_train.imitation.config.ImitationConfig` is an option. The defaults are a
short run (300 teacher episodes, 3,000 updates of batch 32). The shipped
``robots/dclaw/policies/turn.onnx`` comes from 4,000 episodes of the follow-tables teacher, recorded
in two halves (``--seed 0`` and ``--seed 1`` runs of ``--episodes 2000 --updates 0 --save-dataset
ft-2000-sN.npz``), then trained on both::

    slac-imitate --teacher dclaw-turn-follow-tables --dataset ft-2000-s0.npz ft-2000-s1.npz \\
        --updates 40000 --lr-schedule cosine --ema 0.999 --val-episodes 50 --threads 2 \\
        --run-dir runs/turn-bc-ft-4000-cos

The teacher reads the simulator's state (``--list-teachers``; robots register theirs in the
``slac.teachers`` entry point group) and drives the task while it is recorded from the task camera;
the pixel policy -- the very ``Encoder`` + ``TanhGaussianActor`` of a SLAC agent, with the same
8-frame / 7-action history -- is trained to output the teacher's action.

* Covariate shift is handled by noise injection (DART): the teacher's actions are executed with
  Gaussian noise of several scales (``--noise``) while the label stays the clean action, so the data
  holds the states a slightly-off student visits and what to do there.
* And, with ``--dagger-rounds``, by DAgger in its take-over form: each DAgger episode lets the
  student drive, then hands the episode to the teacher (``take_over``: a fresh plan from that state)
  for the rest of it; the student's own steps stay in the history windows but carry no label. The
  teacher takes over where the student rests short of the target (``--dagger-switch rest``: its
  near misses, the one state in which a fresh plan agrees with what the teacher itself would do) or
  at a random step (``random``, which lands mid-stroke).
* Randomisation: every recorded episode draws its own visuals, image noise, frame age and dynamics,
  through the task's own switches.
* ``--save-dataset`` writes the recorded episodes (also the ones recorded before a stop);
  ``--dataset`` trains on them again without recording.

``--print-config`` prints the run's configuration as JSON and exits. The exit codes are
``EXIT_CODES`` (the end of ``--help``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from slac_runtime.options import (
    ExitCode,
    OneLineParser,
    UsageError,
    add_options,
    config_from_args,
    error_message,
    finite_float,
    flag_of,
    print_json,
    run_command,
    say,
)
from slac_train.imitation.config import MULTI_VALUE_FIELDS, ImitationConfig

PROG = "slac-imitate"
EXIT_CODES = {
    0: "done",
    1: "training failed (non-finite loss)",
    2: "refused (an unknown task or teacher, a teacher that cannot drive the task, a missing or "
    "unreadable dataset, an invalid value)",
    130: "interrupted by Ctrl-C; 143 by SIGTERM (a checkpoint, or the recorded episodes with "
    "--save-dataset, was written)",
}


def _add_multi_value_options(parser: argparse.ArgumentParser) -> None:
    """The fields given as several values (``--noise 0 0.1``), with their help and default."""
    hints = typing.get_type_hints(ImitationConfig)
    for f in dataclasses.fields(ImitationConfig):
        if f.name not in MULTI_VALUE_FIELDS:
            continue
        nargs, metavar = MULTI_VALUE_FIELDS[f.name]
        kind = finite_float if "float" in str(hints[f.name]) else str
        default = "" if f.default is None else f" (default: {' '.join(str(v) for v in f.default)})"
        parser.add_argument(
            flag_of(f),
            dest=f.name,
            type=kind,
            nargs=nargs,
            metavar=metavar,
            default=f.default,
            help=f.metadata["help"] + default,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Distil a state-based teacher into the encoder + actor the robot runs.",
        exit_codes=EXIT_CODES,
    )
    parser.add_argument(
        "--list-teachers", action="store_true", help="print the registered teachers and exit"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the run's configuration as JSON and exit (nothing is recorded or trained)",
    )
    add_options(parser, ImitationConfig)
    _add_multi_value_options(parser)
    return parser


def _print_teachers() -> None:
    from slac_train.imitation.teachers import registered_teachers

    teachers = sorted(registered_teachers().values(), key=lambda t: t.name)
    width = max((len(t.name) for t in teachers), default=0)
    for t in teachers:
        print(f"{t.name.ljust(width)}  {', '.join(t.tasks)}: {t.description}")


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_teachers:
        _print_teachers()
        return int(ExitCode.OK)
    try:
        config = config_from_args(ImitationConfig, args)
    except ValueError as error:
        parser.error(str(error))
    if getattr(args, "print_config", False):
        print_json(dataclasses.asdict(config))
        return int(ExitCode.OK)
    from slac_train.imitation.dataset import check_dataset_file

    for path in config.dataset or ():  # before a run directory is made for them
        try:
            check_dataset_file(path)
        except (OSError, ValueError) as error:
            raise UsageError(f"--dataset {error}") from error
    return run(config)


def run(config: ImitationConfig) -> int:
    """Run ``config``; the exit code (as :func:`main` documents it)."""
    from slac_train.envs import UnknownTaskError
    from slac_train.imitation.teachers import UnknownTeacherError
    from slac_train.imitation.training import Imitation, RecordingInterrupted
    from slac_train.run import TrainingFailed, TrainingInterrupted
    from slac_train.run_lock import RunInUseError

    try:
        imitation = Imitation(config)
    except (
        UnknownTaskError,
        UnknownTeacherError,
        UsageError,
        ValueError,
        OSError,
        RunInUseError,
    ) as error:
        say(PROG, "error", error_message(error))
        return int(ExitCode.REFUSED)
    try:
        with imitation:
            imitation.run()
    except (UsageError, FileNotFoundError, IsADirectoryError) as error:
        say(PROG, "error", error_message(error))
        return int(ExitCode.REFUSED)
    except RecordingInterrupted as stop:
        print(f"{PROG}: {stop}", file=sys.stderr)
        return imitation.stop.exit_code
    except TrainingInterrupted as stop:
        print(
            f"{PROG}: interrupted after {imitation.updates} updates; "
            f"checkpoint written to {stop.checkpoint}\n"
            f"export it with: slac-export {imitation.run_dir} --out policy.onnx",
            file=sys.stderr,
        )
        return stop.exit_code
    except TrainingFailed as failure:
        print(f"{PROG}: {failure}", file=sys.stderr)
        return int(ExitCode.FAULT)
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted during the final evaluation; "
            f"the last checkpoint is in {imitation.run_dir}",
            file=sys.stderr,
        )
        return imitation.stop.exit_code
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
