"""The deadlines of a running attempt: the task's timeout, the idle timeout (no progress
for N s) and the input timeout (no answer for N s). Activity moves the last two, so they
are looked at again at least every quarter second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from andon.protocol.types import CancelReason
from andon.runtime.attempt import Attempt

RECHECK = 0.25


def has_deadlines(attempt: Attempt) -> bool:
    record = attempt.record
    return bool(record.timeout or record.idle_timeout or record.input_timeout)


async def watch(attempt: Attempt, expire: Callable[[str], Awaitable[None]]) -> None:
    """Wait until a deadline of `attempt` passes; then `expire(reason)`, once."""
    record = attempt.record
    while True:
        due: list[tuple[float, str]] = []
        if attempt.deadline is not None:
            due.append((attempt.deadline, CancelReason.TIMEOUT))
        waiting = attempt.waiting_for_input_since
        if waiting is not None and record.input_timeout:
            due.append((waiting + record.input_timeout, CancelReason.INPUT_TIMEOUT))
        elif waiting is None and record.idle_timeout:
            due.append((attempt.last_activity + record.idle_timeout, CancelReason.IDLE_TIMEOUT))
        now = time.monotonic()
        if due:
            at, reason = min(due)
            if now >= at:
                await expire(reason)
                return
            await asyncio.sleep(min(at - now, RECHECK))
        else:
            await asyncio.sleep(RECHECK)
