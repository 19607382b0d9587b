"""Events across processes: PostgreSQL NOTIFY after a commit, LISTEN in every process.

A notification only says "task T has events up to seq N"; followers read the log
itself. So notifications may be coalesced, duplicated or (while a connection is down)
lost without losing an event: a follower woken once reads everything new, and every
follower is woken when the listening connection comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

CHANNEL = "andon_events"
RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0)
"""Seconds between attempts to listen again; the last one repeats."""


def payload(task_id: str, seq: int, origin: str) -> str:
    return f"{task_id} {seq} {origin}"


def parse(text: str) -> tuple[str, str] | None:
    """(task id, origin) of a notification's payload; None for one andon did not send."""
    parts = text.rsplit(" ", 2)
    return (parts[0], parts[2]) if len(parts) == 3 else None


class Listener:
    """LISTENs on a connection of its own; re-establishes it whenever it drops.

    `on_notify` gets each notification's channel and payload; `on_reconnect` is called
    once listening again, since whatever was sent meanwhile was lost.
    """

    def __init__(
        self,
        url: str,
        on_notify: Callable[[str, str], None],
        on_reconnect: Callable[[], None],
        application_name: str = "andon-listener",
        channels: Sequence[str] = (CHANNEL,),
    ) -> None:
        self._url = url
        self._application_name = application_name
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._channels = channels
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listening when this returns: a commit after it is announced to this process."""
        conn = await self._listen()
        self._task = asyncio.create_task(self._run(conn), name="andon-pg-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> psycopg.AsyncConnection[object]:
        # Keepalives notice a peer that vanished without closing the socket.
        conn: psycopg.AsyncConnection[object] = await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            application_name=self._application_name,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )
        try:
            for channel in self._channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _run(self, conn: psycopg.AsyncConnection[object]) -> None:
        while True:
            try:
                async for notify in conn.notifies():
                    self._on_notify(notify.channel, notify.payload)
            except psycopg.OperationalError as exc:
                log.warning("lost the connection listening for events (%s); reconnecting", exc)
            except Exception:  # whatever it was, listening must go on
                log.exception("listening for events failed; reconnecting")
            finally:
                await conn.close()
            conn = await self._reconnect()
            # Whatever was committed while nobody listened is in the log: re-read it.
            self._on_reconnect()

    async def _reconnect(self) -> psycopg.AsyncConnection[object]:
        attempt = 0
        while True:
            await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            attempt += 1
            try:
                conn = await self._listen()
            except psycopg.OperationalError as exc:
                log.debug("listening again failed (%s), attempt %d", exc, attempt)
                continue
            log.info("listening for events again after %d attempts", attempt)
            return conn


class NotifyBatcher:
    """Which appends announce themselves in their own transaction, and which later.

    The first append to a task in a window notifies at once (no added latency for a
    lone event); the next ones within `window` seconds are announced together by one
    notification at the window's end, so a token-rate stream sends about one per window.
    A status change always notifies at once and covers the appends before it.
    """

    def __init__(self, window: float, send: Callable[[dict[str, int]], Awaitable[None]]) -> None:
        self._window = window
        self._send = send
        self._recent: set[str] = set()  # announced within the current window
        self._pending: dict[str, int] = {}  # committed, not yet announced: task -> last seq
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None

    def notify_now(self, task_id: str) -> bool:
        """Whether the append about to be written should notify in its own transaction."""
        if task_id in self._recent:
            return False
        self._recent.add(task_id)
        self._arm()
        return True

    def deferred(self, task_id: str, seq: int) -> None:
        """An append that did not notify has committed."""
        self._pending[task_id] = max(seq, self._pending.get(task_id, 0))
        self._arm()

    def announced(self, task_id: str) -> None:
        """A status change notified: it covers every event before it."""
        self._pending.pop(task_id, None)

    async def close(self) -> None:
        """Announce what is still pending, then stop."""
        if self._sending is not None:
            await self._sending
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            pending, self._pending = self._pending, {}
            await self._flush(pending)
            if self._timer is not None:  # the last try failed: nobody is left to retry
                self._timer.cancel()
                self._timer = None

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window, self._tick)

    def _tick(self) -> None:
        self._timer = None
        # Tasks announced now stay in the window; the others leave it.
        self._recent = set(self._pending)
        if self._pending and self._sending is None:
            pending, self._pending = self._pending, {}
            self._sending = asyncio.create_task(self._flush(pending))
        if self._recent or self._pending:
            self._arm()

    async def _flush(self, pending: dict[str, int]) -> None:
        try:
            await self._send(pending)
        except (psycopg.Error, OSError) as exc:
            log.warning("could not announce events of %d tasks (%s); retrying", len(pending), exc)
            for task_id, seq in pending.items():
                self._pending[task_id] = max(seq, self._pending.get(task_id, 0))
            self._arm()
        finally:
            self._sending = None
