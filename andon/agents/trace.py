"""The demo's trace: `<task id> <step> <monotonic ns>` appended to the file that
$ANDON_DEMO_TRACE names, so that anyone can check from outside that work stopped.

Standard library only: the benchmark's peer servers (bench/peers/demo_work.py) load
this file by its path, in their own environments, so that every server measured writes
the same lines the same way.
"""

from __future__ import annotations

import os
import threading
import time

_trace_lock = threading.Lock()
_trace_file: tuple[str, int, int] | None = None
"""The trace file's path, descriptor and when it was last found linked: opened once, for a
crowd of a thousand tasks writes ten thousand lines a second, each one O_APPEND write."""


def trace(task_id: str, step: int) -> None:
    """Append `<task id> <step> <monotonic ns>` to $ANDON_DEMO_TRACE, if set."""
    path = os.environ.get("ANDON_DEMO_TRACE")
    if not path:
        return
    now = time.monotonic_ns()
    line = f"{task_id} {step} {now}\n".encode()
    with _trace_lock:  # spin traces from threads: none may write to a descriptor closed here
        os.write(_trace_descriptor(path, now), line)


def _trace_descriptor(path: str, now: int) -> int:
    """Opened again for a new path, or when the file was removed (looked at once a
    second: a person may clear the trace by hand)."""
    global _trace_file
    if _trace_file is not None:
        opened, fd, linked_at = _trace_file
        if opened == path and now - linked_at < 1_000_000_000:
            return fd
        if opened == path and os.fstat(fd).st_nlink:
            _trace_file = (opened, fd, now)
            return fd
        os.close(fd)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    _trace_file = (path, fd, now)
    return fd
