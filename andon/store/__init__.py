"""Stores: the contract and its backends."""

from __future__ import annotations

from andon.store.base import Event, NewTask, Store, TaskPage, TaskRecord


def open_store(url: str) -> Store:
    """A store for a URL: `sqlite:///path`, a plain file path, or `postgresql://...`."""
    from andon.store.sqlite import SQLiteStore

    if url.startswith(("postgresql://", "postgres://")):
        from andon.store.postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///"))
    if "://" in url:
        raise ValueError(
            f"unsupported store URL {url!r}: use a file path, sqlite:///path or postgresql://..."
        )
    path = url
    return SQLiteStore(path)


__all__ = ["Event", "NewTask", "Store", "TaskPage", "TaskRecord", "open_store"]
