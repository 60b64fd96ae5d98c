"""Bus time of one D'Claw control tick: one sync write of nine goals + one state read (sync read).

    python benchmarks/bus_speed.py [--iterations 1000] [--emulator process|thread]

The real DClawDriver (over dynamixel_sdk) talks to the servo-bus emulator on a pty. By default
the emulator runs in its own process, as the virtual D'Claw does; ``--emulator thread`` runs it
in this process (it then shares the GIL with the driver). Prints one JSON line with p50/p99
(milliseconds) of the write, the read and the whole tick.

On real hardware at 1 Mbaud the wire time alone is ~0.5 ms for the write and ~1.7 ms for the read
(plus the USB adapter's latency timer); the emulator answers at once, so this measures the
software path.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np

from robots.dclaw.description import DCLAW
from robots.dclaw.driver import DEFAULT_CALIBRATION, DClawDriver
from robots.dynamixel.emulated_servo import mountings_from_calibration
from robots.dynamixel.emulator import ServoBusEmulator
from robots.dynamixel.physics import KinematicBackend


def make_emulator(link_path: Path) -> ServoBusEmulator:
    backend = KinematicBackend(dict(zip(DCLAW.motor_ids, DCLAW.reset_pose)))
    return ServoBusEmulator(
        DCLAW.motor_ids,
        backend,
        link_path=link_path,
        mountings=mountings_from_calibration(DEFAULT_CALIBRATION),
        model_number=1030,  # XM430-W210
    )


def serve(link_path: str, ready, stop) -> None:
    with make_emulator(Path(link_path)):
        ready.set()
        stop.wait()


def percentiles_ms(values_s: list[float]) -> dict[str, float]:
    a = np.asarray(values_s) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
    }


def measure(port: str, iterations: int) -> dict:
    write_s, read_s, tick_s = [], [], []
    with DClawDriver(port) as claw:
        rng = np.random.default_rng(0)
        for i in range(iterations + 50):
            goal = np.array(DCLAW.reset_pose) + rng.uniform(-0.05, 0.05, DCLAW.num_joints)
            t0 = time.perf_counter()
            claw.command(goal)
            t1 = time.perf_counter()
            claw.read_state()
            t2 = time.perf_counter()
            if i >= 50:  # warm-up
                write_s.append(t1 - t0)
                read_s.append(t2 - t1)
                tick_s.append(t2 - t0)
        stats = dict(claw.stats)
    return {
        "write": percentiles_ms(write_s),
        "read": percentiles_ms(read_s),
        "tick": percentiles_ms(tick_s),
        "retries": stats["retries"],
        "failures": stats["failures"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--emulator", choices=("process", "thread"), default="process")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "ttyDCLAW"
        if args.emulator == "thread":
            with make_emulator(link):
                result = measure(str(link), args.iterations)
        else:
            ctx = mp.get_context("spawn")
            ready, stop = ctx.Event(), ctx.Event()
            child = ctx.Process(target=serve, args=(str(link), ready, stop), daemon=True)
            child.start()
            try:
                if not ready.wait(30):
                    raise RuntimeError("the emulator process did not start within 30 s")
                result = measure(str(link), args.iterations)
            finally:
                stop.set()
                child.join(10)
            if child.exitcode != 0:
                raise RuntimeError(f"the emulator process exited with code {child.exitcode}")
    print(
        json.dumps(
            {
                "benchmark": "bus_speed",
                "servos": DCLAW.num_joints,
                "iterations": args.iterations,
                "emulator": args.emulator,
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
