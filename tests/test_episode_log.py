"""Episode logs: round trip, and readable up to the last complete record after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from slac_runtime.episode_log import MAGIC, EpisodeLogWriter, read_episode_log


def test_round_trip(tmp_path):
    path = tmp_path / "ep.slaclog"
    frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with EpisodeLogWriter(path, {"policy": {"task": "dclaw-turn"}}) as log:
        for i in range(5):
            log.tick({"tick": i, "positions": np.arange(9) * 0.1 * i, "policy": None})
        log.frame(42, 1234.5, frame)
        log.event("stale_frame", age_s=0.3)
        log.close({"ticks": 5})
    read = read_episode_log(path)
    assert read.header["policy"]["task"] == "dclaw-turn"
    assert [t["tick"] for t in read.ticks] == list(range(5))
    np.testing.assert_allclose(read.array("positions")[4], np.arange(9) * 0.4)
    ts, img = read.frames[42]
    assert ts == 1234.5
    np.testing.assert_array_equal(img, frame)
    assert read.events[0]["event"] == "stale_frame"
    assert read.footer == {"ticks": 5} and not read.truncated


def test_cut_off_log_reads_to_last_complete_record(tmp_path):
    path = tmp_path / "ep.slaclog"
    log = EpisodeLogWriter(path, {"h": 1})
    for i in range(10):
        log.tick({"tick": i})
    log.close()
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # a record cut in the middle
    read = read_episode_log(path)
    assert read.truncated
    assert [t["tick"] for t in read.ticks] == list(range(9))


def test_corrupt_record_stops_reading(tmp_path):
    path = tmp_path / "ep.slaclog"
    with EpisodeLogWriter(path, {"h": 1}) as log:
        for i in range(3):
            log.tick({"tick": i})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last payload
    path.write_bytes(bytes(data))
    read = read_episode_log(path)
    assert read.truncated and len(read.ticks) == 2


def test_not_a_log(tmp_path):
    path = tmp_path / "x.slaclog"
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a SLAC episode log"):
        read_episode_log(path)
    assert MAGIC != b"hello"


def test_sigkill_leaves_a_readable_log(tmp_path):
    path = tmp_path / "ep.slaclog"
    code = (
        "import sys, time\n"
        "from slac_runtime.episode_log import EpisodeLogWriter\n"
        f"log = EpisodeLogWriter({str(path)!r}, {{'h': 1}})\n"
        "i = 0\n"
        "while True:\n"
        "    log.tick({'tick': i, 'pad': 'x' * 200}); i += 1\n"
        "    if i == 50: print('ready', flush=True)\n"
        "    time.sleep(0.0005)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    read = read_episode_log(path)
    assert read.truncated  # no footer
    ticks = [t["tick"] for t in read.ticks]
    assert len(ticks) >= 50 and ticks == list(range(len(ticks)))


def test_each_policy_step_finds_its_own_frame_across_a_camera_restart(tmp_path):
    """Sequence numbers start again after a camera restart: a policy step's frame is the latest
    FRAME record with its number written before it."""
    path = tmp_path / "ep.slaclog"
    images = [np.full((4, 4, 3), k, np.uint8) for k in range(4)]
    with EpisodeLogWriter(path, {"h": 1}) as log:
        for tick, (seq, k) in enumerate([(7, 0), (8, 1), (7, 2), (8, 3)]):  # restarted after tick 1
            log.frame(seq, 1000.0 + tick, images[k])
            log.tick({"tick": tick, "policy": {"step": tick, "frame_seq": seq}})
        log.tick({"tick": 4, "policy": None})
    read = read_episode_log(path)
    assert [read.policy_frame(t)[0, 0, 0] for t in read.policy_ticks()] == [0, 1, 2, 3]
    assert len(read.frame_records) == 4 and read.frames[7][1][0, 0, 0] == 2  # by number: the last
    assert read.policy_frame({"tick": 4}) is None
