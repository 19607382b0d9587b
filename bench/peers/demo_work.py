"""The demo agent's work, shared by the peer servers (standard library only).

Each peer runs in its own virtual environment with its own Python, so this module
imports nothing from andon or from any peer framework. It holds only what must be
identical everywhere for the benchmark to compare like with like: how the text is
read, the 0.1 s step, the trace line format of `andon.agents.demo`, and the
CPU-bound loop that `spin` runs in a thread.
"""

from __future__ import annotations

import os
import threading
import time

STEP = 0.1
COMMANDS = ("echo", "sleep", "spin", "shell")


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


def parse(text: str) -> tuple[str, str]:
    """Split the user's text into its first word and the rest."""
    command, _, rest = text.strip().partition(" ")
    return command, rest.strip()


def seconds(rest: str, default: float = 1.0) -> float:
    value = float(rest) if rest else default
    if value < 0:
        raise ValueError("expected a number >= 0")
    return value


def steps(total_seconds: float) -> int:
    return round(total_seconds / STEP)


def spin(task_id: str, total_seconds: float) -> int:
    """Busy CPU work, meant to run in a thread; a trace line every 0.1 s.

    Nothing here can notice a cancel: that is the point of the measurement. It is
    the loop a typical author hands to `asyncio.to_thread`.
    """
    end = time.monotonic() + total_seconds
    step = 0
    next_mark = time.monotonic() + STEP
    while time.monotonic() < end:
        sum(i * i for i in range(2000))
        if time.monotonic() >= next_mark:
            trace(task_id, step)
            step += 1
            next_mark += STEP
    return step
