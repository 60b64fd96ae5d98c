"""``slac-replay LOG --rerun FILE.rrd``: the episode as a Rerun recording, read back with
rerun-sdk's own reader (one row per tick on the timeline, a frame per policy step)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from slac_runtime.episode_log import EpisodeLogWriter, read_episode_log
from slac_runtime.replay_cli import main as replay_main

TICKS = 12  # a policy step every second tick (action repeat 2)
JOINTS = ("FF10", "FF11", "FF12")


def write_log(path: Path, footer: bool = True) -> Path:
    """A small episode log in slac-run's format: ticks, policy steps with frames, one overrun."""
    meta = {"task": "toy", "joint_names": list(JOINTS), "control_period_s": 0.05}
    rng = np.random.default_rng(0)
    with EpisodeLogWriter(path, {"robot": "toy", "policy_metadata": meta}) as log:
        for i in range(TICKS):
            record = {
                "tick": i,
                "t": 100.0 + 0.05 * i,
                "lateness_s": 1e-4 * i,
                "positions": [0.01 * i] * 3,
                "goal": [0.02 * i] * 3,
                "sent": [0.02 * i] * 3,
                "policy": None,
            }
            if i % 2 == 0:
                log.frame(i // 2, 1e9 + i, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
                record["policy"] = {
                    "step": i // 2,
                    "frame_seq": i // 2,
                    "frame_age_s": 0.01,
                    "action": [0.1, -0.2, 0.3],
                    "mean": [0.1, -0.2, 0.3],
                    "log_std": [-1.0, -1.0, -1.0],
                    "inference_s": 0.002,
                }
            log.tick(record)
            if i == 5:
                log.event("overrun", tick=i, lateness_s=0.06)
        if footer:
            log.close({"stop_reason": "episode complete"})
    return path


def read_rrd(path: Path) -> dict[str, list[int]]:
    """The ``tick`` values of every non-static row, per entity, as rerun-sdk reads them."""
    from rerun.chunk import RrdReader

    reader = RrdReader(path)
    assert len(reader.recordings()) == 1
    rows: dict[str, list[int]] = {}
    for chunk in reader.stream():
        if not chunk.is_static:
            ticks = chunk.to_record_batch().column("tick").to_pylist()
            rows.setdefault(chunk.entity_path, []).extend(ticks)
    return {entity: sorted(ticks) for entity, ticks in rows.items()}


def test_rrd_holds_every_tick_and_frame(tmp_path, capsys):
    pytest.importorskip("rerun")
    log = write_log(tmp_path / "episode-000.slaclog")
    out = tmp_path / "episode.rrd"
    assert replay_main([str(log), "--rerun", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["rerun"]
    assert report == {
        "rerun": str(out),
        "viewer": False,
        "ticks": TICKS,
        "policy_steps": TICKS // 2,
        "frames": TICKS // 2,
        "events": 1,
    }
    rows = read_rrd(out)
    every_tick, policy_ticks = list(range(TICKS)), list(range(0, TICKS, 2))
    for entity in ("/joints/position", "/joints/goal", "/timing/lateness_ms"):
        assert rows[entity] == every_tick, entity
    for entity in (
        "/camera",
        "/policy/action",
        "/policy/mean",
        "/policy/log_std",
        "/timing/frame_age_ms",
        "/timing/inference_ms",
    ):
        assert rows[entity] == policy_ticks, entity
    assert rows["/events"] == [5]


def test_rrd_values_and_joint_names(tmp_path):
    pytest.importorskip("rerun")
    from rerun.chunk import RrdReader

    from slac_runtime.rerun_export import export_rerun

    out = tmp_path / "episode.rrd"
    export_rerun(read_episode_log(write_log(tmp_path / "e.slaclog")), out)
    positions, names = {}, None
    for chunk in RrdReader(out).stream():
        batch = chunk.to_record_batch()
        if chunk.entity_path != "/joints/position":
            continue
        if chunk.is_static:
            names = batch.column("SeriesLines:names").to_pylist()[0]
        else:
            for tick, value in zip(
                batch.column("tick").to_pylist(), batch.column("Scalars:scalars").to_pylist()
            ):
                positions[tick] = value
    assert names == list(JOINTS)
    assert positions[7] == pytest.approx([0.07] * 3)


def test_cut_off_log_exports_its_complete_ticks(tmp_path, capsys):
    pytest.importorskip("rerun")
    log = write_log(tmp_path / "cut.slaclog", footer=False)
    with open(log, "ab") as f:
        f.write(b"\x40\x00\x00")  # a record cut off mid-header by a kill
    assert replay_main([str(log), "--rerun", str(tmp_path / "cut.rrd"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["rerun"]["ticks"] == TICKS
    assert read_rrd(tmp_path / "cut.rrd")["/joints/position"] == list(range(TICKS))


def test_missing_rerun_is_one_line(tmp_path, monkeypatch, capsys):
    """Without rerun-sdk, --rerun refuses with the install line, and nothing else needs it."""
    log = write_log(tmp_path / "episode-000.slaclog")
    monkeypatch.setitem(sys.modules, "rerun", None)  # import rerun raises ImportError
    assert replay_main([str(log), "--rerun", str(tmp_path / "x.rrd")]) == 2
    err = capsys.readouterr().err
    assert "pip install" in err and "rerun-sdk" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.rrd").exists()
    assert replay_main([str(log), "--summary"]) == 0  # the rest of slac-replay does not
