"""Publisher -> subscriber latency of camera frames over ZeroMQ (slac_runtime.frames), and the
time preprocessing takes per camera frame, lens undistortion included.

    python benchmarks/frame_latency.py [--frames 3000] [--transport tcp|ipc] [--preprocess-only]

The subscriber runs in its own process. For each case it prints one JSON line with the latency
percentiles (milliseconds) from the publisher's capture timestamp -- taken just before encoding --
to the moment the subscriber holds the decoded image (``end_to_end``), and to the moment the
message came off the socket (``transport``). ``zmq_baseline`` cases send plain bytes of the same
size through a plain PUB/SUB pair (no header, no encoding, no CONFLATE) for comparison.

Frames are paced (``--interval-ms``) so that the subscriber keeps up: this measures latency, not
throughput. Target: p99 <= 0.3 ms end to end for 64x64 raw frames over tcp loopback.

The preprocessing cases come first, one JSON line each with percentiles of the wall-clock time
per 640x480 frame and of the CPU time per frame on one OpenCV thread (``cpu_one_thread``, which
other programs on the machine do not inflate): the camera publisher's whole ``preprocess_frame``
with several calibrations, with a lens in ``preprocess_640x480_lens_*`` (undistortion, rotation and
crop in one remap), and ``undistort_640x480``, the whole frame undistorted (one ``cv2.remap``
through precomputed maps; what the crop search and the pictures use), for a wide webcam's lens:
f = 500 px, k1 = -0.35, k2 = 0.12. Target: undistortion p99 <= 2 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import struct
import tempfile
import time

import cv2
import numpy as np
import zmq

from slac_runtime.frames import FramePublisher, FrameSubscriber, encode_frame
from slac_runtime.lens import LensIntrinsics, Undistorter
from slac_runtime.preprocessing import CameraCalibration, preprocess_frame

_STAMP = struct.Struct("<qd")  # baseline message: index, send time (time.time())
_CONNECT_TIMEOUT_S = 10.0


def _percentiles(values_s: list[float]) -> dict[str, float]:
    a = np.asarray(values_s) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p90_ms": round(float(np.percentile(a, 90)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "max_ms": round(float(a.max()), 4),
        "mean_ms": round(float(a.mean()), 4),
    }


# ---- subscriber processes ---------------------------------------------------------------------


def _frame_subscriber(endpoint: str, frames: int, results: mp.Queue) -> None:
    transport, end_to_end, seqs = [], [], []
    with FrameSubscriber(endpoint, max_age_s=10.0) as sub:
        results.put("ready")
        while len(seqs) < frames:
            frame = sub.latest(timeout_s=_CONNECT_TIMEOUT_S)
            done = time.time()
            if frame is None:
                break
            if frame.seq < 0 or frame.seq >= 2**62:  # warm-up frames carry huge sequence numbers
                continue
            transport.append(frame.received_at - frame.timestamp)
            end_to_end.append(done - frame.timestamp)
            seqs.append(frame.seq)
    results.put((transport, end_to_end, seqs))


def _baseline_subscriber(endpoint: str, frames: int, results: mp.Queue) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.RCVTIMEO, int(_CONNECT_TIMEOUT_S * 1000))
    sock.connect(endpoint)
    results.put("ready")
    latencies, seqs = [], []
    try:
        while len(seqs) < frames:
            message = sock.recv()
            now = time.time()
            index, sent = _STAMP.unpack_from(message)
            if index < 0:  # warm-up
                continue
            latencies.append(now - sent)
            seqs.append(index)
    except zmq.Again:
        pass
    finally:
        sock.close(linger=0)
        context.term()
    results.put((latencies, latencies, seqs))


# ---- publisher side ---------------------------------------------------------------------------


def _wait_ready(results: mp.Queue) -> None:
    if results.get(timeout=_CONNECT_TIMEOUT_S) != "ready":
        raise RuntimeError("subscriber process did not start")


def _sleep_until(t: float) -> None:
    # No busy-waiting: on a small machine a spinning publisher steals the subscriber's core.
    # Oversleeping only delays the next frame; each latency is measured from its own timestamp.
    remaining = t - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


def run_frame_case(
    name: str, endpoint: str, image: np.ndarray, encoding: str, frames: int, interval_s: float
) -> dict:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with FramePublisher(endpoint) as pub:
        proc = ctx.Process(target=_frame_subscriber, args=(pub.endpoint, frames, results))
        proc.start()
        _wait_ready(results)
        time.sleep(0.3)  # let the SUB connect; frames published before that are lost by design
        warm = 2**63
        for _ in range(200):  # warm-up: connection, caches, JIT of code paths
            pub.publish(image, seq=warm, encoding=encoding)
            warm += 1
            _sleep_until(time.perf_counter() + interval_s)
        message_bytes = None
        next_t = time.perf_counter()
        for i in range(frames):
            next_t += interval_s
            pub.publish(image, seq=i, encoding=encoding)
            _sleep_until(next_t)
        transport, end_to_end, seqs = results.get(timeout=60)
        proc.join(timeout=10)
        if encoding == "raw":
            message_bytes = 32 + image.nbytes
    row = {
        "case": name,
        "endpoint": endpoint.split("://")[0],
        "frames_sent": frames,
        "frames_received": len(seqs),
        "drops": frames - len(seqs),
        "image": "x".join(map(str, image.shape)),
        "encoding": encoding,
        "message_bytes": message_bytes,
        "end_to_end": _percentiles(end_to_end) if end_to_end else None,
        "transport": _percentiles(transport) if transport else None,
    }
    return row


def run_baseline_case(name: str, endpoint: str, size: int, frames: int, interval_s: float) -> dict:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    context = zmq.Context()
    sock = context.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    payload = bytearray(max(size, _STAMP.size))
    try:
        proc = ctx.Process(target=_baseline_subscriber, args=(endpoint, frames, results))
        proc.start()
        _wait_ready(results)
        time.sleep(0.3)
        for _ in range(200):
            _STAMP.pack_into(payload, 0, -1, time.time())
            sock.send(payload)
            _sleep_until(time.perf_counter() + interval_s)
        next_t = time.perf_counter()
        for i in range(frames):
            next_t += interval_s
            _STAMP.pack_into(payload, 0, i, time.time())
            sock.send(payload)
            _sleep_until(next_t)
        latencies, _, seqs = results.get(timeout=60)
        proc.join(timeout=10)
    finally:
        sock.close(linger=0)
        context.term()
    return {
        "case": name,
        "endpoint": endpoint.split("://")[0],
        "frames_sent": frames,
        "frames_received": len(seqs),
        "drops": frames - len(seqs),
        "message_bytes": len(payload),
        "end_to_end": _percentiles(latencies) if latencies else None,
    }


def _time_per_call(work, calls: int = 500, clock=time.perf_counter) -> list[float]:
    for _ in range(20):
        work()
    times = []
    for _ in range(calls):
        start = clock()
        work()
        times.append(clock() - start)
    return times


def _cpu_time_per_call(work, calls: int = 500) -> list[float]:
    """CPU seconds per call on one OpenCV thread (this thread's clock): what a call costs however
    busy the machine is, where wall-clock percentiles also count the time other programs ran."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return _time_per_call(work, calls, clock=time.thread_time)
    finally:
        cv2.setNumThreads(threads)


def run_preprocess_case(name: str, frame_bgr: np.ndarray, calibration: CameraCalibration) -> dict:
    """Time preprocess_frame on one camera frame (the camera publisher's per-frame work)."""
    times = _time_per_call(lambda: preprocess_frame(frame_bgr, calibration))
    cpu = _cpu_time_per_call(lambda: preprocess_frame(frame_bgr, calibration))
    return {
        "case": name,
        "frame": "x".join(map(str, frame_bgr.shape)),
        "output": f"{calibration.output_size}x{calibration.output_size}x3",
        "calibration": calibration.to_dict(),
        **_percentiles(times),
        "cpu_one_thread": _percentiles(cpu),
    }


def webcam_lens(width: int = 640, height: int = 480) -> LensIntrinsics:
    """A wide webcam's lens: f = 500 px at 640x480 (about 65 x 51 degrees), strong barrel."""
    scale = width / 640.0
    matrix = np.array(
        [
            [500.0 * scale, 0.0, (width - 1) / 2 + 4.0 * scale],
            [0.0, 500.0 * scale, (height - 1) / 2 - 3.0 * scale],
            [0.0, 0.0, 1.0],
        ]
    )
    return LensIntrinsics.from_camera(matrix, [-0.35, 0.12, 0.001, -0.001, 0.0], (width, height))


def run_undistort_case(name: str, frame_bgr: np.ndarray, lens: LensIntrinsics) -> dict:
    """Time the undistortion alone: one remap of a whole frame through the precomputed maps."""
    undistort = Undistorter(lens)
    times = _time_per_call(lambda: undistort(frame_bgr))
    cpu = _cpu_time_per_call(lambda: undistort(frame_bgr))
    return {
        "case": name,
        "frame": "x".join(map(str, frame_bgr.shape)),
        "opencv_threads": cv2.getNumThreads(),
        "lens": lens.to_dict(),
        **_percentiles(times),
        "cpu_one_thread": _percentiles(cpu),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=3000, help="frames per case")
    parser.add_argument("--transport", choices=("tcp", "ipc"), default="tcp")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="time between frames")
    parser.add_argument(
        "--preprocess-only", action="store_true", help="only the per-frame preprocessing cases"
    )
    args = parser.parse_args(argv)
    interval_s = args.interval_ms / 1000.0

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    # A camera-like 640x480 image (smooth, some noise), so JPEG sizes are realistic.
    base = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    large = cv2.resize(base, (640, 480), interpolation=cv2.INTER_CUBIC)
    large = np.clip(large.astype(np.int16) + rng.integers(-8, 9, large.shape), 0, 255).astype(
        np.uint8
    )

    for name, calibration in (
        ("preprocess_640x480_centre_square", CameraCalibration()),
        ("preprocess_640x480_crop448", CameraCalibration(crop=(96, 16, 448, 448))),
        (
            "preprocess_640x480_rotated_flipped",
            CameraCalibration(rotation_deg=3.0, flip_horizontal=True),
        ),
    ):
        print(json.dumps(run_preprocess_case(name, large, calibration)), flush=True)
    lens = webcam_lens()
    print(json.dumps(run_undistort_case("undistort_640x480", large, lens)), flush=True)
    with_lens = CameraCalibration(crop=(96, 16, 448, 448), rotation_deg=3.0, intrinsics=lens)
    print(
        json.dumps(
            run_preprocess_case("preprocess_640x480_lens_crop448_rotated", large, with_lens)
        ),
        flush=True,
    )
    if args.preprocess_only:
        return 0

    with tempfile.TemporaryDirectory(prefix="slacbench") as tmp:

        def endpoint(tag: str) -> str:
            if args.transport == "tcp":
                return "tcp://127.0.0.1:*"
            return f"ipc://{os.path.join(tmp, tag)}"

        raw_row = run_frame_case(
            "frames_raw_64x64", endpoint("raw"), small, "raw", args.frames, interval_s
        )
        print(json.dumps(raw_row), flush=True)
        print(
            json.dumps(
                run_baseline_case(
                    "zmq_baseline_12320B",
                    endpoint("b1"),
                    raw_row["message_bytes"],
                    args.frames,
                    interval_s,
                )
            ),
            flush=True,
        )
        jpeg_frames = max(1, args.frames // 2)
        jpeg_row = run_frame_case(
            "frames_jpeg_640x480",
            endpoint("jpeg"),
            large,
            "jpeg",
            jpeg_frames,
            max(interval_s, 0.01),
        )
        jpeg_row["message_bytes"] = len(encode_frame(large, 0, 0.0, "jpeg"))
        print(json.dumps(jpeg_row), flush=True)
        print(
            json.dumps(
                run_baseline_case(
                    f"zmq_baseline_{jpeg_row['message_bytes']}B",
                    endpoint("b2"),
                    jpeg_row["message_bytes"],
                    jpeg_frames,
                    max(interval_s, 0.01),
                )
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
