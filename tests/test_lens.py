"""The lens model, its pinhole view, undistortion where frames enter, the camera calibration file
with and without a lens, and the virtual camera's lens and board (no robot, no subprocess)."""

from __future__ import annotations

import dataclasses
import json
import math

import cv2
import numpy as np
import pytest

from robots.virtual_camera import BoardInView, Lens, LensWarp, read_printed_sheet
from slac_runtime.lens import LensIntrinsics, Undistorter, distort_normalised
from slac_runtime.preprocessing import CameraCalibration, _lens_cut_maps, preprocess_frame

pytestmark = pytest.mark.timeout(120)

WEBCAM = LensIntrinsics.from_camera(
    np.array([[500.0, 0.0, 323.5], [0.0, 502.0, 236.5], [0.0, 0.0, 1.0]]),
    [-0.35, 0.12, 0.002, -0.001, 0.0],
    (640, 480),
)
LENSES = {
    "barrel k1 -0.35": (274.5, Lens(k1=-0.35)),
    "pincushion k1 +0.2": (221.7, Lens(k1=0.2)),
    "k1 k2 p1 p2": (274.5, Lens(k1=-0.35, k2=0.12, p1=0.003, p2=-0.002)),
}


def virtual_lens(name: str) -> LensIntrinsics:
    focal, lens = LENSES[name]
    matrix = np.array([[focal, 0.0, 147.5], [0.0, focal, 127.5], [0.0, 0.0, 1.0]])
    return LensIntrinsics.from_camera(matrix, lens.coefficients(), (320, 240))


def test_the_lens_model_is_opencvs():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.6, 0.6, (200, 2))
    coefficients = np.array([-0.3, 0.1, 0.004, -0.003, 0.02])
    projected, _ = cv2.projectPoints(
        np.concatenate([points, np.ones((200, 1))], axis=1),
        np.zeros(3),
        np.zeros(3),
        np.eye(3),
        coefficients,
    )
    np.testing.assert_allclose(
        distort_normalised(points, coefficients), projected.reshape(-1, 2), atol=1e-12
    )


@pytest.mark.parametrize("name", [*LENSES, "webcam"])
def test_pixels_go_to_the_pinhole_image_and_back(name):
    lens = WEBCAM if name == "webcam" else virtual_lens(name)
    width, height = lens.image_size
    ys, xs = np.mgrid[0:height:7, 0:width:7]
    raw = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    pinhole, valid = lens.pinhole_from_raw(raw)
    np.testing.assert_allclose(lens.raw_from_pinhole(pinhole[valid]), raw[valid], atol=1e-3)
    if name == "barrel k1 -0.35":  # k1 alone turns back before the frame's corners
        assert 0.005 < 1 - valid.mean() < 0.1
    else:
        assert valid.all()


@pytest.mark.parametrize("name", [*LENSES, "webcam"])
def test_the_pinhole_view_is_the_widest_without_a_black_border(name):
    lens = WEBCAM if name == "webcam" else virtual_lens(name)
    width, height = lens.image_size
    border = np.concatenate(
        [
            np.stack([np.arange(width), np.zeros(width)], axis=1),
            np.stack([np.arange(width), np.full(width, height - 1)], axis=1),
            np.stack([np.zeros(height), np.arange(height)], axis=1),
            np.stack([np.full(height, width - 1), np.arange(height)], axis=1),
        ]
    )
    raw = lens.raw_from_pinhole(border)
    assert (
        raw.min() >= -0.01 and raw[:, 0].max() <= width - 0.99 and raw[:, 1].max() <= height - 0.99
    )
    # ... and the widest: some border pixel comes from the frame's very edge.
    reach = np.minimum.reduce([raw[:, 0], raw[:, 1], width - 1 - raw[:, 0], height - 1 - raw[:, 1]])
    assert reach.min() < 0.05
    white = np.full((height, width), 255, np.uint8)
    assert (Undistorter(lens)(white)[1:-1, 1:-1] == 255).all()


def test_the_undistorted_image_samples_the_frame_where_the_model_says():
    width, height = WEBCAM.image_size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    undistorted = Undistorter(WEBCAM)(np.dstack([xs, ys]))  # each pixel holds its own position
    rng = np.random.default_rng(1)
    points = np.stack([rng.uniform(5, width - 6, 300), rng.uniform(5, height - 6, 300)], axis=1)
    found = undistorted[np.rint(points[:, 1]).astype(int), np.rint(points[:, 0]).astype(int)]
    expected = WEBCAM.raw_from_pinhole(np.rint(points))
    np.testing.assert_allclose(found, expected, atol=1 / 16)  # 1/32-pixel fixed-point maps


def test_a_lens_no_camera_can_have_is_refused():
    wide = np.array([[160.0, 0.0, 159.5], [0.0, 160.0, 119.5], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="no inverse anywhere on the frame's"):
        LensIntrinsics.from_camera(wide, [-0.35, 0, 0, 0, 0], (320, 240))
    with pytest.raises(ValueError, match="further non-zero coefficients"):
        LensIntrinsics.from_camera(wide, [0.1, 0, 0, 0, 0, 0.2, 0, 0], (320, 240))


def test_preprocessing_with_a_lens_is_undistortion_then_the_cut():
    rng = np.random.default_rng(0)
    frame = cv2.resize(
        rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC
    )
    for calibration in (
        CameraCalibration(intrinsics=WEBCAM),
        CameraCalibration(crop=(96, 16, 448, 448), rotation_deg=3.0, intrinsics=WEBCAM),
        CameraCalibration(
            crop=(100, 40, 400, 300), rotation_deg=-7.0, flip_horizontal=True, intrinsics=WEBCAM
        ),
    ):
        one_remap = preprocess_frame(frame, calibration)
        two_steps = preprocess_frame(
            Undistorter(WEBCAM)(frame), dataclasses.replace(calibration, intrinsics=None)
        )
        difference = np.abs(one_remap.astype(int) - two_steps.astype(int))
        assert difference.mean() < 1.0 and difference.max() <= 4, calibration
    before = _lens_cut_maps.cache_info().hits
    preprocess_frame(frame, calibration)
    assert _lens_cut_maps.cache_info().hits == before + 1  # the maps are made once


def test_frames_of_another_size_are_refused():
    calibration = CameraCalibration(intrinsics=WEBCAM)
    with pytest.raises(ValueError, match="calibrated on 640x480 frames, but the camera delivers"):
        preprocess_frame(np.zeros((240, 320, 3), np.uint8), calibration)


def test_calibration_files_with_and_without_a_lens(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema_version": 1, "crop": [10, 0, 200, 200], "rotation_deg": 2}))
    loaded = CameraCalibration.load(old)
    assert loaded.intrinsics is None and "intrinsics" not in loaded.to_dict()

    with_lens = CameraCalibration(
        crop=(96, 16, 448, 448), source_size=(640, 480), intrinsics=WEBCAM
    )
    path = tmp_path / "lens.json"
    with_lens.save(path)
    data = json.loads(path.read_text())
    assert set(data["intrinsics"]["distortion"]) == {"k1", "k2", "p1", "p2", "k3"}
    assert CameraCalibration.load(path) == with_lens

    for change, needle in (
        ({"zoom": 2}, "unknown field(s) 'zoom'"),
        ({"focal_px": [500, -1]}, "focal_px must be positive"),
        ({"distortion": {"k1": 0.1}}, "exactly k1, k2, p1, p2, k3"),
    ):
        broken = dict(data, intrinsics=dict(data["intrinsics"], **change))
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            CameraCalibration.load(path)
    path.write_text(json.dumps(dict(data, source_size=[320, 240], crop=[0, 0, 100, 100])))
    with pytest.raises(ValueError, match="must be for the 320x240 source frames"):
        CameraCalibration.load(path)


def test_the_episode_log_header_names_the_lens(tmp_path):
    from slac_runtime.run_cli import _camera_intrinsics

    path = tmp_path / "camera.json"
    CameraCalibration(intrinsics=WEBCAM).save(path)
    assert LensIntrinsics.from_dict(_camera_intrinsics(path)) == WEBCAM
    CameraCalibration().save(path)
    assert _camera_intrinsics(path) is None
    assert _camera_intrinsics(None) is None


# ---- the virtual camera --------------------------------------------------------------------------


def test_the_virtual_lens_shows_each_pixel_its_ray():
    warp = LensWarp(320, 240, 274.5, (147.5, 127.5), LENSES["k1 k2 p1 p2"][1])
    width, height = warp.render_size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = warp.warp(np.dstack([xs, ys]))  # each render pixel holds its own position
    rays, valid = warp.rays(1)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    assert valid.all()
    np.testing.assert_allclose(frame, rays * warp.focal_px + centre, atol=1 / 16)


def test_the_virtual_board_is_where_the_lens_puts_it(tmp_path):
    """The board's corners, found in the virtual frames, lie where OpenCV projects them with the
    true lens: the virtual board is a fair test of the calibration."""
    from calibration.board import Board, write_board

    board = Board()
    write_board(board, tmp_path / "board.png")
    sheet, px_per_mm = read_printed_sheet(tmp_path / "board.png")
    assert px_per_mm == pytest.approx(11.8)
    focal, lens = LENSES["k1 k2 p1 p2"]
    warp = LensWarp(320, 240, focal, (147.5, 127.5), lens)
    shown = BoardInView(sheet, px_per_mm, warp)
    detector = board.detector()
    background = np.full((240, 320, 3), 90, np.uint8)
    errors = []
    for k in (0, 1, 9, 14):  # the centre, a corner, tilted both ways
        found = detector.detect(shown.show(background, (k + 0.5) * shown.pose_s))
        pose = shown.poses[k]
        # board corners (metres, from its top-left square corner) -> the sheet's frame (centred)
        on_sheet = found.object_points.astype(np.float64) - [
            board.columns * board.square_mm / 2000,
            board.rows * board.square_mm / 2000,
            0,
        ]
        points = on_sheet @ pose.rotation.T + pose.position
        expected, _ = cv2.projectPoints(
            points, np.zeros(3), np.zeros(3), warp.camera_matrix(), lens.coefficients()
        )
        errors.append(np.linalg.norm(found.image_points - expected.reshape(-1, 2), axis=1))
    errors = np.concatenate(errors)
    assert math.sqrt(np.mean(errors**2)) < 0.25 and errors.max() < 0.8, errors


def test_the_virtual_robot_refuses_a_lens_before_starting(tmp_path, capsys):
    from robots.dclaw.virtual import main

    with pytest.raises(SystemExit) as exit_:
        main(["--lens-k1", "-0.35"])
    assert exit_.value.code == 2
    assert "add --wide-view" in capsys.readouterr().err
    link = tmp_path / "tty"
    assert main(["--wide-view", "--lens-k1", "-0.35", "--port-link", str(link)]) == 2
    assert "no inverse anywhere on the frame's" in capsys.readouterr().err
    not_a_board = tmp_path / "photo.png"
    cv2.imwrite(str(not_a_board), np.zeros((8, 8), np.uint8))
    assert main(["--wide-view", "--show-board", str(not_a_board), "--port-link", str(link)]) == 2
    assert "does not say its print size" in capsys.readouterr().err
    assert not link.exists()
