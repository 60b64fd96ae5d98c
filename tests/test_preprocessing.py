"""Image preprocessing (docs/architecture.md §2) and the camera calibration file."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from slac_runtime.preprocessing import (
    CALIBRATION_SCHEMA_VERSION,
    CameraCalibration,
    preprocess_frame,
)

RED_BGR = (0, 0, 255)
BLUE_BGR = (255, 0, 0)
GREEN_BGR = (0, 255, 0)


def halves_bgr(height: int = 480, width: int = 640) -> np.ndarray:
    """Left half red, right half blue, in OpenCV's BGR order."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, : width // 2] = RED_BGR
    frame[:, width // 2 :] = BLUE_BGR
    return frame


def test_default_is_identity_on_a_policy_sized_rgb_frame():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = preprocess_frame(image, bgr=False)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out, image)
    assert not np.shares_memory(out, image)
    assert CameraCalibration().is_identity


def test_bgr_camera_frame_becomes_rgb():
    out = preprocess_frame(halves_bgr(), CameraCalibration())
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :31], np.broadcast_to([255, 0, 0], (64, 31, 3)))  # red
    np.testing.assert_array_equal(out[:, 33:], np.broadcast_to([0, 0, 255], (64, 31, 3)))  # blue


def test_rgb_input_is_not_swapped():
    frame = cv2.cvtColor(halves_bgr(), cv2.COLOR_BGR2RGB)
    out = preprocess_frame(frame, bgr=False)
    np.testing.assert_array_equal(out[10, 5], [255, 0, 0])
    np.testing.assert_array_equal(out[10, 60], [0, 0, 255])


def test_default_crop_is_the_centre_square_and_resize_is_inter_area():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frame[:, :80] = GREEN_BGR  # outside the centre square
    frame[:, 560:] = GREEN_BGR
    out = preprocess_frame(frame)
    expected = cv2.cvtColor(
        cv2.resize(frame[:, 80:560], (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
    )
    np.testing.assert_array_equal(out, expected)


def test_explicit_crop_and_output_size():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:200, 300:400] = GREEN_BGR
    out = preprocess_frame(frame, CameraCalibration(crop=(300, 100, 100, 100), output_size=32))
    assert out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out, np.broadcast_to([0, 255, 0], (32, 32, 3)))


def test_flips_move_a_corner_marker():
    frame = np.zeros((128, 128, 3), np.uint8)
    frame[:32, :32] = 255  # top-left

    def corner(out):
        return [bool(out[r, c].all()) for r, c in ((0, 0), (0, 63), (63, 0), (63, 63))]

    assert corner(preprocess_frame(frame)) == [True, False, False, False]
    assert corner(preprocess_frame(frame, CameraCalibration(flip_horizontal=True))) == [
        False,
        True,
        False,
        False,
    ]
    assert corner(preprocess_frame(frame, CameraCalibration(flip_vertical=True))) == [
        False,
        False,
        True,
        False,
    ]
    both = CameraCalibration(flip_horizontal=True, flip_vertical=True)
    assert corner(preprocess_frame(frame, both)) == [False, False, False, True]


def test_flip_after_resize_equals_flip_before():
    # preprocess_frame flips the small image (cheap); the result must equal flipping first.
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = preprocess_frame(frame, CameraCalibration(flip_horizontal=True, flip_vertical=True))
    flipped_first = np.ascontiguousarray(frame[::-1, 80:560][:, ::-1])
    expected = cv2.cvtColor(
        cv2.resize(flipped_first, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
    )
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_rotation_is_counter_clockwise_about_the_crop_centre():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    crop = (30, 20, 64, 64)
    out = preprocess_frame(frame, CameraCalibration(crop=crop, rotation_deg=90.0), bgr=False)
    region = frame[20:84, 30:94]
    np.testing.assert_allclose(out, np.rot90(region, k=1), atol=1)  # np.rot90: counter-clockwise


def test_rotation_of_a_large_frame_matches_rotating_at_full_resolution():
    # The fast path warps onto a coarser grid; compare with rotating at full resolution first.
    rng = np.random.default_rng(4)
    frame = cv2.resize(
        rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC
    )
    calibration = CameraCalibration(crop=(100, 20, 420, 420), rotation_deg=7.0)
    out = preprocess_frame(frame, calibration)
    matrix = cv2.getRotationMatrix2D((100 + 419 / 2, 20 + 419 / 2), 7.0, 1.0)
    matrix[:, 2] -= (100, 20)
    full = cv2.warpAffine(frame, matrix, (420, 420), flags=cv2.INTER_LINEAR)
    expected = cv2.cvtColor(
        cv2.resize(full, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
    )
    difference = np.abs(out.astype(int) - expected)
    assert difference.mean() < 1.0 and difference.max() <= 20  # the largest at black corners
    # And 90 degrees is a quarter turn counter-clockwise at any scale.
    quarter = preprocess_frame(frame, CameraCalibration(crop=(80, 0, 480, 480), rotation_deg=90.0))
    plain = preprocess_frame(frame)
    assert np.abs(quarter.astype(int) - np.rot90(plain)).mean() < 1.0


def test_rotation_fills_outside_the_frame_with_black():
    frame = np.full((64, 64, 3), 200, np.uint8)
    out = preprocess_frame(frame, CameraCalibration(rotation_deg=45.0), bgr=False)
    assert out[0, 0].max() == 0 and out[32, 32].min() == 200


def test_grey_and_bgra_frames_are_accepted():
    grey = np.full((48, 48), 77, np.uint8)
    np.testing.assert_array_equal(preprocess_frame(grey)[0, 0], [77, 77, 77])
    bgra = np.zeros((48, 48, 4), np.uint8)
    bgra[..., 2] = 255
    np.testing.assert_array_equal(preprocess_frame(bgra)[0, 0], [255, 0, 0])


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frame(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        preprocess_frame(np.zeros((64, 64, 5), np.uint8))


def test_crop_outside_the_frame_and_wrong_source_size_are_clear_errors():
    frame = np.zeros((480, 640, 3), np.uint8)
    with pytest.raises(ValueError, match="does not fit in a 640x480 frame"):
        preprocess_frame(frame, CameraCalibration(crop=(600, 0, 100, 100)))
    with pytest.raises(ValueError, match="made for 1280x720 frames.*640x480"):
        preprocess_frame(frame, CameraCalibration(source_size=(1280, 720)))


# ---- calibration file ---------------------------------------------------------------------------


def test_calibration_json_round_trip(tmp_path):
    calibration = CameraCalibration(
        crop=(10, 20, 300, 300),
        rotation_deg=-2.5,
        flip_horizontal=True,
        output_size=96,
        source_size=(640, 480),
    )
    path = tmp_path / "camera.json"
    calibration.save(path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == CALIBRATION_SCHEMA_VERSION
    assert data["crop"] == [10, 20, 300, 300]
    assert CameraCalibration.load(path) == calibration
    assert CameraCalibration.from_dict(calibration.to_dict()) == calibration
    assert CameraCalibration.from_dict({}) == CameraCalibration()  # missing fields: defaults
    assert not (tmp_path / "camera.json.tmp").exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"crop": [0, 0, 10]}, "crop"),
        ({"crop": [-1, 0, 10, 10]}, "crop"),
        ({"crop": [0, 0, 0, 10]}, "crop"),
        ({"crop": [0, 0, 10.5, 10]}, "crop"),
        ({"crop": "centre"}, "crop"),
        ({"rotation_deg": "90"}, "rotation_deg"),
        ({"rotation_deg": float("nan")}, "rotation_deg"),
        ({"flip_horizontal": 1}, "flip_horizontal"),
        ({"flip_vertical": "no"}, "flip_vertical"),
        ({"output_size": 0}, "output_size"),
        ({"output_size": 64.0}, "output_size"),
        ({"source_size": [640]}, "source_size"),
        ({"crop": [600, 0, 100, 100], "source_size": [640, 480]}, "crop"),
        ({"schema_version": 99}, "schema_version"),
    ],
)
def test_calibration_validation_names_the_bad_field(data, field):
    with pytest.raises(ValueError, match=f"field '{field}'"):
        CameraCalibration.from_dict(data)


def test_calibration_unknown_field_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="unknown field.*'rotation'.*known fields"):
        CameraCalibration.from_dict({"rotation": 3})
    with pytest.raises(ValueError, match="JSON object"):
        CameraCalibration.from_dict([1, 2])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CameraCalibration.load(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"output_size": -3}))
    with pytest.raises(ValueError, match=r"wrong\.json.*'output_size'"):
        CameraCalibration.load(wrong)
