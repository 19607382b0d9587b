"""One process at a time on a SQLite store: an exclusive lock on a file beside it.

Two processes on one embedded store would each believe they own every task in it: the
second, recovering at start, fails the first one's running tasks `worker_lost` while
their work runs on, no longer cancellable. So opening a store takes `<file>.lock` with
`flock`, which the kernel releases when the process ends however it ends (kill -9
included): a stale lock is never left behind. The holder writes its pid into the file,
so the refused process can say who holds it.

The lock is a sidecar, never the database file itself: closing any descriptor of a
file drops the POSIX locks SQLite holds on it. Within one process the lock is shared
and counted (a test, or a check before the server starts, may open the store again).
"""

from __future__ import annotations

import fcntl
import os
import threading
from dataclasses import dataclass

from andon.store.base import StoreUnusable


class StoreInUse(StoreUnusable):
    """Another process has the store open."""


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[str, _Held] = {}
_guard = threading.Lock()


def lock_path(store_path: str) -> str:
    return store_path + ".lock"


def acquire(store_path: str) -> None:
    """Take this process's lock on the store (or one more reference to it); raise
    StoreInUse naming the process that holds it."""
    path = os.path.realpath(lock_path(store_path))
    with _guard:
        held = _held.get(path)
        if held is not None:
            held.count += 1
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreInUse(
                f"{store_path} is in use by another andon process (pid {holder}): stop it, "
                "or give this one another --db"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[path] = _Held(fd, 1)


def release(store_path: str) -> None:
    """Drop one reference; the last one unlocks (the file stays: deleting it could let
    two processes lock two different files of the same name)."""
    path = os.path.realpath(lock_path(store_path))
    with _guard:
        held = _held.get(path)
        if held is None:
            return
        held.count -= 1
        if held.count == 0:
            del _held[path]
            os.close(held.fd)
