"""The frame wire format and its ZeroMQ transport (docs/architecture.md §4,
docs/frame_wire_format.md)."""

from __future__ import annotations

import struct
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from slac_runtime.frames import (
    HEADER_SIZE,
    Frame,
    FrameFormatError,
    FramePublisher,
    FrameSubscriber,
    decode_frame,
    decode_source,
    encode_frame,
    encode_source,
)

pytestmark = pytest.mark.timeout(30)


def random_image(height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def smooth_image(height: int = 120, width: int = 160) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], -1).astype(
        np.uint8
    )


# ---- wire format ---------------------------------------------------------------------------------


def test_header_layout_is_the_documented_one():
    image = random_image(48, 80)
    message = encode_frame(image, seq=0x0102030405060708, timestamp=1700000000.25)
    assert HEADER_SIZE == 32
    assert len(message) == 32 + 48 * 80 * 3
    assert message[0:4] == b"SLAC"
    assert message[4] == 1  # format version
    assert message[5] == 0  # raw
    assert message[6] == 3  # channels
    assert message[7] == 0  # reserved
    assert message[8:16] == bytes([8, 7, 6, 5, 4, 3, 2, 1])  # uint64 little-endian
    assert struct.unpack("<d", message[16:24])[0] == 1700000000.25
    assert struct.unpack("<HHI", message[24:32]) == (48, 80, 48 * 80 * 3)
    assert message[32:] == image.tobytes()  # rows of RGB pixels


def test_the_example_in_the_wire_format_document():
    # docs/frame_wire_format.md, "Example": keep the two in step.
    image = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)
    expected = bytes.fromhex(
        "53 4c 41 43 01 00 03 00  05 00 00 00 00 00 00 00  00 00 20 40 fc 54 d9 41"
        "02 00 02 00 0c 00 00 00  ff 00 00 00 ff 00 00 00 ff ff ff ff"
    )
    assert encode_frame(image, seq=5, timestamp=1700000000.5) == expected


def test_raw_round_trip_is_exact():
    image = random_image(30, 50)
    frame = decode_frame(
        encode_frame(image, seq=41, timestamp=1234.5678),
        received_at=1235.0,
        received_monotonic=time.monotonic() - 0.2,
    )
    assert isinstance(frame, Frame)
    assert (frame.seq, frame.timestamp, frame.encoding) == (41, 1234.5678, "raw")
    np.testing.assert_array_equal(frame.image, image)
    assert frame.image.dtype == np.uint8 and (frame.height, frame.width, frame.channels) == (
        30,
        50,
        3,
    )
    assert frame.clock_offset_s == pytest.approx(1235.0 - 1234.5678)  # receive wall time - capture
    assert 0.2 <= frame.age_s < 5.0  # since it was received, on the subscriber's monotonic clock
    assert not frame.image.flags.writeable  # a view of the message, not a copy


def test_grey_raw_frames_keep_their_channel_axis():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    frame = decode_frame(encode_frame(grey, 0, time.time()))
    assert frame.image.shape == (3, 4, 1)
    np.testing.assert_array_equal(frame.image[..., 0], grey)


def test_jpeg_round_trip_is_close_and_keeps_rgb_order():
    image = smooth_image()
    image[:20, :20] = (255, 0, 0)  # a red corner, RGB
    message = encode_frame(image, seq=7, timestamp=time.time(), encoding="jpeg", jpeg_quality=95)
    assert message[5] == 1 and len(message) < image.nbytes
    frame = decode_frame(message)
    assert frame.encoding == "jpeg" and frame.seq == 7 and frame.image.shape == image.shape
    assert np.abs(frame.image.astype(int) - image).mean() < 2.0
    red = frame.image[5:15, 5:15].reshape(-1, 3).mean(0)
    assert red[0] > 230 and red[1] < 25 and red[2] < 25
    # The payload is an ordinary JPEG file holding the true colours.
    bgr = cv2.imdecode(np.frombuffer(message[32:], np.uint8), cv2.IMREAD_COLOR)
    assert bgr[10, 10, 2] > 230 and bgr[10, 10, 0] < 25


def test_encode_refuses_bad_images_and_arguments():
    with pytest.raises(ValueError, match="uint8"):
        encode_frame(np.zeros((4, 4, 3), np.float32), 0, 0.0)
    with pytest.raises(ValueError, match="1..4 channels"):
        encode_frame(np.zeros((4, 4, 5), np.uint8), 0, 0.0)
    with pytest.raises(ValueError, match="JPEG frames must have 1 or 3 channels"):
        encode_frame(np.zeros((4, 4, 4), np.uint8), 0, 0.0, encoding="jpeg")
    with pytest.raises(ValueError, match="uint64"):
        encode_frame(random_image(), -1, 0.0)
    with pytest.raises(ValueError, match="unknown frame encoding"):
        encode_frame(random_image(), 0, 0.0, encoding="png")
    with pytest.raises(ValueError, match="sides"):
        encode_frame(np.zeros((70000, 1, 3), np.uint8), 0, 0.0)


def test_decode_errors_say_what_is_wrong():
    good = encode_frame(random_image(8, 8), seq=1, timestamp=time.time())
    with pytest.raises(FrameFormatError, match="shorter than the 32-byte header"):
        decode_frame(good[:20])
    with pytest.raises(FrameFormatError, match=r"starts with b'JUNK', expected b'SLAC'"):
        decode_frame(b"JUNK" + good[4:])
    with pytest.raises(FrameFormatError, match="format version 9 is not supported"):
        decode_frame(good[:4] + bytes([9]) + good[5:])
    with pytest.raises(FrameFormatError, match="unknown frame encoding 7"):
        decode_frame(good[:5] + bytes([7]) + good[6:])
    with pytest.raises(FrameFormatError, match="header says the payload is 192 bytes.*carries 191"):
        decode_frame(good[:-1])
    wrong_size = good[:24] + struct.pack("<HHI", 8, 9, 192) + good[32:]
    with pytest.raises(FrameFormatError, match="8x9x3 pixels need 216"):
        decode_frame(wrong_size)
    bad_jpeg = bytearray(encode_frame(random_image(8, 8), 0, time.time(), encoding="jpeg"))
    bad_jpeg[32:] = b"\x00" * (len(bad_jpeg) - 32)
    with pytest.raises(FrameFormatError, match="could not be decoded"):
        decode_frame(bytes(bad_jpeg))
    assert issubclass(FrameFormatError, ValueError)


# ---- transport -----------------------------------------------------------------------------------


@pytest.fixture(params=["tcp", "ipc"])
def endpoint(request, tmp_path):
    if request.param == "tcp":
        return "tcp://127.0.0.1:*"  # any free port; the publisher reports which
    return f"ipc://{tmp_path}/frames.ipc"


def connect(pub: FramePublisher, sub: FrameSubscriber, timeout_s: float = 5.0) -> Frame:
    """Publish until the subscriber hears us (PUB/SUB drops what is sent before it connects)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.publish(random_image(8, 8), seq=0)
        frame = sub.latest(timeout_s=0.02)
        if frame is not None:
            time.sleep(0.05)  # let any warm-up frame still in flight arrive, and absorb it
            return sub.latest()
    raise AssertionError(f"subscriber never connected to {pub.endpoint}")


def wait_for_seq(sub: FrameSubscriber, seq: int, timeout_s: float = 5.0) -> Frame:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frame = sub.latest(timeout_s=0.05)
        if frame is not None and frame.seq == seq:
            return frame
    raise AssertionError(f"frame {seq} never arrived")


def test_sequence_numbers_timestamps_and_pixels_arrive_intact(endpoint):
    with FramePublisher(endpoint) as pub, FrameSubscriber(pub.endpoint) as sub:
        connect(pub, sub)
        received = sub.received
        for seq in range(1, 6):
            image = random_image(seed=seq)
            stamp = time.time() - seq / 7.0
            assert pub.publish(image, seq=seq, timestamp=stamp) == seq
            frame = sub.latest(timeout_s=2.0)
            assert frame is not None
            assert (frame.seq, frame.timestamp) == (seq, stamp)
            np.testing.assert_array_equal(frame.image, image)
        assert sub.drops == 0 and sub.received == received + 5


def test_subscriber_returns_the_newest_frame_and_counts_drops(endpoint):
    with FramePublisher(endpoint) as pub, FrameSubscriber(pub.endpoint) as sub:
        connect(pub, sub)
        received = sub.received
        for seq in range(1, 21):
            pub.publish(random_image(seed=seq), seq=seq)
        time.sleep(0.2)  # everything has arrived; the subscriber kept only the newest
        frame = sub.latest()
        assert frame.seq == 20
        np.testing.assert_array_equal(frame.image, random_image(seed=20))
        seen = sub.received - received  # frames 1..20 that reached the subscriber
        assert 1 <= seen <= 20
        assert sub.drops == 20 - seen  # every unseen sequence number is a drop
        # latest() without waiting returns the same newest frame again;
        # with a timeout, only new ones.
        assert sub.latest().seq == 20
        assert sub.latest(timeout_s=0.05) is None
        pub.publish(random_image(), seq=25)
        assert sub.latest(timeout_s=2.0).seq == 25
        assert sub.drops == 20 - seen + 4  # 21..24 were never sent: also drops


def test_publisher_numbers_frames_itself_and_restarts_are_not_drops(endpoint):
    with FramePublisher(endpoint) as pub, FrameSubscriber(pub.endpoint) as sub:
        connect(pub, sub)  # seq 0
        restarts = sub.restarts
        assert pub.publish(random_image()) == 1
        assert sub.latest(timeout_s=2.0).seq == 1
        pub.publish(random_image(), seq=0)  # the publisher restarted
        assert sub.latest(timeout_s=2.0).seq == 0
        assert sub.restarts == restarts + 1 and sub.drops == 0


def test_frozen_publisher_is_reported_stale(endpoint):
    with FramePublisher(endpoint) as pub, FrameSubscriber(pub.endpoint, max_age_s=0.3) as sub:
        connect(pub, sub)
        pub.publish(random_image(), seq=1)
        assert sub.latest(timeout_s=2.0).seq == 1
        assert not sub.is_stale
        assert 0 <= sub.age_s < 0.3
        stale = sub.stale
        time.sleep(0.5)  # the publisher goes quiet
        frame = sub.latest()
        assert frame is not None and frame.seq == 1  # still the last frame, but ...
        assert sub.is_stale and sub.stale == stale + 1
        assert sub.latest(timeout_s=0.05) is None and sub.stale == stale + 2
        assert sub.age_s > 0.45 and sub.since_last_frame_s > 0.45
        pub.publish(random_image(), seq=2)
        assert sub.latest(timeout_s=2.0).seq == 2
        assert not sub.is_stale
        stats = sub.stats()
        assert stats["stale"] == stale + 2 and stats["seq"] == 2 and stats["received"] >= 3


def test_jpeg_frames_over_the_wire(endpoint):
    with FramePublisher(endpoint) as pub, FrameSubscriber(pub.endpoint) as sub:
        connect(pub, sub)
        image = smooth_image()
        pub.publish(image, seq=3, encoding="jpeg", jpeg_quality=90)
        frame = wait_for_seq(sub, 3)
        assert frame.encoding == "jpeg"
        assert np.abs(frame.image.astype(int) - image).mean() < 3.0


def test_no_frame_yet():
    with FrameSubscriber("tcp://127.0.0.1:1") as sub:  # nobody there
        assert sub.latest() is None
        assert sub.latest(timeout_s=0.05) is None
        assert sub.is_stale and sub.stale == 0 and sub.age_s is None
        assert sub.stats()["seq"] is None


def test_subscriber_may_bind_and_publisher_connect(tmp_path):
    endpoint = f"ipc://{tmp_path}/reverse.ipc"
    with FrameSubscriber(endpoint, bind=True) as sub, FramePublisher(endpoint, bind=False) as pub:
        assert connect(pub, sub).seq == 0


def test_endpoint_errors_are_clear():
    with pytest.raises(ValueError, match="not a ZeroMQ address"):
        FramePublisher("localhost:5555")
    with FramePublisher("tcp://127.0.0.1:*") as first:
        with pytest.raises(OSError, match="could not bind .*already running"):
            FramePublisher(first.endpoint)
    pub = FramePublisher("tcp://127.0.0.1:*")
    pub.close()
    pub.close()  # idempotent
    with pytest.raises(RuntimeError, match="after close"):
        pub.publish(random_image())


def wait_until(sub: FrameSubscriber, condition, timeout_s: float = 5.0) -> None:
    """Call ``sub.latest()`` until ``condition()`` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sub.latest(timeout_s=0.01)
        if condition():
            return
    raise AssertionError("the subscriber never got there")


@pytest.fixture
def raw_pub(tmp_path):
    """A bare ZeroMQ PUB socket (a publisher that may send anything) and its endpoint."""
    import zmq

    endpoint = f"ipc://{tmp_path}/raw.ipc"
    socket = zmq.Context.instance().socket(zmq.PUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(endpoint)
    yield socket, endpoint
    socket.close(linger=0)


def test_malformed_messages_are_dropped_counted_and_survived(raw_pub):
    raw, endpoint = raw_pub
    with FrameSubscriber(endpoint) as sub:
        wait_until(
            sub, lambda: raw.send(encode_frame(random_image(8, 8), 0, time.time())) or sub.received
        )
        newest = sub.newest
        raw.send(b"SLAC-too-short")  # passes the subscription filter, fails decoding
        wait_until(sub, lambda: sub.malformed == 1)
        assert "shorter than the 32-byte header" in sub.last_malformed_reason
        assert sub.newest is newest and sub.malformed_in_a_row == 1  # the newest frame stays
        good = encode_frame(random_image(8, 8), 1, time.time())
        raw.send(good[:4] + bytes([9]) + good[5:])  # a format version this reader does not speak
        wait_until(sub, lambda: sub.malformed == 2)
        assert sub.malformed_in_a_row == 2 and "format version 9" in sub.last_malformed_reason
        raw.send(good)  # the stream goes on
        wait_until(sub, lambda: sub.newest.seq == 1)
        assert sub.malformed_in_a_row == 0 and sub.malformed == 2 and sub.drops == 0
        reasons = sub.take_malformed_reasons()
        assert len(reasons) == 2 and "header" in reasons[0] and "version 9" in reasons[1]
        assert sub.take_malformed_reasons() == []
        stats = sub.stats()
        assert stats["malformed"] == 2 and "version 9" in stats["last_malformed_reason"]


@pytest.mark.parametrize(
    "timestamp, why",
    [
        (float("nan"), "finite, non-negative"),
        (float("inf"), "finite, non-negative"),
        (-1.0, "finite, non-negative"),
        (0.0, "from the subscriber's clock"),  # 1970: a clock never set
        (time.time() + 2 * 86400, "from the subscriber's clock"),
    ],
)
def test_capture_timestamps_that_are_not_times_are_malformed(raw_pub, timestamp, why):
    with pytest.raises(FrameFormatError, match=why):
        decode_frame(encode_frame(random_image(8, 8), 3, timestamp))
    raw, endpoint = raw_pub
    with FrameSubscriber(endpoint) as sub:
        wait_until(
            sub, lambda: raw.send(encode_frame(random_image(8, 8), 3, timestamp)) or sub.malformed
        )
        assert sub.newest is None and sub.received == 0 and why in sub.last_malformed_reason
    # Within the documented bound (a day) an offset clock is fine: it is measured, not trusted.
    assert (
        decode_frame(encode_frame(random_image(8, 8), 3, time.time() - 3600)).clock_offset_s > 3599
    )


def test_a_frame_is_timed_when_it_arrives_not_when_it_is_read(endpoint):
    """The age of a frame nobody looked at for a while is the time since it arrived."""
    with FramePublisher(endpoint) as pub, FrameSubscriber(pub.endpoint, max_age_s=0.25) as sub:
        connect(pub, sub)
        sent_at = time.monotonic()
        pub.publish(random_image(), seq=1)
        time.sleep(0.4)  # the reader is busy elsewhere (an ease-in, another episode)
        read_at = time.monotonic()
        frame = sub.latest()
        assert frame.seq == 1
        # It arrived within a few milliseconds of being sent (loopback), not when it was read.
        assert 0 <= frame.received_monotonic - sent_at < 0.05
        assert read_at - frame.received_monotonic > 0.35
        assert frame.age_s > 0.35 and sub.is_stale


def test_multipart_messages_are_malformed_and_survived(raw_pub):
    """libzmq aborts a process whose conflating socket gets a multipart message; here it is one
    more malformed message, before the first frame and after it."""
    raw, endpoint = raw_pub
    good = encode_frame(random_image(8, 8), 0, time.time())
    with FrameSubscriber(endpoint) as sub:
        wait_until(sub, lambda: raw.send_multipart([good, b"more"]) or sub.malformed)
        assert sub.newest is None and "2-part message" in sub.last_malformed_reason
        wait_until(sub, lambda: raw.send(good) or sub.received)
        malformed = sub.malformed
        raw.send_multipart([encode_frame(random_image(8, 8), 1, time.time()), b"a", b"b"])
        wait_until(sub, lambda: sub.malformed == malformed + 1)
        assert "3-part message" in sub.last_malformed_reason and sub.newest.seq == 0
        raw.send(encode_frame(random_image(8, 8), 2, time.time()))
        wait_until(sub, lambda: sub.newest.seq == 2)
        assert sub.messages >= sub.received + sub.malformed


@pytest.mark.parametrize(
    "image, what",
    [
        (random_image(32, 32), "32x32 RGB"),
        (random_image(128, 128), "128x128 RGB"),
        (np.zeros((64, 64, 4), np.uint8), "64x64 RGBA"),
        (np.zeros((64, 64, 1), np.uint8), "64x64 grey"),
    ],
)
def test_frames_of_another_shape_than_expected_are_malformed(raw_pub, image, what):
    raw, endpoint = raw_pub
    with FrameSubscriber(endpoint, expect=(64, 64, 3)) as sub:
        wait_until(
            sub, lambda: raw.send(encode_frame(random_image(), 0, time.time())) or sub.newest
        )
        raw.send(encode_frame(image, 1, time.time()))  # the size changes mid-stream
        wait_until(sub, lambda: sub.malformed)
        assert sub.newest.seq == 0  # the last good frame stays the newest
        assert sub.last_malformed_reason == (f"frame 1 is {what}, not 64x64 RGB")


def test_a_repeated_sequence_number_is_not_a_new_frame(endpoint):
    with FramePublisher(endpoint) as pub, FrameSubscriber(pub.endpoint, max_age_s=0.3) as sub:
        connect(pub, sub)
        pub.publish(random_image(seed=1), seq=5)
        first = sub.latest(timeout_s=2.0)
        assert first.seq == 5
        received, repeats = sub.received, sub.repeats
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:  # a frozen camera that keeps sending its last frame
            pub.publish(random_image(seed=2), seq=5)
            assert sub.latest(timeout_s=0.02) is None  # never a new frame
        assert sub.received == received and sub.repeats > repeats + 5
        assert sub.newest is first  # the repeat's pixels are not taken either
        assert sub.is_stale and sub.age_s > 0.5  # repeats do not refresh the stream


def test_backwards_or_absurd_sequence_numbers_are_restarts_never_drops(endpoint):
    with FramePublisher(endpoint) as pub, FrameSubscriber(pub.endpoint) as sub:
        connect(pub, sub)
        for seq in (10, 3, 2**64 - 1, 2**64 - 2, 0, 2):  # backwards, a huge jump, backwards ...
            pub.publish(random_image(), seq=seq)
            assert sub.latest(timeout_s=2.0).seq == seq
        assert sub.restarts == 4  # 3, 2**64-1, 2**64-2 and 0
        assert sub.drops == 9 + 1  # 1..9 before 10, and 1 between 0 and 2


def test_camera_clock_offset_is_measured_and_age_is_our_own(endpoint):
    """A camera whose clock runs 30 s ahead: its frames are not 30 s in the future for us."""
    with FramePublisher(endpoint) as pub, FrameSubscriber(pub.endpoint, max_age_s=0.3) as sub:
        connect(pub, sub)
        for seq in range(1, 30):
            pub.publish(random_image(), seq=seq, timestamp=time.time() + 30.0)
            sub.latest(timeout_s=2.0)
        assert sub.clock_offset_s == pytest.approx(-30.0, abs=0.5)  # median of the last frames
        assert sub.stats()["clock_offset_s"] == sub.clock_offset_s
        assert 0 <= sub.age_s < 0.3 and not sub.is_stale
        time.sleep(0.4)  # the camera freezes
        assert sub.latest() is not None and sub.is_stale and sub.age_s > 0.35


def test_source_message_layout_and_round_trip():
    message = encode_source({"source": "virtual dclaw", "scene": "valve"})
    assert message[:4] == b"SLAS" and message[4] == 1  # its own magic: "SLAC" readers never see it
    assert message[5:] == b'{"source":"virtual dclaw","scene":"valve"}'
    assert decode_source(message) == {"source": "virtual dclaw", "scene": "valve"}
    with pytest.raises(ValueError, match="names to strings"):
        encode_source({"scene": 1})
    for bad, why in [
        (b"SLAS\x01[1]", "not a JSON object"),
        (b'SLAS\x01{"scene": 2}', "not a JSON object"),
        (b"SLAS\x01\xff", "not UTF-8 JSON"),
        (b"SLAS\x02{}", "version 2"),
        (b"SLAS\x01" + b" " * 5000, "bytes"),
    ]:
        with pytest.raises(FrameFormatError, match=why):
            decode_source(bad)


def test_a_publisher_names_its_source_before_its_first_frame(endpoint):
    """By the time a subscriber has a frame, it knows the source the publisher named."""
    source = {"source": "virtual dclaw", "scene": "pose"}
    with FramePublisher(endpoint, source=source) as pub, FrameSubscriber(pub.endpoint) as sub:
        connect(pub, sub)
        assert sub.source == source
        pub.publish(random_image(seed=1), seq=1)
        assert wait_for_seq(sub, 1).seq == 1 and sub.malformed == 0
    with FramePublisher(endpoint) as pub, FrameSubscriber(pub.endpoint) as sub:
        connect(pub, sub)  # a camera that names nothing
        assert sub.source is None


def test_an_unreadable_source_message_is_malformed_and_survived(raw_pub):
    raw, endpoint = raw_pub
    with FrameSubscriber(endpoint) as sub:
        wait_until(sub, lambda: raw.send(b"SLAS\x01not json") or sub.malformed)
        assert sub.source is None and "not UTF-8 JSON" in sub.last_malformed_reason
        good = encode_frame(random_image(8, 8), 0, time.time())
        wait_until(sub, lambda: raw.send(good) or sub.received)  # frames still arrive


def test_runtime_modules_load_neither_torch_nor_mujoco():
    code = (
        "import sys\n"
        "import slac_runtime.frames, slac_runtime.camera, slac_runtime.preprocessing\n"
        "bad = sorted(m for m in ('torch', 'mujoco', 'dm_control') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
