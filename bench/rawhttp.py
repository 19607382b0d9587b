"""A bare HTTP/1.1 client over keep-alive sockets, so that a benchmark measures the
server and not the client.

An httpx request costs about 0.4 ms of client CPU on these machines, more than a small
Starlette route: a comparison of servers through httpx alone mostly measures httpx.
Here a request is bytes built once (`build_request`); the client sends them and reads
the answer with as little parsing as HTTP allows (status line, Content-Length or
chunked framing). `Connection` is blocking, for tight one-at-a-time loops;
`AsyncConnection` serves concurrent requests and Server-Sent Events streams.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Protocol

HOST = "127.0.0.1"


def build_request(
    path: str, body: bytes, headers: Mapping[str, str] | None = None, *, port: int = 0
) -> bytes:
    """A complete POST request; a body of the same length may later be swapped in."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}" if port else f"Host: {HOST}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class HTTPError(Exception):
    """The server answered with a status other than 2xx, or broke the framing."""


class _Reader(Protocol):
    def readline(self) -> bytes: ...
    def read(self, n: int) -> bytes: ...


def _head(lines: list[bytes]) -> tuple[int, int | None, bool]:
    """(status, content length, chunked) of a response head."""
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise HTTPError(f"bad status line {lines[0][:80]!r}") from None
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return status, length, chunked


def _check(status: int, body: bytes) -> bytes:
    if not 200 <= status < 300:
        raise HTTPError(f"HTTP {status}: {body[:200]!r}")
    return body


class Connection:
    """One blocking keep-alive connection; `exchange` sends a request, returns the body."""

    def __init__(self, port: int, host: str = HOST, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self.sock.makefile("rb")

    def exchange(self, request: bytes) -> bytes:
        self.sock.sendall(request)
        reader: _Reader = self._file
        head = []
        while (line := reader.readline()) not in (b"\r\n", b""):
            head.append(line.rstrip(b"\r\n"))
        if not head:
            raise HTTPError("connection closed by the server")
        status, length, chunked = _head(head)
        if chunked:
            parts = []
            while size := int(reader.readline().split(b";")[0], 16):
                parts.append(reader.read(size))
                reader.readline()
            reader.readline()
            return _check(status, b"".join(parts))
        return _check(status, reader.read(length or 0))

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncConnection:
    """One asyncio keep-alive connection: requests one at a time, or one SSE stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, host: str = HOST) -> AsyncConnection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def _send(self, request: bytes) -> tuple[int, int | None, bool]:
        self.writer.write(request)
        head = []
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            head.append(line.rstrip(b"\r\n"))
        if not head:
            raise HTTPError("connection closed by the server")
        return _head(head)

    async def _chunks(self, length: int | None, chunked: bool) -> AsyncIterator[bytes]:
        if not chunked:
            if length is None:  # read to the end of the connection
                while data := await self.reader.read(65536):
                    yield data
            elif length:
                yield await self.reader.readexactly(length)
            return
        while size := int((await self.reader.readline()).split(b";")[0], 16):
            yield await self.reader.readexactly(size)
            await self.reader.readexactly(2)
        await self.reader.readline()

    async def exchange(self, request: bytes) -> bytes:
        status, length, chunked = await self._send(request)
        body = b"".join([chunk async for chunk in self._chunks(length, chunked)])
        return _check(status, body)

    async def events(self, request: bytes) -> AsyncGenerator[bytes]:
        """Send a request answered with Server-Sent Events; yield each event's data."""
        status, length, chunked = await self._send(request)
        if not 200 <= status < 300:
            body = b"".join([chunk async for chunk in self._chunks(length, chunked)])
            raise HTTPError(f"HTTP {status}: {body[:200]!r}")
        buffer = b""
        data: list[bytes] = []
        async for chunk in self._chunks(length, chunked):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                line = line.rstrip(b"\r")
                if not line:
                    if data:
                        yield b"\n".join(data)
                        data = []
                elif line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))

    def close(self) -> None:
        self.writer.close()
