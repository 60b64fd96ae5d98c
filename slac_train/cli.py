"""``slac-train``: learn SLAC from pixels in simulation.

    slac-train --task cheetah-run                 # the paper's settings
    slac-train --task dclaw-turn --seed 3 --device cuda
    slac-train --list-tasks
    slac-train --resume runs/cheetah-run-20260101-120000-s0 [--total-env-steps 1000000]

Every field of :class:`slac_train.config.TrainConfig` is an option (``--batch-size-model 16``,
``--no-eval-video``, ...). Exit codes: 0 done, 1 training failed (NaN/inf loss), 2 bad usage
(unknown task, invalid value), 130 interrupted by Ctrl-C (a checkpoint was written).
"""

from __future__ import annotations

import argparse
import signal
import sys

from slac_runtime.options import ExitCode, OneLineParser, add_options, say
from slac_train.config import TrainConfig


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    list_tasks = args.pop("list_tasks")
    resume = args.pop("resume")
    if list_tasks:
        _print_tasks()
        return ExitCode.OK

    from slac_train.envs import UnknownTaskError, get_task_spec
    from slac_train.trainer import Trainer, TrainingFailed, TrainingInterrupted

    try:
        if resume:
            trainer = Trainer.resume(resume, **args)
        else:
            if not args.get("task"):
                parser.error("--task is required (or --resume RUN_DIR, or --list-tasks)")
            get_task_spec(args["task"])  # the registry's one-line error for an unknown task
            trainer = Trainer(TrainConfig(**args))
    except (UnknownTaskError, ValueError, FileExistsError, FileNotFoundError) as error:
        say("slac-train", "error", error)
        return ExitCode.REFUSED
    except KeyboardInterrupt:
        say("slac-train", "interrupted", "while setting up; nothing was trained")
        return ExitCode.for_signal(signal.SIGINT)

    try:
        with trainer:
            counters = trainer.train()
    except TrainingInterrupted as stop:
        print(
            f"slac-train: interrupted; checkpoint written to {stop.checkpoint}\n"
            f"continue with: slac-train --resume {trainer.run_dir}",
            file=sys.stderr,
        )
        return ExitCode.for_signal(signal.SIGINT)
    except TrainingFailed as failure:
        print(f"slac-train: {failure}", file=sys.stderr)
        return ExitCode.FAULT
    last = trainer.eval_history[-1] if trainer.eval_history else None
    print(
        f"done: {counters['env_step']:,} env steps ({counters['agent_step']:,} agent steps) in {trainer.run_dir}"
        + (f"; last evaluation return {last['return_mean']:.1f}" if last else "")
    )
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
