"""andon.node.lean_http: uvicorn's protocol with lighter per-connection structures still
pipelines, pauses a response for a client that does not read, and waits for a body that
arrives late. Served in this process on a real socket, by the protocol alone."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from andon.node.lean_http import Flag, LeanHttpToolsProtocol

CHUNK = 64 * 1024
CHUNKS = 256  # 16 MiB: more than the kernel's socket buffers hold


class Recorded(LeanHttpToolsProtocol):
    paused = 0
    body_parts: asyncio.Queue[bytes] | None = None  # what the app read, as it reads it

    def pause_writing(self) -> None:
        Recorded.paused += 1
        super().pause_writing()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/large":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(CHUNKS):
            await send(
                {"type": "http.response.body", "body": bytes([i % 256]) * CHUNK, "more_body": True}
            )
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if Recorded.body_parts is not None:
            Recorded.body_parts.put_nowait(message.get("body", b""))
        if not message.get("more_body"):
            break
    answer = scope["path"].encode() + b" " + body
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


STATE = ServerState()


@contextlib.asynccontextmanager
async def served() -> AsyncIterator[int]:
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    config.load()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Recorded(config=config, server_state=STATE, app_state={}), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for connection in list(STATE.connections):
            connection.shutdown()
        server.close()
        await server.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response with a content-length: its status line and its body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, *fields = head.split(b"\r\n")
    length = next(int(f.split(b":")[1]) for f in fields if f.lower().startswith(b"content-length"))
    return status, await asyncio.wait_for(reader.readexactly(length), 10)


async def test_pipelined_requests_are_answered_first_in_first_out() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
        answers = [(await read_response(reader))[1] for _ in range(5)]
        writer.close()
    assert answers == [b"/%d " % i for i in range(5)]


async def test_a_connection_holds_no_deque_and_no_asyncio_event() -> None:
    """What the protocol replaced is what uvicorn uses: were an attribute renamed by a
    new uvicorn, its deque or asyncio.Event would still be there."""
    async with served() as port:
        Recorded.body_parts = parts = asyncio.Queue()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /open HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n.")
        await asyncio.wait_for(parts.get(), 10)  # a request under way, waiting for its body
        (connection,) = STATE.connections
        held = [vars(o) for o in (connection, connection.flow, connection.cycle)]
        heavy = [k for d in held for k, v in d.items() if isinstance(v, asyncio.Event | deque)]
        assert heavy == []
        writer.write(b".")
        assert await read_response(reader) == (b"HTTP/1.1 200 OK", b"/open ..")
        writer.close()
    Recorded.body_parts = None


async def test_a_body_that_arrives_late_wakes_the_reader() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        Recorded.body_parts = parts = asyncio.Queue()
        writer.write(b"POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nfirst")
        assert await asyncio.wait_for(parts.get(), 10) == b"first"  # it waits for the rest
        writer.write(b"-last")
        assert await read_response(reader) == (b"HTTP/1.1 200 OK", b"/late first-last")
        writer.close()
    Recorded.body_parts = None


async def test_a_response_the_client_does_not_read_pauses_then_arrives_whole() -> None:
    Recorded.paused = 0
    async with served() as port:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        deadline = asyncio.get_running_loop().time() + 10
        while not Recorded.paused:  # the buffers filled: the server waits for the reader
            assert asyncio.get_running_loop().time() < deadline, "never paused"
            await asyncio.sleep(0.01)
        data = bytearray()
        while size := int(await asyncio.wait_for(reader.readline(), 10), 16):  # chunked
            data += await asyncio.wait_for(reader.readexactly(size + 2), 10)
            del data[-2:]
        writer.close()
    assert data == b"".join(bytes([i % 256]) * CHUNK for i in range(CHUNKS))


async def test_a_flag_wakes_every_waiter_and_can_be_cleared() -> None:
    flag = Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)  # each is waiting
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True] * 3
    assert await flag.wait()  # set: returns at once
    flag.clear()
    late = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    late.cancel()  # a waiter that gives up leaves nothing behind
    with contextlib.suppress(asyncio.CancelledError):
        await late
    assert not flag.is_set() and not flag._waiters
