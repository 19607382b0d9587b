"""Shared test helpers: polling with a deadline (never bare sleeps), trace reading."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from andon.protocol.types import Message, Role, TaskState, text_message
from andon.service import Principal, TaskService

USER = Principal("alice")


def user_text(text: str, **fields: object) -> Message:
    return text_message(Role.USER, text, **fields)  # type: ignore[arg-type]


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition not met",
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if asyncio.iscoroutine(outcome) or isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s")
        await asyncio.sleep(interval)


async def wait_state(
    service: TaskService, task_id: str, *states: TaskState, timeout: float = 10.0
) -> None:
    wanted = {s.value for s in states}

    async def reached() -> bool:
        task = await service.get(task_id, USER)
        return task.status.state.value in wanted

    await eventually(reached, timeout, message=f"task {task_id} never reached {wanted}")


def trace_lines(path: Path, task_id: str) -> list[tuple[int, int]]:
    """(step, monotonic ns) lines the demo agent wrote for this task."""
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        tid, step, ns = line.split()
        if tid == task_id:
            lines.append((int(step), int(ns)))
    return lines


async def wait_trace(path: Path, task_id: str, count: int = 1, timeout: float = 10.0) -> None:
    await eventually(
        lambda: len(trace_lines(path, task_id)) >= count,
        timeout,
        message=f"{count} trace line(s) for {task_id}",
    )


def process_group_alive(pgid: int) -> bool:
    """From /proc: any process of the group that is not a zombie."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) direct children of a process, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] not in (b"Z", b"X"):
            found.append(int(entry))
    return found
