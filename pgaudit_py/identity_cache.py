"""A small cache of a function's results by the identity of its arguments, not their equality: two
JSON loader classes that compare equal (through a metaclass) may read differently (as two equal JSON
functions did: tests/test_trust_attacks_105.py, j4), and an argument that cannot be hashed is cached
all the same. Each entry keeps its arguments alive, so no id is reused under it."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")


def by_identity(size: int) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """The last `size` results of the function, least recently used out first."""
    def wrap(function: Callable[..., R]) -> Callable[..., R]:
        entries: OrderedDict[tuple[int, ...], tuple[tuple[Any, ...], R]] = OrderedDict()
        lock = threading.Lock()

        @functools.wraps(function)
        def cached(*args: Any) -> R:
            key = tuple(map(id, args))
            with lock:
                entry = entries.get(key)
                if entry is not None:
                    entries.move_to_end(key)
                    return entry[1]
            result = function(*args)
            with lock:
                entries[key] = (args, result)
                while len(entries) > size:
                    entries.popitem(last=False)
            return result
        return cached
    return wrap
