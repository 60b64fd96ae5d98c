"""The frame publishers at given ZeroMQ endpoints (``slac-camera --list``): what each says it is,
the frames it sends and at what rate.

A camera another program serves -- ``slac-camera`` publishing a webcam, the virtual D'Claw's
camera, a camera on another computer -- is not a ``/dev/video*`` device this computer can open
(or it is one that program holds), so ``--list`` also subscribes to each endpoint for a moment.
A publisher's source message names it and carries the capture settings its camera reports; the
frames give the size, the encoding and, from their sequence numbers and capture timestamps, the
rate. Nothing is sent to a publisher: a subscriber only listens.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import zmq

from slac_runtime.camera_settings import CameraSettings
from slac_runtime.frames import (
    DEFAULT_CAMERA_ENDPOINT,
    FRAMES_UNTIL_SOURCE_KNOWN,
    Frame,
    FrameSubscriber,
    is_endpoint,
)

# How long to listen at an endpoint for the first frame, and then for the frames the rate is
# measured over (a 20 fps camera sends 10 in half a second).
DEFAULT_WAIT_S = 1.5
RATE_WINDOW_S = 0.5


@dataclass(frozen=True)
class PublisherProbe:
    """What listening at one endpoint found."""

    endpoint: str
    waited_s: float
    source: dict[str, str] | None = None
    shape: tuple[int, int, int] | None = None
    encoding: str | None = None
    fps: float | None = None
    rejected: int = 0
    rejected_reason: str | None = None

    @property
    def found(self) -> bool:
        return self.shape is not None

    def describe(self) -> str:
        """One line: the endpoint, then what publishes there, or why nothing was found."""
        if not self.found:
            if self.rejected:
                return (
                    f"{self.endpoint}  {self.rejected} messages that are not SLAC frames; the "
                    f"last: {self.rejected_reason}"
                )
            return (
                f"{self.endpoint}  no frame within {self.waited_s:g} s (nothing publishing there, "
                "or a publisher on another endpoint)"
            )
        source = dict(self.source or {})
        name = source.pop("source", "a publisher that does not name itself")
        scene = source.pop("scene", None)
        height, width, channels = self.shape
        rate = "" if self.fps is None else f" at {self.fps:.1f} fps"
        line = f"{self.endpoint}  {name}{f', scene {scene}' if scene else ''}: "
        line += f"{width}x{height}x{channels} {self.encoding} frames{rate}"
        try:
            settings = CameraSettings.from_source(source)
        except ValueError as e:
            return f"{line}; camera settings unreadable: {e}"
        if settings is not None:
            line += f"; camera {settings.describe()}"
        return line


def probe_publisher(endpoint: str, wait_s: float = DEFAULT_WAIT_S) -> PublisherProbe:
    """Listen at ``endpoint`` for up to ``wait_s`` for its frames, then for ``RATE_WINDOW_S``
    more to measure their rate. ValueError for an endpoint that is not one."""
    started = time.monotonic()
    with FrameSubscriber(endpoint) as frames:
        first = _wait_for_frames(frames, FRAMES_UNTIL_SOURCE_KNOWN, started + wait_s)
        if first is None:
            return PublisherProbe(
                endpoint,
                wait_s,
                rejected=frames.malformed,
                rejected_reason=frames.last_malformed_reason,
            )
        time.sleep(RATE_WINDOW_S)
        newest = frames.newest
        return PublisherProbe(
            endpoint,
            wait_s,
            source=frames.source,
            shape=(first.height, first.width, first.channels),
            encoding=first.encoding,
            fps=_rate(first, newest),
        )


def _wait_for_frames(frames: FrameSubscriber, count: int, deadline: float) -> Frame | None:
    """The newest frame once ``count`` have arrived, or None at ``deadline``."""
    while time.monotonic() < deadline:
        frame = frames.latest(timeout_s=0.05)
        if frame is not None and frames.received >= count:
            return frame
    return None


def _rate(first: Frame, newest: Frame | None) -> float | None:
    """Frames per second between two frames, by the publisher's sequence numbers and capture
    clock; None when no later frame came (or the publisher restarted in between)."""
    if newest is None or newest.seq <= first.seq or newest.timestamp <= first.timestamp:
        return None
    return (newest.seq - first.seq) / (newest.timestamp - first.timestamp)


def parse_endpoints(text: str) -> tuple[str, ...]:
    """``"tcp://127.0.0.1:5555,ipc:///tmp/cam"`` -> the endpoints; an ArgumentTypeError naming
    one that is not a ZeroMQ address to connect to."""
    endpoints = tuple(e.strip() for e in text.split(",") if e.strip())
    for endpoint in endpoints:
        problem = _endpoint_problem(endpoint)
        if problem is not None:
            raise argparse.ArgumentTypeError(
                f"{endpoint!r} is not a ZeroMQ address to listen at{problem}; use e.g. "
                "tcp://127.0.0.1:5555,ipc:///tmp/slac-camera"
            )
    if not endpoints:
        raise argparse.ArgumentTypeError(f"no endpoint in {text!r}")
    return endpoints


def _endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` is no address a subscriber in another process can connect to (the text
    that follows "is not a ZeroMQ address to listen at"), or None."""
    if not is_endpoint(endpoint) or "*" in endpoint:
        return ""
    if endpoint.startswith("inproc://"):
        return " (inproc:// reaches only this process)"
    if endpoint.startswith("tcp://"):
        port = endpoint.rpartition(":")[2]
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            return " (tcp:// needs host:port, the port 1..65535)"
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    try:
        socket.connect(endpoint)
    except zmq.ZMQError as e:
        return f" ({e})"
    finally:
        socket.close(linger=0)
        context.term()
    return None


def list_publishers(endpoints: tuple[str, ...] = (DEFAULT_CAMERA_ENDPOINT,)) -> None:
    """Print one line per endpoint: the publisher there, or that none answered."""
    print("frame publishers:", flush=True)
    for endpoint in endpoints:
        print(f"  {probe_publisher(endpoint).describe()}", flush=True)


__all__ = ["PublisherProbe", "list_publishers", "parse_endpoints", "probe_publisher"]
