"""Discovery: the servos on a port (slac-calibrate ports), the cameras (slac-camera --list), and
the capture settings a camera reports travelling to slac-run's log header."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import pytest

from calibration.cli import main as calibrate
from robots.dclaw import DCLAW
from robots.dclaw.virtual import VirtualDClaw
from robots.dynamixel import control_table as ct
from robots.dynamixel.discovery import scan_port
from slac_runtime.camera.cli import main as camera_main
from slac_runtime.camera.devices import list_cameras, video_device_paths
from slac_runtime.camera_settings import CameraSettings
from slac_runtime.frames import FrameSubscriber
from slac_runtime.run_cli import camera_settings

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def virtual(tmp_path_factory):
    where = tmp_path_factory.mktemp("virtual")
    with VirtualDClaw(where / "tty", f"ipc://{where}/camera") as robot:
        yield robot


# ---- servos ------------------------------------------------------------------------------------


def test_the_virtual_dclaws_nine_servos_are_found_with_their_model(virtual, capsys):
    counters = dict(virtual.emulator.counters)
    scan = scan_port(virtual.port, 1_000_000)
    assert scan.problem is None
    assert [s.servo_id for s in scan.servos] == list(DCLAW.motor_ids)
    model = virtual.emulator.register(DCLAW.motor_ids[0], ct.MODEL_NUMBER)
    assert {(s.model_number, s.model_name) for s in scan.servos} == {(model, ct.model_name(model))}
    after = virtual.emulator.counters
    assert not any(after.get(k, 0) > counters.get(k, 0) for k in after if "write" in k)

    assert calibrate(["ports", "--port", virtual.port]) == 0
    out = capsys.readouterr().out
    assert f"{virtual.port} at 1000000 baud: 9 servos, IDs 10 11 12 20 21 22 30 31 32" in out
    assert f"{ct.model_name(model)} (model {model})" in out
    assert "the dclaw's 9 servos" in out


def test_a_port_with_nothing_on_it_and_one_that_is_missing(tmp_path, capsys):
    controller, device = pty.openpty()  # a serial port with no servo behind it
    try:
        silent = os.ttyname(device)
        assert scan_port(silent, 57600).servos == ()
        missing = str(tmp_path / "ttyNONE")
        assert calibrate(["ports", "--port", f"{silent},{missing}", "--baudrates", "57600"]) == 0
    finally:
        os.close(device)
        os.close(controller)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{silent} at 57600 baud: no servo answered"
    assert lines[1].startswith(f"{missing} at 57600 baud: serial port {missing} not found")


def test_ports_refuses_a_baud_rate_no_bus_runs_at(capsys):
    assert calibrate(["ports", "--baudrates", "12345"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "baud rate 12345 is not one a Dynamixel bus runs at" in err


# ---- cameras ----------------------------------------------------------------------------------


def test_camera_list_with_no_cameras_says_so_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "slac_runtime.camera", "--list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    if not video_device_paths():
        assert result.stdout.splitlines()[0] == (
            "no cameras found: no video devices in /dev (is one plugged in?)"
        )


def test_camera_list_finds_the_virtual_camera_and_says_where_nothing_publishes(
    virtual, tmp_path, capsys
):
    silent = f"ipc://{tmp_path}/nobody"
    assert camera_main(["--list", "--publishers", f"{virtual.camera_endpoint},{silent}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("frame publishers:")
    found, nothing = lines[at + 1 :]
    match = re.fullmatch(
        rf"  {re.escape(virtual.camera_endpoint)}  virtual dclaw, scene (\w+): 64x64x3 raw frames "
        r"at ([\d.]+) fps; camera 64x64 RGB3 at 20 fps, exposure fixed, white balance fixed",
        found,
    )
    assert match, found
    assert match[1] == virtual.sim.scene
    assert 10.0 <= float(match[2]) <= 30.0  # the virtual camera publishes 20 frames a second
    assert nothing == (
        f"  {silent}  no frame within 1.5 s (nothing publishing there, or a publisher on another "
        "endpoint)"
    )


@pytest.mark.parametrize(
    "endpoint, why",
    [
        ("tcp://*:5555", ""),
        ("tcp://127.0.0.1", " (tcp:// needs host:port"),
        ("tcp://127.0.0.1:99999", " (tcp:// needs host:port"),
        ("ipc://", " (Invalid argument"),
        ("inproc://camera", " (inproc:// reaches only this process)"),
    ],
)
def test_camera_list_refuses_an_endpoint_it_cannot_listen_at(capsys, endpoint, why):
    with pytest.raises(SystemExit) as refused:
        camera_main(["--list", "--publishers", f"tcp://127.0.0.1:5555,{endpoint}"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"{endpoint!r} is not a ZeroMQ address to listen at{why}" in err


def test_camera_list_names_each_device_in_numeric_order(tmp_path, capsys):
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    dev.mkdir()
    for name in ("video10", "video2", "video0", "videocodec", "vbi0"):
        (dev / name).touch()  # files, not devices: OpenCV opens none of them
    (sysfs / "video0").mkdir(parents=True)
    (sysfs / "video0" / "name").write_text("HD Webcam C525\n")
    assert [p.name for p in video_device_paths(dev)] == ["video0", "video2", "video10"]
    assert list_cameras(dev, sysfs) == 0
    lines = capsys.readouterr().out.splitlines()
    names = ("video0", "video2", "video10")
    assert [line.split()[0] for line in lines] == [str(dev / n) for n in names]
    assert lines[0].startswith(f"{dev / 'video0'}  HD Webcam C525: OpenCV cannot open it")
    assert "(no name)" in lines[1]


# ---- settings from the camera to the log header -----------------------------------------------


def test_the_virtual_camera_reports_fixed_settings_that_reach_the_log_header(virtual, capsys):
    with FrameSubscriber(virtual.camera_endpoint) as frames:
        assert frames.latest(timeout_s=20.0) is not None
        source = frames.source
    settings = CameraSettings.from_source(source)
    assert settings == CameraSettings(
        width=64, height=64, fps=20.0, fourcc="RGB3", auto_exposure=False, auto_white_balance=False
    )

    class Args:
        camera = virtual.camera_endpoint

    header = camera_settings(source, Args)
    assert json.loads(json.dumps(header)) == settings.to_dict()
    assert capsys.readouterr().err == ""  # nothing automatic: no warning
    camera_settings({**source, "auto_exposure": "on"}, Args)
    err = capsys.readouterr().err
    assert err.startswith("slac-run: warning: auto-exposure is on for the camera at ipc://")
    assert len(err.splitlines()) == 1
    assert camera_settings({"source": "a publisher of another kind"}, Args) is None


def test_settings_that_do_not_read_refuse_the_run():
    from slac_runtime.options import UsageError

    class Args:
        camera = "tcp://127.0.0.1:5555"

    with pytest.raises(UsageError, match="width='wide' is not a value of width"):
        camera_settings({"width": "wide"}, Args)


def test_camera_settings_travel_through_a_calibration_file(tmp_path):
    from slac_runtime.preprocessing import CameraCalibration

    settings = CameraSettings(640, 480, 30.0, "MJPG", False, 157.0, False, 4600.0)
    path = tmp_path / "camera.json"
    CameraCalibration(camera_settings=settings).save(path)
    assert CameraCalibration.load(path).camera_settings == settings
    assert "camera_settings" not in CameraCalibration().to_dict()
    path.write_text(json.dumps({"camera_settings": {"exposure_ms": 3}}))
    with pytest.raises(ValueError, match="unknown field.*'exposure_ms'"):
        CameraCalibration.load(path)


def test_asked_settings_the_camera_does_not_deliver_are_named():
    asked = CameraSettings(width=1920, height=1080, fourcc="MJPG", auto_exposure=False, exposure=90)
    reported = CameraSettings(640, 480, 30.0, "YUYV", True, 156.0, True, None)
    assert asked.differences(reported) == [
        "1920x1080 asked, it delivers 640x480",
        "pixel format MJPG asked, it delivers YUYV",
        "fixed exposure asked, auto exposure stays on",
    ]
    assert asked.differences(CameraSettings(1920, 1080, 30.0, "MJPG", False, 90.4)) == []
    assert reported.auto_left_on() == ["auto-exposure", "auto white balance"]


def test_options_win_over_the_calibrations_settings_and_auto_holds_no_value():
    recorded = CameraSettings(640, 480, 30.0, "MJPG", True, 156.0, False, 4600.0)
    merged = CameraSettings().over(recorded)
    assert merged == CameraSettings(640, 480, 30.0, "MJPG", True, None, False, 4600.0)
    asked = CameraSettings(fourcc="YUYV", auto_exposure=False, exposure=90.0)
    expected = CameraSettings(640, 480, 30.0, "YUYV", False, 90.0, False, 4600.0)
    assert asked.over(recorded) == expected
