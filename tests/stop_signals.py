"""Telling a long-running command to stop, again and again, until it has exited."""

from __future__ import annotations

import subprocess
import time


def signal_until_exit(proc: subprocess.Popen[str], sig: int, *, every: float = 0.002,
                      timeout: float = 30) -> tuple[str, str]:
    """Send `sig`, then send it again every few milliseconds until `proc` exits: a second Ctrl-C, or
    a service manager repeating SIGTERM, may come at any moment of a stop, even as Python exits.
    Returns what it printed (stdout, stderr)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "it did not stop"
        try:
            proc.send_signal(sig)
        except ProcessLookupError:  # exited between poll and send
            break
        time.sleep(every)
    return proc.communicate(timeout=timeout)
