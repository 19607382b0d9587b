"""Delivering the push outbox: every andon process that serves the API or runs tasks runs
one PushSender, and they share the outbox through the store (andon/store/push.py).

A sender claims due rows (a lease each), POSTs each event to its webhook, and removes
the row on a 2xx answer. A failure is tried again after a backoff that doubles, until
`retry_for` seconds after the event; then, or at once for an answer that retrying cannot
change (a redirect, a 4xx other than 408 and 429, a refused address), the row is marked
failed and kept. A sender that dies leaves its leases to lapse: the rows are claimed
again and sent again, which receivers tell by the idempotency key.

Each request: the event as the config's A2A version streams it (1.0: a StreamResponse,
`{"statusUpdate": ...}` or `{"artifactUpdate": ...}`), `Authorization: <scheme>
<credentials>` from the config's authentication, `X-A2A-Notification-Token` from its
token, and `Idempotency-Key: <task id>:<event seq>`. It goes to the address the policy
checked (andon/push/policy.py), follows no redirect, times out, and reads no answer body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic_core import to_json

from andon.protocol.codec import codec_for
from andon.protocol.wire import Version
from andon.push.policy import PushPolicy, RefusedURL, Target
from andon.store.base import Store
from andon.store.push import PushDelivery
from andon.telemetry.metrics import Metrics

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("andon.push")

IDEMPOTENCY_HEADER = "Idempotency-Key"
TOKEN_HEADER = "X-A2A-Notification-Token"
ACTIVE_FOR = 5.0
"""Seconds after it last had work that a sender wakes on every append (not only polls)."""


@dataclass(frozen=True)
class PushSettings:
    policy: PushPolicy = field(default_factory=PushPolicy)
    retry_for: float = 900.0
    """Seconds after an event during which its delivery is tried again."""
    timeout: float = 10.0
    """Seconds one attempt may take, connecting included."""
    first_backoff: float = 0.5
    max_backoff: float = 60.0
    poll: float = 0.5
    """Seconds between looks at the outbox when nothing woke the sender."""
    concurrency: int = 32
    """Deliveries in flight at once in this process."""


class Permanent(Exception):
    """A failure that trying again cannot change."""


class PushSender:
    def __init__(self, store: Store, metrics: Metrics, settings: PushSettings) -> None:
        self.store = store
        self.metrics = metrics
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._active_until = 0.0
        self._watching = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="andon-push-sender")

    def _client(self) -> httpx.AsyncClient:
        """Made for the first delivery: httpx and the client's TLS context (the CA
        bundle, about 3 MiB) are memory that a server nobody asks for webhooks never
        needs."""
        if self._http is None:
            import httpx

            timeout = self.settings.timeout
            self._http = httpx.AsyncClient(
                follow_redirects=False,
                timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
                limits=httpx.Limits(max_connections=self.settings.concurrency),
                trust_env=False,  # a proxy from the environment would dodge the address check
            )
        return self._http

    async def stop(self) -> None:
        """Deliveries in flight are abandoned: their leases lapse and they go again."""
        tasks = [t for t in (self._loop, *self._inflight) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watch(False)
        if self._http is not None:
            await self._http.aclose()

    def kick(self) -> None:
        """Something was queued here (a config stored): look now, and follow appends."""
        self._active_until = time.monotonic() + ACTIVE_FOR
        self._watch(True)
        self._wake.set()

    def _watch(self, on: bool) -> None:
        if on != self._watching:
            self.store.notifier.watch_all(self._wake, on)
            self._watching = on

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            free = self.settings.concurrency - len(self._inflight)
            batch: list[PushDelivery] = []
            if free > 0:
                try:
                    batch = await self.store.push.claim(
                        self.owner, limit=free, lease=self.settings.timeout + 5
                    )
                except Exception:
                    log.exception("push: could not read the outbox")
            if batch:
                self.kick()
                for delivery in batch:
                    task = asyncio.create_task(self._deliver(delivery))
                    self._inflight.add(task)
                    task.add_done_callback(self._finished)
                continue
            if time.monotonic() > self._active_until:
                self._watch(False)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll):
                    await self._wake.wait()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # its queue's next event may be due now

    async def _deliver(self, delivery: PushDelivery) -> None:
        push = self.store.push
        try:
            # An event is shown outside only once committed (a store may commit a loop
            # turn's writes together, after it has answered them).
            await self.store.committed()
            await self._post(delivery)
        except Exception as exc:
            error = _describe(exc)
            now = time.time()
            backoff = min(
                self.settings.first_backoff * 2 ** (delivery.attempts - 1),
                self.settings.max_backoff,
            )
            give_up = isinstance(exc, Permanent) or (
                now + backoff > delivery.event_at + self.settings.retry_for
            )
            try:
                if give_up:
                    await push.failed(self.owner, delivery, error)
                else:
                    await push.retry(self.owner, delivery, now + backoff, error)
            except Exception:
                log.exception("push: could not record a failed delivery")
                return
            self.metrics.push_deliveries.labels("failed" if give_up else "retried").inc()
            if give_up:
                log.warning(
                    "push: gave up %s to %s after %d attempt(s): %s",
                    delivery.key,
                    delivery.config.url,
                    delivery.attempts,
                    error,
                )
            return
        try:
            await push.delivered(self.owner, delivery)
        except Exception:
            log.exception("push: delivered %s but could not record it", delivery.key)
            return
        self.metrics.push_deliveries.labels("delivered").inc()
        self.metrics.push_latency.observe(max(0.0, time.time() - delivery.event_at))

    async def _post(self, delivery: PushDelivery) -> None:
        http = self._client()
        config = delivery.config
        try:
            target = await self.settings.policy.target(config.url)
        except RefusedURL as exc:
            raise Permanent(str(exc)) from None
        body = codec_for(Version(config.version)).encode_event(
            config.task_id, delivery.context_id, delivery.kind, delivery.data, delivery.final
        )
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: delivery.key,
            "Host": target.url.netloc.decode("ascii"),
        }
        if config.auth_scheme:
            credentials = f" {config.auth_credentials}" if config.auth_credentials else ""
            headers["Authorization"] = f"{config.auth_scheme}{credentials}"
        if config.token:
            headers[TOKEN_HEADER] = config.token
        request = http.build_request(
            "POST",
            _pinned(target),
            content=to_json(body),
            headers=headers,
            extensions={"sni_hostname": target.url.host} if target.url.scheme == "https" else {},
        )
        async with asyncio.timeout(self.settings.timeout):
            response = await http.send(request, stream=True)
            await response.aclose()  # the answer's body is never read
        status = response.status_code
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise Permanent(f"HTTP {status}: redirects are not followed")
        if 400 <= status < 500 and status not in (408, 429):
            raise Permanent(f"HTTP {status}")
        raise RuntimeError(f"HTTP {status}")


def _pinned(target: Target) -> httpx.URL:
    """The URL with its host replaced by the address that was checked."""
    return target.url.copy_with(host=target.address)


def _describe(exc: BaseException) -> str:
    import httpx  # loaded by the delivery that failed

    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, Permanent | RuntimeError) else f"{type(exc).__name__}: {text}"
