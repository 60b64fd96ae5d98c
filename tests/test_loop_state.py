"""The training loop's typed state and the run's stop request, without a simulator: what a
checkpoint saves of them comes back unchanged, older checkpoints included."""

from __future__ import annotations

import pytest

from slac_runtime.stop_request import StopRequest, StopRequested
from slac_train.loop_state import LoopState, MetricMeans, Phase, RandomStreams
from slac_train.run import Cadence

COUNTERS = {
    "phase": "pretrain",
    "agent_step": 20,
    "env_step": 48,
    "episodes": 2,
    "updates": 0,
    "pretrain_updates": 3,
    "next_eval_env_step": 0,
    "next_checkpoint_env_step": 96,
    "elapsed_s": 1.5,
    "agent_steps": 20,
    "env_steps": 48,
}


def test_loop_state_reads_and_writes_a_checkpoints_counters():
    state = LoopState.from_dict(COUNTERS)
    assert state.phase is Phase.PRETRAIN and state.total_updates == 3
    assert state.to_checkpoint() == COUNTERS
    assert type(state.to_dict()["phase"]) is str  # checkpoints load with weights_only=True
    older = {k: v for k, v in COUNTERS.items() if k != "elapsed_s"}
    assert LoopState.from_dict(older).elapsed_s == 0.0


def test_a_resume_without_a_buffer_collects_again_then_trains():
    state = LoopState(phase=Phase.TRAIN, agent_step=100)
    state.collect_again(20)
    assert state.phase is Phase.COLLECT and state.collection_target(5) == 120
    assert "refill_target" not in state.to_dict()  # not part of the checkpoint
    assert LoopState().collection_target(5) == 5


def test_a_finished_run_reopens_for_a_larger_budget():
    class Budget:
        total_env_steps, model_pretrain_steps = 200, 3

    done = LoopState.from_dict({**COUNTERS, "phase": "done", "env_step": 100})
    done.reopen(Budget)
    assert done.phase is Phase.TRAIN
    finished = LoopState.from_dict({**COUNTERS, "phase": "done", "env_step": 200})
    finished.reopen(Budget)
    assert finished.phase is Phase.DONE


def test_random_streams_and_metric_means_come_back_from_their_state():
    import torch

    streams = RandomStreams.seeded(7)
    saved = streams.state()
    first = [stream.integers(1000) for stream in (streams.action, streams.eval)]
    streams.restore(saved)
    assert [stream.integers(1000) for stream in (streams.action, streams.eval)] == first

    means = MetricMeans()
    means.add({"model/loss": torch.tensor(1.0)})
    means.add({"model/loss": torch.tensor(3.0)})
    again = MetricMeans()
    again.restore(means.state(), torch.device("cpu"))
    assert again.take() == {"model/loss": 2.0} and again.count == 0


def test_cadence_and_the_stop_request_at_a_safe_point():
    every = Cadence(48)
    assert every.next_after(0) == 48 and every.next_after(48) == 96 and every.next_after(50) == 96
    assert every.due(96) and not every.due(50) and not Cadence(0).due(10)
    stop = StopRequest("stopping")
    stop.check()  # nothing requested: goes on
    stop.requested = True
    with pytest.raises(StopRequested) as raised:
        stop.check()
    assert isinstance(raised.value, KeyboardInterrupt)  # what stops code that stops on Ctrl-C


def test_phase_progress_counts_the_phase_in_progress():
    class Config:
        initial_collection_steps, model_pretrain_steps, total_env_steps = 20, 5, 144

    assert LoopState(agent_step=3).phase_progress(Config) == (3, 20, "agent steps")
    state = LoopState(phase=Phase.PRETRAIN, pretrain_updates=2)
    assert state.phase_progress(Config) == (2, 5, "updates")
    assert LoopState(phase=Phase.TRAIN, env_step=50).phase_progress(Config)[:2] == (50, 144)
