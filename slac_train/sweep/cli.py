"""``slac-sweep``: a grid of ``slac-train`` runs (tasks x seeds x config variants) on Ray.

    slac-sweep --suite paper-dmc --gpus-per-trial 0.25 --cpus-per-trial 2 --sweep-dir sweeps/paper
    slac-sweep --tasks walker-stand dclaw-pose-fixed --seeds 0 1 --preset cpu-small \
        --total-env-steps 50000 --eval-every-env-steps 5000 --sweep-dir sweeps/cpu
    slac-sweep --tasks walker-stand --vary lr-model=1e-3,3e-4 --sweep-dir sweeps/lr
    slac-sweep --suite paper-dmc --address ray://head:10001 --sweep-dir /shared/sweeps/paper
    slac-sweep --sweep-dir sweeps/cpu --report-only

Every trial's TrainConfig is set as ``slac-train`` sets it, by the same options
(``--total-env-steps 50000``, ``--lr-model 1e-3``, ``--no-eval-video``; ``--env-steps`` and
``--set KEY=VALUE`` are older spellings); ``--vary`` names the fields the grid varies. The whole
grid is checked (tasks, values, budgets) before Ray starts; ``--print-config`` prints it as JSON
and exits.

Every trial is one Ray task with ``--cpus-per-trial`` CPUs and ``--gpus-per-trial`` GPUs
(fractions share a GPU); Ray runs as many at once as the resources allow. Without ``--address`` a
local Ray instance is started (nothing to set up); with it the sweep joins a cluster, whose nodes
must all see the sweep directory (a shared file system) and have this package installed. Re-running
the same command skips finished trials and resumes interrupted ones from their checkpoints; a trial
whose worker is lost is retried by Ray from its checkpoint. The sweep ends with ``results.md``,
``results.json`` and ``curves/<task>.png`` in the sweep directory. The exit codes are
``EXIT_CODES`` (the end of ``--help``; on Ctrl-C or SIGTERM every running trial first writes a
checkpoint: re-run to continue).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

from slac_runtime.options import (
    ExitCode,
    OneLineParser,
    UsageError,
    add_options,
    int_at_least,
    integer,
    non_negative_float,
    print_json,
    run_command,
)
from slac_train.config import PRESETS, TrainConfig, field_value, preset_values
from slac_train.sweep.grid import SUITES, Trial, build_trials, parse_assignments, parse_value
from slac_train.sweep.report import write_report
from slac_train.sweep.trial import is_done

PROG = "slac-sweep"
EXIT_CODES = {
    0: "every trial finished",
    1: "a trial failed",
    2: "refused (an unknown task or field, a bad value or budget, a sweep directory that holds "
    "another sweep); nothing was started",
    130: "stopped by Ctrl-C; 143 by SIGTERM (every running trial writes a checkpoint first)",
}
# TrainConfig fields the sweep sets itself for every trial: not options of the sweep.
PER_TRIAL_FIELDS = ("task", "seed", "run_dir", "runs_root", "device", "num_threads", "progress")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description="Run a grid of slac-train runs (tasks x seeds x config variants) on Ray, "
        "then write its results table beside the published SLAC returns.",
        exit_codes=EXIT_CODES,
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the sweep's grid and every trial's configuration as JSON and exit (nothing "
        "is written or started)",
    )
    _add_grid_options(p.add_argument_group("the grid"))
    _add_ray_options(p.add_argument_group("where and how"))
    # Only the fields typed appear in the namespace: they override the preset's and the suite's.
    add_options(
        p,
        TrainConfig,
        title="every trial's training configuration (slac-train's options)",
        suppress_defaults=True,
        exclude=PER_TRIAL_FIELDS,
    )
    return p


def _add_grid_options(grid) -> None:
    grid.add_argument(
        "--suite",
        choices=sorted(SUITES),
        help="a named grid (its values can be changed by the options below)",
    )
    grid.add_argument("--tasks", nargs="+", help="tasks (slac-train --list-tasks)")
    grid.add_argument(
        "--seeds", nargs="+", type=int_at_least(0), metavar="SEED", help="seeds (default: 0)"
    )
    grid.add_argument(
        "--preset", choices=sorted(PRESETS), help="slac-train preset (default: paper)"
    )
    grid.add_argument(
        "--points",
        nargs="+",
        type=int_at_least(1),
        metavar="ENV_STEPS",
        help="environment steps the results table reports (default: the budget)",
    )
    grid.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="a TrainConfig field the grid varies, e.g. lr-model=1e-3,3e-4 (repeatable: every "
        "combination)",
    )
    grid.add_argument(  # the older spelling of the TrainConfig options below
        "--set", dest="sets", action="append", default=[], help=argparse.SUPPRESS
    )
    grid.add_argument(  # the older spelling of --total-env-steps
        "--env-steps",
        dest="total_env_steps",
        type=integer,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


def _add_ray_options(where) -> None:
    where.add_argument(
        "--sweep-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder of the sweep: sweep.json, runs/, logs/, results, curves",
    )
    where.add_argument("--address", help="join this Ray cluster (default: a local Ray instance)")
    where.add_argument(
        "--num-cpus", type=non_negative_float, metavar="N", help="CPUs of the local Ray instance"
    )
    where.add_argument(
        "--num-gpus", type=non_negative_float, metavar="N", help="GPUs of the local Ray instance"
    )
    where.add_argument(
        "--cpus-per-trial",
        type=non_negative_float,
        default=1.0,
        metavar="N",
        help="CPUs per trial (its torch threads) (default: 1)",
    )
    where.add_argument(
        "--gpus-per-trial",
        type=non_negative_float,
        default=0.0,
        metavar="N",
        help="GPUs per trial; a fraction (0.25) puts several trials on one GPU (default: 0)",
    )
    where.add_argument(
        "--max-retries",
        type=int_at_least(0),
        default=3,
        metavar="N",
        help="times Ray retries a trial whose worker or slac-train was lost (default: 3)",
    )
    where.add_argument(
        "--report-only",
        action="store_true",
        help="write the results from the run directories as they stand",
    )


def typed_values(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig values given on the command line: ``--set`` ones, then options."""
    values = {}
    for key, text in parse_assignments(args.sets, "--set").items():
        values[key] = _checked(key, parse_value(text), f"--set {key}")
    fields = set(TrainConfig.__dataclass_fields__) - set(PER_TRIAL_FIELDS)
    values.update({k: v for k, v in vars(args).items() if k in fields})
    return values


def _checked(key: str, value: Any, where: str) -> Any:
    """``value`` as TrainConfig field ``key`` takes it; ValueError naming ``where`` it came from."""
    if key in PER_TRIAL_FIELDS:
        raise ValueError(f"{where}: the sweep sets {key} for every trial itself")
    try:
        return field_value(key, value)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep's definition from the suite and the options (options win); ValueError if bad."""
    suite = SUITES[args.suite] if args.suite else None
    tasks = args.tasks or (list(suite.tasks) if suite else None)
    if not tasks:
        raise ValueError("give --suite or --tasks")
    preset = args.preset or (suite.preset if suite else "paper")
    values = {**preset_values(preset), **(suite.values if suite else {})}
    values["total_env_steps"] = suite.env_steps if suite else TrainConfig.total_env_steps
    values.update(typed_values(args))
    env_steps = values["total_env_steps"]
    points = args.points or [p for p in (suite.points if suite else ()) if p <= env_steps]
    vary = parse_assignments(args.vary, "--vary")
    for key, choices in vary.items():
        for text in choices.split(","):
            _checked(key, parse_value(text), f"--vary {key}")
    return {
        "suite": args.suite,
        "tasks": tasks,
        "seeds": args.seeds or (list(suite.seeds) if suite else [0]),
        "preset": preset,
        "values": values,
        "vary": vary,
        "points": points or [env_steps],
    }


def grid_options_given(args: argparse.Namespace) -> bool:
    """True when the command line sets anything of the grid (the suite, tasks, seeds, values)."""
    return bool(
        args.suite
        or args.tasks
        or args.seeds
        or args.preset
        or args.points
        or args.vary
        or typed_values(args)
    )


def load_definition(sweep_dir: Path, definition: dict[str, Any], given: bool) -> dict:
    """The sweep's definition: a re-run with no grid options reads sweep.json back, one that
    gives a different grid is refused."""
    path = sweep_dir / "sweep.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if not given:
            return saved
        stable = ("tasks", "seeds", "preset", "vary")
        if any(saved[k] != definition[k] for k in stable) or _fixed(saved) != _fixed(definition):
            raise ValueError(
                f"{sweep_dir} holds a different sweep (sweep.json); use another "
                "--sweep-dir or the same options"
            )
    return definition


def _fixed(definition: dict[str, Any]) -> dict[str, Any]:
    """Values a resumed run cannot change (everything but budgets, schedules, system)."""
    from slac_train.trainer import RESUMABLE_OVERRIDES

    return {k: v for k, v in definition["values"].items() if k not in RESUMABLE_OVERRIDES}


def write_trial_configs(sweep_dir: Path, trials: list[Trial]) -> None:
    """Each trial's TrainConfig values as ``trials/<name>.json``; ValueError for a bad task,
    value or budget, before anything starts."""
    check_trials(trials)
    (sweep_dir / "trials").mkdir(parents=True, exist_ok=True)
    for trial in trials:
        path = sweep_dir / "trials" / f"{trial.name}.json"
        path.write_text(json.dumps(trial.values, indent=1, sort_keys=True) + "\n")


def check_trials(trials: list[Trial]) -> dict[str, TrainConfig]:
    """Every trial's resolved TrainConfig, by name; ValueError for an unknown task, a value
    ``slac-train`` refuses, or a budget that ends before the first update -- before Ray starts."""
    from slac_train.envs import UnknownTaskError, get_task_spec

    configs = {}
    for trial in trials:
        try:
            spec = get_task_spec(trial.task)
        except UnknownTaskError as error:
            raise ValueError(str(error)) from None
        try:
            config = TrainConfig(**trial.values)
            reason = config.no_updates_reason(spec.action_repeat)
            if reason:
                raise ValueError(reason)
        except ValueError as error:
            raise ValueError(f"trial {trial.name}: {error}") from None
        configs[trial.name] = config.resolved(spec.action_repeat)
    return configs


# A Ray worker that exits (its driver died, or Ray shuts down) SIGKILLs its child processes by
# default. Without that, a trial's slac-train gets SIGTERM when its worker dies (PR_SET_PDEATHSIG,
# trial.py) and stops at its next safe point with a checkpoint -- when Ray does not kill it first,
# which it still may when the whole instance goes down. Read when the local instance starts.
# Ray settings for the instance the sweep starts, unless the environment sets them: a worker that
# exits leaves its slac-train to write its checkpoint, and workers run at the sweep's own priority
# (Ray's default worker niceness of 15 leaves a trial a few percent of a core beside other work).
RAY_ENVIRONMENT = {"RAY_kill_child_processes_on_worker_exit": "0", "RAY_worker_niceness": "0"}


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_colours(record: logging.LogRecord) -> bool:
    """A logging filter: the record's message without ANSI colour codes (Ray colours the
    dashboard's address whether or not it writes to a terminal)."""
    record.msg = ANSI_ESCAPE.sub("", record.getMessage())
    record.args = ()
    return True


def start_ray(args: argparse.Namespace):
    import ray

    for key, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if not sys.stderr.isatty():  # a log file or a pipe: plain text
        for handler in logging.getLogger("ray").handlers:
            handler.addFilter(strip_colours)
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=args.num_cpus,
            num_gpus=args.num_gpus,
            include_dashboard=False,
            log_to_driver=False,
        )
    return ray


def run_trials(ray, args: argparse.Namespace, sweep_dir: Path, trials: list[Trial]) -> int:
    """Submit every trial as a Ray task and wait; the sweep's exit code. Ctrl-C or SIGTERM
    cancels the running trials (each slac-train gets SIGTERM and writes a checkpoint) and waits for
    them to end."""
    from slac_runtime.stop_request import StopRequest
    from slac_train.sweep.trial import TrialLost, run_trial

    task = ray.remote(run_trial).options(
        num_cpus=args.cpus_per_trial,
        num_gpus=args.gpus_per_trial,
        max_retries=args.max_retries,
        retry_exceptions=[TrialLost],
    )
    threads = max(1, math.floor(args.cpus_per_trial))
    device = "cuda" if args.gpus_per_trial > 0 else "cpu"
    pending = {}
    for trial in trials:
        if is_done(trial.values):
            print(f"{PROG}: {trial.name}: finished earlier, skipped", flush=True)
            continue
        config_file = str((sweep_dir / "trials" / f"{trial.name}.json").resolve())
        log_file = str((sweep_dir / "logs" / f"{trial.name}.log").resolve())
        ref = task.remote(trial.values, config_file, log_file, threads, device)
        pending[ref] = trial
    print(
        f"{PROG}: {len(pending)} trials to run, {len(trials) - len(pending)} finished", flush=True
    )
    code = 0
    stop = StopRequest(
        f"{PROG}: {{signal}}: stopping; every running trial writes a checkpoint "
        "(send it again to stop at once)"
    )
    with stop.installed():
        try:
            code = _collect(ray, pending, stop)
        except KeyboardInterrupt:  # a second signal: the trials' slac-train still checkpoint
            print(f"{PROG}: stopping at once", file=sys.stderr)  # (they die with their worker)
            return stop.exit_code
        if stop.requested:
            for ref in pending:
                ray.cancel(ref)
            _wait_for_stops(ray, pending)
            return stop.exit_code
    return code


def _collect(ray, pending: dict, stop) -> int:
    """Wait for the trials, reporting each as it ends, until all end or a stop is requested."""
    from slac_train.sweep.trial import TrialFailed, TrialLost

    code = 0
    while pending and not stop.requested:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        if not done:
            continue
        trial = pending.pop(done[0])
        try:
            record = ray.get(done[0])
        except (TrialFailed, TrialLost, ray.exceptions.RayError) as error:
            print(f"{PROG}: {trial.name}: failed: {error}", file=sys.stderr, flush=True)
            code = 1
            continue
        how = "stopped (re-run to continue)" if record.get("stopped") else "finished"
        print(
            f"{PROG}: {trial.name}: {how} in {record['wall_s']} s"
            + (" (resumed)" if record.get("resumed") else ""),
            flush=True,
        )
    return code


def _signal_local_trials(trials) -> None:
    """SIGTERM the slac-train of each running trial on this machine, as its worker does when Ray
    cancels the task: a cancel does not always reach a task that is running. The pid comes from
    the trial's attempt record; the process must still run that attempt's exact command."""
    from slac_train.sweep.trial import ATTEMPT_FILE, stop_attempt

    host = socket.gethostname()
    for trial in trials:
        run_dir = Path(trial.values["run_dir"])
        try:
            attempt = json.loads((run_dir / ATTEMPT_FILE).read_text())
            pid, command = int(attempt["pid"]), list(attempt["command"])
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if attempt.get("host") == host and argv == command and stop_attempt(run_dir, pid):
            print(f"{PROG}: {trial.name}: SIGTERM sent to its slac-train (pid {pid})", flush=True)


def _wait_for_stops(ray, pending: dict, timeout_s: float = 300.0) -> None:
    """Wait for cancelled trials to checkpoint and end (a second Ctrl-C stops waiting). Each
    second, a local trial's slac-train that no SIGTERM has reached yet is sent one."""
    deadline = time.monotonic() + timeout_s
    refs = list(pending)
    try:
        while refs and time.monotonic() < deadline:
            _signal_local_trials(pending[ref] for ref in refs)
            _, refs = ray.wait(refs, num_returns=len(refs), timeout=1.0)
    except KeyboardInterrupt:
        print(f"{PROG}: not waiting for the trials' checkpoints", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sweep_dir = args.sweep_dir.resolve()
    print_config = getattr(args, "print_config", False)
    try:
        given = bool(args.suite or args.tasks)
        if given:
            definition = resolve(args)
        elif grid_options_given(args):
            raise ValueError(
                "the grid's options need --suite or --tasks (a re-run with neither repeats the "
                "sweep in --sweep-dir as sweep.json describes it)"
            )
        elif (sweep_dir / "sweep.json").is_file():
            definition = {}
        else:
            raise ValueError("give --suite or --tasks (or the --sweep-dir of an earlier sweep)")
        definition = load_definition(sweep_dir, definition, given)
        trials = build_trials(
            definition["tasks"],
            definition["seeds"],
            definition["values"],
            definition["vary"],
            sweep_dir,
        )
        if print_config:
            configs = check_trials(trials)
            print_json(
                {
                    "sweep": definition,
                    "trials": {name: c.to_dict() for name, c in configs.items()},
                }
            )
            return ExitCode.OK
        write_trial_configs(sweep_dir, trials)
        (sweep_dir / "sweep.json").write_text(json.dumps(definition, indent=1) + "\n")
    except (ValueError, OSError) as error:
        raise UsageError(str(error)) from error
    code = 0
    if all(is_done(t.values) for t in trials):
        print(f"{PROG}: every trial finished earlier: nothing to run", flush=True)
    elif not args.report_only:
        started = time.monotonic()
        ray = start_ray(args)
        try:
            code = run_trials(ray, args, sweep_dir, trials)
        finally:
            ray.shutdown()
        print(f"{PROG}: trials ended after {time.monotonic() - started:.0f} s", flush=True)
    meta = {k: definition[k] for k in ("suite", "tasks", "seeds", "preset", "values", "vary")}
    paths = write_report(sweep_dir, trials, definition["points"], meta)
    print((sweep_dir / "results.md").read_text())
    print(f"{PROG}: results in {', '.join(str(p) for p in paths.values())}")
    return code


if __name__ == "__main__":
    sys.exit(main())
