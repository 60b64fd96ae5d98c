"""slac-replay against the virtual D'Claw: replay on the robot, in simulation, through a policy, as
video, and the summary; a log cut off mid-record.

One episode is recorded per module with slac-run (tiny policy, virtual D'Claw); the tests read it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from robots.dclaw import DCLAW
from robots.dclaw.virtual import VirtualDClaw
from slac_runtime.episode_log import MAGIC, TICK, read_episode_log
from slac_runtime.policy_rerun import policy_differences
from slac_runtime.replay_cli import joint_groups
from slac_runtime.replay_cli import main as replay_main
from slac_runtime.robot_replay import tracking_stats
from tests.conftest import train_tiny
from tests.test_media import probe_video
from tests.virtual_robot import episode_logs, run_slac_run

POLICY_STEPS = 20  # per recorded episode: 40 ticks of 0.05 s (action repeat 2)
SERVO_TICK_RAD = 2 * np.pi / 4096


@pytest.fixture(scope="module")
def recorded_log(tmp_path_factory, tiny_dclaw_policy) -> Path:
    """One slac-run episode on a virtual D'Claw, logged with its frames."""
    d = tmp_path_factory.mktemp("replay-recording")
    with VirtualDClaw(d / "tty", f"ipc://{d}/camera") as robot:
        result = run_slac_run(
            tiny_dclaw_policy, robot, d / "logs", "--episode-steps", str(POLICY_STEPS)
        )
    assert result.returncode == 0, result.stderr
    [path] = episode_logs(d / "logs")
    return path


@pytest.fixture(scope="module")
def other_policy(tmp_path_factory) -> Path:
    """A different checkpoint's export (same task and robot, another seed)."""
    from slac_train.export_cli import export_run

    d = tmp_path_factory.mktemp("tiny-dclaw-seed1")
    run = train_tiny(d / "run", seed=1)
    path, _ = export_run(run, d / "other.onnx")
    return path


@pytest.fixture
def fresh_virtual_dclaw(tmp_path):
    with VirtualDClaw(tmp_path / "replay-tty", f"ipc://{tmp_path}/replay-camera") as robot:
        yield robot


def replay_cli(*args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "slac_runtime.replay_cli", *args]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def replay_on_robot(log: Path, robot: VirtualDClaw, out_log: Path, *args: str, wait: bool = True):
    """``slac-replay LOG --robot dclaw`` on the virtual D'Claw ``robot``, writing ``out_log``."""
    return replay_cli(
        str(log),
        "--robot",
        "dclaw",
        "--port",
        robot.port,
        "--out-log",
        str(out_log),
        "--quiet",
        *args,
        wait=wait,
    )


def json_results(stdout: str) -> dict:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            out.update(json.loads(line))
    return out


def tick_record_offset(data: bytes, n: int) -> int:
    """The byte offset of a log's ``n``-th tick record."""
    header = struct.Struct("<IBI")  # length, kind, crc32 (slac_runtime.episode_log's record header)
    pos, ticks = len(MAGIC), 0
    while True:
        length, kind, _ = header.unpack_from(data, pos)
        if kind == TICK:
            if ticks == n:
                return pos
            ticks += 1
        pos += header.size + length


def cut_mid_record(src: Path, dst: Path, after_ticks: int) -> None:
    """Copy a log, cut off in the middle of the record that follows its ``after_ticks``-th tick."""
    data = src.read_bytes()
    header = struct.Struct("<IBI")  # length, kind, crc32 (slac_runtime.episode_log's record header)
    pos, ticks = len(MAGIC), 0
    while True:
        length, kind, _ = header.unpack_from(data, pos)
        end = pos + header.size + length
        if ticks == after_ticks:  # the record at ``pos`` follows the last tick we keep
            dst.write_bytes(data[: pos + header.size + length // 2])
            return
        ticks += kind == TICK
        pos = end


# -- on the robot ---------------------------------------------------------------------------------
def test_replay_on_robot_follows_the_logged_trajectory(recorded_log, fresh_virtual_dclaw, tmp_path):
    out_log = tmp_path / "replay.slaclog"
    result = replay_on_robot(recorded_log, fresh_virtual_dclaw, out_log, "--json")
    assert result.returncode == 0, result.stderr
    report = json_results(result.stdout)["robot"]
    logged, replayed = read_episode_log(recorded_log), read_episode_log(out_log)
    assert not replayed.truncated and replayed.footer["stop_reason"] == "replay complete"
    assert replayed.header["replay_of"] == str(recorded_log)
    assert [t["replay_of_tick"] for t in replayed.ticks] == [t["tick"] for t in logged.ticks]
    # The same goals went out (the driver rounds to whole servo ticks, as it did when recording).
    np.testing.assert_allclose(replayed.array("sent"), logged.array("sent"), atol=SERVO_TICK_RAD)
    # ... at the logged times (relative to tick 0), by the replay's own logged clock: each tick's
    # deadline (its start less its lateness) lies at its logged time, give or take a millisecond
    # (a tick may be preempted between its wait and its start stamp), no tick is early, and most
    # are on time (a busy computer makes some late, not the median half a period late).
    t_logged = logged.array("t") - logged.ticks[0]["t"]
    lateness = replayed.array("lateness_s")
    schedule = replayed.array("t") - lateness - t_logged  # the replay's start, on every tick
    assert np.percentile(np.abs(schedule - np.median(schedule)), 90) < 1e-3
    assert lateness.min() >= 0 and np.median(lateness) < 0.5 * 0.05
    # The joints followed the logged trajectory, within the D'Claw's replay tolerance: the largest
    # joint error within 0.1 rad at 95 % of the ticks, and the mean error within 0.03 rad -- see
    # robots/dclaw/description.py for why.
    tolerance = DCLAW.replay_tolerance
    positions = logged.array("positions")
    errors = np.abs(replayed.array("positions") - positions)
    per_tick = errors.max(axis=1)
    assert np.percentile(per_tick, 95) <= tolerance.p95_error_rad, per_tick.round(3)
    assert errors.mean() <= tolerance.mean_error_rad, errors.mean()
    assert (
        np.ptp(positions, axis=0).max() > 3 * tolerance.p95_error_rad
    )  # the claw did move: not vacuous
    assert report["within_tolerance"] is True
    assert report["max_tracking_error_rad"] == pytest.approx(per_tick.max())
    # Left relaxed, as slac-run leaves it by default.
    assert not any(fresh_virtual_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)


def test_the_replay_tolerance_is_the_robots():
    """A robot whose description gives no replay tolerance is not judged against another's."""
    errors = np.full((4, 9), 0.02)
    assert tracking_stats(errors, DCLAW.replay_tolerance)["within_tolerance"] is True
    assert tracking_stats(errors + 0.2, DCLAW.replay_tolerance)["within_tolerance"] is False
    assert tracking_stats(errors, None)["within_tolerance"] is None


def test_a_log_that_claims_another_control_period_is_not_replayed(
    recorded_log, fresh_virtual_dclaw, tmp_path
):
    """A log is a file like any other: its control period sets no speed limit on the robot."""
    from slac_runtime.episode_log import EpisodeLogWriter

    logged = read_episode_log(recorded_log)
    header = json.loads(json.dumps(logged.header))
    header["policy_metadata"]["control_period_s"] = 0.5
    edited = tmp_path / "edited.slaclog"
    with EpisodeLogWriter(edited, header) as out:
        for tick in logged.ticks:
            out.tick(tick)
        out.close(logged.footer or {})
    before = dict(fresh_virtual_dclaw.emulator.counters)
    result = replay_on_robot(edited, fresh_virtual_dclaw, tmp_path / "replay.slaclog")
    assert result.returncode == 2, result.stderr
    assert "control period 0.5 s is not one robot 'dclaw' may be driven at" in result.stderr
    assert (
        dict(fresh_virtual_dclaw.emulator.counters) == before
    )  # not one packet reached the servos


def test_sigterm_stops_a_robot_replay_cleanly(recorded_log, fresh_virtual_dclaw, tmp_path):
    out_log = tmp_path / "replay.slaclog"
    proc = replay_on_robot(recorded_log, fresh_virtual_dclaw, out_log, wait=False)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out_log.exists() and len(read_episode_log(out_log).ticks) >= 5:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stop requested" in err
    replayed = read_episode_log(out_log)
    assert not replayed.truncated and replayed.footer["stop_reason"] == "stop requested"
    assert 5 <= len(replayed.ticks) < len(read_episode_log(recorded_log).ticks)
    assert not any(fresh_virtual_dclaw.emulator.torque_enabled(i) for i in DCLAW.motor_ids)


# -- through a policy ------------------------------------------------------------------------------
def test_policy_replay_zero_for_the_producing_policy(recorded_log, tiny_dclaw_policy, capsys):
    log = read_episode_log(recorded_log)
    steps = len(log.policy_ticks())  # a policy tick without a new camera frame holds instead
    assert POLICY_STEPS - 2 <= steps <= POLICY_STEPS
    diffs = policy_differences(log, tiny_dclaw_policy)
    assert len(diffs) == steps and diffs.max() == 0.0
    assert replay_main([str(recorded_log), "--policy", str(tiny_dclaw_policy), "--json"]) == 0
    report = json_results(capsys.readouterr().out)["policy"]
    assert (
        report["identical"] is True and report["max_abs_diff"] == 0.0 and report["steps"] == steps
    )


def test_policy_replay_nonzero_for_another_checkpoint(recorded_log, other_policy, capsys):
    log = read_episode_log(recorded_log)
    diffs = policy_differences(log, other_policy)
    assert len(diffs) == len(log.policy_ticks()) and diffs.min() > 1e-4
    assert replay_main([str(recorded_log), "--policy", str(other_policy), "--json"]) == 0
    report = json_results(capsys.readouterr().out)["policy"]
    assert report["identical"] is False and report["max_abs_diff"] == pytest.approx(diffs.max())


# -- video, summary, simulation --------------------------------------------------------------------
def video_properties(path: Path) -> tuple[int, int, int]:
    """(frames decoded, width, height)."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames, *size


def test_the_video_plots_a_row_per_joint_group_of_the_robot():
    assert joint_groups("dclaw") == DCLAW.joint_groups == (3, 3, 3)  # a row per finger
    assert joint_groups("not-installed-here") == joint_groups(None) == ()  # one row
    with pytest.raises(ValueError, match="joint groups do not add up to its 9 joints"):
        dataclasses.replace(DCLAW, joint_groups=(3, 3))


def test_video_has_a_frame_per_policy_step(recorded_log, tmp_path, capsys):
    out = tmp_path / "episode.mp4"
    steps = len(read_episode_log(recorded_log).policy_ticks())
    assert replay_main([str(recorded_log), "--video", str(out), "--json"]) == 0
    assert json_results(capsys.readouterr().out)["video"] == {"video": str(out), "frames": steps}
    # 64x64 frames upscaled 4 times, beside a plot panel of the same size.
    assert video_properties(out) == (steps, 2 * 4 * 64, 4 * 64)
    # H.264 in yuv420p, the mp4 browsers, GitHub and VS Code play (the demo's last-episode.mp4).
    assert probe_video(out) == {
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "size": (2 * 4 * 64, 4 * 64),
        "frames": steps,
    }


def test_rerun_recording_of_a_slac_run_episode(recorded_log, tmp_path, capsys):
    """A real slac-run log in Rerun: every logged tick on the timeline, a frame per policy step."""
    pytest.importorskip("rerun")
    from tests.test_rerun_export import read_rrd

    out = tmp_path / "episode.rrd"
    log = read_episode_log(recorded_log)
    assert replay_main([str(recorded_log), "--rerun", str(out), "--json"]) == 0
    report = json_results(capsys.readouterr().out)["rerun"]
    assert report["ticks"] == len(log.ticks) and report["frames"] == len(log.policy_ticks())
    rows = read_rrd(out)
    assert rows["/joints/position"] == [t["tick"] for t in log.ticks]
    assert rows["/camera"] == [t["tick"] for t in log.policy_ticks()]


def test_summary_table(recorded_log, capsys):
    assert replay_main([str(recorded_log), "--summary"]) == 0
    table = capsys.readouterr().out
    for row in (
        "duration_s",
        "ticks",
        "overruns",
        "jitter_p99_ms",
        "frame_age_p50_ms",
        "retries",
        "camera_clock_offset_ms",
        "malformed_frames",
        "camera_restarts",
        "goal_error_max_rad",
        "stop_reason",
    ):
        assert f"\n{row} " in table, row
    assert "\nsuccess " not in table  # slac-run reads no valve: the log does not know, so no row
    assert replay_main([str(recorded_log), "--summary", "--json"]) == 0
    summary = json_results(capsys.readouterr().out)["summary"]
    assert summary["ticks"] == 2 * POLICY_STEPS
    assert (
        summary["policy_steps"] + summary["no_new_frame_steps"] + summary["stale_ticks"]
        == POLICY_STEPS
    )
    assert (
        summary["policy_steps"] >= POLICY_STEPS - 2
        and summary["frames_logged"] == summary["policy_steps"]
    )
    # The duration by the loop's logged clock: never shorter than its ticks' periods (less the
    # first tick's lateness), longer by no more than the lateness its ticks logged (late ticks and
    # the deadlines an overrun skipped), give or take 5 ms of stamping.
    log = read_episode_log(recorded_log)
    period_s, lateness = 0.05, log.array("lateness_s")
    assert len(lateness) == 2 * POLICY_STEPS
    nominal_s = 2 * POLICY_STEPS * period_s
    assert nominal_s - lateness[0] - 0.005 <= summary["duration_s"]
    assert summary["duration_s"] <= nominal_s + lateness.sum() + 0.005
    assert summary["stop_reason"] == "episode complete" and summary["truncated"] is False
    assert summary["task"] == "dclaw-turn" and "success" not in summary
    # an overrun is a tick that started more than a control period late (docs/runtime.md)
    ticks = read_episode_log(recorded_log).ticks
    assert summary["overruns"] == sum(t["lateness_s"] > 0.05 for t in ticks)
    assert summary["jitter_p99_ms"] >= summary["jitter_p50_ms"] >= 0
    assert summary["corrupt_records"] == 0 and summary["corrupt_offsets"] is None
    # Frame age on slac-run's own clock (from receipt: never past --max-frame-age), and the
    # camera's clock offset (one computer: just the transport latency).
    max_age_ms = 1e3 * log.footer["config"]["max_frame_age_s"]
    assert 0 <= summary["frame_age_p50_ms"] <= summary["frame_age_max_ms"] <= max_age_ms
    assert 0 <= summary["camera_clock_offset_ms"] < 100
    assert summary["malformed_frames"] == 0 and summary["camera_restarts"] == 0
    assert 0 <= summary["goal_error_max_rad"] < 1.0


def test_sim_replay_video_and_tracking(recorded_log, tmp_path, capsys):
    out = tmp_path / "sim.mp4"
    assert replay_main([str(recorded_log), "--sim", "--video", str(out), "--json"]) == 0
    report = json_results(capsys.readouterr().out)["sim"]
    ticks = 2 * POLICY_STEPS
    assert report["ticks"] == ticks and report["frames"] == ticks and report["video"] == str(out)
    # The virtual D'Claw is the same MuJoCo model stepped in real time: the simulation tracks the
    # logged joints closely (measured: mean 0.003-0.012 rad, largest single error 0.03-0.14 rad).
    assert report["mean_tracking_error_rad"] < 0.05
    assert 0 <= report["max_tracking_error_rad"] < 0.5
    assert len(report["max_tracking_error_per_joint_rad"]) == DCLAW.num_joints
    assert video_properties(out) == (ticks, 2 * 4 * 64, 4 * 64)  # logged | simulated, upscaled 4x
    assert probe_video(out)["codec"] == "h264"
    # dclaw-turn's fixed target, and the simulated valve's wrapped error from it
    assert report["valve_target_rad"] == pytest.approx(math.pi)
    assert -math.pi <= report["final_valve_error_rad"] < math.pi


# -- a log cut off by a kill -----------------------------------------------------------------------
def test_truncated_log_replays_up_to_its_last_complete_tick(recorded_log, tmp_path, capsys):
    cut = tmp_path / "cut.slaclog"
    cut_mid_record(recorded_log, cut, after_ticks=15)
    full, log = read_episode_log(recorded_log), read_episode_log(cut)
    assert log.truncated and log.footer is None
    assert log.ticks == full.ticks[:15]
    assert replay_main([str(cut), "--summary", "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and "cut off" in captured.err and "tick 14" in captured.err
    summary = json_results(captured.out)["summary"]
    assert summary["ticks"] == 15 and summary["truncated"] is True
    assert summary["stop_reason"] == "log cut off (no footer)"
    assert replay_main([str(cut), "--sim", "--video", str(tmp_path / "cut.mp4"), "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err
    assert json_results(captured.out)["sim"]["ticks"] == 15
    assert replay_main([str(cut), "--video", str(tmp_path / "cut-frames.mp4"), "--json"]) == 0
    # One video frame per policy step that ran (ticks 0, 2, ..., 14 unless a tick found no new
    # camera frame and held instead).
    policy_steps = len(log.policy_ticks())
    assert 1 <= policy_steps <= 8
    assert json_results(capsys.readouterr().out)["video"]["frames"] == policy_steps


def test_a_corrupt_record_is_skipped_and_reported_by_its_offset(
    recorded_log, tiny_dclaw_policy, tmp_path, capsys
):
    """One flipped byte in tick 5's record: the rest of the log is read, footer included, and
    slac-replay names the record's byte offset instead of calling the log cut off."""
    data = bytearray(recorded_log.read_bytes())
    offset = tick_record_offset(data, 5)
    data[offset + 30] ^= 0x01
    corrupt = tmp_path / "corrupt.slaclog"
    corrupt.write_bytes(bytes(data))
    full, log = read_episode_log(recorded_log), read_episode_log(corrupt)
    assert log.ticks == [t for t in full.ticks if t["tick"] != 5]
    assert log.footer == full.footer and not log.truncated
    assert replay_main([str(corrupt), "--summary", "--json"]) == 0
    captured = capsys.readouterr()
    assert f"corrupt record at byte offset {offset} (" in captured.err
    assert "tick 5 lost" in captured.err and "cut off" not in captured.err
    summary = json_results(captured.out)["summary"]
    assert summary["truncated"] is False and summary["stop_reason"] == "episode complete"
    assert summary["corrupt_records"] == 1 and summary["corrupt_offsets"] == str(offset)
    assert summary["ticks_lost"] == 1 and summary["ticks"] == 2 * POLICY_STEPS - 1
    # tick 5 is no policy step (action repeat 2): every policy step re-runs on its logged frame
    assert replay_main([str(corrupt), "--policy", str(tiny_dclaw_policy), "--json"]) == 0
    report = json_results(capsys.readouterr().out)["policy"]
    assert report["identical"] is True and report["steps"] == len(full.policy_ticks())
    # On a robot the goals would jump across the lost tick: refused before the port opens.
    assert replay_main([str(corrupt), "--robot", "dclaw", "--port", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "tick 5 was lost to corrupt records" in err and "--sim" in err


def test_a_policy_step_lost_to_a_corrupt_record_refuses_the_policy_re_run(
    recorded_log, tiny_dclaw_policy, tmp_path, capsys
):
    """The steps after a lost policy step ran on a history that held it: re-running them without
    it would report differences for the very policy that produced the log."""
    full = read_episode_log(recorded_log)
    lost = full.policy_ticks()[3]
    assert lost["policy"]["step"] == 3 and not full.policy_ticks()[4]["policy"]["history_reset"]
    data = bytearray(recorded_log.read_bytes())
    data[tick_record_offset(data, lost["tick"]) + 30] ^= 0x01
    corrupt = tmp_path / "corrupt.slaclog"
    corrupt.write_bytes(bytes(data))
    assert replay_main([str(corrupt), "--policy", str(tiny_dclaw_policy), "--json"]) == 2
    err = capsys.readouterr().err
    assert "policy step 4 cannot be re-run" in err and "policy step 3 was lost" in err


# -- errors and layering ---------------------------------------------------------------------------
def test_command_line_errors(recorded_log, tmp_path, capsys):
    assert replay_main([str(tmp_path / "missing.slaclog")]) == 2
    assert replay_main([str(recorded_log), "--robot", "dclaw"]) == 2  # a robot replay needs --port
    assert "--port" in capsys.readouterr().err
    assert replay_main([str(recorded_log), "--policy", str(tmp_path / "missing.onnx")]) == 2
    assert replay_main([str(recorded_log), "--robot", "nope", "--port", "/dev/null"]) == 2
    assert "unknown robot" in capsys.readouterr().err


def test_replay_cli_and_sim_replay_lookup_load_neither_torch_nor_mujoco():
    code = (
        "import sys\n"
        "import slac_runtime.replay_cli\n"
        "from slac_runtime.robot import find_robot\n"
        "find_robot('dclaw').load_sim_replay()\n"
        "heavy = [m for m in ('torch', 'mujoco', 'dm_control') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
