"""Child processes that die with their task: every command runs in its own process
group, and teardown signals the whole group (SIGTERM, grace, SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field

from andon.runtime.lifeline import Lifeline

_POLL_FIRST = 0.0005
_POLL_MAX = 0.02


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


async def wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = _POLL_FIRST
    while group_alive(pgid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL_MAX)
    return True


@dataclass
class ProcessGroups:
    """The process groups one attempt started, keyed by group id, with a label each."""

    groups: dict[int, str] = field(default_factory=dict)
    sigkilled: set[int] = field(default_factory=set)
    """Groups that outlived the grace. A set: the agent's own `run` and the teardown
    may both be killing the same group at once."""
    lifeline: Lifeline | None = None
    """Told of every group, to end them if this process dies before it does."""

    @property
    def killed_after_grace(self) -> int:
        return len(self.sigkilled)

    def add(self, pgid: int, label: str) -> None:
        self.groups[pgid] = label
        if self.lifeline is not None:
            self.lifeline.hold(pgid)

    def discard(self, pgid: int) -> None:
        self.groups.pop(pgid, None)
        if self.lifeline is not None:
            self.lifeline.release(pgid)

    async def kill_all(self, grace: float) -> list[str]:
        """SIGTERM every group, wait up to `grace`, SIGKILL what is left.

        Returns the labels of groups still alive after the SIGKILL (should be none).
        """
        if not self.groups:
            return []
        pending = list(self.groups.items())
        for pgid, _ in pending:
            signal_group(pgid, signal.SIGTERM)
        gone = await asyncio.gather(*(wait_group_gone(pgid, grace) for pgid, _ in pending))
        stubborn = [
            (pgid, label) for (pgid, label), ok in zip(pending, gone, strict=True) if not ok
        ]
        for pgid, _ in stubborn:
            signal_group(pgid, signal.SIGKILL)
            self.sigkilled.add(pgid)
        dead = await asyncio.gather(*(wait_group_gone(pgid, 1.0) for pgid, _ in stubborn))
        survivors = [label for (_, label), ok in zip(stubborn, dead, strict=True) if not ok]
        if self.lifeline is not None:
            alive = {pgid for (pgid, _), ok in zip(stubborn, dead, strict=True) if not ok}
            for pgid in self.groups.keys() - alive:  # a survivor stays the keeper's to end
                self.lifeline.release(pgid)
        self.groups.clear()
        return survivors


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
