"""slac-run refuses, with exit 2 and one line ending "nothing moved", everything it can judge
before the servo port opens; a run that never started leaves nothing behind."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from robots.dclaw.virtual import VirtualDClaw
from slac_runtime.camera_settings import CameraSettings
from slac_runtime.episode_log import read_episode_log
from slac_runtime.frames import encode_frame
from tests.test_loop_safety import POLICY, ScriptedCamera
from tests.virtual_robot import episode_logs, run_slac_run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def virtual_dclaw(tmp_path):
    with VirtualDClaw(tmp_path / "tty", f"ipc://{tmp_path}/camera") as robot:
        yield robot


def frame(seq: int, shape=(64, 64, 3), timestamp: float | None = None) -> bytes:
    image = np.random.default_rng(seq).integers(0, 256, shape, dtype=np.uint8)
    return encode_frame(image, seq, time.time() if timestamp is None else timestamp)


def refused(result, virtual_dclaw, counters_before, log_dir: Path) -> str:
    """The run's one error line, after checking it refused without touching the robot or leaving
    a log directory behind."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("(nothing moved)"), result.stderr
    assert dict(virtual_dclaw.emulator.counters) == counters_before  # the port never opened
    assert not log_dir.exists()
    return lines[0]


class Multipart(ScriptedCamera):
    """A camera that sends every message as two parts."""

    def __init__(self, endpoint: str):
        super().__init__(endpoint, lambda k, s: [frame(k), b"metadata"])


@pytest.mark.parametrize(
    "message, why",
    [
        (lambda k: frame(k, (32, 32, 3)), "is 32x32 RGB, not 64x64 RGB"),
        (lambda k: frame(k, (128, 128, 3)), "is 128x128 RGB, not 64x64 RGB"),
        (lambda k: frame(k, (64, 64, 4)), "is 64x64 RGBA, not 64x64 RGB"),
        (lambda k: frame(k, (64, 64, 1)), "is 64x64 grey, not 64x64 RGB"),
        (lambda k: frame(k, timestamp=float("nan")), "capture timestamp nan"),
    ],
)
def test_a_camera_of_unusable_frames_is_refused_before_the_port_opens(
    virtual_dclaw, tmp_path, message, why
):
    endpoint = f"ipc://{tmp_path}/scripted"
    before = dict(virtual_dclaw.emulator.counters)
    with ScriptedCamera(endpoint, lambda k, s: message(k)):
        result = run_slac_run(POLICY, virtual_dclaw, tmp_path / "logs", "--camera", endpoint)
    line = refused(result, virtual_dclaw, before, tmp_path / "logs")
    assert "sends messages this policy cannot use" in line and "needs 64x64 RGB frames" in line
    assert why in line


def test_multipart_messages_while_waiting_are_refused_not_a_crash(virtual_dclaw, tmp_path):
    endpoint = f"ipc://{tmp_path}/scripted"
    before = dict(virtual_dclaw.emulator.counters)
    with Multipart(endpoint):
        result = run_slac_run(POLICY, virtual_dclaw, tmp_path / "logs", "--camera", endpoint)
    line = refused(result, virtual_dclaw, before, tmp_path / "logs")
    assert "2-part message" in line


def test_a_frame_size_change_mid_episode_counts_as_malformed(virtual_dclaw, tmp_path):
    """Good frames until the robot has taken 40 goal writes (the ease-in and the first policy
    steps, however slowly a busy machine gets there), then 32x32 ones: a safe stop on malformed
    messages (exit 3), logged."""
    endpoint = f"ipc://{tmp_path}/scripted"
    emulator = virtual_dclaw.emulator
    goals_before = emulator.counters.get("rx_sync_write", 0)

    def script(k: int, _elapsed_s: float) -> bytes:
        moving = emulator.counters.get("rx_sync_write", 0) - goals_before >= 40
        return frame(k, (32, 32, 3)) if moving else frame(k)

    with ScriptedCamera(endpoint, script):
        result = run_slac_run(
            POLICY,
            virtual_dclaw,
            tmp_path / "logs",
            "--camera",
            endpoint,
            "--episode-steps",
            "200",
        )
    assert result.returncode == 3, result.stderr
    assert "malformed camera messages in a row" in result.stderr and "32x32 RGB" in result.stderr
    [path] = episode_logs(tmp_path / "logs")
    log = read_episode_log(path)
    assert log.policy_ticks()  # it ran on the good frames
    assert any(
        "32x32" in e.get("reason", "") for e in log.events if e["event"] == "malformed_frame"
    )


def run_refused(virtual_dclaw, policy, log_dir, *args: str) -> str:
    before = dict(virtual_dclaw.emulator.counters)
    return refused(
        run_slac_run(policy, virtual_dclaw, log_dir, *args), virtual_dclaw, before, log_dir
    )


def test_a_log_directory_under_a_file_is_refused(virtual_dclaw, tmp_path):
    (tmp_path / "a-file").write_text("")
    log_dir = tmp_path / "a-file" / "logs"
    line = run_refused(virtual_dclaw, POLICY, log_dir)
    assert "--log-dir" in line and "Not a directory" in line


def test_a_log_directory_that_cannot_be_made_is_refused(virtual_dclaw, tmp_path):
    line = run_refused(virtual_dclaw, POLICY, Path("/proc/slac-logs"))
    assert "cannot create a log directory under --log-dir /proc/slac-logs" in line


def test_a_policy_path_that_is_a_directory_is_refused(virtual_dclaw, tmp_path):
    line = run_refused(virtual_dclaw, tmp_path, tmp_path / "logs")
    assert f"--policy {tmp_path}: a directory" in line


def test_a_bad_camera_endpoint_is_refused(virtual_dclaw, tmp_path):
    line = run_refused(virtual_dclaw, POLICY, tmp_path / "logs", "--camera", "tcp://127.0.0.1:port")
    assert "--camera tcp://127.0.0.1:port" in line


@pytest.mark.parametrize(
    "option, bound",
    [("--max-frame-age", "at most 1 (an older frame"), ("--stale-timeout", "at most 5 (a camera")],
)
@pytest.mark.parametrize("value", ["1e9", "5.5"])
def test_time_options_are_bounded_to_what_is_safe(option, bound, value, capsys):
    from slac_runtime.run_cli import main

    if option == "--max-frame-age" and value == "5.5":
        value = "1.5"
    with pytest.raises(SystemExit) as exit_info:
        main(["--camera", "tcp://127.0.0.1:1", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert bound in err and len(err.strip().splitlines()) == 1, err


def test_a_refusal_met_after_the_robot_moved_is_a_fault_not_a_refusal(
    virtual_dclaw, tmp_path, monkeypatch, capsys
):
    """A hold the servos refuse at an episode's end (a RobotRefused) comes after motion: exit 1,
    never "nothing moved"."""
    from robots.dclaw.driver import DClawDriver
    from robots.dynamixel.bus import ServoConfigurationError
    from slac_runtime.run_cli import main

    hold, calls = DClawDriver.hold, []

    def refuse_hold(self):  # the first hold is connect()'s own, before torque goes on
        calls.append(1)
        if len(calls) == 1:
            return hold(self)
        raise ServoConfigurationError("cannot hold the present pose: planted", [10])

    monkeypatch.setattr(DClawDriver, "hold", refuse_hold)
    cmd = virtual_dclaw.slac_run_command(POLICY, tmp_path / "logs", "--episode-steps", "3")
    assert main(cmd[cmd.index("--robot") :]) == 1
    err = capsys.readouterr().err
    assert "stopped: cannot hold the present pose: planted" in err
    assert "nothing moved" not in err and "robot relaxed" in err


def with_task(policy: Path, tmp_path: Path, task: str) -> Path:
    """A copy of ``policy`` whose metadata names another task."""
    model = onnx.load(str(policy))
    [prop] = [p for p in model.metadata_props if p.key == "task"]
    prop.value = task
    path = tmp_path / f"{task}.onnx"
    onnx.save(model, str(path))
    return path


def slac_run_in_process(robot, policy: Path | None, log_dir: Path, *extra: str) -> int:
    """slac-run's main() on ``robot``; without ``policy``, no --policy at all. The servos' Bus
    Watchdog window is the longest: these runs are about what slac-run loads, not its timing."""
    from slac_runtime.run_cli import main

    cmd = robot.slac_run_command(policy or POLICY, log_dir, "--bus-watchdog", "2.54", *extra)
    cmd = cmd[cmd.index("--robot") :]
    if policy is None:
        at = cmd.index("--policy")
        del cmd[at : at + 2]
    return main(cmd)


def test_a_policy_for_another_scene_is_refused_before_the_port_opens(
    virtual_dclaw, tmp_path, capsys
):
    """The virtual camera names the scene it renders: a Pose policy before the valve never
    moves the claw."""
    pose_policy = with_task(POLICY, tmp_path, "dclaw-pose-random")
    before = dict(virtual_dclaw.emulator.counters)
    assert slac_run_in_process(virtual_dclaw, pose_policy, tmp_path / "logs") == 2
    out, err = capsys.readouterr()
    [line] = err.strip().splitlines()
    assert line.endswith("(nothing moved)")
    assert "shows the valve scene (virtual dclaw)" in line and "task dclaw-pose-random" in line
    assert "slac-virtual-robot --robot dclaw --scene pose" in line
    assert dict(virtual_dclaw.emulator.counters) == before  # the port never opened
    assert not (tmp_path / "logs").exists()
    assert out.startswith(f"policy {pose_policy}: task dclaw-pose-random")


def test_slac_run_says_what_it_loaded_and_runs_a_policy_on_its_own_scene(tmp_path, capsys):
    pose_policy = with_task(POLICY, tmp_path, "dclaw-pose")
    with VirtualDClaw(tmp_path / "tty", f"ipc://{tmp_path}/camera", scene="pose") as robot:
        code = slac_run_in_process(robot, pose_policy, tmp_path / "logs", "--episode-steps", "2")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[0] == f"policy {pose_policy}: task dclaw-pose, on robot dclaw"
    [path] = episode_logs(tmp_path / "logs")
    header = read_episode_log(path).header
    settings = {"width": 64, "height": 64, "fps": 20.0, "fourcc": "RGB3"}
    settings.update(auto_exposure=False, auto_white_balance=False)
    assert header["camera_settings"] == settings  # what the camera reports, in every log
    assert header["camera_source"] == {
        "source": "virtual dclaw",
        "scene": "pose",
        **CameraSettings(**settings).to_source(),
    }


def test_without_policy_slac_run_says_it_runs_the_robots_shipped_policy(
    virtual_dclaw, tmp_path, capsys
):
    code = slac_run_in_process(virtual_dclaw, None, tmp_path / "logs", "--episode-steps", "1")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[0] == (
        f"policy {POLICY} (robot dclaw's shipped policy: no --policy given): task dclaw-turn, "
        "on robot dclaw"
    )


def test_slac_run_knows_the_cameras_source_even_when_it_joined_after_a_source_message(tmp_path):
    """A publisher that names itself sends its source message before every frame; a subscriber
    that joins between the two hears a frame without its source first. slac-run waits for the
    frames that follow, so that the scene check never runs on a source it has not heard yet."""
    import threading
    import types

    import zmq

    from slac_runtime.frames import FrameSubscriber, encode_source
    from slac_runtime.run_cli import wait_for_camera
    from slac_runtime.stop_request import StopRequest

    endpoint = f"ipc://{tmp_path}/camera"
    publisher = zmq.Context.instance().socket(zmq.PUB)
    publisher.bind(endpoint)
    image = np.zeros((64, 64, 3), np.uint8)
    source = {"source": "virtual dclaw", "scene": "pose"}
    try:
        with FrameSubscriber(endpoint) as frames:
            seq = 1
            while frames.received == 0:  # frames alone until the subscriber hears one
                publisher.send(encode_frame(image, seq, time.time()))
                seq += 1
                time.sleep(0.02)
            assert frames.source is None
            args = types.SimpleNamespace(camera=endpoint, camera_timeout=5.0)

            def name_and_send(first_seq: int) -> None:  # then, as a naming publisher does
                time.sleep(0.3)  # (once slac-run waits)
                for n in range(first_seq, first_seq + 5):
                    publisher.send(encode_source(source))
                    publisher.send(encode_frame(image, n, time.time()))

            sender = threading.Thread(target=name_and_send, args=(seq,))
            sender.start()
            try:
                wait_for_camera(frames, args, None, StopRequest())
                assert frames.source == source  # not heard yet when slac-run took the 1st frame
            finally:
                sender.join()
    finally:
        publisher.close(linger=0)


def with_metadata_value(policy: Path, tmp_path: Path, key: str, value: str) -> Path:
    """A copy of ``policy`` whose metadata ``key`` holds the raw string ``value``."""
    model = onnx.load(str(policy))
    [prop] = [p for p in model.metadata_props if p.key == key]
    prop.value = value
    path = tmp_path / f"{key}.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "key, value, why",
    [
        ("joint_names", "5", "joint_names must be a list of joint names, got 5"),
        ("joint_ranges", "[[0, null]]", "joint_ranges must be a list of [low, high] pairs"),
        ("velocity_limit", "NaN", "velocity_limit must be a positive, finite number"),
        ("control_period_s", '"0.05"', "control_period_s must be a finite number of seconds"),
        ("image_height", "-64", "image_height, image_width, history_length, action_dim and"),
        ("history_length", "8.5", "history_length must be a whole number, got 8.5"),
        ("schema_version", "one", "schema_version 'one' is not a whole number"),
    ],
)
def test_policy_metadata_of_the_wrong_kind_is_refused_naming_the_field(
    tmp_path, capsys, key, value, why
):
    from slac_runtime.run_cli import main

    policy = with_metadata_value(POLICY, tmp_path, key, value)
    log_dir = tmp_path / "logs"
    code = main(
        ["--policy", str(policy), "--camera", f"ipc://{tmp_path}/none", "--camera-timeout", "1"]
        + ["--allow-uncalibrated", "--quiet", "--log-dir", str(log_dir)]
    )
    [line] = capsys.readouterr().err.strip().splitlines()
    assert code == 2, line
    assert line.endswith("(nothing moved)") and str(policy) in line and why in line, line
    assert "re-export the policy" in line
    assert not log_dir.exists()


def test_a_policy_whose_graph_disagrees_with_its_metadata_is_refused_before_the_port_opens(
    virtual_dclaw, tmp_path
):
    """Metadata saying 4 frames of history for a graph that takes 8: the graph would refuse the
    runtime's arrays at the first policy step, after the ease-in had moved the claw."""
    policy = with_metadata_value(POLICY, tmp_path, "history_length", "4")
    line = run_refused(virtual_dclaw, policy, tmp_path / "logs")
    assert f"policy file {policy}: its graph does not take or give what its metadata says" in line
    assert "input 'cached_features' is tensor(float) [1, 8, 128], the metadata needs" in line
    assert "input 'prev_actions' is tensor(float) [1, 7, 9]" in line


@pytest.mark.parametrize(
    "key, value, why",
    [
        ("image_height", "32", "input 'frames' is tensor(uint8) [1, n_frames, 64, 64, 3]"),
        ("feature_dim", "64", "output 'features' is tensor(float) [1, 8, 128]"),
    ],
)
def test_the_graphs_inputs_and_outputs_are_checked_against_the_metadata(tmp_path, key, value, why):
    from slac_runtime.policy import OnnxPolicy, PolicyFileError

    with pytest.raises(PolicyFileError, match="its graph does not take or give") as error:
        OnnxPolicy(with_metadata_value(POLICY, tmp_path, key, value))
    assert why in str(error.value)


def test_an_unsupported_servo_model_is_a_refusal(virtual_dclaw, tmp_path):
    """A servo of a model the driver does not know is found before torque goes on: exit 2."""
    from robots.dclaw import DCLAW
    from robots.dynamixel import control_table as ct

    emulator = virtual_dclaw.emulator
    emulator.set_register(31, ct.MODEL_NUMBER, 1060)
    result = run_slac_run(POLICY, virtual_dclaw, tmp_path / "logs")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "unsupported servo model: servo 31 (TH31) is model 1060" in line
    assert line.endswith("(nothing moved)")
    assert not any(emulator.torque_enabled(i) for i in DCLAW.motor_ids)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda path: path.mkdir(), "Is a directory"),
        (lambda path: path.write_text("not a tty"), "Inappropriate ioctl for device"),
    ],
    ids=["a directory", "a regular file"],
)
def test_a_servo_port_that_is_not_a_serial_port_is_a_refusal(virtual_dclaw, tmp_path, make, why):
    port = tmp_path / "not-a-port"
    make(port)
    line = run_refused(virtual_dclaw, POLICY, tmp_path / "logs", "--port", str(port))
    assert f"could not open serial port {port}" in line and why in line
    assert "`slac-calibrate ports`" in line
