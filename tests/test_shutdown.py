"""Workers stop on SIGINT / SIGTERM, however the signals land (crowd_monitor/shutdown.py). Pure: no database."""

import os
import signal
import threading

import pytest

from crowd_monitor.shutdown import stop_on_signals


@pytest.mark.timeout(30)  # a handler that deadlocks would hang here
def test_a_signal_landing_while_the_main_thread_holds_the_events_lock_still_stops_it() -> None:
    stop = threading.Event()
    with stop_on_signals(stop):
        # Where a handler calling stop.set() deadlocked: the signal arrives while this thread is inside the event
        # holding its lock, as in stop.wait() when a sleep ends or in stop.set() when a second signal follows.
        with stop._cond:
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(10_000))  # bytecodes between which the interpreter runs the Python-level handler
            assert not stop.is_set()  # set by the watcher thread, which needs the lock this thread still holds
        assert stop.wait(10)


def test_ctrl_c_and_a_supervisors_sigterm_together_are_announced_and_stop_once() -> None:
    stop = threading.Event()
    announced: list[str] = []
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_on_signals(stop, announced.append):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(10)
        for _ in range(100):  # both are announced, the second from the same watcher thread
            if len(announced) == 2:
                break
            threading.Event().wait(0.05)
    assert announced == ["SIGINT", "SIGTERM"]
    # Leaving the block puts back the handlers it found: a later Ctrl+C does what it did before.
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
