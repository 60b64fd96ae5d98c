"""Videos: one H.264 (yuv420p, even-sized) writer for training, demo and replay videos, and the
labels drawn on them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from slac_runtime.video import VideoWriter, even_size, write_frames
from slac_train.rollout_media import episode_captions, write_video


def probe_video(path: Path) -> dict[str, object]:
    """Codec, pixel format, size and decoded frame count of a video, read by the ffmpeg binary
    that imageio-ffmpeg ships (ffprobe is not needed)."""
    import imageio_ffmpeg

    info = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
    ).stderr
    match = re.search(r"Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+)", info)
    assert match, info
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return {
        "codec": match.group(1),
        "pix_fmt": match.group(2),
        "size": (int(match.group(3)), int(match.group(4))),
        "frames": frames,
    }


def test_writer_makes_h264_yuv420p_with_even_size(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (45, 61, 3), dtype=np.uint8) for _ in range(7)]
    assert write_frames(tmp_path / "odd.mp4", frames, fps=20) == 7
    assert even_size(45, 61) == (46, 62)
    assert probe_video(tmp_path / "odd.mp4") == {
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "size": (62, 46),  # padded by one row and one column, not scaled
        "frames": 7,
    }


def test_writer_keeps_colours(tmp_path):
    """Frames go in RGB and come out RGB (a red frame is not written blue)."""
    import imageio.v3 as iio

    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220
    write_frames(tmp_path / "red.mp4", [red] * 3, fps=10)
    decoded = iio.imread(tmp_path / "red.mp4", index=0)
    r, g, b = decoded.reshape(-1, 3).mean(axis=0)
    assert r > 180 and g < 40 and b < 40, (r, g, b)


def test_writer_refuses_bad_frames(tmp_path):
    with VideoWriter(tmp_path / "v.mp4", fps=10) as writer:
        writer.write(np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(ValueError, match="the video is 8x8"):
            writer.write(np.zeros((8, 10, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="positive frame rate"):
        VideoWriter(tmp_path / "w.mp4", fps=0)


def test_rollout_video_with_panel_labels_and_captions(tmp_path):
    """A reconstruction-style video (three panels) with labels, and captions per frame."""
    frames = [np.full((64, 192, 3), 40 * k, np.uint8) for k in range(4)]
    captions = episode_captions([0.5, -0.25, 1.0], [None, False, True])
    assert captions == [
        "step 0  (reset)",
        "step 1  reward +0.50  return 0.50",
        "step 2  reward -0.25  return 0.25  no success",
        "step 3  reward +1.00  return 1.25  success",
    ]
    path = write_video(
        tmp_path / "r.mp4",
        frames,
        fps=10,
        scale=2,
        panel_labels=("truth", "posterior", "prior"),
        captions=captions,
    )
    assert probe_video(path) == {
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "size": (384, 128),
        "frames": 4,
    }
    with pytest.raises(ValueError, match="3 captions for 4 frames"):
        write_video(tmp_path / "bad.mp4", frames, fps=10, captions=captions[:3])


def test_random_rollout_demo_writes_h264(tmp_path, capsys):
    """``python -m slac_train.demo``: the random rollout's mp4 plays
    everywhere; its report reads."""
    from slac_train import demo

    assert demo.main(["--task", "dclaw-turn", "--max-steps", "5", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "random rollout of dclaw-turn: 5 agent steps, return" in out, out
    info = probe_video(tmp_path / "dclaw-turn-random.mp4")
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["frames"] == 6


def test_demo_reports_the_wrapped_error_and_success():
    """``make demo``'s line for a valve turned 0 -> -3.08 rad towards a target of pi: 0.06 rad
    short of it the other way round, a success."""
    from slac_train.pipeline_demo import describe_episode, episode_result

    result = episode_result(0, Path("e.slaclog"), 0.0, -3.08)
    assert result["angle_turned"] == -3.08 and result["target_angle"] == 3.142
    assert result["angle_error"] == pytest.approx(-0.062, abs=1e-3) and result["success"]
    assert describe_episode(result, 3) == (
        "episode 1/3: the valve turned -3.08 rad, from +0.00 to -3.08; "
        "target +3.14 (= -3.14: half a turn either way)\n"
        "  0.06 rad from the target (wrapped error -0.06 rad): SUCCESS (within 0.1 rad)"
    )
    assert not episode_result(1, Path("e.slaclog"), 0.0, 2.9)["success"]
