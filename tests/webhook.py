"""A real webhook receiver for push notification tests: an HTTP server on 127.0.0.1 in a
thread, recording every POST, that can be told to fail its first requests."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Hit:
    """One POST the receiver got, and the status it answered."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    at: float
    """time.time() when it arrived."""

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")

    @property
    def seq(self) -> int:
        return int(self.key.rpartition(":")[2])

    @property
    def task_id(self) -> str:
        return self.key.rpartition(":")[0]

    @property
    def state(self) -> str | None:
        """The pushed status's state (1.0 StreamResponse), lowercase, without its prefix."""
        update = self.body.get("statusUpdate")
        if update is None:
            return None
        return str(update["status"]["state"]).removeprefix("TASK_STATE_").lower()


class Receiver:
    def __init__(self, port: int = 0, *, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    failing = receiver.fail_first > 0
                    receiver.fail_first -= failing
                    status = 503 if failing else 200
                    receiver.hits.append(
                        Hit(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            json.loads(body),
                            status,
                            time.time(),
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def accepted(self, task_id: str | None = None) -> list[Hit]:
        """The POSTs answered 2xx (of one task), in the order they came."""
        with self._lock:
            return [
                h
                for h in self.hits
                if h.status == 200 and (task_id is None or h.task_id == task_id)
            ]

    def all(self, task_id: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.task_id == task_id]
