"""A run directory being written, and the ways a run ends other than finishing.

``slac-train`` (:class:`~slac_train.trainer.Trainer`) and ``slac-imitate``
(:class:`~slac_train.imitation.training.Imitation`) write their run directories through a
:class:`Run`: the directory, locked for one writer (:mod:`slac_train.run_lock`); its
:class:`~slac_train.run_logging.RunLogger`; the :class:`~slac_runtime.stop_request.StopRequest`
that Ctrl-C and SIGTERM make; the run's wall time; the simulators to close with it; and the
outcomes :class:`TrainingInterrupted` (stopped by a signal) and :class:`TrainingFailed` (a loss
became NaN/inf). Both are :class:`RunWriter`\\ s: context managers that close their run.

A signal sets the stop request; code at a safe point calls its ``check()``, which raises
:class:`~slac_runtime.stop_request.StopRequested` (the run writes a checkpoint); a second signal
raises KeyboardInterrupt wherever the code is.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from slac_runtime.stop_request import StopRequest, StopRequested
from slac_train.checkpoint import latest_checkpoint
from slac_train.config import TrainConfig
from slac_train.run_lock import RunLock
from slac_train.run_logging import RunLogger


def default_run_dir(config: TrainConfig) -> Path:
    """``<runs_root>/<task>-<YYYYmmdd-HHMMSS>-s<seed>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.runs_root) / f"{config.task}-{stamp}-s{config.seed}"


class TrainingInterrupted(Exception):
    """Stopped by a signal. At a safe point a checkpoint was written (``checkpoint``,
    ``written``); a second signal stops at once, from a state that may be half-updated, so nothing
    is written and ``checkpoint`` is the latest one before (None: there is none).

    ``signum``: the signal (the command exits with ``exit_code``, 128 + it).
    """

    def __init__(
        self, checkpoint: Path | None, signum: int = signal.SIGINT, written: bool = True
    ) -> None:
        what = "checkpoint written to" if written else "stopped at once; latest checkpoint"
        super().__init__(f"interrupted; {what} {checkpoint}")
        self.checkpoint = checkpoint
        self.signum = int(signum)
        self.written = written

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class TrainingFailed(RuntimeError):
    """A loss became NaN/inf: the run stopped; the last good checkpoint is kept."""


@dataclass(frozen=True)
class Cadence:
    """Something done every ``every`` counts of a counter (checkpoints, evaluations); 0: never."""

    every: int

    def due(self, count: int) -> bool:
        """True when ``count`` (> 0) is a whole multiple of ``every``."""
        return self.every > 0 and count > 0 and count % self.every == 0

    def next_after(self, count: int) -> int:
        """The first whole multiple of ``every`` after ``count``."""
        return (count // self.every + 1) * self.every


class Closable(Protocol):
    def close(self) -> None: ...


_Resource = TypeVar("_Resource", bound=Closable)
_Writer = TypeVar("_Writer", bound="RunWriter")


class Run:
    """A run directory this process writes: locked by ``lock`` until :meth:`close`, logged by
    :attr:`logger` (``purge_step``: the simulator step a resumed run continues from, where
    TensorBoard drops what was logged after it), stopped by ``stop``.

    :meth:`start` locks a new run directory; a resume locks one first and reads its checkpoint,
    then makes its ``Run``.
    """

    def __init__(
        self, run_dir: str | Path, lock: RunLock, stop: StopRequest, purge_step: int | None = None
    ) -> None:
        self.dir = Path(run_dir)
        self.lock = lock
        self.stop = stop
        self.elapsed_before = 0.0  # wall time of the run before this process took it on
        self._started = time.perf_counter()
        self._owned: list[Closable] = []
        try:
            self.logger = RunLogger(self.dir, purge_step=purge_step)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def start(cls, run_dir: str | Path, stop: StopRequest, refusal: str) -> Run:
        """A new run in ``run_dir`` (made if missing). A directory that holds a run is refused
        with FileExistsError (``refusal`` says what to do instead); one that another process
        writes with :class:`~slac_train.run_lock.RunInUseError`."""
        lock = RunLock(run_dir).acquire()
        if (Path(run_dir) / "checkpoints").exists():
            lock.release()
            raise FileExistsError(f"{run_dir} already holds a run; {refusal}")
        return cls(run_dir, lock, stop)

    def own(self, resource: _Resource) -> _Resource:
        """Close ``resource`` (a simulator) when the run closes; returns it."""
        self._owned.append(resource)
        return resource

    def elapsed_s(self) -> float:
        """The run's wall time, with what it ran before a resume."""
        return self.elapsed_before + time.perf_counter() - self._started

    def latest_checkpoint(self) -> Path | None:
        try:
            return latest_checkpoint(self.dir)
        except FileNotFoundError:
            return None

    def latest_checkpoint_note(self) -> str:
        """``The last good checkpoint is ...`` (or that there is none), for a failure's message."""
        latest = self.latest_checkpoint()
        if latest is None:
            return "No checkpoint was written before."
        return f"The last good checkpoint is {latest}."

    def write_summary(self, summary: dict[str, Any]) -> None:
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    # -- outcomes: each flushes the logs and returns the exception to raise ----------------------
    @contextmanager
    def checkpoint_on_stop(
        self, save: Callable[[], Path], second_signal_saves: bool = False
    ) -> Iterator[None]:
        """The block's stops as :class:`TrainingInterrupted`: a stop at a safe point
        (:class:`StopRequested`) writes ``save()`` first; a second signal's KeyboardInterrupt
        writes nothing, the state being possibly half-updated, unless ``second_signal_saves``
        (code whose checkpoint may hold the weights as they are at any moment)."""
        try:
            yield
        except StopRequested:
            raise self.interrupted(save()) from None
        except KeyboardInterrupt:
            if second_signal_saves:
                raise self.interrupted(save()) from None
            raise self.stopped_at_once() from None

    def interrupted(self, checkpoint: Path) -> TrainingInterrupted:
        """Stopped at a safe point, ``checkpoint`` written."""
        self.logger.flush()
        return TrainingInterrupted(checkpoint, self.stop.signum or signal.SIGINT)

    def stopped_at_once(self) -> TrainingInterrupted:
        """Stopped by a second signal: nothing written; the latest checkpoint is the one before."""
        self.logger.flush()
        signum = self.stop.signum or signal.SIGINT
        return TrainingInterrupted(self.latest_checkpoint(), signum, written=False)

    def failed(self, message: str, step: int, **details: Any) -> TrainingFailed:
        """A loss became NaN/inf: ``message`` (and ``details``) as an ``error`` record at
        ``step``."""
        self.logger.log("error", step, {}, message=message, **details)
        self.logger.flush()
        return TrainingFailed(message)

    def close(self) -> None:
        """Close the simulators it owns and the TensorBoard writer; release the lock."""
        try:
            self.logger.close()
            for resource in self._owned:
                resource.close()
        finally:
            self.lock.release()


class RunWriter:
    """What writes a run directory through a :class:`Run` (held as ``_run``): a context manager
    that closes it."""

    _run: Run

    @property
    def run_dir(self) -> Path:
        return self._run.dir

    @property
    def logger(self) -> RunLogger:
        return self._run.logger

    def close(self) -> None:
        """Release the simulators, the TensorBoard writer and the run directory's lock."""
        self._run.close()

    def __enter__(self: _Writer) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
