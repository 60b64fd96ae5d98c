"""The camera match score (slac_runtime/view_match.py): unmoved by colour gain and offset, and its
threshold separating correct calibrations of recoloured and relit cameras from wrong ones on the
virtual D'Claw's wide camera (the cases of benchmarks/camera_match.py, rendered once)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.camera_match import cases, margins, render_scene, score
from slac_runtime.view_match import MATCH_THRESHOLD, describe, match_score, passes


@pytest.fixture(scope="module")
def scene():
    from robots.mujoco_gl import select_gl_backend

    select_gl_backend()
    return render_scene()


def test_the_threshold_separates_every_correct_calibration_from_every_wrong_one(
    scene, record_property
):
    scores = [(case, score(case, scene.expected_rgb)) for case in cases(scene)]
    assert sum(c.correct for c, _ in scores) >= 20 and sum(not c.correct for c, _ in scores) >= 20
    for key, value in margins(scores).items():
        record_property(key, value)
    misjudged = [f"{c.name}: {s:.3f}" for c, s in scores if passes(s) != c.correct]
    assert misjudged == [], f"threshold {MATCH_THRESHOLD}: {misjudged}"


def test_gain_and_offset_per_channel_leave_the_score_alone():
    rng = np.random.default_rng(0)
    image = rng.integers(40, 200, size=(64, 64, 3), dtype=np.uint8)
    recoloured = np.clip(image * np.array([1.2, 0.8, 1.1]) + np.array([10, -20, 5]), 0, 255)
    assert match_score(image, image) == pytest.approx(1.0)
    assert match_score(np.rint(recoloured).astype(np.uint8), image) > 0.999


def test_a_flat_render_or_other_sizes_are_refused():
    image = np.full((64, 64, 3), 90, np.uint8)
    with pytest.raises(ValueError, match="flat colour"):
        match_score(image, image)
    with pytest.raises(ValueError, match="one size"):
        match_score(np.zeros((32, 32, 3), np.uint8), image)


def test_the_verdict_reads_in_one_line():
    assert describe(0.95).endswith(": pass")
    assert describe(0.5).endswith("below the threshold")
