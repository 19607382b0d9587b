"""The push outbox's store contract (andon/store/push.py), on SQLite and PostgreSQL: an
event is queued for each config of its task in the transaction that appends it, a
queue is delivered in order, a claim is a lease, and retries and failures are kept."""

from __future__ import annotations

import asyncio

from andon.store.base import Store
from andon.store.postgres import PostgresStore
from andon.store.push import PushConfig, PushDelivery
from tests.test_store_contract import S, backend, claim, create, move, store

__all__ = ["backend", "store"]  # the fixtures, shared with the store contract


def config(task_id: str, config_id: str = "c1", url: str = "https://hooks.example/a") -> PushConfig:
    return PushConfig(task_id, config_id, url, "1.0", token="t", auth_scheme="Bearer")


async def drain(store: Store, owner: str = "me", limit: int = 100) -> list[PushDelivery]:
    """Claim and deliver whatever is due, one round at a time, until nothing is."""
    seen = []
    while batch := await store.push.claim(owner, limit=limit, lease=30):
        for delivery in batch:
            await store.push.delivered(owner, delivery)
        seen += batch
    return seen


async def test_events_after_a_config_are_queued_with_it(store: Store) -> None:
    task = await create(store)
    await store.push.put_config(config(task.id))
    working = await claim(store, task.id)
    await store.append(task.id, working.epoch, "artifact", {"artifact": {"x": 1}})
    await store.append(task.id, working.epoch, "message", {"ignored": True})
    await move(store, task.id, S.WORKING, S.COMPLETED)
    sent = await drain(store)
    assert [(d.kind, d.seq) for d in sent] == [("status", 3), ("artifact", 4), ("status", 6)]
    assert sent[-1].final and sent[-1].data["state"] == "completed"
    assert sent[0].config.token == "t" and sent[0].context_id == task.context_id
    assert await store.push.depth() == 0


async def test_backfill_queues_the_events_already_logged(store: Store) -> None:
    task = await create(store)
    await store.push.put_config(config(task.id), backfill=True)
    sent = await drain(store)
    assert [(d.kind, d.seq, d.data["state"]) for d in sent] == [("status", 2, "submitted")]


async def test_each_config_has_its_own_queue(store: Store) -> None:
    task = await create(store)
    await store.push.put_config(config(task.id, "a"))
    await store.push.put_config(config(task.id, "b", "https://hooks.example/b"))
    await claim(store, task.id)
    sent = await drain(store)
    assert sorted((d.config.id, d.config.url) for d in sent) == [
        ("a", "https://hooks.example/a"),
        ("b", "https://hooks.example/b"),
    ]
    assert [c.id for c in await store.push.list_configs(task.id)] == ["a", "b"]


async def test_only_the_oldest_of_a_queue_is_claimed(store: Store) -> None:
    """Order: while seq 3 is leased (or waits for a retry), seq 4 is not handed out."""
    task = await create(store)
    await store.push.put_config(config(task.id))
    working = await claim(store, task.id)
    await store.append(task.id, working.epoch, "progress", {"state": "working"})
    [first] = await store.push.claim("a", limit=10, lease=30)
    assert first.seq == 3 and first.attempts == 1
    assert await store.push.claim("b", limit=10, lease=30) == []
    await store.push.retry("a", first, at=0.0, error="HTTP 503")
    [again] = await store.push.claim("b", limit=10, lease=30)
    assert (again.seq, again.attempts) == (3, 2)
    await store.push.delivered("b", again)
    [second] = await store.push.claim("a", limit=10, lease=30)
    assert second.seq == 4


async def test_a_lapsed_lease_is_claimed_again(store: Store) -> None:
    task = await create(store)
    await store.push.put_config(config(task.id), backfill=True)
    [taken] = await store.push.claim("dead", limit=10, lease=0.05)
    assert await store.push.claim("alive", limit=10, lease=30) == []
    await asyncio.sleep(0.1)
    [retaken] = await store.push.claim("alive", limit=10, lease=30)
    assert (retaken.seq, retaken.attempts) == (taken.seq, 2)
    # The dead claimer's late word changes nothing: the row is the new owner's.
    await store.push.delivered("dead", taken)
    assert await store.push.depth() == 1


async def test_a_retry_waits_until_it_is_due(store: Store) -> None:
    task = await create(store)
    await store.push.put_config(config(task.id), backfill=True)
    [taken] = await store.push.claim("me", limit=10, lease=30)
    await store.push.retry("me", taken, at=taken.event_at + 3600, error="timeout")
    assert await store.push.claim("me", limit=10, lease=30) == []
    assert await store.push.depth() == 1


async def test_a_failed_delivery_is_kept_and_its_queue_goes_on(store: Store) -> None:
    task = await create(store)
    await store.push.put_config(config(task.id), backfill=True)
    await claim(store, task.id)
    [taken] = await store.push.claim("me", limit=10, lease=30)
    await store.push.failed("me", taken, "HTTP 410")
    [after] = await store.push.claim("me", limit=10, lease=30)
    assert after.seq == taken.seq + 1
    assert await store.push.failures(task.id) == [("c1", taken.seq, "HTTP 410")]


async def test_deleting_a_config_drops_what_is_queued_for_it(store: Store) -> None:
    task = await create(store)
    await store.push.put_config(config(task.id), backfill=True)
    await store.push.delete_config(task.id, "c1")
    await store.push.delete_config(task.id, "c1")  # idempotent
    assert await store.push.get_config(task.id, "c1") is None
    assert await store.push.depth() == 0
    await claim(store, task.id)
    assert await drain(store) == []


async def test_putting_a_config_again_replaces_it(store: Store) -> None:
    task = await create(store)
    await store.push.put_config(config(task.id))
    await store.push.put_config(config(task.id, url="https://hooks.example/new"))
    [only] = await store.push.list_configs(task.id)
    assert only.url == "https://hooks.example/new"
    got = await store.push.get_config(task.id, "c1")
    assert got is not None and got.token == "t" and got.auth_scheme == "Bearer"


async def test_concurrent_claimers_take_each_row_once(backend: object, store: Store) -> None:
    """Many tasks, six claimers at once: every event is claimed exactly once. On
    PostgreSQL, a second store on the same database plays another process (an embedded
    SQLite file belongs to one process)."""
    stores = [store]
    if isinstance(store, PostgresStore):
        stores.append(backend.make())  # type: ignore[attr-defined]
        await stores[1].open()
    try:
        tasks = [await create(store) for _ in range(20)]
        for task in tasks:
            await store.push.put_config(config(task.id), backfill=True)
            await claim(store, task.id)
        claimers = [drain(stores[i % len(stores)], f"o{i}") for i in range(6)]
        got = await asyncio.gather(*claimers)
        keys = [d.key for batch in got for d in batch]
        assert len(keys) == len(set(keys)) == 40
    finally:
        for opened in stores[1:]:
            await opened.close()
