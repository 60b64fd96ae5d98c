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
import dataclasses
import sys
import types
import typing
from typing import Any

from slac_train.config import TrainConfig


def _field_type(annotation: Any) -> tuple[type, bool]:
    """``(base type, optional)`` of a config field's annotation (``int | None`` -> ``(int, True)``)."""
    hints = annotation
    origin = typing.get_origin(hints)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hints) if a is not type(None)]
        return args[0], True
    return hints, False


def _optional(base: type):
    def parse(text: str):
        return None if text.lower() in ("none", "default", "") else base(text)

    parse.__name__ = base.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slac-train",
        description="Learn SLAC (Stochastic Latent Actor-Critic) from 64x64 pixels in simulation.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--list-tasks", action="store_true", help="print the registered tasks and exit")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training configuration (TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        base, optional = _field_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        # SUPPRESS: only options the user typed appear in the namespace (so --resume can tell).
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=f"{help_text} (default: {f.default})")
        else:
            parse = _optional(base) if optional else base
            group.add_argument(flag, type=parse, default=argparse.SUPPRESS, metavar=base.__name__.upper(),
                               help=f"{help_text} (default: {f.default})")
    return parser


def _print_tasks() -> None:
    from slac_train.envs import describe_tasks

    rows = describe_tasks()
    header = ("task", "suite", "action_repeat", "episode_env_steps", "episode_agent_steps", "description")
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
        return 0

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
    except UnknownTaskError as error:
        print(f"slac-train: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"slac-train: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slac-train: interrupted while setting up; nothing was trained", file=sys.stderr)
        return 130

    try:
        with trainer:
            counters = trainer.train()
    except TrainingInterrupted as stop:
        print(f"slac-train: interrupted; checkpoint written to {stop.checkpoint}\n"
              f"continue with: slac-train --resume {trainer.run_dir}", file=sys.stderr)
        return 130
    except TrainingFailed as failure:
        print(f"slac-train: {failure}", file=sys.stderr)
        return 1
    last = trainer.eval_history[-1] if trainer.eval_history else None
    print(f"done: {counters['env_step']:,} env steps ({counters['agent_step']:,} agent steps) in {trainer.run_dir}"
          + (f"; last evaluation return {last['return_mean']:.1f}" if last else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
