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
initial random collection is refused: the run would make no updates. Exit codes: 0 done, 1
training failed (NaN/inf loss), 2 bad usage (unknown task, invalid value, a run directory another
process is writing), 130 stopped by Ctrl-C (SIGINT), 143 stopped by SIGTERM (Slurm pre-emption,
``docker stop``, ``timeout``): a stopped run writes a checkpoint at its next safe point and prints
the command that continues it; a second signal stops at once without writing one.
"""

from __future__ import annotations

import argparse
import signal
import sys

from slac_runtime.options import ExitCode, OneLineParser, add_options, say, signals_interrupt
from slac_train.config import PRESETS, TrainConfig, preset_values, read_config_file


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="slac-train",
        description="Learn SLAC (Stochastic Latent Actor-Critic) from 64x64 pixels in simulation.",
    )
    parser.add_argument(
        "--list-tasks", action="store_true", help="print the registered tasks and exit"
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
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    list_tasks = args.pop("list_tasks")
    resume = args.pop("resume")
    preset, config_file = args.pop("preset", None), args.pop("config", None)
    if "demos" in args:
        args["demos"] = tuple(args["demos"])
    if list_tasks:
        _print_tasks()
        return ExitCode.OK

    from slac_train.envs import UnknownTaskError, get_task_spec
    from slac_train.run import TrainingFailed, TrainingInterrupted
    from slac_train.run_lock import RunInUseError
    from slac_train.trainer import Trainer

    received: list[int] = []
    if resume and preset:
        parser.error("--preset starts a new run; --resume continues one with its own settings")
    try:
        values = _config_values(args, preset, config_file)
        with signals_interrupt(received):
            if resume:
                trainer = Trainer.resume(resume, **values)
            else:
                if not values.get("task"):
                    parser.error("--task is required (or --resume RUN_DIR, or --list-tasks)")
                spec = get_task_spec(values["task"])  # the registry's one-line error
                config = TrainConfig(**values)
                reason = config.no_updates_reason(spec.action_repeat)
                if reason:
                    raise ValueError(reason)
                trainer = Trainer(config)
    except (
        UnknownTaskError,
        ValueError,
        FileExistsError,
        FileNotFoundError,
        RunInUseError,
    ) as error:
        say("slac-train", "error", error)
        return ExitCode.REFUSED
    except KeyboardInterrupt:
        say("slac-train", "interrupted", "while setting up; nothing was trained")
        return ExitCode.for_signal(received[0] if received else signal.SIGINT)

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
        say("slac-train", "stopped", name + ": " + what + (resume if stop.checkpoint else ""))
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
