"""Running an exported SLAC policy with onnxruntime, one new frame per policy step.

The exported graph (see :mod:`slac_runtime.policy_metadata`) encodes the ``N`` newest frames and
appends their features to the newest ``history - N`` rows of the previous call's features before
the actor runs. At the
start of an episode the policy is fed the first frame ``history`` times (N = history: the padding
rule of :mod:`slac_runtime.history`); after that each step encodes only the new frame (N = 1,
the streaming form) and reuses the cached features of the previous seven.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slac_runtime import policy_metadata as pm
from slac_runtime.history import History
from slac_runtime.policy_metadata import PolicyMetadata


class PolicyFileError(RuntimeError):
    """The policy file is missing, unreadable, or not a SLAC policy."""


@dataclass
class PolicyOutput:
    action: np.ndarray  # float32 [A] in [-1, 1]: the action to apply (stochastic or deterministic)
    deterministic_action: np.ndarray  # float32 [A]: tanh(mean)
    mean: np.ndarray  # float32 [A], pre-tanh
    log_std: np.ndarray  # float32 [A]
    inference_s: float  # wall time of the onnxruntime call


def stochastic_action(mean: np.ndarray, log_std: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The tanh-Gaussian sample for a standard-normal ``noise`` draw."""
    return np.tanh(mean + np.exp(log_std) * noise).astype(np.float32)


def load_session(path: str | Path, threads: int = 1, spin: bool = True):
    """An onnxruntime session and the policy metadata, with errors that say what to do.

    ``spin=False`` stops onnxruntime's worker threads from busy-waiting between calls (needed when
    the caller runs with real-time priority: spinning workers would starve other processes)."""
    import onnxruntime as ort

    path = Path(path)
    if path.is_dir():
        raise PolicyFileError(f"policy file {path} is a directory: give an exported .onnx file")
    if not path.is_file():
        raise PolicyFileError(
            f"policy file {path} does not exist: export one with `slac-export RUN_DIR --out {path}`"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # onnxruntime raises its own exception types for corrupt files
        raise PolicyFileError(f"policy file {path} could not be loaded by onnxruntime: {e}") from e
    props = dict(session.get_modelmeta().custom_metadata_map)
    try:
        metadata = PolicyMetadata.from_props(props, source=str(path))
    except ValueError as e:
        raise PolicyFileError(str(e)) from e
    names = {i.name for i in session.get_inputs()}
    expected = {pm.INPUT_FRAMES, pm.INPUT_CACHED_FEATURES, pm.INPUT_PREV_ACTIONS}
    if names != expected:
        raise PolicyFileError(
            f"policy file {path} has inputs {sorted(names)}, expected {sorted(expected)}"
        )
    problems = graph_mismatches(session, metadata)
    if problems:
        raise PolicyFileError(
            f"policy file {path}: its graph does not take or give what its metadata says: "
            + "; ".join(problems)
            + ": re-export the policy with `slac-export RUN_DIR`"
        )
    return session, metadata


def graph_mismatches(session, metadata: PolicyMetadata) -> list[str]:
    """A sentence for every input or output of the graph whose type or shape is not the one the
    metadata implies (docs/architecture.md §3); a dimension the graph leaves open (a name, or
    none) fits any size."""
    m = metadata
    frames = ("tensor(uint8)", (1, None, m.image_height, m.image_width, 3))
    features = ("tensor(float)", (1, m.history_length, m.feature_dim))
    action = ("tensor(float)", (1, m.action_dim))
    wanted = {
        "input": (
            session.get_inputs(),
            {
                pm.INPUT_FRAMES: frames,
                pm.INPUT_CACHED_FEATURES: features,
                pm.INPUT_PREV_ACTIONS: ("tensor(float)", (1, m.history_length - 1, m.action_dim)),
            },
        ),
        "output": (
            session.get_outputs(),
            {
                pm.OUTPUT_ACTION: action,
                pm.OUTPUT_MEAN: action,
                pm.OUTPUT_LOG_STD: action,
                pm.OUTPUT_FEATURES: features,
            },
        ),
    }
    problems = []
    for kind, (args, expected) in wanted.items():
        by_name = {a.name: a for a in args}
        for name, (dtype, shape) in expected.items():
            arg = by_name.get(name)
            if arg is None:
                problems.append(f"no {kind} {name!r}")
                continue
            fits = len(arg.shape) == len(shape) and all(
                want is None or not isinstance(have, int) or have == want
                for have, want in zip(arg.shape, shape)
            )
            if arg.type != dtype or not fits:
                problems.append(
                    f"{kind} {name!r} is {arg.type} {_shape(arg.shape)}, the metadata needs "
                    f"{dtype} {_shape(shape)}"
                )
    return problems


def _shape(shape) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


class OnnxPolicy:
    """Encoder + actor from one ONNX file, with the observation/action history kept here.

    ``reset(first_frame)`` starts an episode; ``step(frame, previous_action)`` adds the newest frame
    and the action that led to it, and returns the next action. ``frames`` / ``actions`` are the
    actor's inputs (the same arrays training's acting code builds).
    """

    def __init__(
        self, path: str | Path, threads: int = 1, seed: int | None = None, spin: bool = True
    ):
        self.path = Path(path)
        self.session, self.metadata = load_session(self.path, threads, spin)
        m = self.metadata
        self._rng = np.random.default_rng(seed)
        self.frame_history = History(
            m.action_dim, (m.image_height, m.image_width, 3), m.history_length
        )
        self.feature_history = History(
            m.action_dim, (m.feature_dim,), m.history_length, dtype=np.float32
        )
        self._output_names = [
            pm.OUTPUT_ACTION,
            pm.OUTPUT_MEAN,
            pm.OUTPUT_LOG_STD,
            pm.OUTPUT_FEATURES,
        ]

    @property
    def frames(self) -> np.ndarray:
        return self.frame_history.items

    @property
    def actions(self) -> np.ndarray:
        return self.frame_history.actions

    def _check_frame(self, frame: np.ndarray) -> np.ndarray:
        m = self.metadata
        frame = np.asarray(frame)
        if frame.shape != (m.image_height, m.image_width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"policy expects uint8 RGB frames of {m.image_height}x{m.image_width}x3, got "
                f"{frame.dtype} {frame.shape}"
            )
        return frame

    def _run(
        self,
        frames: np.ndarray,
        cached: np.ndarray,
        actions: np.ndarray,
        deterministic: bool,
        noise: np.ndarray | None,
    ) -> tuple[PolicyOutput, np.ndarray]:
        feeds = {
            pm.INPUT_FRAMES: frames[None],
            pm.INPUT_CACHED_FEATURES: cached[None],
            pm.INPUT_PREV_ACTIONS: actions[None],
        }
        t0 = time.perf_counter()
        det, mean, log_std, features = self.session.run(self._output_names, feeds)
        elapsed = time.perf_counter() - t0
        det, mean, log_std = det[0], mean[0], log_std[0]
        if deterministic:
            action = det
        else:
            if noise is None:
                noise = self._rng.standard_normal(mean.shape).astype(np.float32)
            action = stochastic_action(mean, log_std, noise)
        return PolicyOutput(action, det, mean, log_std, elapsed), features[0]

    def reset(
        self, first_frame: np.ndarray, deterministic: bool = False, noise: np.ndarray | None = None
    ) -> PolicyOutput:
        """Start an episode at ``first_frame`` and return the first action."""
        m = self.metadata
        first_frame = self._check_frame(first_frame)
        self.frame_history.reset(first_frame)
        frames = self.frame_history.items  # the first frame, repeated (full form, N = history)
        cached = np.zeros(
            (m.history_length, m.feature_dim), dtype=np.float32
        )  # unused when N = history
        out, features = self._run(frames, cached, self.frame_history.actions, deterministic, noise)
        self.feature_history.reset(features[-1])
        return out

    def step(
        self,
        frame: np.ndarray,
        previous_action: np.ndarray,
        deterministic: bool = False,
        noise: np.ndarray | None = None,
    ) -> PolicyOutput:
        """Add the newest frame and the action that led to it; return the next action."""
        frame = self._check_frame(frame)
        previous_action = np.asarray(previous_action, dtype=np.float32).reshape(-1)
        cached = self.feature_history.items  # the graph keeps the newest 7 rows
        self.frame_history.append(previous_action, frame)
        out, features = self._run(
            frame[None], cached, self.frame_history.actions, deterministic, noise
        )
        self.feature_history.append(previous_action, features[-1])
        return out

    def run_full(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        deterministic: bool = True,
        noise: np.ndarray | None = None,
    ) -> PolicyOutput:
        """Re-encode a whole history (the full form): ``frames[history, H, W, 3]``,
        ``actions[history-1, A]``."""
        m = self.metadata
        cached = np.zeros((m.history_length, m.feature_dim), dtype=np.float32)
        out, _ = self._run(
            np.asarray(frames, np.uint8),
            cached,
            np.asarray(actions, np.float32),
            deterministic,
            noise,
        )
        return out
