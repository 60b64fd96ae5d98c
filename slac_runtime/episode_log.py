"""Episode logs that survive a crash or a kill at any moment (docs/architecture.md §7).

One file per episode: the magic bytes, then self-delimiting records, each written with a single
unbuffered ``write`` so that what a killed process had logged is in the file:

    record = length: uint32 LE | kind: uint8 | crc32(payload): uint32 LE | payload

Kinds: ``HEADER`` (JSON: policy metadata, calibration, versions, configuration), ``TICK`` (JSON: one
control tick -- timestamps, joint state, goal sent, tracking error, and on policy ticks the
policy's outputs and the frame it used: sequence number, capture timestamp, age on the receiving
computer's clock, camera clock offset), ``FRAME`` (binary: sequence number, capture timestamp,
shape, raw RGB pixels), ``EVENT`` (JSON: holds, malformed camera messages, camera restarts,
safe stops, errors), ``FOOTER`` (JSON: the run's statistics).

Every frame a policy step used is written as a ``FRAME`` record before that step's ``TICK`` record.
Sequence numbers start again when a camera restarts, so a policy step's frame is the latest
``FRAME`` record with its sequence number written before it (:meth:`EpisodeLog.policy_frame`). A
reader stops at the first incomplete or corrupt record and reports the log as truncated.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"SLACLOG\x01"
_RECORD = struct.Struct("<IBI")  # payload length, kind, crc32
_FRAME = struct.Struct("<QdHHB")  # seq, capture timestamp (s since epoch), height, width, channels

HEADER, TICK, FRAME, EVENT, FOOTER = 1, 2, 3, 4, 5


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


class EpisodeLogWriter:
    """Appends records to an episode log; every record reaches the OS before ``write`` returns."""

    def __init__(self, path: str | Path, header: dict[str, Any], fsync_every: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._fsync_every = fsync_every
        self._records = 0
        os.write(self._fd, MAGIC)
        self._write(HEADER, json.dumps(_to_jsonable(header)).encode())

    def _write(self, kind: int, payload: bytes) -> None:
        if self._fd < 0:
            raise RuntimeError(f"episode log {self.path} is closed")
        record = _RECORD.pack(len(payload), kind, zlib.crc32(payload)) + payload
        written = os.write(self._fd, record)
        if written != len(record):
            raise OSError(
                f"short write to {self.path} ({written} of {len(record)} bytes): disk full?"
            )
        self._records += 1
        if self._fsync_every and self._records % self._fsync_every == 0:
            os.fsync(self._fd)

    def tick(self, record: dict[str, Any]) -> None:
        self._write(TICK, json.dumps(_to_jsonable(record)).encode())

    def event(self, kind: str, **details: Any) -> None:
        self._write(EVENT, json.dumps(_to_jsonable({"event": kind, **details})).encode())

    def frame(self, seq: int, timestamp: float, image: np.ndarray) -> None:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        h, w, c = image.shape
        self._write(FRAME, _FRAME.pack(seq, timestamp, h, w, c) + image.tobytes())

    def close(self, footer: dict[str, Any] | None = None) -> None:
        if self._fd < 0:
            return
        try:
            if footer is not None:
                self._write(FOOTER, json.dumps(_to_jsonable(footer)).encode())
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EpisodeLogWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class EpisodeLog:
    path: Path
    header: dict[str, Any]
    ticks: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    frames: dict[int, tuple[float, np.ndarray]] = field(
        default_factory=dict
    )  # seq -> (timestamp, image), last
    frame_records: list[tuple[int, float, np.ndarray]] = field(
        default_factory=list
    )  # (seq, timestamp, image)
    # tick number of each policy step -> index into frame_records of the frame it used
    policy_frame_index: dict[int, int] = field(default_factory=dict)
    footer: dict[str, Any] | None = None
    truncated: bool = False  # the log ended in an incomplete or corrupt record, or without a footer

    def policy_frame(self, tick: dict[str, Any]) -> np.ndarray | None:
        """The image a policy tick's step used (``uint8[H, W, C]``),
        or None if it was not logged."""
        index = self.policy_frame_index.get(tick["tick"])
        return None if index is None else self.frame_records[index][2]

    def array(self, key: str) -> np.ndarray:
        """Stack one field over all ticks that have it, e.g.
        ``log.array("positions")`` -> [T, J]."""
        return np.array([t[key] for t in self.ticks if key in t and t[key] is not None])

    def policy_ticks(self) -> list[dict[str, Any]]:
        return [t for t in self.ticks if t.get("policy") is not None]


def read_episode_log(path: str | Path) -> EpisodeLog:
    """Read a log, up to its last complete record; ``truncated`` says whether it was cut off."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path} is not a SLAC episode log (bad magic bytes)")
    pos = len(MAGIC)
    log: EpisodeLog | None = None
    truncated = False
    latest_record: dict[int, int] = {}  # seq -> index of its latest FRAME record so far
    while pos < len(data):
        if pos + _RECORD.size > len(data):
            truncated = True
            break
        length, kind, crc = _RECORD.unpack_from(data, pos)
        start = pos + _RECORD.size
        payload = data[start : start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            truncated = True
            break
        pos = start + length
        if kind == HEADER:
            log = EpisodeLog(path=path, header=json.loads(payload))
            continue
        if log is None:
            raise ValueError(f"{path}: the first record is not a header")
        if kind == TICK:
            tick = json.loads(payload)
            log.ticks.append(tick)
            policy = tick.get("policy")
            if policy is not None and policy.get("frame_seq") in latest_record:
                log.policy_frame_index[tick["tick"]] = latest_record[policy["frame_seq"]]
        elif kind == EVENT:
            log.events.append(json.loads(payload))
        elif kind == FRAME:
            seq, ts, h, w, c = _FRAME.unpack_from(payload, 0)
            image = np.frombuffer(payload, dtype=np.uint8, offset=_FRAME.size).reshape(h, w, c)
            log.frames[seq] = (ts, image)
            latest_record[seq] = len(log.frame_records)
            log.frame_records.append((seq, ts, image))
        elif kind == FOOTER:
            log.footer = json.loads(payload)
    if log is None:
        raise ValueError(f"{path} holds no complete header record")
    log.truncated = truncated or log.footer is None
    return log
