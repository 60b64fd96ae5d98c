"""Demo-style episodes on the virtual D'Claw with the machine under load: does the bus keep up?

    python benchmarks/soak.py [--episodes 20] [--no-load] [--bus process|thread] [--out DIR]
                              [--demo-runs N]

Like ``make demo`` (``slac_train/pipeline_demo.py``): one virtual D'Claw in this process; each
episode resets the scene (valve at 0) and runs ``slac-run --episodes 1`` with the shipped Turn
policy as a new process. Beside it, unless ``--no-load``: one busy-loop process per CPU core, a
two-thread torch job (1024x1024 matrix products) and a disk writer (files written and fsynced in a
temporary folder). Every load process is killed at the end, also on Ctrl-C.

Prints, per episode and in total: episodes completed, failures (with the last line of slac-run's
stderr), bus retries and failures as the driver counted them (the episode logs' footers), control
jitter p99, the longest bus silence -- the longest interval between two instruction packets while
the servos' Bus Watchdog watched, as the emulated servos saw it: what trips the watchdog -- beside
slac-run's longest gap between two ticks by its own log (a silence as long as that gap is slac-run
stalled; a longer one was lost between the two on the port), and the virtual bus's reply latency --
from a request packet fully received to its reply handed to the port -- p50/p99/max, measured inside
the emulator, and as the driver sees it (a sync read's request sent to its last reply received,
scheduling delays of the client included). Ends with one JSON line. ``--demo-runs N`` then runs the
whole ``make demo`` pipeline N times beside the same load and counts the runs that pass.
Targets: every episode completed, the longest bus silence under 100 ms (half of slac-run's default
200 ms Bus Watchdog window; a period is 50 ms) and reply latency max <= 10 ms (a third of the SDK's
~34 ms read timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from slac_runtime.options import signals_interrupt

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "robots" / "dclaw" / "policies" / "turn.onnx"
REPLY_LATENCY_TARGET_MS = 10.0
BUS_SILENCE_TARGET_MS = 100.0

# The load, each a separate process (python -c), so that it competes for
# the cores as other work would.
BUSY_LOOP = "while True: pass"
TORCH_JOB = """
import torch
torch.set_num_threads(2)
a = torch.randn(1024, 1024)
while True:
    b = a @ a
"""
DISK_WRITER = """
import os, sys
folder = sys.argv[1]
block = os.urandom(1 << 20)
i = 0
while True:
    path = os.path.join(folder, f"block-{i % 8}.bin")
    with open(path, "wb") as f:
        for _ in range(8):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    i += 1
"""


def start_load(scratch: Path) -> list[subprocess.Popen]:
    """One busy loop per core, a two-thread torch job and a disk writer."""
    programs = [[BUSY_LOOP]] * (os.cpu_count() or 1) + [[TORCH_JOB], [DISK_WRITER, str(scratch)]]
    processes = []
    try:
        for program in programs:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", *program],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                )
            )
    except BaseException:
        stop_load(processes)
        raise
    return processes


def stop_load(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        process.wait()


def run_episode(robot, policy: Path, log_dir: Path, episode: int) -> dict:
    from slac_runtime.episode_log import read_episode_log

    robot.reset_scene(valve_angle=0.0)
    robot.emulator.take_longest_silence_s()  # measure this episode's silences only
    before = set(log_dir.glob("*/*.slaclog"))
    cmd = robot.slac_run_command(
        policy, log_dir, "--deterministic", "--episodes", "1", "--seed", str(episode)
    )
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True)
    out = {
        "episode": episode,
        "exit_code": result.returncode,
        "wall_s": round(time.monotonic() - started, 1),
        "bus_silence_ms": round(1e3 * robot.emulator.take_longest_silence_s(), 1),
    }
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        out["error"] = lines[-1] if lines else f"exit code {result.returncode}, nothing on stderr"
    new_logs = sorted(set(log_dir.glob("*/*.slaclog")) - before)
    if new_logs:
        from slac_runtime.log_summary import summarize

        log = read_episode_log(new_logs[-1])
        summary = summarize(log)
        starts_s = [t["t"] for t in log.ticks if t.get("t") is not None]
        gaps_s = [b - a for a, b in zip(starts_s, starts_s[1:])]
        # slac-run's own stalls: the longest time between two of its ticks' starts, by its log
        out["tick_gap_ms"] = round(1e3 * max(gaps_s), 1) if gaps_s else None
        out.update(
            {
                k: summary.get(k)
                for k in ("ticks", "retries", "failures", "jitter_p99_ms", "stop_reason")
            }
        )
        footer = log.footer or {}
        out.update(
            {
                k: footer.get(k)
                for k in ("read_latency_p50_ms", "read_latency_p99_ms", "read_latency_max_ms")
            }
        )
    return out


def run_demo(out: Path, run: int) -> dict:
    """The whole ``make demo`` pipeline once (``slac_train.pipeline_demo``);
    its exit code and last line."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "slac_train.pipeline_demo", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    out_ = {
        "run": run,
        "exit_code": result.returncode,
        "wall_s": round(time.monotonic() - started, 1),
        "last_line": lines[-1] if lines else "",
    }
    print(
        f"make demo run {run}: exit {result.returncode}  {out_['wall_s']:5.1f} s  "
        f"{out_['last_line']}",
        flush=True,
    )
    return out_


def driver_latency(results: list[dict]) -> dict[str, float | None]:
    """The driver's sync-read latency over the episodes: medians of p50 and p99, the largest max."""

    def median(key: str) -> float | None:
        values = sorted(r[key] for r in results if r.get(key) is not None)
        return values[len(values) // 2] if values else None

    maxima = [r["read_latency_max_ms"] for r in results if r.get("read_latency_max_ms") is not None]
    return {
        "p50_ms_median": median("read_latency_p50_ms"),
        "p99_ms_median": median("read_latency_p99_ms"),
        "max_ms": max(maxima) if maxima else None,
    }


def fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument(
        "--load",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="busy loops on every core, a torch job and a disk writer beside the episodes",
    )
    parser.add_argument(
        "--bus",
        choices=("process", "thread"),
        default="process",
        help="who answers the virtual bus: its own process (as shipped) or a thread of this one",
    )
    parser.add_argument("--policy", type=Path, default=POLICY)
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the episode logs here (default: a temp folder)"
    )
    parser.add_argument(
        "--demo-runs",
        type=int,
        default=0,
        help="after the episodes, run the whole `make demo` pipeline this many times beside "
        "the same load (each with its own virtual D'Claw)",
    )
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")

    os.environ.setdefault("MUJOCO_GL", "egl")
    from robots.dclaw.virtual import VirtualDClaw

    # SIGTERM ends the run the way Ctrl-C does, so the load is always killed.
    with (
        signals_interrupt([], (signal.SIGTERM,)),
        tempfile.TemporaryDirectory(prefix="slac-soak-") as tmp,
    ):
        tmp_path = Path(tmp)
        out = args.out or tmp_path / "out"
        log_dir = out / "logs"
        (out / "virtual").mkdir(parents=True, exist_ok=True)
        (tmp_path / "disk").mkdir()
        load: list[subprocess.Popen] = []
        results: list[dict] = []
        demos: list[dict] = []
        interrupted = False
        try:
            with VirtualDClaw(
                out / "virtual" / "tty", f"ipc://{out.resolve()}/virtual/camera", bus=args.bus
            ) as robot:
                scheduling = (
                    getattr(robot.emulator, "scheduling", None) or "a thread of this process"
                )
                print(
                    f"virtual D'Claw: bus {args.bus} ({scheduling}), port {robot.port}", flush=True
                )
                if args.load:
                    load = start_load(tmp_path / "disk")
                    print(
                        f"load: {os.cpu_count()} busy loops, a 2-thread torch job, a disk writer "
                        f"(pids {[p.pid for p in load]})",
                        flush=True,
                    )
                for episode in range(args.episodes):
                    r = run_episode(robot, args.policy, log_dir, episode)
                    results.append(r)
                    latency = robot.emulator.reply_latency()
                    print(
                        f"episode {episode:2d}: exit {r['exit_code']}  {r['wall_s']:5.1f} s  "
                        f"retries {fmt(r.get('retries'), 'd')}  jitter p99 "
                        f"{fmt(r.get('jitter_p99_ms'))} ms  bus silence "
                        f"{fmt(r['bus_silence_ms'], '.1f')} ms (slac-run's longest tick gap "
                        f"{fmt(r.get('tick_gap_ms'), '.1f')} ms)  bus reply max so far "
                        f"{fmt(latency['max_ms'])} ms"
                        + (f"  FAILED: {r['error']}" if "error" in r else ""),
                        flush=True,
                    )
                    time.sleep(0.5)
                latency = robot.emulator.reply_latency()
                counters = robot.emulator.counters
            for run in range(args.demo_runs):
                demos.append(run_demo(out / f"demo-{run}", run))
        except KeyboardInterrupt:
            interrupted = True
            latency, counters = {}, {}
        finally:
            stop_load(load)

    completed = sum(1 for r in results if r["exit_code"] == 0)
    jitters = [r["jitter_p99_ms"] for r in results if r.get("jitter_p99_ms") is not None]
    silences = [r["bus_silence_ms"] for r in results]
    gaps = [r["tick_gap_ms"] for r in results if r.get("tick_gap_ms") is not None]
    summary = {
        "benchmark": "soak",
        "bus": args.bus,
        "load": args.load,
        "episodes": args.episodes,
        "completed": completed,
        "failures": [
            {"episode": r["episode"], "error": r["error"]} for r in results if "error" in r
        ],
        "bus_retries": sum(r.get("retries") or 0 for r in results),
        "bus_failures": sum(r.get("failures") or 0 for r in results),
        "jitter_p99_ms_worst": max(jitters) if jitters else None,
        "jitter_p99_ms_median": sorted(jitters)[len(jitters) // 2] if jitters else None,
        "bus_silence_ms_longest": max(silences) if silences else None,
        "bus_silence_ms_median": sorted(silences)[len(silences) // 2] if silences else None,
        "bus_silence_target_ms": BUS_SILENCE_TARGET_MS,
        "tick_gap_ms_longest": max(gaps) if gaps else None,
        "reply_latency_ms": {
            k: (round(v, 3) if isinstance(v, float) else v) for k, v in latency.items()
        },
        "reply_latency_target_ms": REPLY_LATENCY_TARGET_MS,
        "driver_read_latency_ms": driver_latency(results),
        "torn_reads": counters.get("torn_reads"),
        "demo_runs": len(demos),
        "demo_runs_passed": sum(d["exit_code"] == 0 for d in demos),
        "demo_failures": [d for d in demos if d["exit_code"] != 0],
        "interrupted": interrupted,
    }
    print(
        f"\n{completed} of {args.episodes} episodes completed; bus retries "
        f"{summary['bus_retries']}, failures {summary['bus_failures']}; jitter p99 worst "
        f"{fmt(summary['jitter_p99_ms_worst'])} ms; longest bus silence "
        f"{fmt(summary['bus_silence_ms_longest'], '.1f')} ms (median over episodes "
        f"{fmt(summary['bus_silence_ms_median'], '.1f')} ms, target < {BUS_SILENCE_TARGET_MS:g} "
        f"ms; slac-run's longest gap between two ticks "
        f"{fmt(summary['tick_gap_ms_longest'], '.1f')} ms); bus reply latency p50 "
        f"{fmt(latency.get('p50_ms'), '.3f')} / p99 {fmt(latency.get('p99_ms'), '.3f')} / max "
        f"{fmt(latency.get('max_ms'), '.3f')} ms over {latency.get('count', 0)} replies (target "
        f"max <= {REPLY_LATENCY_TARGET_MS:g} ms)"
    )
    if demos:
        print(
            f"make demo beside the load: {summary['demo_runs_passed']} of {len(demos)} runs passed"
        )
    seen = summary["driver_read_latency_ms"]
    print(
        "as the driver sees it (sync read sent to last reply): p50 "
        f"{fmt(seen['p50_ms_median'], '.3f')} / p99 {fmt(seen['p99_ms_median'], '.3f')} ms "
        f"(medians over episodes), max {fmt(seen['max_ms'], '.3f')} ms"
    )
    for failure in summary["failures"]:
        print(f"  episode {failure['episode']} failed: {failure['error']}")
    print(json.dumps(summary))
    met = (
        completed == args.episodes
        and summary["demo_runs_passed"] == len(demos)
        and (summary["bus_silence_ms_longest"] or 0.0) < BUS_SILENCE_TARGET_MS
        and (latency.get("max_ms") or 0.0) <= REPLY_LATENCY_TARGET_MS
    )
    return 130 if interrupted else (0 if met else 1)


if __name__ == "__main__":
    sys.exit(main())
