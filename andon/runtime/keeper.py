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
from typing import Any


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


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (which is in parentheses
    and may hold spaces): state first, then ppid, pgrp, ... (None: no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()


def running(pid: int) -> bool:
    """The process exists and is neither a zombie nor dead."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in (b"Z", b"X")


def _live_member(pid: int, pgid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X")


def live_members(pgid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _live_member(int(e), pgid)]


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


MARK_NAME = "ANDON_ATTEMPT"
"""In the environment of every process an attempt starts (subreaper containment), with
the attempt's key as its value: descendants inherit it, so they are found even after
they left the process group."""
MARK = MARK_NAME.encode() + b"="


def marked(key: bytes) -> list[int]:
    """Live processes whose environment carries the attempt key `key`."""
    needle = MARK + key + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read() + b"\0"
        except OSError:
            continue
        if (environ.startswith(needle) or b"\0" + needle in environ) and running(int(entry)):
            found.append(int(entry))
    return found


def cgroup_members(path: str) -> list[int]:
    try:
        with open(f"{path}/cgroup.procs") as fh:
            return [int(line) for line in fh if line.strip()]
    except OSError:
        return []


def cgroup_kill(path: str) -> None:
    with contextlib.suppress(OSError), open(f"{path}/cgroup.kill", "w") as fh:
        fh.write("1")


def cgroup_remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def signal_pids(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


class Held:
    """What the keeper ends when its parent dies: process groups, attempt keys (found by
    their environment) and cgroups."""

    def __init__(self) -> None:
        self.groups: set[int] = set()
        self.keys: set[bytes] = set()
        self.cgroups: set[str] = set()

    def take(self, line: bytes) -> None:
        sign, kind, value = line[:1], line[1:2], line[2:].strip()
        held: set[Any]
        item: Any
        if kind == b"g":
            held, item = self.groups, int(value)
        elif kind == b"e":
            held, item = self.keys, value
        else:
            held, item = self.cgroups, value.decode()
        if sign == b"+":
            held.add(item)
        else:
            held.discard(item)

    def alive(self) -> bool:
        self.groups = {pgid for pgid in self.groups if group_alive(pgid)}
        return bool(self.groups or self._pids())

    def _pids(self) -> list[int]:
        pids = [pid for key in self.keys for pid in marked(key)]
        return pids + [pid for path in self.cgroups for pid in cgroup_members(path)]

    def signal(self, sig: signal.Signals) -> None:
        for pgid in self.groups:
            signal_group(pgid, sig)
        if sig is signal.SIGKILL:
            for path in self.cgroups:
                cgroup_kill(path)
        signal_pids(self._pids(), sig)


def keep(grace: float) -> None:
    """The keeper's body: track what to end from stdin; at end-of-file, end it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    held = Held()
    for line in sys.stdin.buffer:
        held.take(line)
    held.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while held.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    held.signal(signal.SIGKILL)
    time.sleep(0.05)
    for path in held.cgroups:
        cgroup_remove(path)
        cgroup_remove(os.path.dirname(path))  # the dead process's own, once it is empty


if __name__ == "__main__":
    keep(float(sys.argv[1]))
