"""Camera frames over ZeroMQ: the wire format, a publisher and a newest-frame subscriber
(docs/architecture.md §4).

One ZeroMQ message per frame, **single part**: a 32-byte little-endian header followed by the
pixels. ``docs/frame_wire_format.md`` is the full reference::

    offset size type     field
     0      4  bytes    magic  b"SLAC"
     4      1  uint8    format version (1)
     5      1  uint8    encoding: 0 raw, 1 JPEG
     6      1  uint8    channels (3 for RGB)
     7      1  uint8    reserved, 0
     8      8  uint64   sequence number
    16      8  float64  capture timestamp, seconds since the Unix epoch (time.time())
    24      2  uint16   height, pixels
    26      2  uint16   width, pixels
    28      4  uint32   payload length, bytes
    32      -  bytes    payload: raw rows of RGB pixels (H*W*C bytes), or one JPEG file

Use::

    with FramePublisher("tcp://*:5555") as pub:           # camera side
        pub.publish(image_rgb)                              # uint8[H, W, 3] RGB

    with FrameSubscriber("tcp://robot-cam:5555", max_age_s=0.25, expect=(64, 64, 3)) as sub:
        frame = sub.latest(timeout_s=2.0)                   # Frame or None
        frame.seq, frame.timestamp, frame.image, frame.age_s

Time is the subscriber's own: a frame's age and the stream's staleness count from when the
frame *arrived* at the subscriber's process (its receiver thread stamps every message as it comes
off the socket), on its monotonic clock, never from the publisher's capture timestamp
(a camera on another computer has another clock). The capture timestamp only serves to measure
that clock's offset (receive wall time minus capture time, a running median) and must lie within
:data:`MAX_CLOCK_OFFSET_S` of the subscriber's clock. A frame is new only when its sequence number
advanced; a message that is not a valid frame is dropped and counted, never raised.

A publisher may also say what it is: a *source message* (magic ``SLAS``, a version byte, then a
small JSON object of strings such as ``{"source": "virtual dclaw", "scene": "valve"}``) sent before
each frame. A simulated camera sends one, naming the scene it renders; a real camera sends none.
The subscriber keeps the newest as :attr:`FrameSubscriber.source`.

A publisher belongs to the thread that made it; a subscriber's socket lives in its own receiver
thread, and its methods may be called from any one other thread.
"""

from __future__ import annotations

import collections
import json
import math
import statistics
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
import zmq

MAGIC = b"SLAC"
FORMAT_VERSION = 1
HEADER = struct.Struct("<4sBBBBQdHHI")
HEADER_SIZE = HEADER.size  # 32 bytes

ENCODING_RAW = 0
ENCODING_JPEG = 1
_ENCODING_NAMES = {ENCODING_RAW: "raw", ENCODING_JPEG: "jpeg"}
_ENCODING_CODES = {name: code for code, name in _ENCODING_NAMES.items()}
EncodingName = Literal["raw", "jpeg"]

MAX_SIDE = 0xFFFF  # uint16 height and width
DEFAULT_JPEG_QUALITY = 90
DEFAULT_SNDHWM = (
    1000  # messages queued per subscriber before the PUB socket drops (ZeroMQ's default)
)
DEFAULT_MAX_AGE_S = 0.5  # a subscriber's newest frame older than this (receive time) is stale
# The defaults every command shares for a camera (slac-camera, slac-run, slac-calibrate, the virtual
# robot): where frames are published unless told (this computer only; `tcp://*:5555` serves other
# computers too), and how long to wait for a camera's first frame (a USB camera may take seconds to
# open, and slac-run's local publisher waits this long for its camera before giving up).
DEFAULT_CAMERA_ENDPOINT = "tcp://127.0.0.1:5555"
FIRST_FRAME_TIMEOUT_S = 10.0
# Frames per second of a publisher started by hand (slac-camera without --fps), which knows no
# robot or policy; slac-run starts its own publisher at one frame per control period instead. The
# subscriber keeps only the newest frame, so a rate above a policy's needs costs only CPU; 20 fps
# is one that USB cameras deliver in their common capture modes.
DEFAULT_CAMERA_FPS = 20.0
# Frames a subscriber takes before it knows the publisher's source: a publisher that names itself
# (a simulated camera's scene) sends its source message before every frame, and a subscriber that
# joined between a source message and its frame knows the source from the second frame on.
FRAMES_UNTIL_SOURCE_KNOWN = 2
# A capture timestamp further than this from the subscriber's wall clock is not a capture time (a
# clock set to 1970, a counter, garbage): the frame is malformed. A day is far beyond any real
# clock offset between two computers, even without NTP.
MAX_CLOCK_OFFSET_S = 86400.0
# A sequence number jumping forward by more than this is a discontinuity (a publisher restarted
# with another numbering, or garbage), counted as a restart, not as frames dropped: a camera at
# 1000 fps needs almost two minutes to lose this many frames.
MAX_SEQ_GAP = 100_000
CLOCK_OFFSET_WINDOW = 101  # frames in the running median of the camera clock's offset
MALFORMED_REASONS_KEPT = 100  # reasons of malformed messages kept until take_malformed_reasons()
# A source message: what the publisher is and what its frames show. Its own magic, so that a
# subscriber filtering on the frames' magic (every reader of version 1) never receives it.
SOURCE_MAGIC = b"SLAS"
SOURCE_HEADER = struct.Struct("<4sB")  # magic, format version; then a UTF-8 JSON object
MAX_SOURCE_BYTES = 4096


class FrameFormatError(ValueError):
    """A message that is not a valid frame of a format version this code reads."""


@dataclass(frozen=True)
class Frame:
    """One decoded camera frame.

    ``image`` is ``uint8[H, W, C]`` RGB; for raw frames it is a read-only view of the received
    message (no copy) -- ``np.array(frame.image)`` if you need to write into it.
    """

    seq: int  # publisher's sequence number, +1 per frame
    timestamp: float  # capture time, seconds since the Unix epoch (publisher's clock)
    image: np.ndarray = field(repr=False)  # uint8[H, W, C], RGB
    encoding: EncodingName  # how it travelled: "raw" or "jpeg"
    received_at: float  # receive time, seconds since the Unix epoch (subscriber's wall clock)
    received_monotonic: float  # receive time on the subscriber's monotonic clock (time.monotonic())

    @property
    def age_s(self) -> float:
        """Seconds since the subscriber received this frame, on its own monotonic clock (no clock
        synchronisation involved)."""
        return time.monotonic() - self.received_monotonic

    @property
    def clock_offset_s(self) -> float:
        """Receive wall time minus capture timestamp, seconds: the transport latency plus the
        offset between the publisher's and the subscriber's clocks."""
        return self.received_at - self.timestamp

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    @property
    def channels(self) -> int:
        return self.image.shape[2]


# ---- wire format ------------------------------------------------------------------------------


def _encoding_code(encoding: str | int) -> int:
    if isinstance(encoding, str):
        code = _ENCODING_CODES.get(encoding.lower())
        if code is None:
            raise ValueError(f"unknown frame encoding {encoding!r}; use 'raw' or 'jpeg'")
        return code
    if encoding not in _ENCODING_NAMES:
        raise ValueError(f"unknown frame encoding {encoding!r}; use 0 (raw) or 1 (jpeg)")
    return int(encoding)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"frames are uint8 images, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or not 1 <= image.shape[2] <= 4:
        raise ValueError(f"frames are [H, W, C] images with 1..4 channels, got shape {image.shape}")
    height, width = image.shape[:2]
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(f"frame sides must be 1..{MAX_SIDE} pixels, got {height}x{width}")
    return image


def encode_frame(
    image_rgb: np.ndarray,
    seq: int,
    timestamp: float,
    encoding: EncodingName | int = "raw",
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> bytes:
    """One wire message: the header followed by the payload.

    ``image_rgb`` is ``uint8[H, W, C]`` (C = 3 for RGB; 1 grey; raw frames also allow 2 or 4).
    JPEG frames must be grey or RGB; the JPEG file holds the image in its natural colours.
    """
    image = _check_image(image_rgb)
    height, width, channels = image.shape
    code = _encoding_code(encoding)
    if not 0 <= seq < 2**64:
        raise ValueError(f"sequence number must fit in uint64, got {seq}")
    if code == ENCODING_RAW:
        payload: bytes | memoryview = memoryview(np.ascontiguousarray(image)).cast("B")
    else:
        if channels not in (1, 3):
            raise ValueError(f"JPEG frames must have 1 or 3 channels, got {channels}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        # OpenCV encodes BGR; swap so the JPEG file holds true colours.
        to_encode = image if channels == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, buffer = cv2.imencode(".jpg", to_encode, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode the frame")
        payload = buffer.data
    header = HEADER.pack(
        MAGIC, FORMAT_VERSION, code, channels, 0, seq, float(timestamp), height, width, len(payload)
    )
    return b"".join((header, payload))


def decode_frame(
    data: bytes | memoryview | zmq.Frame,
    received_at: float | None = None,
    received_monotonic: float | None = None,
) -> Frame:
    """Parse one wire message (bytes, a memoryview or a ``zmq.Frame``) into a :class:`Frame`.

    ``received_at`` (wall clock, s since the epoch) and ``received_monotonic``
    (``time.monotonic()``) default to now. Raises :class:`FrameFormatError` (a ``ValueError``)
    naming what is wrong, including a capture timestamp that is not finite, is negative, or lies
    more than :data:`MAX_CLOCK_OFFSET_S` from ``received_at``.
    """
    if received_at is None:
        received_at = time.time()
    if received_monotonic is None:
        received_monotonic = time.monotonic()
    buffer = data.buffer if isinstance(data, zmq.Frame) else memoryview(data)
    if buffer.nbytes < HEADER_SIZE:
        raise FrameFormatError(
            f"frame message is {buffer.nbytes} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    header = HEADER.unpack_from(buffer)
    _check_header(header, buffer.nbytes, received_at)
    _magic, _version, code, channels, _reserved, seq, timestamp, height, width, length = header
    return Frame(
        seq=seq,
        timestamp=timestamp,
        image=_decode_payload(buffer, code, seq, height, width, channels, length),
        encoding=_ENCODING_NAMES[code],
        received_at=received_at,
        received_monotonic=received_monotonic,
    )


def _check_header(header: tuple, nbytes: int, received_at: float) -> None:
    """Raise :class:`FrameFormatError` unless the header describes a frame this reader can use,
    captured within :data:`MAX_CLOCK_OFFSET_S` of ``received_at``, with the payload it announces."""
    magic, version, code, channels, _reserved, seq, timestamp, height, width, length = header
    if magic != MAGIC:
        raise FrameFormatError(
            f"not a SLAC frame: the message starts with {magic!r}, expected {MAGIC!r} "
            "(is something else publishing on this endpoint?)"
        )
    if version != FORMAT_VERSION:
        raise FrameFormatError(
            f"frame format version {version} is not supported (this reader speaks version "
            f"{FORMAT_VERSION}); publisher and subscriber need matching slac_runtime versions"
        )
    if code not in _ENCODING_NAMES:
        raise FrameFormatError(f"unknown frame encoding {code} (0 raw, 1 JPEG)")
    if not 1 <= channels <= 4:
        raise FrameFormatError(f"frame has {channels} channels; 1..4 are allowed")
    if height == 0 or width == 0:
        raise FrameFormatError(f"frame is {height}x{width} pixels; both sides must be at least 1")
    if not (math.isfinite(timestamp) and timestamp >= 0):
        raise FrameFormatError(
            f"frame {seq} has capture timestamp {timestamp!r}; a capture time is a finite, "
            "non-negative number of seconds since the Unix epoch"
        )
    if abs(received_at - timestamp) > MAX_CLOCK_OFFSET_S:
        raise FrameFormatError(
            f"frame {seq} has capture timestamp {timestamp:.3f}, {received_at - timestamp:+.0f} s "
            f"from the subscriber's clock (more than {MAX_CLOCK_OFFSET_S:.0f} s): not a capture "
            "time (is the camera computer's clock set?)"
        )
    if nbytes - HEADER_SIZE != length:
        raise FrameFormatError(
            f"header says the payload is {length} bytes, but the message carries "
            f"{nbytes - HEADER_SIZE} bytes after the {HEADER_SIZE}-byte header"
        )


def _decode_payload(
    buffer: memoryview, code: int, seq: int, height: int, width: int, channels: int, length: int
) -> np.ndarray:
    """The frame's pixels, ``uint8[H, W, C]`` (read-only for raw frames)."""
    if code == ENCODING_RAW:
        expected = height * width * channels
        if length != expected:
            raise FrameFormatError(
                f"raw payload is {length} bytes, but {height}x{width}x{channels} pixels "
                f"need {expected}"
            )
        image = np.frombuffer(buffer, dtype=np.uint8, count=expected, offset=HEADER_SIZE)
        image = image.reshape(height, width, channels)
        image.flags.writeable = False
    else:
        encoded = np.frombuffer(buffer, dtype=np.uint8, count=length, offset=HEADER_SIZE)
        flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
        decoded = cv2.imdecode(encoded, flag)
        if decoded is None:
            raise FrameFormatError(
                f"JPEG payload of {length} bytes (frame {seq}) could not be decoded"
            )
        if channels == 1:
            decoded = decoded[:, :, None]
        elif channels == 3:
            decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
        else:
            raise FrameFormatError(f"JPEG frames must have 1 or 3 channels, header says {channels}")
        if decoded.shape[:2] != (height, width):
            raise FrameFormatError(
                f"JPEG payload decodes to {decoded.shape[0]}x{decoded.shape[1]} pixels, "
                f"header says {height}x{width}"
            )
        image = decoded
    return image


def encode_source(source: dict[str, str]) -> bytes:
    """A source message: the header, then ``source`` (names to strings) as UTF-8 JSON."""
    if not source or not all(isinstance(k, str) and isinstance(v, str) for k, v in source.items()):
        raise ValueError(f"a source is a non-empty mapping of names to strings, got {source!r}")
    message = SOURCE_HEADER.pack(SOURCE_MAGIC, FORMAT_VERSION) + json.dumps(
        dict(source), separators=(",", ":")
    ).encode("utf-8")
    if len(message) > MAX_SOURCE_BYTES:
        raise ValueError(f"a source message is at most {MAX_SOURCE_BYTES} bytes")
    return message


def decode_source(data: bytes | memoryview | zmq.Frame) -> dict[str, str]:
    """Parse a source message; :class:`FrameFormatError` naming what is wrong."""
    buffer = data.buffer if isinstance(data, zmq.Frame) else memoryview(data)
    if buffer.nbytes < SOURCE_HEADER.size or buffer.nbytes > MAX_SOURCE_BYTES:
        raise FrameFormatError(
            f"source message is {buffer.nbytes} bytes; one holds {SOURCE_HEADER.size} to "
            f"{MAX_SOURCE_BYTES}"
        )
    magic, version = SOURCE_HEADER.unpack_from(buffer)
    if magic != SOURCE_MAGIC or version != FORMAT_VERSION:
        raise FrameFormatError(
            f"not a source message of version {FORMAT_VERSION}: it starts with {magic!r}, "
            f"version {version}"
        )
    try:
        source = json.loads(bytes(buffer[SOURCE_HEADER.size :]).decode("utf-8"))
    except ValueError as e:  # not UTF-8, not JSON
        raise FrameFormatError(f"source message is not UTF-8 JSON: {e}") from None
    if not (
        isinstance(source, dict)
        and source
        and all(isinstance(k, str) and isinstance(v, str) for k, v in source.items())
    ):
        raise FrameFormatError(
            f"source message holds {source!r}, not a JSON object of names to strings"
        )
    return source


# ---- transport --------------------------------------------------------------------------------


# A camera source with one of these prefixes is the ZeroMQ endpoint of a frame publisher; anything
# else (an index, /dev/video0, a video file, an rtsp:// or http:// stream) is a camera OpenCV opens.
ENDPOINT_PREFIXES = ("tcp://", "ipc://", "inproc://")


def is_endpoint(source: object) -> bool:
    """Whether a ``--camera`` source is a frame publisher's ZeroMQ endpoint rather than a camera."""
    return isinstance(source, str) and source.startswith(ENDPOINT_PREFIXES)


def _check_endpoint(endpoint: str) -> None:
    if not is_endpoint(endpoint):
        raise ValueError(
            f"frame endpoint {endpoint!r} is not a ZeroMQ address; "
            "use e.g. tcp://*:5555, tcp://127.0.0.1:5555 or ipc:///tmp/slac-camera"
        )


def _open_socket(
    context: zmq.Context,
    kind: int,
    endpoint: str,
    bind: bool,
    role: str,
    options: list[tuple[int, Any]],
) -> zmq.Socket:
    """A socket with LINGER 0 and ``options`` set, bound or connected, with
    an error that says why not."""
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    for option, value in options:
        socket.setsockopt(option, value)
    try:
        if bind:
            socket.bind(endpoint)
        else:
            socket.connect(endpoint)
    except zmq.ZMQError as e:
        socket.close(linger=0)
        hint = (
            " (is another camera publisher already running there?)"
            if e.errno == zmq.EADDRINUSE
            else ""
        )
        raise OSError(
            f"{role} could not {'bind' if bind else 'connect'} {endpoint}: {e}{hint}"
        ) from e
    return socket


class FramePublisher:
    """PUBlishes frames, one single-part message each. Binds by default (the camera side).

    ``endpoint`` is ``tcp://*:5555``, ``tcp://127.0.0.1:*`` (any free port; read :attr:`endpoint`
    afterwards), ``ipc:///tmp/name`` ... ``sndhwm`` is how many messages may queue per subscriber
    before ZeroMQ silently drops new ones; keep it generous -- the subscriber keeps only the newest.
    ``source`` (names to strings, e.g. ``{"source": "virtual dclaw", "scene": "valve"}``) is sent
    as a source message before every frame, so that a subscriber knows it by its first frame.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        bind: bool = True,
        sndhwm: int = DEFAULT_SNDHWM,
        context: zmq.Context | None = None,
        source: dict[str, str] | None = None,
    ) -> None:
        _check_endpoint(endpoint)
        if sndhwm < 1:
            raise ValueError(f"sndhwm must be at least 1 message, got {sndhwm}")
        self._source_message = None if source is None else encode_source(source)
        self._context = context or zmq.Context.instance()
        self._socket = _open_socket(
            self._context, zmq.PUB, endpoint, bind, "frame publisher", [(zmq.SNDHWM, sndhwm)]
        )
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint
        self.next_seq = 0
        self.published = 0

    def publish(
        self,
        image_rgb: np.ndarray,
        seq: int | None = None,
        timestamp: float | None = None,
        encoding: EncodingName = "raw",
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    ) -> int:
        """Send one RGB frame ``uint8[H, W, C]``; returns its sequence number.

        ``seq`` defaults to one more than the last one sent (0 first); ``timestamp`` (capture time,
        ``time.time()`` seconds) defaults to now. Never blocks: with no subscriber the frame is
        dropped, as PUB sockets do.
        """
        if self._socket.closed:
            raise RuntimeError("FramePublisher.publish() after close()")
        if seq is None:
            seq = self.next_seq
        if timestamp is None:
            timestamp = time.time()
        message = encode_frame(image_rgb, seq, timestamp, encoding, jpeg_quality)
        if self._source_message is not None:
            self._socket.send(self._source_message)
        # A plain (copying) send: for frame-sized messages it is as fast as pyzmq's zero-copy
        # send, which hands every message above 64 KiB to a garbage-collector thread.
        self._socket.send(message)
        self.next_seq = seq + 1
        self.published += 1
        return seq

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(linger=0)

    def __enter__(self) -> FramePublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


RCVHWM_MESSAGES = 16  # messages ZeroMQ may queue for the receiver thread (it drains them at once)
RECEIVE_POLL_MS = 50  # the receiver thread looks for close() this often while no message comes
_CHANNEL_NAMES = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}


def describe_shape(shape: tuple[int, ...]) -> str:
    """``64x64 RGB``, ``32x32 grey``: a frame's size and channels in words."""
    height, width, channels = shape
    return f"{height}x{width} {_CHANNEL_NAMES.get(channels, f'{channels}-channel')}"


class FrameSubscriber:
    """SUBscribes to a frame publisher and keeps only the newest frame. Connects by default.

    A receiver thread owns the socket: it takes every message off it the moment it arrives,
    stamps its arrival on this computer's clocks (``time.monotonic()`` and ``time.time()``),
    judges it, and keeps only the newest frame. A frame's age therefore counts from when it reached
    this process, however long the caller takes to look at it (during a robot's ease-in, between
    episodes, while a policy runs). ZeroMQ's ``CONFLATE`` is not used: libzmq aborts the whole
    process on a multipart message sent to a conflating socket, and here a multipart message is
    one more malformed message, counted and survived.

    ``expect`` is the frame shape the reader can use, ``(H, W, C)``, e.g. a policy's
    ``(64, 64, 3)``; frames of another size or channel count are then malformed. What arrives is
    judged in this order:

    - a message that is not a valid frame (a multipart message, one :func:`decode_frame`
      refuses, including a capture timestamp that is not a time, or a frame of another shape than
      ``expect``) is **malformed**: dropped and counted, with its reason kept for
      :meth:`take_malformed_reasons`; the newest frame stays what it was;
    - a frame whose sequence number equals the newest frame's is a **repeat**: dropped and
      counted; it is not a new frame, so it does not refresh the stream's staleness;
    - a sequence number lower than the newest frame's, or more than :data:`MAX_SEQ_GAP` above
      it, is a **restart** of the publisher: counted, never as drops; the frame becomes the
      newest;
    - otherwise the frame is the newest, and the sequence numbers it skipped are **drops**.

    Counters (all since construction): ``received`` (frames accepted as new), ``drops``,
    ``repeats``, ``restarts``, ``malformed`` (with ``malformed_in_a_row`` since the last valid
    frame and ``last_malformed_reason``), and ``stale``: calls of :meth:`latest`, after the first
    frame, that found no frame received within ``max_age_s``. ``messages`` counts every message
    that arrived, valid or not. A source message sets :attr:`source`; an unreadable one is
    malformed.

    Its methods may be called from any one thread (the receiver thread is its own).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        expect: tuple[int, int, int] | None = None,
        bind: bool = False,
        context: zmq.Context | None = None,
    ) -> None:
        _check_endpoint(endpoint)
        if not (max_age_s > 0 and math.isfinite(max_age_s)):
            raise ValueError(f"max_age_s must be a positive number of seconds, got {max_age_s}")
        if expect is not None:
            expect = tuple(int(n) for n in expect)
            if len(expect) != 3 or min(expect) < 1:
                raise ValueError(f"expect is a frame shape (H, W, C), got {expect!r}")
        self.endpoint = endpoint
        self.max_age_s = max_age_s
        self.expect = expect
        self._context = context or zmq.Context.instance()
        socket = _open_socket(
            self._context,
            zmq.SUB,
            endpoint,
            bind,
            "frame subscriber",
            [
                (zmq.RCVHWM, RCVHWM_MESSAGES),
                (zmq.SUBSCRIBE, MAGIC),  # every frame starts with the magic bytes
                (zmq.SUBSCRIBE, SOURCE_MAGIC),  # and every source message with its own
            ],
        )
        self._changed = threading.Condition()
        self._newest: Frame | None = None
        self._returned_count = 0  # value of `received` when latest() last returned a frame
        self._created_monotonic = time.monotonic()
        self._offsets_s: collections.deque[float] = collections.deque(maxlen=CLOCK_OFFSET_WINDOW)
        self._malformed_reasons: collections.deque[str] = collections.deque(
            maxlen=MALFORMED_REASONS_KEPT
        )
        self.messages = 0
        self.received = 0
        self.drops = 0
        self.repeats = 0
        self.stale = 0
        self.restarts = 0
        self.malformed = 0
        self.malformed_in_a_row = 0
        self.last_malformed_reason: str | None = None
        self._source: dict[str, str] | None = None
        self._closing = threading.Event()
        self._receiver = threading.Thread(
            target=self._receive_loop, args=(socket,), name="frame-subscriber", daemon=True
        )
        self._receiver.start()

    # -- the receiver thread --

    def _receive_loop(self, socket: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        try:
            while not self._closing.is_set():
                if not poller.poll(RECEIVE_POLL_MS):
                    continue
                while not self._closing.is_set():
                    try:
                        first = socket.recv(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    received_monotonic, received_at = time.monotonic(), time.time()
                    parts, part = 1, first
                    while part.more:  # the rest of a multipart message arrived with it
                        part = socket.recv(copy=False)
                        parts += 1
                    self._judge(first, parts, received_at, received_monotonic)
        except zmq.ContextTerminated:
            pass
        finally:
            socket.close(linger=0)

    def _judge(
        self, message: zmq.Frame, parts: int, received_at: float, received_monotonic: float
    ) -> None:
        """Decode one message (outside the lock) and take it as the newest frame or source, or
        reject it."""
        frame: Frame | None = None
        source: dict[str, str] | None = None
        if parts > 1:
            reason = (
                f"a {parts}-part message: a frame is one single-part message "
                "(docs/frame_wire_format.md)"
            )
        else:
            try:
                if bytes(message.buffer[: len(SOURCE_MAGIC)]) == SOURCE_MAGIC:
                    source, reason = decode_source(message), None
                else:
                    frame = decode_frame(message, received_at, received_monotonic)
                    reason = self._shape_mismatch(frame)
            except FrameFormatError as e:
                reason = str(e)
            except Exception as e:  # noqa: BLE001 -- no message may stop the receiver
                reason = f"undecodable frame message ({type(e).__name__}: {e})"
        with self._changed:
            self.messages += 1
            if reason is not None:
                self._reject(reason)
            elif source is not None:
                self._source = source
            elif self._accept(frame):
                self._changed.notify_all()

    def _shape_mismatch(self, frame: Frame) -> str | None:
        if self.expect is None or frame.image.shape == self.expect:
            return None
        return (
            f"frame {frame.seq} is {describe_shape(frame.image.shape)}, not "
            f"{describe_shape(self.expect)}"
        )

    def _reject(self, reason: str) -> None:
        self.malformed += 1
        self.malformed_in_a_row += 1
        self.last_malformed_reason = reason
        self._malformed_reasons.append(reason)

    def _accept(self, frame: Frame) -> bool:
        """Judge a decoded frame against the newest one; True if it became the newest."""
        self.malformed_in_a_row = 0
        previous = self._newest
        if previous is not None:
            gap = frame.seq - previous.seq
            if gap == 0:
                self.repeats += 1
                return False
            if gap < 0 or gap > MAX_SEQ_GAP:
                self.restarts += 1
            else:
                self.drops += gap - 1
        self._newest = frame
        self._offsets_s.append(frame.clock_offset_s)
        self.received += 1
        return True

    # -- the caller's side --

    def latest(self, timeout_s: float | None = None) -> Frame | None:
        """The newest frame.

        ``timeout_s=None``: do not wait; return the newest frame received so far (possibly the
        one returned last time -- compare ``received_monotonic``), or ``None`` before the first
        frame. ``timeout_s=t``: wait up to ``t`` seconds for a frame newer than the one returned
        last time; return it, or ``None`` if none arrived in time.

        Counts a ``stale`` call when the newest frame was received more than ``max_age_s`` ago.
        """
        if self._closing.is_set():
            raise RuntimeError("FrameSubscriber.latest() after close()")
        with self._changed:
            if timeout_s is not None:
                self._changed.wait_for(self._has_new_frame, timeout=max(0.0, timeout_s))
            if self._newest is not None and self.is_stale:
                self.stale += 1
            if timeout_s is not None and not self._has_new_frame():
                return None
            self._returned_count = self.received
            return self._newest

    def _has_new_frame(self) -> bool:
        return self.received > self._returned_count

    def take_malformed_reasons(self) -> list[str]:
        """The reasons of the malformed messages since the last call (at most the last
        :data:`MALFORMED_REASONS_KEPT`; ``malformed`` counts them all), oldest first."""
        with self._changed:
            reasons = list(self._malformed_reasons)
            self._malformed_reasons.clear()
        return reasons

    # -- state --

    @property
    def newest(self) -> Frame | None:
        """The newest frame received so far, without counting anything."""
        return self._newest

    @property
    def source(self) -> dict[str, str] | None:
        """What the publisher says it is, from its newest source message (a simulated camera
        names its ``scene``); None while it has sent none, as a real camera never does."""
        with self._changed:
            return None if self._source is None else dict(self._source)

    @property
    def age_s(self) -> float | None:
        """Seconds since the newest frame arrived, subscriber's monotonic clock (``None``
        before any frame)."""
        newest = self._newest
        return None if newest is None else newest.age_s

    @property
    def since_last_frame_s(self) -> float:
        """Seconds since a frame last arrived (local clock), or since construction."""
        newest = self._newest
        start = newest.received_monotonic if newest is not None else self._created_monotonic
        return time.monotonic() - start

    @property
    def is_stale(self) -> bool:
        """True when no frame arrived within ``max_age_s``."""
        return self._newest is None or self.since_last_frame_s > self.max_age_s

    @property
    def clock_offset_s(self) -> float | None:
        """The camera clock's offset: the median, over the last :data:`CLOCK_OFFSET_WINDOW`
        frames, of receive wall time minus capture timestamp, seconds (transport latency
        included; ``None`` before any frame). Positive: the camera's clock is behind ours."""
        with self._changed:
            offsets = list(self._offsets_s)
        return statistics.median(offsets) if offsets else None

    def stats(self) -> dict[str, float | int | str | None]:
        """Counters, the camera clock's offset, and the newest frame's sequence number and age
        (receive clock), for logs and status lines."""
        with self._changed:
            counters = {
                "messages": self.messages,
                "received": self.received,
                "drops": self.drops,
                "repeats": self.repeats,
                "stale": self.stale,
                "restarts": self.restarts,
                "malformed": self.malformed,
                "last_malformed_reason": self.last_malformed_reason,
            }
        newest = self._newest
        return {
            **counters,
            "clock_offset_s": self.clock_offset_s,
            "seq": None if newest is None else newest.seq,
            "age_s": self.age_s,
        }

    def close(self) -> None:
        """Stop the receiver thread; it closes the socket."""
        if not self._closing.is_set():
            self._closing.set()
            self._receiver.join()

    def __enter__(self) -> FrameSubscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
