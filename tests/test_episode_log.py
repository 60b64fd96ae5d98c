"""Episode logs: round trip, readable up to the last complete record after a kill, and every
record but a corrupt one read, with the corrupt one reported by its byte offset."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass

import numpy as np
import pytest

from slac_runtime.episode_log import (
    FOOTER,
    FRAME,
    HEADER,
    MAGIC,
    TICK,
    EpisodeLogWriter,
    SkippedBytes,
    read_episode_log,
)


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
    assert read.skipped == [] and read.diagnosis() is None


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
    [cut] = read.skipped
    assert cut.at_end and not cut.whole and cut.offset + cut.size == len(data) - 7
    assert "cut off in a record at byte offset" in read.diagnosis()


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


# -- corrupt bytes ---------------------------------------------------------------------------------
TICKS = 80
_HEAD = struct.Struct("<IBI")  # length, kind, crc32: the record header of docs/architecture.md §7


@dataclass(frozen=True)
class Record:
    offset: int
    kind: int
    size: int  # header and payload (bytes)


def records(data: bytes) -> list[Record]:
    """The records of a whole log, walked by their length fields."""
    out, pos = [], len(MAGIC)
    while pos < len(data):
        length, kind, _ = _HEAD.unpack_from(data, pos)
        out.append(Record(pos, kind, _HEAD.size + length))
        pos += _HEAD.size + length
    assert pos == len(data)
    return out


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> tuple[bytes, list[Record]]:
    """A log as slac-run writes one: a header, 80 ticks (a frame before each policy tick, every
    other tick), an event and a footer; with its records."""
    path = tmp_path_factory.mktemp("log") / "episode-000.slaclog"
    rng = np.random.default_rng(0)
    with EpisodeLogWriter(path, {"robot": "dclaw", "policy_metadata": {"action_repeat": 2}}) as log:
        log.event("ease_in", ticks=20)
        for i in range(TICKS):
            policy = None
            if i % 2 == 0:
                log.frame(i // 2, 1000.0 + i, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
                policy = {"step": i // 2, "frame_seq": i // 2, "action": [0.1] * 9}
            log.tick({"tick": i, "positions": [0.01 * i] * 9, "policy": policy})
        log.close({"ticks": TICKS, "stop_reason": "episode complete"})
    data = path.read_bytes()
    return data, records(data)


def read_changed(tmp_path, data: bytes):
    path = tmp_path / "changed.slaclog"
    path.write_bytes(data)
    return read_episode_log(path)


def flipped(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= mask
    return bytes(changed)


def nth_tick(recs: list[Record], n: int) -> Record:
    return [r for r in recs if r.kind == TICK][n]


@pytest.mark.parametrize(
    "field, at, mask",
    [
        ("payload", 20, 0x01),  # a bit of the tick's JSON
        ("length, low byte", 0, 0x01),  # one byte longer: the next record's first byte joins it
        ("length, low byte", 0, 0x40),  # 64 bytes shorter: ends inside the payload
        ("length, high byte", 3, 0x01),  # 16 MiB longer: runs past the end of the file
        ("kind", 4, 0x01),  # TICK (2) read as FRAME (3)
        ("kind", 4, 0x06),  # TICK (2) read as EVENT (4)
        ("crc", 6, 0x80),
    ],
)
def test_a_corrupt_tick_is_skipped_and_everything_after_it_read(episode, tmp_path, field, at, mask):
    data, recs = episode
    bad = nth_tick(recs, 6)
    log = read_changed(tmp_path, flipped(data, bad.offset + at, mask))
    assert [t["tick"] for t in log.ticks] == [i for i in range(TICKS) if i != 6]
    assert log.footer == {"ticks": TICKS, "stop_reason": "episode complete"}
    assert not log.truncated and log.lost_ticks() == [6]
    assert log.skipped == [SkippedBytes(bad.offset, bad.size, at_end=False, whole=at != 3)]
    assert [e["event"] for e in log.events] == ["ease_in"]  # nothing read as another kind
    assert len(log.frame_records) == TICKS // 2
    assert log.policy_frame(log.ticks[-2]) is not None
    diagnosis = log.diagnosis()
    expected = f"corrupt record at byte offset {bad.offset} ({bad.size} bytes skipped), tick 6 lost"
    assert expected in diagnosis
    assert "the rest was read: 79 ticks and the footer" in diagnosis and "cut off" not in diagnosis


def test_a_corrupt_frame_loses_only_that_frame(episode, tmp_path):
    data, recs = episode
    bad = [r for r in recs if r.kind == FRAME][10]  # the frame of policy step 10 (tick 20)
    log = read_changed(tmp_path, flipped(data, bad.offset + bad.size - 5))  # a pixel
    assert len(log.ticks) == TICKS and log.footer is not None and log.lost_ticks() == []
    assert log.skipped == [SkippedBytes(bad.offset, bad.size, at_end=False, whole=True)]
    by_tick = {t["tick"]: t for t in log.ticks}
    assert log.policy_frame(by_tick[20]) is None
    assert log.policy_frame(by_tick[18]) is not None and log.policy_frame(by_tick[22]) is not None
    assert f"corrupt record at byte offset {bad.offset}" in log.diagnosis()


def test_each_of_several_corrupt_records_is_reported(episode, tmp_path):
    data, recs = episode
    first, second, third = nth_tick(recs, 6), nth_tick(recs, 7), nth_tick(recs, 40)
    changed = flipped(flipped(flipped(data, first.offset + 12), second.offset + 1), third.offset)
    log = read_changed(tmp_path, changed)
    assert log.lost_ticks() == [6, 7, 40] and len(log.ticks) == TICKS - 3
    # ticks 6 and 7 are neighbours, with no whole record between them: one stretch
    assert [(s.offset, s.size) for s in log.skipped] == [
        (first.offset, second.offset + second.size - first.offset),
        (third.offset, third.size),
    ]
    diagnosis = log.diagnosis()
    assert f"byte offsets {first.offset} (" in diagnosis and f", {third.offset} (" in diagnosis
    assert "ticks 6-7, 40 lost" in diagnosis


def test_a_corrupt_footer_is_reported_as_corrupt_not_as_a_kill(episode, tmp_path):
    data, recs = episode
    footer = recs[-1]
    assert footer.kind == FOOTER
    log = read_changed(tmp_path, flipped(data, footer.offset + footer.size - 3))
    assert len(log.ticks) == TICKS and log.footer is None and log.truncated
    assert log.skipped == [SkippedBytes(footer.offset, footer.size, at_end=True, whole=True)]
    diagnosis = log.diagnosis()
    assert f"the last record, at byte offset {footer.offset} ({footer.size} bytes), is corrupt" in (
        diagnosis
    )
    assert "killed" not in diagnosis and f"tick {TICKS - 1} ({TICKS} ticks)" in diagnosis


def test_a_log_cut_in_a_record_is_reported_as_cut_off(episode, tmp_path):
    data, recs = episode
    cut = nth_tick(recs, 50)
    log = read_changed(tmp_path, data[: cut.offset + cut.size // 2])
    assert [t["tick"] for t in log.ticks] == list(range(50)) and log.truncated
    assert log.skipped == [SkippedBytes(cut.offset, cut.size // 2, at_end=True, whole=False)]
    assert log.diagnosis() == (
        f"{log.path}: cut off in a record at byte offset {cut.offset} (no footer: the run was "
        "killed or crashed); using it up to its last complete tick, tick 49 (50 ticks)"
    )
    assert "corrupt" not in log.diagnosis()


def test_bytes_after_the_footer_are_reported_and_ignored(episode, tmp_path):
    data, _ = episode
    garbage = b"\x02garbage\x00" * 30  # a kind byte among them
    log = read_changed(tmp_path, data + garbage)
    assert len(log.ticks) == TICKS and log.footer is not None and not log.truncated
    assert log.skipped == [SkippedBytes(len(data), len(garbage), at_end=True, whole=False)]
    assert log.corrupt == [] and log.diagnosis() == (
        f"{log.path}: {len(garbage)} bytes after the footer, from byte offset {len(data)}, are "
        "not records (ignored)"
    )


def test_any_single_flipped_byte_loses_at_most_its_own_record(episode, tmp_path):
    """Flips all over the file (magic and header left out): at most the record holding the flip is
    lost, and it is the only one reported."""
    data, recs = episode
    rng = np.random.default_rng(1)
    body = recs[1].offset
    for offset in rng.integers(body, len(data), 60):
        hit = next(r for r in recs if r.offset <= offset < r.offset + r.size)
        log = read_changed(tmp_path, flipped(data, int(offset), int(rng.integers(1, 256))))
        assert [(s.offset, s.size) for s in log.skipped] == [(hit.offset, hit.size)], offset
        assert len(log.ticks) == TICKS - (hit.kind == TICK)
        assert (log.footer is None) == (hit.kind == FOOTER)


def test_a_corrupt_header_is_refused(episode, tmp_path):
    data, recs = episode
    with pytest.raises(ValueError, match=f"header record, at byte offset {len(MAGIC)}, is corrupt"):
        read_changed(tmp_path, flipped(data, recs[0].offset + 12))


def test_a_log_of_format_version_1_is_read(tmp_path):
    """Version 1's crc32 covers the payload only; its corrupt records are skipped the same way."""

    def record(kind: int, value: dict) -> bytes:
        payload = json.dumps(value).encode()
        return _HEAD.pack(len(payload), kind, zlib.crc32(payload)) + payload

    ticks = [record(TICK, {"tick": i}) for i in range(10)]
    data = bytearray(b"SLACLOG\x01" + record(HEADER, {"h": 1}) + b"".join(ticks))
    data += record(FOOTER, {"ticks": 10})
    bad = len(data) - len(record(FOOTER, {"ticks": 10})) - sum(len(t) for t in ticks[3:])
    data[bad + _HEAD.size + 2] ^= 0x01  # in tick 3's payload
    log = read_changed(tmp_path, bytes(data))
    assert log.format_version == 1 and log.header == {"h": 1}
    assert [t["tick"] for t in log.ticks] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert log.footer == {"ticks": 10}
    assert log.skipped == [SkippedBytes(bad, len(ticks[3]), at_end=False, whole=True)]


def test_a_log_of_a_newer_format_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "new.slaclog"
    path.write_bytes(b"SLACLOG\x09" + b"\x00" * 20)
    with pytest.raises(ValueError, match="format version 9.*update slac_runtime"):
        read_episode_log(path)


@pytest.mark.parametrize(
    "header, refusal",
    [
        ({"policy_metadata": None}, "its header's policy_metadata is null, not a JSON object"),
        ({"policy_metadata": [1, 2]}, "its header's policy_metadata is [1, 2], not a JSON object"),
        ({"loop_config": "fast"}, 'its header\'s loop_config is "fast", not a JSON object'),
        (
            {"policy_metadata": {"control_period_s": 0}},
            "policy_metadata.control_period_s, 0, is not a positive number of seconds",
        ),
    ],
)
def test_a_header_with_sections_of_the_wrong_kind_is_refused_in_one_line(
    tmp_path, capsys, header, refusal
):
    """A header whose record is whole but whose policy metadata or loop configuration is not what
    slac-run writes: slac-replay refuses it in one line (exit 2), in every mode."""
    from slac_runtime.replay_cli import main as replay_main

    path = tmp_path / "episode-000.slaclog"
    with EpisodeLogWriter(path, {"robot": "dclaw", **header}) as log:
        log.frame(0, 1000.0, np.zeros((8, 8, 3), dtype=np.uint8))
        log.tick({"tick": 0, "positions": [0.0] * 9, "policy": {"step": 0, "frame_seq": 0}})
        log.close({"stop_reason": "episode complete"})
    for mode in ([], ["--video", str(tmp_path / "v.mp4")]):
        assert replay_main([str(path), *mode]) == 2
        err = capsys.readouterr().err
        assert refusal in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("repeat", [None, 0, 2.5, "2"])
def test_a_video_of_a_log_whose_action_repeat_is_no_whole_number_is_refused(
    tmp_path, capsys, repeat
):
    """The video plays at the policy rate: an action repeat that is not a whole number of control
    periods of at least 1 is refused in one line (exit 2)."""
    from slac_runtime.replay_cli import main as replay_main

    path = tmp_path / "episode-000.slaclog"
    meta = {"control_period_s": 0.05, "action_repeat": repeat}
    with EpisodeLogWriter(path, {"robot": "dclaw", "policy_metadata": meta}) as log:
        log.frame(0, 1000.0, np.zeros((8, 8, 3), dtype=np.uint8))
        log.tick({"tick": 0, "positions": [0.0] * 9, "policy": {"step": 0, "frame_seq": 0}})
        log.close({"stop_reason": "episode complete"})
    assert replay_main([str(path), "--video", str(tmp_path / "v.mp4")]) == 2
    err = capsys.readouterr().err
    assert "policy_metadata.action_repeat" in err and len(err.strip().splitlines()) == 1


def test_a_file_that_goes_on_with_another_log_is_read_up_to_where_that_log_starts(
    episode, tmp_path
):
    """Another log after this one (a whole one, or after a cut): none of its records are read as
    this episode's, and the diagnosis says where it starts."""
    data, recs = episode
    log = read_changed(tmp_path, data + data)
    assert [t["tick"] for t in log.ticks] == list(range(TICKS)) and log.footer is not None
    assert log.skipped == [] and log.other_log == (len(data), len(data))
    assert log.diagnosis() == (
        f"{log.path}: the {len(data)} bytes from byte offset {len(data)} on are another log (its "
        "magic bytes and header): not part of this episode (ignored)"
    )
    cut = nth_tick(recs, 50)
    log = read_changed(tmp_path, data[: cut.offset + cut.size // 2] + data)
    assert [t["tick"] for t in log.ticks] == list(range(50)) and log.truncated
    assert log.skipped == [SkippedBytes(cut.offset, cut.size // 2, at_end=True, whole=False)]
    assert "cut off in a record" in log.diagnosis() and "another log" in log.diagnosis()
