"""A distributed andon of real processes on 127.0.0.1 for tests and benchmarks: API
processes (`andon serve --no-worker`) and workers (`andon worker`) sharing a database."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from tests.helpers import children_of


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    def __init__(self, db: str, workdir: Path, *, lease: float = 30.0) -> None:
        self.db = db
        self.workdir = workdir
        self.lease = lease
        self.trace = workdir / "trace.log"
        self.env = {**os.environ, "ANDON_DEMO_TRACE": str(self.trace)}
        self.apis: list[subprocess.Popen[bytes]] = []
        self.api_urls: list[str] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.said: dict[int, tuple[deque[str], threading.Thread]] = {}
        """The last lines each process wrote to its stderr (which reaches the test's own),
        and the thread that passes them on."""

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(
        self,
        apis: int = 0,
        workers: int = 0,
        worker_args: Sequence[str] = (),
        api_args: Sequence[str] = ("--no-worker",),
    ) -> None:
        """Start API processes and workers side by side; return once all are ready."""
        registered = self.registered_workers()
        pending = [self._start_api(*api_args) for _ in range(apis)]
        started = [self._start_worker(*worker_args) for _ in range(workers)]
        deadline = time.monotonic() + 60
        while pending or self.registered_workers() < registered + workers:
            pending = [(proc, url) for proc, url in pending if not self._answers(url)]
            for proc in [p for p, _ in pending] + started:
                if proc.poll() is not None:
                    lines, relay = self.said[proc.pid]
                    relay.join(5)  # to the end of what it said
                    said = "".join(lines)
                    raise AssertionError(f"a process did not start ({proc.returncode}):\n{said}")
            if time.monotonic() > deadline:
                raise AssertionError("the cluster did not start in time")
            time.sleep(0.05)

    def api(self) -> str:
        """Start an API process; returns its URL once it answers."""
        self.start(apis=1)
        return self.api_urls[-1]

    def worker(self, *args: str) -> int:
        """Start a worker (with more options); returns its pid once it takes jobs."""
        self.start(workers=1, worker_args=args)
        return self.workers[-1].pid

    def serve(self, *args: str) -> str:
        """Start `andon serve` with these options; returns its URL once it answers."""
        self.start(apis=1, api_args=args)
        return self.api_urls[-1]

    def _start_api(self, *args: str) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = self._start("serve", "--port", str(port), "--lease", str(self.lease), *args)
        self.apis.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    def _start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        proc = self._start("worker", "--concurrency", "16", "--lease", str(self.lease), *args)
        self.workers.append(proc)
        return proc

    def _answers(self, url: str) -> bool:
        try:
            httpx.get(f"{url}/.well-known/agent-card.json", timeout=1)
        except httpx.TransportError:
            return False
        self.api_urls.append(url)
        return True

    def registered_workers(self) -> int:
        with psycopg.connect(self.db) as conn:
            row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
            return int(row[0]) if row else 0

    def stop_workers(self) -> None:
        """SIGTERM every worker and wait for it to end."""
        for proc in self.workers:
            proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            proc.wait(60)
        self.workers.clear()

    def children(self) -> list[int]:
        """Live children of the workers: the commands their tasks run."""
        return [child for proc in self.workers for child in children_of(proc.pid)]

    def close(self) -> None:
        for proc in [*self.workers, *self.apis]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, *self.apis]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "andon", *args, "--db", self.db, "--log-level", "warning"]
        proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        said: deque[str] = deque(maxlen=60)
        relay = threading.Thread(target=_relay, args=(proc.stderr, said), daemon=True)
        relay.start()
        self.said[proc.pid] = (said, relay)
        return proc


def _relay(stream: IO[bytes], said: deque[str]) -> None:
    """Pass a process's stderr on to this one's (pytest shows it with the test that was
    running), keeping its last lines for an error that quotes them."""
    with stream:
        for raw in stream:
            line = raw.decode(errors="replace")
            said.append(line)
            sys.stderr.write(line)


class Relay:
    """A TCP relay to the database that a test can cut, as a network would: every
    connection through it dropped, new ones refused, until it is joined again. (Threads,
    not the test's event loop: the cluster's helpers block while they wait.)"""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        assert parsed.hostname and parsed.port
        self.target = (parsed.hostname, parsed.port)
        self.port = free_port()
        netloc = parsed.netloc.replace(f":{parsed.port}", f":{self.port}")
        self.url = urlunsplit(parsed._replace(netloc=netloc))
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def join(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        assert self._listener is not None
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                near, _ = listener.accept()
            except OSError:  # cut
                return
            far = socket.create_connection(self.target)
            with self._lock:
                self._open |= {near, far}
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_RDWR)
