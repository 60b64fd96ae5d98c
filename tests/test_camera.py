"""Camera capture, the camera publisher and slac-camera, with video files and fake cameras."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from slac_runtime.camera import (
    CallableSource,
    CameraError,
    CameraPublisher,
    EndOfStream,
    OpenCVCamera,
    PushSource,
    main,
    publish_simulated_frame,
)
from slac_runtime.camera_settings import CameraSettings
from slac_runtime.frames import FramePublisher, FrameSubscriber
from slac_runtime.preprocessing import CameraCalibration

pytestmark = pytest.mark.timeout(60)

RED_BGR = (0, 0, 255)
BLUE_BGR = (255, 0, 0)


def halves_bgr(height: int = 240, width: int = 320) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, : width // 2] = RED_BGR
    frame[:, width // 2 :] = BLUE_BGR
    return frame


@pytest.fixture
def video(tmp_path) -> str:
    """A 10-frame, 30 fps lossless video: left half red, right half blue; frame i has i dots."""
    path = str(tmp_path / "halves.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FFV1"), 30.0, (320, 240))
    assert writer.isOpened()
    for i in range(10):
        frame = halves_bgr()
        frame[0, :i] = (0, 255, 0)
        writer.write(frame)
    writer.release()
    return path


def absent_camera_index() -> int:
    index = 3
    while os.path.exists(f"/dev/video{index}"):
        index += 1
    return index


def assert_red_blue_rgb(image: np.ndarray) -> None:
    """Left half red, right half blue, in RGB order (a BGR/RGB mix-up swaps them)."""
    left = image[8:-8, 4:28].reshape(-1, 3).mean(0)
    right = image[8:-8, 36:60].reshape(-1, 3).mean(0)
    assert left[0] > 240 and left[2] < 15, left
    assert right[2] > 240 and right[0] < 15, right


def connect(pub: FramePublisher, sub: FrameSubscriber, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sub.latest(timeout_s=0.02) is None:
        assert time.monotonic() < deadline, "subscriber never connected"
        pub.publish(np.zeros((8, 8, 3), np.uint8))


# ---- OpenCVCamera --------------------------------------------------------------------------------


def test_video_file_is_a_camera(video):
    with OpenCVCamera(video) as camera:
        assert camera.bgr and camera.kind == "file"
        frames = []
        while True:
            try:
                frame = camera.read(timeout_s=2.0)
            except EndOfStream:
                break
            assert frame is not None
            frames.append(frame)
        assert len(frames) >= 2  # played at 30 fps; a slow reader may miss some, never repeat
        assert [f.index for f in frames] == sorted({f.index for f in frames})
        assert frames[-1].index == 9 and camera.frames_captured == 10
        np.testing.assert_array_equal(frames[0].image[100:], halves_bgr()[100:])  # BGR, as OpenCV
        assert frames[-1].timestamp - frames[0].timestamp > 0.2  # ~9 frame periods at 30 fps
        with pytest.raises(EndOfStream):
            camera.read(timeout_s=0.1)


def test_looping_video_keeps_delivering(video):
    with OpenCVCamera(video, loop=True) as camera:
        deadline = time.monotonic() + 5.0
        while camera.frames_captured < 15:
            assert time.monotonic() < deadline
            assert camera.read(timeout_s=1.0) is not None
        assert not camera.is_frozen


def test_unknown_camera_index_is_a_clear_error():
    index = absent_camera_index()
    with pytest.raises(
        CameraError, match=rf"camera {index} could not be opened: .*ls /dev/video\*"
    ):
        OpenCVCamera(index)
    with pytest.raises(CameraError, match=rf"camera {index} could not be opened"):
        OpenCVCamera(str(index))


def test_missing_device_and_file_are_clear_errors(tmp_path):
    device = f"/dev/video{absent_camera_index()}"
    with pytest.raises(
        CameraError, match=rf"camera {device} could not be opened: the device does not exist"
    ):
        OpenCVCamera(device)
    with pytest.raises(CameraError, match="video file .*nope.mp4 does not exist"):
        OpenCVCamera(str(tmp_path / "nope.mp4"))
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("hello")
    with pytest.raises(CameraError, match="could not be opened by OpenCV"):
        OpenCVCamera(str(not_a_video))


class FreezingCapture:
    """A fake camera: delivers ``frames`` frames, then blocks inside read() like a hung driver."""

    def __init__(self, frames: int = 3) -> None:
        self.frames = frames
        self.unblock = threading.Event()
        self.released = False

    def read(self):
        if self.frames > 0:
            self.frames -= 1
            time.sleep(0.01)
            return True, halves_bgr(48, 64)
        self.unblock.wait(10.0)
        return False, None

    def release(self) -> None:
        self.released = True


class FailingCapture:
    """A fake camera that was unplugged: every read fails."""

    def read(self):
        time.sleep(0.005)
        return False, None

    def release(self) -> None:
        pass


def test_frozen_camera_is_detected():
    capture = FreezingCapture(frames=3)
    camera = OpenCVCamera(0, capture=capture, frame_timeout_s=0.2)
    try:
        assert camera.read(timeout_s=2.0) is not None
        time.sleep(0.35)
        assert camera.is_frozen and camera.frames_captured == 3
        assert camera.read(timeout_s=0.0).index == 2  # the newest, once
        assert camera.read(timeout_s=0.05) is None  # nothing new
        # The publisher turns a frozen source into an error.
        with FramePublisher("tcp://127.0.0.1:*") as frames:
            publisher = CameraPublisher(
                camera, frames, frame_timeout_s=0.2, first_frame_timeout_s=0.2
            )
            with pytest.raises(CameraError, match="camera 0 delivered no frame at all for"):
                publisher.run(duration_s=5.0)
    finally:
        capture.unblock.set()
        camera.close()
    assert capture.released


def test_unplugged_camera_fails_with_a_clear_error():
    with OpenCVCamera(0, capture=FailingCapture(), frame_timeout_s=0.1) as camera:
        with pytest.raises(CameraError, match="camera 0 stopped delivering frames.*unplugged"):
            camera.read(timeout_s=2.0)


# ---- CameraPublisher -----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_video_through_publisher_arrives_as_rgb(video, tmp_path, transport):
    endpoint = "tcp://127.0.0.1:*" if transport == "tcp" else f"ipc://{tmp_path}/camera.ipc"
    with (
        OpenCVCamera(video, loop=True) as camera,
        FramePublisher(endpoint) as frames,
        FrameSubscriber(frames.endpoint) as sub,
    ):
        publisher = CameraPublisher(camera, frames, fps=50.0)
        publisher.start()
        try:
            first = sub.latest(timeout_s=5.0)
            assert first is not None, publisher.error
            second = sub.latest(timeout_s=2.0)
            assert second is not None and second.seq > first.seq
        finally:
            publisher.stop()
        assert publisher.error is None
        assert second.image.shape == (64, 64, 3)
        assert_red_blue_rgb(second.image)
        assert second.timestamp <= second.received_at
        assert publisher.stats.published >= 2 and publisher.stats.preprocess_ms > 0


def test_publisher_applies_the_calibration_and_jpeg(video):
    calibration = CameraCalibration(flip_horizontal=True, output_size=32)
    with (
        OpenCVCamera(video, loop=True) as camera,
        FramePublisher("tcp://127.0.0.1:*") as frames,
        FrameSubscriber(frames.endpoint) as sub,
    ):
        publisher = CameraPublisher(camera, frames, calibration=calibration, encoding="jpeg")
        publisher.start()
        try:
            frame = sub.latest(timeout_s=5.0)
        finally:
            publisher.stop()
    assert frame is not None and frame.encoding == "jpeg" and frame.image.shape == (32, 32, 3)
    left, right = frame.image[4:-4, 2:12].mean((0, 1)), frame.image[4:-4, 20:30].mean((0, 1))
    assert left[2] > 200 and right[0] > 200  # flipped: blue on the left, red on the right


def test_publisher_keeps_the_rate_without_adding_latency():
    # A 30 fps source published at 20 fps: two of every three frames go out, each as it arrives.
    source = PushSource(bgr=True)
    with FramePublisher("tcp://127.0.0.1:*") as frames:
        publisher = CameraPublisher(source, frames, fps=20.0)
        sent = []
        for i in range(30):
            source.put(halves_bgr(48, 64), timestamp=1000.0 + i / 30.0)
            sent.append(publisher.publish_next(timeout_s=0.0))
        assert sum(seq is not None for seq in sent) == 20
        assert publisher.stats.skipped == 10 and publisher.stats.source_frames == 30
        assert publisher.publish_next(timeout_s=0.0) is None  # nothing new: nothing sent


def test_frozen_camera_makes_the_subscriber_stale():
    source = PushSource(bgr=True)
    with (
        FramePublisher("tcp://127.0.0.1:*") as frames,
        FrameSubscriber(frames.endpoint, max_age_s=0.2) as sub,
    ):
        connect(frames, sub)
        publisher = CameraPublisher(source, frames, fps=50.0, frame_timeout_s=0.4)
        publisher.start()
        try:
            for _ in range(5):
                source.put(halves_bgr(48, 64))
                time.sleep(0.02)
            assert sub.latest(timeout_s=2.0) is not None
            # The camera freezes: no more frames.
            time.sleep(0.6)
            assert sub.latest() is not None and sub.is_stale and sub.stale >= 1
            deadline = time.monotonic() + 3.0
            while publisher.running and time.monotonic() < deadline:
                time.sleep(0.02)
            assert isinstance(publisher.error, CameraError)
            assert "simulator delivered no new frame" in str(publisher.error)
        finally:
            publisher.stop()


def test_simulator_frames_through_the_same_publisher():
    rng = np.random.default_rng(0)
    render = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # RGB, policy-sized
    with (
        FramePublisher("tcp://127.0.0.1:*") as frames,
        FrameSubscriber(frames.endpoint) as sub,
    ):
        deadline = time.monotonic() + 5.0
        frame = None
        captured_at = time.time() - 0.5
        while frame is None:
            assert time.monotonic() < deadline
            publish_simulated_frame(frames, render, timestamp=captured_at)
            frame = sub.latest(timeout_s=0.02)
        np.testing.assert_array_equal(frame.image, render)  # no colour swap, no resampling
        assert frame.timestamp == captured_at

        calls = []

        def renderer():
            calls.append(1)
            return render

        publisher = CameraPublisher(CallableSource(renderer), frames, fps=50.0)
        publisher.run(max_frames=5)
        assert len(calls) == 5 and publisher.stats.published == 5


# ---- slac-camera --------------------------------------------------------------------------------


def test_cli_publishes_a_video(video, tmp_path, capsys):
    endpoint = f"ipc://{tmp_path}/cli.ipc"
    calibration = tmp_path / "camera.json"
    CameraCalibration(output_size=48).save(calibration)
    received = []

    def subscribe():
        with FrameSubscriber(endpoint) as sub:
            frame = sub.latest(timeout_s=10.0)
            if frame is not None:
                received.append(frame)

    thread = threading.Thread(target=subscribe)
    thread.start()
    code = main(
        ["--camera", video, "--bind", endpoint, "--loop", "--duration", "1.0", "--fps", "30",
         "--calibration", str(calibration), "--size", "32"]
    )  # fmt: skip
    thread.join(timeout=15)
    assert code == 0
    err = capsys.readouterr().err
    assert "publishing video" in err and "stopped after" in err
    assert received and received[0].image.shape == (32, 32, 3)  # --size overrides the file
    assert_red_blue_rgb(
        cv2.resize(np.array(received[0].image), (64, 64), interpolation=cv2.INTER_NEAREST)
    )


def test_cli_errors(tmp_path, capsys):
    index = absent_camera_index()  # a camera that cannot be opened: refused, nothing published
    assert main(["--camera", str(index), "--bind", f"ipc://{tmp_path}/x.ipc", "--quiet"]) == 2
    assert f"camera {index} could not be opened" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"flip_horizontal": "yes"}')
    assert main(["--camera", "0", "--calibration", str(bad)]) == 2
    assert "'flip_horizontal'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "calibration, need",
    [
        (CameraCalibration(source_size=(640, 480)), "made for 640x480 frames"),
        (CameraCalibration(crop=(300, 0, 100, 100)), "does not fit in a 320x240 frame"),
    ],
    ids=["another size", "crop outside"],
)
def test_cli_refuses_a_calibration_that_does_not_fit_the_frames(
    video, tmp_path, capsys, calibration, need
):
    """Checked against the frame size the camera reports, before anything is published."""
    path = tmp_path / "camera.json"
    calibration.save(path)
    argv = ["--camera", video, "--bind", f"ipc://{tmp_path}/fit.ipc", "--quiet"]
    assert main([*argv, "--camera-calibration", str(path), "--duration", "5"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"slac-camera: error: --camera-calibration {path}: "), err
    assert need in err[-1] and not any("Traceback" in line for line in err)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cli_exits_cleanly_on_ctrl_c(video, tmp_path, signum):
    endpoint = f"ipc://{tmp_path}/ctrlc.ipc"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slac_runtime.camera",
            "--camera",
            video,
            "--loop",
            "--bind",
            endpoint,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with FrameSubscriber(endpoint) as sub:
            assert sub.latest(timeout_s=20.0) is not None  # it is running
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped after" in err and "Traceback" not in err


# ---- capture settings ----------------------------------------------------------------------------


def test_a_video_reports_its_mode_and_is_held_to_the_mode_asked(video):
    with OpenCVCamera(video) as camera:
        assert camera.settings == CameraSettings(width=320, height=240, fps=30.0, fourcc="ffv1")
    asked = CameraSettings(width=320, height=240, fps=30.0, fourcc="ffv1")
    with OpenCVCamera(video, settings=asked) as camera:
        assert camera.settings == asked
    with pytest.raises(CameraError) as refused:
        OpenCVCamera(video, settings=CameraSettings(width=640, height=480, fourcc="MJPG"))
    assert str(refused.value) == (
        f"video {video} does not deliver the capture settings asked: 640x480 asked, it delivers "
        "320x240; pixel format MJPG asked, it delivers ffv1 (`slac-camera --list` shows each "
        "camera's modes)"
    )
    with pytest.raises(CameraError, match="fixed exposure asked, it does not report its exposure"):
        OpenCVCamera(video, settings=CameraSettings(auto_exposure=False, exposure=100.0))


def test_cli_publishes_the_settings_it_reads_back(video, tmp_path, capsys):
    endpoint = f"ipc://{tmp_path}/settings.ipc"
    sources = []

    def subscribe():
        with FrameSubscriber(endpoint) as sub:
            if sub.latest(timeout_s=10.0) is not None:
                sources.append(sub.source)

    thread = threading.Thread(target=subscribe)
    thread.start()
    code = main(
        ["--camera", video, "--bind", endpoint, "--loop", "--duration", "1.0", "--quiet",
         "--resolution", "320x240", "--camera-fps", "30", "--fourcc", "ffv1"]
    )  # fmt: skip
    thread.join(timeout=15)
    assert code == 0
    assert sources == [
        {"source": f"video {video}", "width": "320", "height": "240", "fps": "30", "fourcc": "ffv1"}
    ]
    err = capsys.readouterr().err
    assert f"video {video} delivers 320x240 ffv1 at 30 fps" in err and "warning" not in err
    assert main(["--camera", video, "--resolution", "640x480", "--bind", endpoint]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "640x480 asked, it delivers 320x240" in err[0]


@pytest.mark.parametrize(
    "option, value, need",
    [
        ("--exposure", "bright", "must be a number"),
        ("--white-balance", "300", "auto or a colour temperature in 1000..15000 K"),
        ("--fourcc", "MJPEG", "pixel format must be four characters"),
        ("--resolution", "0x480", "resolution must be positive"),
        ("--resolution", "100000x480", "resolution must be at most 16384 pixels each way"),
    ],
)
def test_cli_refuses_a_setting_that_is_none_in_one_line(option, value, need, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--camera", "0", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and need in err[0] and option in err[0]
