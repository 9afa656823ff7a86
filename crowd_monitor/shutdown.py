"""Stopping long-running commands (the workers) on SIGINT / SIGTERM without ever deadlocking.

A Python signal handler runs in the main thread between two bytecodes, possibly while that thread holds the lock
inside a `threading.Event`: in `stop.wait()` at the end of a sleep, or in `stop.set()` when a second signal lands
while the first one's handler runs (Ctrl+C sends SIGINT to a whole process group and `scripts/run` or the worker
supervisor then sends SIGTERM as well). A handler that calls `stop.set()` then waits forever for a lock its own
thread holds, and the worker never exits. So the handler does nothing in Python: the interpreter writes the signal's
number to a wakeup pipe, and a watcher thread reads it and sets the event.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The long-running commands: a stop asked for while they start up ends them at once, cleanly (manage.py).
WORKER_COMMANDS = frozenset({"run_detection", "run_alerts"})


def exit_on_signals() -> None:
    """Until a worker installs `stop_on_signals`: SIGINT or SIGTERM exits at once with status 0.

    Installed by manage.py before Django and the detection libraries are imported (seconds, on a busy machine), so
    a Ctrl+C or a supervisor's SIGTERM in that time ends the worker as cleanly as one later on, not with a
    KeyboardInterrupt traceback or killed by the signal. Nothing has been read or written yet then.
    """
    for signum in SIGNALS:
        signal.signal(signum, _exit_now)


def _exit_now(signum: int, frame: object) -> None:
    # os.write, not print: the main thread may be inside a write to sys.stdout, which is not reentrant.
    os.write(1, f"{signal.Signals(signum).name} received: exiting.\n".encode())
    raise SystemExit(0)


@contextmanager
def stop_on_signals(stop: threading.Event, announce: Callable[[str], None] | None = None) -> Iterator[None]:
    """Within the block, SIGINT or SIGTERM sets `stop` (and calls `announce` with the signal's name, e.g.
    "SIGTERM"). Main thread only (as `signal.signal`); the previous handlers are restored on leaving."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # set_wakeup_fd requires it: the interpreter must never block on a full pipe
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, _noted_on_the_pipe) for signum in SIGNALS}
    watcher = threading.Thread(target=_watch, args=(read_fd, stop, announce), name="signal-watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)  # the watcher reads the end of the pipe and returns
        watcher.join()
        os.close(read_fd)


def _noted_on_the_pipe(signum: int, frame: object) -> None:
    """The Python-level handler: nothing to do, the interpreter has already written `signum` to the wakeup pipe."""


def _watch(read_fd: int, stop: threading.Event, announce: Callable[[str], None] | None) -> None:
    while chunk := os.read(read_fd, 64):
        for signum in chunk:
            if signum in SIGNALS:  # the pipe also carries any other signal that has a Python handler
                if announce is not None:
                    announce(signal.Signals(signum).name)
                stop.set()
