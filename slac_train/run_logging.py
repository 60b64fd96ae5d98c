"""What a run leaves for a person to look at: metrics.jsonl, eval.csv, TensorBoard events and the
learning-curve PNG (videos: :mod:`slac_train.rollout_media`)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

EVAL_CSV_FIELDS = (
    "env_step",
    "agent_step",
    "wall_time_s",
    "return_mean",
    "return_std",
    "deterministic_return_mean",
    "deterministic_return_std",
    "success_rate",
    "deterministic_success_rate",
    "episodes",
)


class RunLogger:
    """Appends metrics to ``metrics.jsonl`` (one JSON object per line, with a ``kind``), evaluation
    rows to ``eval.csv``, and scalars to TensorBoard under ``tensorboard/``."""

    def __init__(
        self, run_dir: Path, purge_step: int | None = None, tensorboard: bool = True
    ) -> None:
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.eval_csv_path = self.run_dir / "eval.csv"
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(
                log_dir=str(self.run_dir / "tensorboard"), purge_step=purge_step
            )

    def log(
        self,
        kind: str,
        step: int,
        values: Mapping[str, Any],
        tb_step: int | None = None,
        **extra: Any,
    ) -> None:
        """One line in metrics.jsonl; numeric values also go to TensorBoard at ``tb_step`` (default:
        ``step``, the simulator step count)."""
        record = {"kind": kind, "env_step": int(step), **extra, **values}
        step = step if tb_step is None else tb_step
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                if (
                    isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                ):
                    tag = key if "/" in key else f"{kind}/{key}"
                    self._writer.add_scalar(tag, value, int(step))

    def log_eval_row(self, row: Mapping[str, Any]) -> None:
        new = not self.eval_csv_path.exists()
        with open(self.eval_csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EVAL_CSV_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in EVAL_CSV_FIELDS})

    def add_evaluation(
        self, history: list[dict[str, Any]], row: dict[str, Any], title: str, **curve: Any
    ) -> None:
        """An evaluation's ``row``: appended to ``history`` and eval.csv, and ``curve.png`` drawn
        again from ``history`` (``curve``: :func:`plot_learning_curve`'s options)."""
        history.append(row)
        self.log_eval_row(row)
        plot_learning_curve(history, self.run_dir / "curve.png", title, **curve)
        self.flush()

    def log_image(self, tag: str, image_uint8: np.ndarray, step: int) -> None:
        """An RGB image ``[H, W, 3]`` in TensorBoard at ``step`` (simulator steps)."""
        if self._writer is not None:
            self._writer.add_image(tag, image_uint8, int(step), dataformats="HWC")

    def log_video(
        self, tag: str, frames_uint8: Sequence[np.ndarray], step: int, fps: float
    ) -> None:
        """RGB frames ``[H, W, 3]`` as an animated image in TensorBoard's Images tab at ``step``.

        TensorBoard shows videos as animated GIFs (what ``add_video`` writes through moviepy);
        the GIF is encoded here with Pillow, which matplotlib already brings.
        """
        if self._writer is None or not len(frames_uint8):
            return
        import io

        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames_uint8]
        buffer = io.BytesIO()
        duration_ms = max(20, int(round(1000.0 / fps)))
        images[0].save(
            buffer,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=duration_ms,
            loop=0,
        )
        height, width = np.asarray(frames_uint8[0]).shape[:2]
        image = Summary.Image(
            height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue()
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self._writer._get_file_writer().add_summary(summary, int(step))

    def file_sizes(self) -> dict[str, int]:
        """Bytes in each appended file now (stored in checkpoints: see :func:`trim_run_files`)."""
        return {
            path.name: path.stat().st_size if path.exists() else 0
            for path in (self.metrics_path, self.eval_csv_path)
        }

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def frame_strip(frames_uint8: np.ndarray, count: int = 8) -> np.ndarray:
    """``count`` frames evenly spaced over an episode ``[T, H, W, 3]``, side by side:
    ``[H, count*W, 3]``."""
    frames = np.asarray(frames_uint8)
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    return np.concatenate(list(frames[picks]), axis=1)


def plot_learning_curve(
    history: Sequence[Mapping[str, Any]],
    path: Path,
    title: str,
    x_key: str = "env_step",
    x_label: str = "environment (simulator) steps",
    random_returns: Sequence[float] = (),
) -> None:
    """Evaluation return (mean +- std, stochastic and deterministic) and success rate against
    ``history[i][x_key]`` (simulator steps; a run that learns from fixed data: its updates).

    ``random_returns``: returns of uniformly random episodes (a run's initial collection), drawn
    as a horizontal line for reference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = np.array([h[x_key] for h in history], dtype=float)
    for key, label in (
        ("return", "stochastic policy"),
        ("deterministic_return", "deterministic tanh(mean)"),
    ):
        if history and f"{key}_mean" in history[0]:
            mean = np.array([h.get(f"{key}_mean", np.nan) for h in history], dtype=float)
            std = np.array([h.get(f"{key}_std", np.nan) for h in history], dtype=float)
            ax.plot(steps, mean, marker="o", markersize=3, label=label)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    if len(random_returns):
        ax.axhline(
            float(np.mean(random_returns)),
            color="grey",
            linestyle=":",
            label=f"random policy ({len(random_returns)} episodes)",
        )
    ax.set_xlabel(x_label)
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    rate_key = next(
        (k for k in ("success_rate", "deterministic_success_rate") if any(k in h for h in history)),
        None,
    )
    if rate_key is not None:
        ax2 = ax.twinx()
        rate = np.array([h.get(rate_key, np.nan) for h in history], dtype=float)
        mode = "stochastic" if rate_key == "success_rate" else "deterministic"
        (line,) = ax2.plot(
            steps,
            rate,
            color="tab:green",
            linestyle="--",
            marker=".",
            label=f"success rate ({mode})",
        )
        ax2.set_ylim(-0.05, 1.05)
        ax2.set_ylabel("success rate")
        handles, labels = handles + [line], labels + [line.get_label()]
    ax.legend(handles, labels, loc="best", fontsize="small")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)


def trim_run_files(run_dir: Path, sizes: Mapping[str, int] | None, env_step: int) -> None:
    """Cut a run's appended files back to a checkpoint, so that a resumed run has one history.

    ``sizes``: the files' byte counts when the checkpoint was written
    (:meth:`RunLogger.file_sizes`); without them, rows past ``env_step`` are dropped. Videos of
    steps past ``env_step`` are deleted.
    """
    run_dir = Path(run_dir)
    if sizes is not None:
        for name, size in sizes.items():
            path = run_dir / name
            if path.exists() and path.stat().st_size > size:
                with open(path, "r+b") as f:
                    f.truncate(size)
    else:
        _drop_rows_past(
            run_dir / "metrics.jsonl", env_step, lambda line: json.loads(line)["env_step"]
        )
        _drop_rows_past(
            run_dir / "eval.csv", env_step, lambda line: float(line.split(",", 1)[0]), header=True
        )
    for video in (run_dir / "videos").glob("*-*.mp4"):
        step = video.stem.rsplit("-", 1)[1]
        if step.isdigit() and int(step) > env_step:
            video.unlink()


def _drop_rows_past(path: Path, env_step: int, step_of, header: bool = False) -> None:
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    head, rows = (lines[:1], lines[1:]) if header else ([], lines)
    kept = [line for line in rows if line.strip() and step_of(line) <= env_step]
    if len(kept) != len(rows):
        path.write_text("".join(head + kept))
