"""The stop request every command makes of Ctrl-C and SIGTERM (slac_runtime/stop_request.py)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from slac_runtime.stop_request import StopRequest, StopRequested


def test_a_doubled_signal_is_one_request_and_another_stops_at_once(capsys):
    """Slurm signals every process of a job and a wrapper forwards its own copy: the same signal
    twice in a moment is one request; another signal after it stops at once."""
    stop = StopRequest("{signal}: stopping at the next safe point")
    with stop.installed():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.exit_code == 143 and stop.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert capsys.readouterr().out.count("SIGTERM: stopping at the next safe point") == 1


def test_a_robot_command_takes_a_second_signal_as_asking_again(capsys):
    woken = []
    stop = StopRequest(on_request=lambda: woken.append(True), second_signal_stops_at_once=False)
    with stop.installed():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)  # no KeyboardInterrupt
    assert stop.requested and stop.exit_code == 130 and woken == [True]
    assert capsys.readouterr().out == ""  # no message: nothing printed


def test_check_raises_at_a_safe_point_only_once_requested():
    stop = StopRequest()
    stop.check()
    assert stop.exit_code == 130  # a stop that no signal asked for reads as Ctrl-C
    stop.request(signal.SIGTERM)
    with pytest.raises(StopRequested):
        stop.check()


def test_handlers_are_installed_in_the_main_thread_only_and_restored_after():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest().installed():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    seen = []

    def elsewhere() -> None:
        with StopRequest().installed():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen == [before]
