"""Slow clients are timed out: sockets that send nothing or trickle their headers
(slowloris) are answered 408 and closed after --header-timeout, a body that trickles
gets 408 after --body-timeout, and --max-connections caps what is open at once (503
past it) — while the server keeps answering everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_client import AndonServer
from tests.test_lean_http import read_response

HEADER_TIMEOUT = 3.0
MAX_CONNECTIONS = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    args = ("--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", "2")
    with AndonServer(
        tmp_path_factory.mktemp("slow"), *args, "--max-connections", str(MAX_CONNECTIONS)
    ) as served:
        yield served


@contextlib.asynccontextmanager
async def sockets(
    server: AndonServer, count: int, first_bytes: bytes
) -> AsyncIterator[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    opened = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(count)]
    try:
        for _, writer in opened:
            writer.write(first_bytes)
        yield opened
    finally:
        for _, writer in opened:
            writer.close()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sent before closing the connection."""
    return await asyncio.wait_for(reader.read(), within)


async def healthz(server: AndonServer) -> int:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{server.url}/healthz", timeout=5)).status_code


async def test_slowloris_and_silent_sockets_are_closed_after_the_header_timeout(
    server: AndonServer,
) -> None:
    partial = b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: "
    async with sockets(server, 15, partial) as slow, sockets(server, 15, b"") as silent:
        started = time.monotonic()
        for _ in range(3):  # keep trickling: each byte is a sign of life uvicorn believed
            await asyncio.sleep(0.5)
            for _, writer in slow:
                writer.write(b"a")
            assert await healthz(server) == 200  # everyone else is served meanwhile
        answers = await asyncio.gather(
            *(closed_by_server(reader, HEADER_TIMEOUT + 10) for reader, _ in slow + silent)
        )
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
        assert time.monotonic() - started >= HEADER_TIMEOUT - 0.5
    assert await healthz(server) == 200


async def test_a_body_that_trickles_is_answered_408(server: AndonServer) -> None:
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    async with sockets(server, 1, head + b'{"jsonrpc"') as ((reader, _),):
        answer = await closed_by_server(reader, 15)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"did not arrive within 2 s" in answer


async def test_connections_past_the_cap_are_refused_until_some_close(server: AndonServer) -> None:
    async with sockets(server, MAX_CONNECTIONS, b"") as held:
        assert await healthz(server) == 503
        readers = [reader for reader, _ in held]
        await asyncio.gather(*(closed_by_server(r, HEADER_TIMEOUT + 10) for r in readers))
    assert await healthz(server) == 200


def test_the_options_are_checked(tmp_path: Path) -> None:
    from tests.test_startup_checks import refused

    assert "--header-timeout must be more than 0" in refused(
        ["serve", "--header-timeout", "0"], tmp_path
    )
    assert "--max-connections must be at least 1" in refused(
        ["serve", "--max-connections", "0"], tmp_path
    )


# -- the connection's own structures (andon.node.lean_http) ---------------------------


async def test_pipelined_requests_are_answered_in_order(server: AndonServer) -> None:
    """Requests sent back to back before any answer wait in the connection's pipeline
    and are answered first in, first out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        paths = ["/healthz", "/.well-known/agent-card.json", "/healthz", "/nowhere"]
        writer.write(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in paths))
        answers = [await read_response(reader) for _ in paths]
    finally:
        writer.close()
    assert [status for status, _ in answers] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 404 Not Found",
    ]
    assert b'"name"' in answers[1][1]
