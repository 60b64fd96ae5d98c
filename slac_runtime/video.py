"""One mp4 writer for every video the project makes: H.264, yuv420p, even sizes.

H.264 in yuv420p is the mp4 that browsers, GitHub, VS Code and every video player show. The
encoder is the ffmpeg binary that the ``imageio-ffmpeg`` wheel ships (libx264 included), so
nothing is downloaded or compiled at run time. ``imageio_ffmpeg`` is imported when a writer opens,
so importing this module costs nothing.

yuv420p stores colour at half resolution and needs even widths and heights: a frame with an odd
size is padded with one black row or column (bottom, right) rather than scaled.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import numpy as np

DEFAULT_QUALITY = 8  # imageio-ffmpeg's 0..10 scale (10 best); 8 keeps 4x-upscaled pixels crisp


def even_size(height: int, width: int) -> tuple[int, int]:
    """The smallest even ``(height, width)`` that holds a ``height x width`` frame."""
    return height + height % 2, width + width % 2


class VideoWriter:
    """Write RGB ``uint8[H, W, 3]`` frames, all of one size, to an H.264 mp4 at ``fps``.

    Use as a context manager (or call :meth:`close`): the file is complete once closed. The size
    is fixed by the first frame; a frame of another size raises ValueError.
    """

    def __init__(self, path: str | Path, fps: float, quality: int = DEFAULT_QUALITY):
        if not fps > 0:
            raise ValueError(f"a video needs a positive frame rate, not {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.quality = quality
        self.frames = 0
        self._size: tuple[int, int] | None = None  # (height, width) of the frames written
        self._encoder = None

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one RGB ``uint8[H, W, 3]`` frame."""
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"a video frame is uint8[H, W, 3] RGB, not {frame.dtype}{list(frame.shape)}"
            )
        if self._size is None:
            self._open(frame.shape[0], frame.shape[1])
        elif frame.shape[:2] != self._size:
            raise ValueError(
                f"{self.path}: frame {self.frames} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the video is {self._size[1]}x{self._size[0]}"
            )
        height, width = even_size(*self._size)
        if (height, width) != self._size:
            padded = np.zeros((height, width, 3), np.uint8)
            padded[: frame.shape[0], : frame.shape[1]] = frame
            frame = padded
        self._encoder.send(np.ascontiguousarray(frame).tobytes())
        self.frames += 1

    def _open(self, height: int, width: int) -> None:
        import imageio_ffmpeg

        self.path.parent.mkdir(parents=True, exist_ok=True)
        even_h, even_w = even_size(height, width)
        self._encoder = imageio_ffmpeg.write_frames(
            str(self.path),
            (even_w, even_h),
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            fps=self.fps,
            codec="libx264",
            quality=self.quality,
            macro_block_size=1,  # sizes are made even here; no rescaling by ffmpeg
            output_params=["-movflags", "+faststart"],  # playable while it downloads
        )
        self._encoder.send(None)  # start ffmpeg
        self._size = (height, width)

    def close(self) -> None:
        """Finish the file (ffmpeg writes the mp4 index); a writer with no frames writes nothing."""
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            encoder.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def write_frames(path: str | Path, frames, fps: float, quality: int = DEFAULT_QUALITY) -> int:
    """Write an iterable of RGB ``uint8[H, W, 3]`` frames as an H.264 mp4; return how many."""
    with VideoWriter(path, fps, quality) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames


def put_label(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.45) -> None:
    """Draw white text with a dark outline (readable on any frame) on RGB ``image``, in place;
    ``origin`` is the text's bottom-left corner (x, y) in pixels."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, text, origin, font, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, font, scale, (255, 255, 255), 1, cv2.LINE_AA)
