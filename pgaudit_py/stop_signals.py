"""Ctrl-C and SIGTERM as a request to stop, asked once. After the first, both are ignored for the
rest of the process's life: Python hands a signal it handles back to the system's default action as
the interpreter exits, and that action kills, so a second Ctrl-C (or a service manager repeating
SIGTERM) landing while a stopped command exits would end it by the signal, after it said "stopped"."""

from __future__ import annotations

import signal
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_further_stops() -> None:
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)  # kept as it is when the interpreter exits, unlike a handler


def on_stop(stop: Callable[[], None]) -> None:
    """Call `stop` on the first Ctrl-C or SIGTERM (it may raise, to end a wait) and ignore the later ones."""
    def handler(signum: int, frame: object) -> None:
        ignore_further_stops()
        stop()
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
