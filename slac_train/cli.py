"""``slac-train``: learn SLAC from pixels in simulation.

    slac-train --task cheetah-run                 # the paper's settings
    slac-train --task cartpole-swingup --preset cpu-small   # a CPU run that learns in hours
    slac-train --config my-run.toml --seed 2      # TrainConfig fields from a file; options win
    slac-train --task dclaw-turn --seed 3 --device cuda
    slac-train --list-tasks
    slac-train --resume runs/cheetah-run-20260101-120000-s0 [--total-env-steps 1000000]
    slac-train --preset dclaw-turn-demos --demos turn-demos.npz \
        --init-policy robots/dclaw/policies/turn.onnx     # D'Claw Turn from demonstrations

Every field of :class:`slac_train.config.TrainConfig` is an option (``--batch-size-model 16``,
``--no-eval-video``, ...). Values come from, lowest first: TrainConfig's defaults (the paper's),
``--preset``, ``--config FILE`` (JSON or TOML), the options typed. A budget that ends inside the
initial random collection is refused: the run would make no updates. ``--print-config`` prints the
resolved configuration as JSON and exits. The exit codes are ``EXIT_CODES`` (the end of
``--help``); a stopped run writes a checkpoint at its next safe point and prints the command that
continues it; a second signal stops at once without writing one.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from slac_runtime.options import (
    ExitCode,
    OneLineParser,
    UsageError,
    add_options,
    error_message,
    print_json,
    run_command,
    say,
    signals_interrupt,
)
from slac_train.config import PRESETS, TrainConfig, preset_values, read_config_file

PROG = "slac-train"
EXIT_CODES = {
    0: "done",
    1: "training failed (NaN/inf loss)",
    2: "refused (an unknown task, an invalid value, a missing or unreadable file, a run directory "
    "another process is writing)",
    130: "stopped by Ctrl-C (SIGINT); 143 by SIGTERM (Slurm pre-emption, docker stop, timeout): "
    "a checkpoint is written first",
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Learn SLAC (Stochastic Latent Actor-Critic) from 64x64 pixels in simulation.",
        exit_codes=EXIT_CODES,
    )
    parser.add_argument(
        "--list-tasks", action="store_true", help="print the registered tasks and exit"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the run's resolved configuration as JSON and exit (nothing is trained)",
    )
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint"
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=argparse.SUPPRESS,
        help="start from a named configuration: paper (the defaults), quickstart (a first run "
        "of minutes on a CPU: the pipeline, not a skilled policy), cpu-small (narrower networks "
        "and short pre-training, for a CPU) or dclaw-turn-demos (D'Claw Turn from --demos on a "
        "CPU)",
    )
    parser.add_argument(
        "--demos",
        nargs="+",
        metavar="NPZ",
        default=argparse.SUPPRESS,
        help="demonstration episodes with rewards (slac-imitate --save-dataset), in a buffer of "
        "their own; --demo-ratio of every batch comes from them",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="a JSON or TOML file of TrainConfig fields (options on the command line override it)",
    )
    # Only options the user typed appear in the namespace (so --resume can tell).
    add_options(
        parser, TrainConfig, title="training configuration (TrainConfig)", suppress_defaults=True
    )
    return parser


def _print_tasks() -> None:
    from slac_train.envs import describe_tasks

    rows = describe_tasks()
    header = (
        "task",
        "suite",
        "action_repeat",
        "episode_env_steps",
        "episode_agent_steps",
        "description",
    )
    table = [header] + [tuple(str(r[k]) for k in header) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


def _config_values(args: dict, preset: str | None, config_file: str | None) -> dict:
    """The run's TrainConfig fields: the preset's, then the file's, then the options typed."""
    values = preset_values(preset) if preset else {}
    if config_file:
        values.update(read_config_file(config_file))
    values.update(args)
    return values


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, _main, argv)


def resolved_config(values: dict, resume: str | None) -> TrainConfig:
    """The configuration the run would use (``--print-config``): a new run's, with the task's
    defaults filled in, or a resumed run's saved one with the options typed. Refuses what
    ``slac-train`` would refuse (an unknown task, a budget that ends before the first update)."""
    from slac_train.envs import get_task_spec

    if resume:
        from slac_train.trainer import RESUMABLE_OVERRIDES

        saved = Path(resume) / "config.json"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume {resume}: no run directory with a config.json")
        config = TrainConfig.load_json(saved)
        refused = sorted(
            k for k, v in values.items() if getattr(config, k) != v and k not in RESUMABLE_OVERRIDES
        )
        if refused:
            raise ValueError(
                f"cannot change {', '.join(refused)} when resuming {resume}: these define the "
                "run; start a new run instead"
            )
        return config.replace(**values)
    config = TrainConfig(**values)
    spec = get_task_spec(config.task)  # the registry's one-line error
    reason = config.no_updates_reason(spec.action_repeat)
    if reason:
        raise ValueError(reason)
    return config.resolved(spec.action_repeat)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    list_tasks = args.pop("list_tasks")
    resume = args.pop("resume")
    print_config = args.pop("print_config", False)
    args.pop("traceback", None)
    preset, config_file = args.pop("preset", None), args.pop("config", None)
    if "demos" in args:
        args["demos"] = tuple(args["demos"])
    if list_tasks:
        _print_tasks()
        return ExitCode.OK

    from slac_train.envs import UnknownTaskError
    from slac_train.run_lock import RunInUseError

    received: list[int] = []
    if resume and preset:
        parser.error("--preset starts a new run; --resume continues one with its own settings")
    if resume and not Path(resume).is_dir():
        raise UsageError(f"--resume {resume}: no run directory there")
    try:
        values = _config_values(args, preset, config_file)
        if not resume and not values.get("task"):
            parser.error("--task is required (or --resume RUN_DIR, or --list-tasks)")
        if print_config:
            print_json(resolved_config(values, resume).to_dict())
            return ExitCode.OK
        if not resume:
            resolved_config(values, None)  # an unknown task, a budget with no updates: at once
        from slac_train.trainer import Trainer

        with signals_interrupt(received):
            if resume:
                trainer = Trainer.resume(resume, **values)
            else:
                trainer = Trainer(TrainConfig(**values))
    except (UnknownTaskError, ValueError, OSError, RunInUseError) as error:
        raise UsageError(error_message(error)) from error
    except KeyboardInterrupt:
        say(PROG, "interrupted", "while setting up; nothing was trained")
        return ExitCode.for_signal(received[0] if received else signal.SIGINT)

    from slac_train.trainer import TrainingFailed, TrainingInterrupted

    try:
        with trainer:
            counters = trainer.train()
    except TrainingInterrupted as stop:
        name = signal.Signals(stop.signum).name
        if stop.written:
            what = f"checkpoint written to {stop.checkpoint}"
        elif stop.checkpoint is not None:
            what = f"stopped at once, nothing written; the latest checkpoint is {stop.checkpoint}"
        else:
            what = "stopped at once before the first checkpoint; nothing to resume"
        resume = f"; continue with: slac-train --resume {trainer.run_dir}"
        say(PROG, "stopped", name + ": " + what + (resume if stop.checkpoint else ""))
        return stop.exit_code
    except TrainingFailed as failure:
        print(f"slac-train: {failure}", file=sys.stderr)
        return ExitCode.FAULT
    last = trainer.eval_history[-1] if trainer.eval_history else None
    print(
        f"done: {counters['env_step']:,} env steps ({counters['agent_step']:,} agent steps) "
        f"in {trainer.run_dir}"
        + (f"; last evaluation return {last['return_mean']:.1f}" if last else "")
    )
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
