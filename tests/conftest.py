from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from andon import RuntimeSettings, ServiceSettings, TaskService, open_service
from andon.agents.demo import agent as demo_agent
from andon.node.database import upgrade
from andon.testing.fake_llm import FakeModelServer
from tests.live_server import Peer
from tests.model_serving import peer_of
from tests.test_client import AndonServer

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"

FAST_RUNTIME = dict(kill_grace=0.5, hard_deadline=2.0, graceful_period=2.0, cleanup_budget=1.0)


@pytest.fixture
def trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "trace.log"
    monkeypatch.setenv("ANDON_DEMO_TRACE", str(path))
    return path


@pytest.fixture
def runtime_settings(tmp_path: Path) -> RuntimeSettings:
    return RuntimeSettings(workdir=tmp_path, **FAST_RUNTIME)


@pytest.fixture
def service_settings() -> ServiceSettings:
    return ServiceSettings()


STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
"""Params for a module's own `store_url` fixture that runs its tests on every backend."""


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The store of `service` and of tests that open their own: a SQLite file.

    A module whose tests must hold on every backend overrides it:
    `@pytest.fixture(params=STORES)` returning `each_store(request)`."""
    return str(tmp_path / "andon.sqlite")


def each_store(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return str(request.getfixturevalue("tmp_path") / "andon.sqlite")


@pytest.fixture
async def service(
    store_url: str,
    trace: Path,
    runtime_settings: RuntimeSettings,
    service_settings: ServiceSettings,
) -> AsyncIterator[TaskService]:
    async with open_service(
        demo_agent,
        store_url,
        runtime=runtime_settings,
        settings=service_settings,
    ) as svc:
        yield svc


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeModelServer]:
    """The fake model server of a module's LLM agents (tests/model_serving.py)."""
    with FakeModelServer(tokens=20, rate=200) as server:
        yield server


@pytest.fixture
async def peer(served: AndonServer) -> AsyncIterator[Peer]:
    """An A2A 1.0 peer on the module's `served` agent (a module without one that asks
    for a `peer` defines its own)."""
    async with peer_of(served) as found:
        yield found


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this test session's own (random name), dropped at its end: parallel
    runs never share one. Yields its URL; tests use `postgres_url`."""
    name = f"andon_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        drop_databases_of_dead_sessions(admin)
        admin.execute(f"CREATE DATABASE {name}")
        # Tests never crash the server: commits need not wait for the disk, which the
        # parallel suites of a shared machine keep busy.
        admin.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def drop_databases_of_dead_sessions(admin: psycopg.Connection[Any]) -> None:
    """A session killed before its end leaves its database: the name holds the pid of
    its pytest process, gone by now (every session runs on this machine)."""
    rows = admin.execute(
        "SELECT datname FROM pg_database WHERE datname ~ '^andon_test_[0-9]+_[0-9a-f]+$'"
    ).fetchall()
    for (stale,) in rows:
        if not Path(f"/proc/{stale.split('_')[2]}").exists():
            admin.execute(f"DROP DATABASE IF EXISTS {stale} WITH (FORCE)")


def new_schema(database: str) -> str:
    """A URL to a fresh, empty schema of the database.

    The schema is every connection's search_path (a libpq option in the URL), so child
    processes given the URL see the same tables."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{database}?options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_empty_url(postgres_database: str) -> str:
    """A fresh, empty schema of the session's database, for this test alone."""
    return new_schema(postgres_database)


@pytest.fixture
def postgres_url(postgres_empty_url: str) -> str:
    """Like `postgres_empty_url`, with `andon db upgrade` applied: ready for a store."""
    asyncio.run(upgrade(postgres_empty_url))
    return postgres_empty_url
