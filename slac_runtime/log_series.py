"""A logged episode's ticks as arrays: joint positions, goals sent, tick times, control period.

Every reader of logs (summaries, videos, the policy re-run, replays on a robot or in simulation)
takes its series from here, so a log cut off by a kill or holding corrupt records
(:func:`~slac_runtime.episode_log.read_episode_log`) reads the same everywhere.
"""

from __future__ import annotations

import math

import numpy as np

from slac_runtime.episode_log import EpisodeLog


def control_period_s(log: EpisodeLog) -> float:
    """The control period the log's run ticked at (s), from its header: the policy's metadata, else
    the loop's configuration. ValueError if the header gives neither, or not a positive number."""
    for section in ("policy_metadata", "loop_config"):
        period = (log.header.get(section) or {}).get("control_period_s")
        if period is None:
            continue
        if not isinstance(period, (int, float)) or not 0 < period < math.inf:
            raise ValueError(
                f"{log.path}: its header's {section}.control_period_s, {period!r}, is not a "
                "positive number of seconds"
            )
        return float(period)
    raise ValueError(
        f"{log.path}: its header gives no control period "
        "(neither policy_metadata.control_period_s nor loop_config.control_period_s)"
    )


def policy_period_s(log: EpisodeLog) -> float:
    """The time between the log's policy steps (s): :func:`control_period_s` x the policy's
    ``action_repeat`` (1 when the header's policy metadata gives none). ValueError if that is not
    a whole number of at least 1."""
    repeat = (log.header.get("policy_metadata") or {}).get("action_repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(
            f"{log.path}: its header's policy_metadata.action_repeat, {repeat!r}, is not a whole "
            "number of control periods of at least 1"
        )
    return control_period_s(log) * repeat


def logged_positions(log: EpisodeLog) -> np.ndarray:
    """Joint positions read at each tick (rad), ``[T, J]``."""
    return np.array([t["positions"] for t in log.ticks], dtype=np.float64).reshape(
        len(log.ticks), -1
    )


def logged_goals(log: EpisodeLog) -> np.ndarray:
    """The goal sent at each tick (rad), ``[T, J]``: ``sent``, else ``goal``, else the goal before.

    A tick logged just before a safe stop (stale camera) has no goal: the previous one stays
    (the first tick's fallback is the goal the ease-in ended on, or the logged positions).
    """
    goals = []
    previous = initial_goal(log)
    for tick in log.ticks:
        goal = tick.get("sent")
        if goal is None:
            goal = tick.get("goal")
        previous = previous if goal is None else np.asarray(goal, dtype=np.float64)
        goals.append(previous)
    return np.array(goals, dtype=np.float64).reshape(len(log.ticks), -1)


def initial_goal(log: EpisodeLog) -> np.ndarray:
    """The goal in force when tick 0 began: the ease-in's target, or tick 0's positions."""
    for event in log.events:
        if event.get("event") == "ease_in" and event.get("target") is not None:
            return np.asarray(event["target"], dtype=np.float64)
    if not log.ticks:
        raise ValueError(f"{log.path} holds no ticks")
    return np.asarray(log.ticks[0]["positions"], dtype=np.float64)


def tick_times(log: EpisodeLog) -> np.ndarray:
    """Each tick's start relative to tick 0 (s), from the logged monotonic clock."""
    period = control_period_s(log)
    times = [t.get("t") for t in log.ticks]
    if not times:
        return np.zeros(0)
    if any(t is None for t in times):
        return np.array([t["tick"] * period for t in log.ticks], dtype=np.float64)
    return np.asarray(times, dtype=np.float64) - times[0]
