"""Reading a key file given on the command line or to the API: a regular file of at most 64 KiB.
A FIFO would block the command for ever, and a device such as /dev/zero would be read until memory
ran out (tests/test_trust_attacks_116.py, k1)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

KEY_FILE_LIMIT = 64 * 1024  # far above any key pgaudit_py reads (a PEM is under 1 KiB)


def read_key_file(path: Path) -> bytes:
    """The file's bytes; OSError, whose strerror says why (never the content), otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO does not wait for a writer
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = f.read(KEY_FILE_LIMIT + 1)
    if len(data) > KEY_FILE_LIMIT:
        raise OSError(errno.EFBIG, f"larger than {KEY_FILE_LIMIT // 1024} KiB")
    return data
