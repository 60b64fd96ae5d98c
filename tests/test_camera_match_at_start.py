"""slac-run's camera match at start (camera_match_at_start): one line when it passes, a one-line
warning below the threshold, "not measured" without a simulator; the record for the log header."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from slac_runtime.run_cli import camera_match_at_start
from slac_runtime.view_match import MATCH_THRESHOLD

RENDER = np.random.default_rng(0).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)


class Entry:
    def __init__(self, render=None, missing: str | None = None):
        self.render, self.missing = render, missing

    def scene_for_task(self, task: str) -> str:
        return "valve"

    def load_task_view(self):
        if self.missing is not None:
            raise ImportError(self.missing)
        return lambda q, size, scene: self.render


def start(entry: Entry, image: np.ndarray) -> dict:
    robot = SimpleNamespace(read_state=lambda: SimpleNamespace(positions=np.zeros(9)))
    frames = SimpleNamespace(latest=lambda: SimpleNamespace(image=image))
    metadata = SimpleNamespace(task="dclaw-turn", image_height=64)
    return camera_match_at_start(entry, robot, frames, metadata)


def test_a_matching_camera_passes_in_one_line(capsys):
    record = start(Entry(RENDER), RENDER)
    out, err = capsys.readouterr()
    assert record["passes"] and record["score"] == 1.0 and record["threshold"] == MATCH_THRESHOLD
    assert out.startswith("camera match 1.000") and err == ""


def test_a_mirrored_camera_is_warned_about_in_one_line(capsys):
    record = start(Entry(RENDER), np.ascontiguousarray(RENDER[:, ::-1]))
    [line] = capsys.readouterr().err.strip().splitlines()
    assert not record["passes"] and record["score"] < MATCH_THRESHOLD
    assert line.startswith("slac-run: warning: the camera does not look like the task view")


def test_without_a_simulator_it_is_not_measured(capsys):
    record = start(Entry(missing="No module named 'mujoco'"), RENDER)
    assert record["score"] is None and "mujoco" in record["not_measured"]
    assert "camera match: not measured" in capsys.readouterr().out
