"""Episode logs that survive a crash, a kill or a corrupt byte (docs/architecture.md §7).

One file per episode: the magic bytes (``SLACLOG`` and a format version), then self-delimiting
records, each written with a single unbuffered ``write`` so that what a killed process had logged
is in the file:

    record = length: uint32 LE | kind: uint8 | crc32: uint32 LE | payload

The crc32 covers the length, the kind and the payload (format version 2, written here); version 1
files, whose crc32 covers the payload only, are still read.

Kinds: ``HEADER`` (JSON: policy metadata, calibration, versions, configuration), ``TICK`` (JSON: one
control tick -- timestamps, joint state, goal sent, tracking error, and on policy ticks the
policy's outputs and the frame it used: sequence number, capture timestamp, age on the receiving
computer's clock, camera clock offset), ``FRAME`` (binary: sequence number, capture timestamp,
shape, raw RGB pixels), ``EVENT`` (JSON: holds, malformed camera messages, camera restarts,
safe stops, errors), ``FOOTER`` (JSON: the run's statistics).

Every frame a policy step used is written as a ``FRAME`` record before that step's ``TICK`` record.
Sequence numbers start again when a camera restarts, so a policy step's frame is the latest
``FRAME`` record with its sequence number written before it (:meth:`EpisodeLog.policy_frame`).

The reader checks each record on its own. A record that is incomplete, fails its checksum or does
not decode is skipped: the reader resynchronises at the next offset that holds a whole record with
a matching checksum, reads on from there, and reports every skipped stretch with its byte offset
and size (:attr:`EpisodeLog.skipped`, :meth:`EpisodeLog.diagnosis`). A log without a footer was cut
off (the run was killed or crashed) or lost its footer to corruption. A file that goes on with
another log (its magic bytes and header) is read up to where that log starts.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from slac_runtime.robot import RobotState

_MAGIC_PREFIX = b"SLACLOG"
FORMAT_VERSION = 2  # crc32 of length, kind and payload; version 1: crc32 of the payload only
MAGIC = _MAGIC_PREFIX + bytes([FORMAT_VERSION])
_HEAD = struct.Struct("<IB")  # payload length, kind
_CRC = struct.Struct("<I")
_RECORD_HEADER_SIZE = _HEAD.size + _CRC.size
_FRAME = struct.Struct("<QdHHB")  # seq, capture timestamp (s since epoch), height, width, channels

HEADER, TICK, FRAME, EVENT, FOOTER = 1, 2, 3, 4, 5
_KINDS = frozenset((HEADER, TICK, FRAME, EVENT, FOOTER))


def record_crc(version: int, head: bytes | memoryview, payload: bytes | memoryview) -> int:
    """A record's crc32: of ``head`` (its length and kind) and ``payload`` from format version 2
    on, of ``payload`` alone in version 1."""
    if version == 1:
        return zlib.crc32(payload)
    return zlib.crc32(payload, zlib.crc32(head))


def tick_record(tick: int, t: float, lateness_s: float, state: RobotState) -> dict[str, Any]:
    """The fields every logged tick starts with: its number, when it started (``t``, monotonic
    s; ``wall_time``, Unix s), how late (s), and the joint state read in it."""
    return {
        "tick": tick,
        "t": t,
        "wall_time": time.time(),
        "lateness_s": lateness_s,
        "positions": state.positions,
        "velocities": state.velocities,
        "currents": state.currents,
    }


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
        head = _HEAD.pack(len(payload), kind)
        record = head + _CRC.pack(record_crc(FORMAT_VERSION, head, payload)) + payload
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


@dataclass(frozen=True)
class SkippedBytes:
    """A stretch of a log that holds no whole record with a matching checksum; the reader skipped
    it and read on from the next whole record."""

    offset: int  # of its first byte, from the start of the file
    size: int  # bytes skipped
    at_end: bool  # no whole record follows it: it runs to the end of the file
    # the record header at ``offset`` declares a record that fits in the file (a corrupt record),
    # rather than one that runs past the end (a record cut off by the end of the file)
    whole: bool


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
    truncated: bool = False  # no footer: the run was killed or crashed, or the footer is corrupt
    skipped: list[SkippedBytes] = field(default_factory=list)  # in file order
    format_version: int = FORMAT_VERSION
    # (byte offset, size) of another log that the file goes on with (not read), or None
    other_log: tuple[int, int] | None = None

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

    @property
    def corrupt(self) -> list[SkippedBytes]:
        """The skipped stretches that whole records follow: corrupt records inside the log."""
        return [s for s in self.skipped if not s.at_end]

    def lost_ticks(self) -> list[int]:
        """Tick numbers below the last tick read that no readable record holds (ticks are numbered
        0, 1, 2, ...): the ticks lost to corrupt records. A tick lost after the last one read is
        not known (the log's end may be a kill), though its corrupt record is in ``skipped``."""
        read = {t.get("tick") for t in self.ticks}
        numbers = [n for n in read if isinstance(n, int)]
        return [n for n in range(max(numbers, default=-1)) if n not in read]

    def diagnosis(self) -> str | None:
        """One sentence on what is wrong with the log and what was read all the same, naming the
        byte offset of every skipped stretch; None for a whole log."""
        parts = []
        corrupt = self.corrupt
        if corrupt:
            where = ", ".join(f"{s.offset} ({s.size} bytes skipped)" for s in corrupt)
            plural = "s" if len(corrupt) > 1 else ""
            lost = self.lost_ticks()
            lost_text = f", {_tick_list(lost)} lost" if lost else ""
            parts.append(f"corrupt record{plural} at byte offset{plural} {where}{lost_text}")
        end = self.skipped[-1] if self.skipped and self.skipped[-1].at_end else None
        if self.footer is not None:
            if end is not None:
                parts.append(
                    f"{end.size} bytes after the footer, from byte offset {end.offset}, are not "
                    "records (ignored)"
                )
            if corrupt:
                parts.append(f"the rest was read: {len(self.ticks)} ticks and the footer")
        else:
            if end is None:
                parts.append("cut off (no footer: the run was killed or crashed)")
            elif not end.whole:
                parts.append(
                    f"cut off in a record at byte offset {end.offset} (no footer: the run was "
                    "killed or crashed)"
                )
            else:
                parts.append(
                    f"no footer: the last record, at byte offset {end.offset} ({end.size} bytes), "
                    "is corrupt (it may have been the footer)"
                )
            if self.ticks:
                parts.append(
                    f"using it up to its last complete tick, tick {self.ticks[-1].get('tick')} "
                    f"({len(self.ticks)} ticks)"
                )
            else:
                parts.append("no tick was read")
        if self.other_log is not None:
            offset, size = self.other_log
            parts.append(
                f"the {size} bytes from byte offset {offset} on are another log (its magic bytes "
                "and header): not part of this episode (ignored)"
            )
        return f"{self.path}: " + "; ".join(parts) if parts else None


def _tick_list(numbers: list[int]) -> str:
    """``tick 5`` or ``ticks 5-7, 12``."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
    return f"tick{'s' if len(numbers) > 1 else ''} {text}"


def _decode(kind: int, payload: memoryview) -> Any:
    """A record's contents: a dict for the JSON kinds, ``(seq, timestamp, image)`` for a frame.
    Raises ValueError when the payload is not what its kind holds."""
    if kind == FRAME:
        if len(payload) < _FRAME.size:
            raise ValueError("frame record shorter than its header")
        seq, ts, h, w, c = _FRAME.unpack_from(payload, 0)
        image = np.frombuffer(payload, dtype=np.uint8, offset=_FRAME.size).reshape(h, w, c)
        return seq, ts, image
    value = json.loads(bytes(payload))
    if not isinstance(value, dict):
        raise ValueError("record is not a JSON object")
    return value


def _record_at(data: memoryview, pos: int, version: int) -> tuple[int, Any, int] | None:
    """The record at ``pos`` as (kind, contents, end offset), or None unless it is whole, of a
    known kind, with a matching checksum and contents that decode."""
    if pos + _RECORD_HEADER_SIZE > len(data):
        return None
    length, kind = _HEAD.unpack_from(data, pos)
    end = pos + _RECORD_HEADER_SIZE + length
    if kind not in _KINDS or length == 0 or end > len(data):
        return None
    (crc,) = _CRC.unpack_from(data, pos + _HEAD.size)
    payload = data[pos + _RECORD_HEADER_SIZE : end]
    if record_crc(version, data[pos : pos + _HEAD.size], payload) != crc:
        return None
    try:
        return kind, _decode(kind, payload), end
    except ValueError:
        return None


def _skip(data: memoryview, pos: int, version: int) -> SkippedBytes:
    """The stretch from ``pos`` (where no whole record starts) to the next whole record, or to the
    end of the file."""
    resume = next(
        (p for p in range(pos + 1, len(data)) if _record_at(data, p, version) is not None),
        len(data),
    )
    whole = pos + _RECORD_HEADER_SIZE <= len(data) and (
        pos + _RECORD_HEADER_SIZE + _HEAD.unpack_from(data, pos)[0] <= len(data)
    )
    return SkippedBytes(offset=pos, size=resume - pos, at_end=resume == len(data), whole=whole)


def _format_version(data: bytes, path: Path) -> int:
    if not data.startswith(_MAGIC_PREFIX) or len(data) <= len(_MAGIC_PREFIX):
        raise ValueError(f"{path} is not a SLAC episode log (bad magic bytes)")
    version = data[len(_MAGIC_PREFIX)]
    if version not in (1, FORMAT_VERSION):
        raise ValueError(
            f"{path} is a SLAC episode log of format version {version}; this slac_runtime reads "
            f"versions 1-{FORMAT_VERSION}: update slac_runtime to read it"
        )
    return version


def read_episode_log(path: str | Path) -> EpisodeLog:
    """Read a log, checking each record on its own: corrupt or incomplete stretches are skipped
    and listed in ``skipped``; everything else is read, the footer included. A file that goes on
    with another log (its magic bytes and header) is read up to where that log starts."""
    path = Path(path)
    raw = path.read_bytes()
    version = _format_version(raw, path)
    log, other_log = _read_records(memoryview(raw), path, version)
    if other_log is not None:
        log, _ = _read_records(memoryview(raw)[:other_log], path, version)
        log.other_log = (other_log, len(raw) - other_log)
    return log


def _read_records(data: memoryview, path: Path, version: int) -> tuple[EpisodeLog, int | None]:
    """The log in ``data``, and the byte offset where another log starts in it (None if none)."""
    log: EpisodeLog | None = None
    skipped: list[SkippedBytes] = []
    latest_record: dict[int, int] = {}  # seq -> index of its latest FRAME record so far
    pos = len(MAGIC)
    while pos < len(data):
        record = _record_at(data, pos, version)
        if record is None:
            skipped.append(_skip(data, pos, version))
            pos += skipped[-1].size
            continue
        kind, value, end = record
        if log is None:
            if kind != HEADER:
                raise ValueError(_no_header(path, skipped))
            _check_header(value, path)
            log = EpisodeLog(path=path, header=value, format_version=version)
        elif kind == HEADER and data[pos - len(MAGIC) : pos - 1] == _MAGIC_PREFIX:
            return log, pos - len(MAGIC)  # another log starts here: nothing after is this episode
        elif kind == HEADER:  # a log has one header: a second one is not part of this episode
            skipped.append(SkippedBytes(pos, end - pos, at_end=end == len(data), whole=True))
        elif kind == TICK:
            log.ticks.append(value)
            policy = value.get("policy")
            if isinstance(policy, dict) and policy.get("frame_seq") in latest_record:
                log.policy_frame_index[value.get("tick")] = latest_record[policy["frame_seq"]]
        elif kind == EVENT:
            log.events.append(value)
        elif kind == FRAME:
            seq, ts, image = value
            log.frames[seq] = (ts, image)
            latest_record[seq] = len(log.frame_records)
            log.frame_records.append(value)
        elif kind == FOOTER:
            log.footer = value
        pos = end
    if log is None:
        raise ValueError(_no_header(path, skipped))
    log.skipped = skipped
    log.truncated = log.footer is None
    return log, None


# Header sections that the readers take as JSON objects.
_HEADER_OBJECTS = ("policy_metadata", "loop_config")


def _check_header(header: dict[str, Any], path: Path) -> None:
    """ValueError unless each of the header's ``_HEADER_OBJECTS`` is a JSON object or absent."""
    for key in _HEADER_OBJECTS:
        if key in header and not isinstance(header[key], dict):
            raise ValueError(
                f"{path}: its header's {key} is {json.dumps(header[key])[:40]}, not a JSON object: "
                "the run's policy and timing are unknown"
            )


def _no_header(path: Path, skipped: list[SkippedBytes]) -> str:
    if not skipped:
        return f"{path} holds no complete header record"
    return (
        f"{path}: its header record, at byte offset {skipped[0].offset}, is corrupt or incomplete "
        f"({skipped[0].size} bytes skipped): the run's robot, policy and calibration are unknown"
    )
