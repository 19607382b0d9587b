"""Child processes that die with their task: every command runs in its own process
group, and teardown signals the whole group (SIGTERM, grace, SIGKILL)."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field

from andon.runtime.keeper import group_alive, signal_group
from andon.runtime.lifeline import Lifeline

_POLL_FIRST = 0.0005
_POLL_MAX = 0.02


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
