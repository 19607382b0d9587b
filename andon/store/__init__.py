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


def redact(url: str) -> str:
    """The URL without its password, fit for a message."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


__all__ = ["Event", "NewTask", "Store", "TaskPage", "TaskRecord", "open_store", "redact"]
