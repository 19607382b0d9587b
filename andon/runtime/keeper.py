"""Process-group primitives and the lifeline's keeper (see andon.runtime.lifeline).

The keeper process runs this file as a script, so it loads the standard library and
nothing of andon: a few MiB, where importing the package would cost some 35.
Keep it that way: no andon imports here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in the group.

    `killpg(pgid, 0)` also succeeds for zombies that nobody reaped (in a container the
    init process may never reap orphans), so a hit is confirmed from /proc: first the
    leader alone (one small read), the whole process table only once the leader is
    gone. A full scan on every poll was slow on the loop while a busy thread held
    the GIL.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _live_member(pgid, pgid) or bool(live_members(pgid))


def _live_member(pid: int, pgid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[2]) == pgid and fields[0] not in (b"Z", b"X")


def live_members(pgid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _live_member(int(e), pgid)]


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def keep(grace: float) -> None:
    """The keeper's body: track groups from stdin; at end-of-file, end those left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        sign, pgid = line[:1], int(line[1:])
        if sign == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    for pgid in groups:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = {pgid for pgid in groups if group_alive(pgid)}
        time.sleep(0.02)
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)


if __name__ == "__main__":
    keep(float(sys.argv[1]))
