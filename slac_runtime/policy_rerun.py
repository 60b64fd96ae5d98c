"""A policy re-run on a log's inputs: does this policy act as the logged one did?"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slac_runtime.episode_log import EpisodeLog
from slac_runtime.policy import OnnxPolicy


def policy_differences(log: EpisodeLog, policy_path: str | Path) -> np.ndarray:
    """Re-run a policy on the logged frames and actions; per policy step, max |action difference|.

    The policy sees exactly what the logged run's policy saw: the same frames, the same previous
    actions (the logged ones, not its own), the same noise draws (or the deterministic action,
    where the run was deterministic) and the same history restarts (a camera restart restarts the
    history). All zeros for the policy that produced the log. ValueError where a step's inputs are
    not in the log: its frame, or a step of its history (lost to a corrupt record; a history
    restart ends the gap).
    """
    policy = OnnxPolicy(policy_path)
    steps = log.policy_ticks()
    if not steps:
        raise ValueError(f"{log.path} has no policy steps to re-run")
    action_dim = len(steps[0]["policy"]["action"])
    if policy.metadata.action_dim != action_dim:
        raise ValueError(
            f"policy {policy_path} has {policy.metadata.action_dim} actions, "
            f"the log's policy had {action_dim}"
        )
    diffs = []
    previous = None
    next_step = 0  # the step number that follows the last one read
    for tick in steps:
        p = tick["policy"]
        step = p.get("step")
        if isinstance(step, int) and step > next_step and not p.get("history_reset", False):
            lost = (
                f"step {next_step} was"
                if step == next_step + 1
                else f"steps {next_step}-{step - 1} were"
            )
            raise ValueError(
                f"{log.path}: policy step {step} cannot be re-run on the history the run's policy "
                f"saw (policy {lost} lost to corrupt records)"
            )
        next_step = step + 1 if isinstance(step, int) else next_step
        frame = log.policy_frame(tick)
        if frame is None:
            why = (
                "the run did not log frames"
                if not log.frame_records
                else "its record is corrupt"
                if log.corrupt
                else "it was not logged"
            )
            raise ValueError(
                f"{log.path}: frame {p['frame_seq']} of policy step {p['step']} cannot be read "
                f"({why})"
            )
        deterministic = p.get("noise") is None
        noise = None if deterministic else np.asarray(p["noise"], dtype=np.float32)
        if previous is None or p.get("history_reset", False):
            out = policy.reset(frame, deterministic, noise)
        else:
            out = policy.step(frame, previous, deterministic, noise)
        logged = np.asarray(p["action"], dtype=np.float32)
        diffs.append(float(np.max(np.abs(out.action - logged))))
        previous = logged
    return np.array(diffs)
