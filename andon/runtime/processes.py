"""The processes of one attempt: every command runs in its own process group and in the
attempt's cell (andon.runtime.containment), and stopping them means SIGTERM to every
group and every escaped descendant, a grace, then SIGKILL to what is left."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from andon.runtime.containment import Cell
from andon.runtime.keeper import group_alive, signal_group
from andon.runtime.lifeline import Lifeline

_POLL_FIRST = 0.0005
_POLL_MAX = 0.02


async def wait_until(gone: Callable[[], bool], timeout: float) -> bool:
    """Poll `gone` with a growing delay; whether it became true within `timeout`."""
    deadline = time.monotonic() + timeout
    delay = _POLL_FIRST
    while not gone():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL_MAX)
    return True


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or "?"


class Processes:
    """Started through the attempt; stopped with it.

    Each group is stopped by one task, whoever asks first (the command's own caller
    when it is interrupted, or the attempt's stop): a second asker awaits the same stop,
    so two killers never race on one group."""

    def __init__(self, cell: Cell, grace: float, lifeline: Lifeline | None) -> None:
        self.cell = cell
        self.grace = grace
        self.lifeline = lifeline
        self.groups: dict[int, str] = {}
        """Process group id -> the command that leads it."""
        self.killed: list[str] = []
        """What outlived the grace and was SIGKILLed, with its command."""
        self._stopping: dict[int, asyncio.Task[bool]] = {}
        self._escaped: set[int] = set()
        """Descendants seen outside their group, to reap once they are gone."""
        self._held_cell = False
        self._spawned = False

    @property
    def started(self) -> bool:
        """Whether any process was started (until then there is nothing to stop)."""
        return self._spawned

    async def spawn(
        self,
        argv: list[str],
        label: str,
        *,
        cwd: Path | str,
        env: dict[str, str] | None,
        stdin: int | None = asyncio.subprocess.DEVNULL,
        stdout: int | None = asyncio.subprocess.PIPE,
        stderr: int | None = asyncio.subprocess.STDOUT,
    ) -> asyncio.subprocess.Process:
        options: dict[str, Any] = self.cell.spawn_options(env)
        self._spawned = True
        if self.lifeline is not None and not self._held_cell:
            self.lifeline.hold(self.cell.held)
            self._held_cell = True
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            cwd=cwd,
            **options,
        )
        self.groups[proc.pid] = label
        if self.lifeline is not None:
            self.lifeline.hold(f"g{proc.pid}")
        return proc

    async def supervised(self, proc: asyncio.subprocess.Process, work: Awaitable[Any]) -> Any:
        """Await `work` on `proc`; if it is interrupted, stop the process's group."""
        try:
            return await work
        except BaseException:
            await asyncio.shield(self.stop_group(proc.pid))
            raise
        finally:
            if not group_alive(proc.pid):
                self._forget(proc.pid)

    def stop_group(self, pgid: int) -> asyncio.Task[bool]:
        """Stop one group (shared by everyone who asks); true once it is gone."""
        task = self._stopping.get(pgid)
        if task is None:
            task = asyncio.ensure_future(self._stop_group(pgid))
            self._stopping[pgid] = task
        return task

    async def _stop_group(self, pgid: int) -> bool:
        signal_group(pgid, signal.SIGTERM)
        if not await wait_until(lambda: not group_alive(pgid), self.grace):
            self.killed.append(f"{self.groups.get(pgid, '?')} (process group {pgid})")
            signal_group(pgid, signal.SIGKILL)
            if not await wait_until(lambda: not group_alive(pgid), 1.0):
                return False
        self._forget(pgid)
        return True

    def _forget(self, pgid: int) -> None:
        if self.groups.pop(pgid, None) is not None and self.lifeline is not None:
            self.lifeline.release(f"g{pgid}")

    async def stop(self) -> list[str]:
        """Stop every group and every descendant that escaped them, within the grace,
        then SIGKILL; return what is still alive after that (should be nothing)."""
        groups = dict(self.groups)
        stops = [self.stop_group(pgid) for pgid in groups]
        escaped = await self._stop_escaped()
        gone = await asyncio.gather(*stops)
        survivors = [
            f"{label} (process group {pgid})"
            for (pgid, label), ok in zip(groups.items(), gone, strict=True)
            if not ok
        ]
        survivors += [f"{command_line(pid)} (pid {pid})" for pid in escaped]
        if not survivors:
            self.cell.close(sorted(self._escaped))
            if self.lifeline is not None and self._held_cell:
                self.lifeline.release(self.cell.held)
                self._held_cell = False
        return survivors

    async def _stop_escaped(self) -> list[int]:
        """Members of the cell that left their process group (`setsid`, daemons); the
        groups themselves are stopped by `stop_group`."""
        if not self._spawned or not self._strays():
            return []
        self.cell.signal(signal.SIGTERM)
        if await wait_until(lambda: not self._strays(), self.grace):
            return []
        stubborn = self._strays()
        self.killed += [f"{command_line(pid)} (pid {pid})" for pid in stubborn]
        self.cell.signal(signal.SIGKILL)
        await wait_until(lambda: not self._strays(), 1.0)
        return self._strays()

    def _strays(self) -> list[int]:
        strays = []
        for pid in self.cell.members():
            try:
                if os.getpgid(pid) in self.groups:
                    continue
            except ProcessLookupError:
                continue
            strays.append(pid)
        self._escaped.update(strays)
        return strays
