"""Ctrl-C and SIGTERM for the commands that run until stopped, taken by a thread of their own.

While a command runs, both signals are blocked and waited for (`sigwait`) by that thread, rather
than handled wherever the main thread happens to be: psycopg's C wait retries an interrupted poll
with its full timeout, so signals coming faster than that timeout were never handled at all, and
Python hands a handled signal back to the default action as it exits, which killed a command that
was stopping (exit -2 after "stopped"). Once a stop is asked, they stay blocked, and taken, until the
process is gone. A signal that comes while Python is still loading the command is Python's."""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# Sent by the taking thread to the main thread with the first stop: a blocking call in C (a socket
# read, a child process awaited, a name looked up) returns, and the interrupt is raised. Its default
# action is to ignore it, so one that comes as the interpreter exits changes nothing.
KICK = signal.SIGURG


@contextmanager
def taking_stop_signals(on_signal: Callable[[], None]) -> Iterator[None]:
    """Call `on_signal` for each Ctrl-C or SIGTERM while the block runs, from the taking thread.
    If one came, they stay taken after the block; if none did, all is as it was before. A signal
    the process was started ignoring (SIGINT under `nohup` or `cmd &`) stays ignored."""
    taken_here = {s for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    if threading.current_thread() is not threading.main_thread() or not taken_here:
        yield  # signals are the main thread's to take
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    handlers = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),  # what interrupt_main raises
                KICK: signal.signal(KICK, lambda signum, frame: None)}
    closing = threading.Event()
    taken = threading.Event()

    def take() -> None:
        while True:
            signal.sigwait(taken_here)
            if closing.is_set():
                return
            taken.set()
            on_signal()

    taker = threading.Thread(target=take, name="pgaudit stop signals", daemon=True)
    taker.start()
    try:
        yield
    finally:
        if not taken.is_set():
            closing.set()
            signal.pthread_kill(taker.ident, next(iter(taken_here)))  # type: ignore[arg-type]  # ends its sigwait
            taker.join()
            for s, handler in handlers.items():  # before the mask: a SIGINT pending while ignored is dropped
                signal.signal(s, handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, before)


def interrupter(stop: threading.Event) -> Callable[[], None]:
    """What the first stop does: set `stop` and raise KeyboardInterrupt in the main thread at its
    next step (a query under way is cancelled by psycopg, given 5 s; a wait on the connection ends
    within its 0.1 s poll; a wait on `stop` at once; a blocking call in C when kicked). Later
    calls do nothing."""
    def first() -> None:
        if not stop.is_set():
            _thread.interrupt_main(signal.SIGINT)  # before `stop`: woken by it, the main thread is interrupted
            stop.set()
            signal.pthread_kill(threading.main_thread().ident, KICK)  # type: ignore[arg-type]
    return first


@contextmanager
def interrupted_by_stop_signals(stop: threading.Event) -> Iterator[None]:
    with taking_stop_signals(interrupter(stop)):
        yield
