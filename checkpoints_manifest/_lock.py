"""Exclusive advisory locks (flock): one process at a time writes a run, publishes it, or launches a zoo.

The lock is tied to an open file descriptor, so the kernel releases it when the
holder dies, even by SIGKILL: a crash never leaves a stale lock behind.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager


class LockHeldError(RuntimeError):
    """Another process holds the lock; the caller says who and what to do."""


def acquire_lock(path: str | os.PathLike) -> int:
    """Take the lock on `path` (created if missing) without waiting; returns the fd that holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockHeldError(str(path)) from None
    return fd


@contextmanager
def held_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold the lock on `path` for the `with` body (LockHeldError at once if another process has it)."""
    fd = acquire_lock(path)
    try:
        yield
    finally:
        os.close(fd)  # releases the lock
