"""A fake model server that counts: OpenAI chat-completions and Anthropic messages,
streamed token by token at a set pace, over real HTTP on 127.0.0.1.

Tests and benchmarks use it to ask from outside whether a cancelled agent's model call
really stopped: every token is logged with the monotonic time it was generated
(`time.monotonic_ns`, the same clock in every process of the machine), and like vLLM's
and llama.cpp's servers it stops generating as soon as its client disconnects.

    with FakeModelServer(rate=200) as server:        # a thread of its own
        os.environ["OPENAI_BASE_URL"] = server.openai_url
        ...
        server.tokens_after(cancel_answered_ns)       # 0 when the cancel stopped the stream

    python -m andon.testing.fake_llm --port 8900      # the same as a process; GET /log

Routes: `POST /v1/chat/completions` (OpenAI, `stream: true`), `POST /v1/messages`
(Anthropic, `stream: true`), `GET /log` (the generations as JSON; `?from=N` from the
N-th on).

What a reply does is chosen by `key=value` words in the conversation's last user text
(the server's defaults apply otherwise):

| word | effect |
|---|---|
| `tokens=N` | N text tokens (one word each) |
| `rate=R` | R tokens a second (0: as fast as it can) |
| `prefill=S` | S seconds before the first byte of the response (headers included) |
| `tool=CMD` | call the first tool offered with `{"command": CMD}` instead of answering |
|  | (`tool="sleep 300"`: quotes hold spaces) |
|  | in text (once: after a tool result it answers in text) |
| `status=C` | answer HTTP C with an error body |
| `cut=N` | close the connection after N tokens, without ending the stream |
| `badjson=N` | after N tokens, send an event whose data is not JSON |

A conversation that ends with an assistant message is continued: the reply goes on from
the word after the ones that message already holds (assistant prefill).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

WORDS = ["the", "line", "stops", "when", "the", "cord", "is", "pulled", "and", "every", "station"]
DIRECTIVE = re.compile(r'\b(tokens|rate|prefill|tool|status|cut|badjson)=("[^"]*"|\S+)')


@dataclass
class Generation:
    """One request's reply, as the server produced it."""

    id: str
    dialect: str  # "openai" or "anthropic"
    model: str
    received_ns: int
    messages: int = 0
    """Messages in the request's conversation (a continued thread sends its history)."""
    tokens: list[int] = field(default_factory=list)
    """Monotonic ns at which each token (text word or tool-argument piece) was generated."""
    first_byte_ns: int | None = None
    disconnected_ns: int | None = None
    """When the server saw its client go, if it did before the reply ended."""
    ended: str | None = None
    """How the reply ended: "complete", "disconnected", "cut", "badjson", "status"."""
    user: str = ""
    """The conversation's last user text (which steered the reply)."""

    def tokens_after(self, ns: int) -> int:
        return sum(1 for at in self.tokens if at > ns)


@dataclass(frozen=True)
class Plan:
    tokens: int
    rate: float
    prefill: float
    tool: str | None
    status: int | None
    cut: int | None
    badjson: int | None
    start: int
    """Index of the first word (a continued answer goes on from there)."""
    prompt_tokens: int
    tool_name: str | None
    user: str


class FakeModelServer:
    """The server; an ASGI app (`app`) that `start()` serves from a thread of its own."""

    def __init__(
        self,
        *,
        tokens: int = 20,
        rate: float = 200.0,
        prefill: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.defaults = {"tokens": tokens, "rate": rate, "prefill": prefill}
        self.host = host
        self.port = port
        self.generations: list[Generation] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- what tests read --------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        """The base URL an OpenAI client takes (OPENAI_BASE_URL)."""
        return f"{self.url}/v1"

    def tokens_after(self, ns: int) -> int:
        """Tokens generated, over every reply, after the monotonic time `ns`."""
        return sum(g.tokens_after(ns) for g in list(self.generations))

    @property
    def token_count(self) -> int:
        return sum(len(g.tokens) for g in list(self.generations))

    # -- running it -------------------------------------------------------------------

    def start(self) -> FakeModelServer:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, interface="asgi3", lifespan="off", log_level="critical", access_log=False
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-llm", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake model server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the ASGI app -----------------------------------------------------------------

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/log":
            # `?from=N`: the generations from the N-th on (0-based), for a poller.
            query = dict(
                p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p
            )
            start = int(query.get("from", "0") or 0)
            body = json.dumps({"generations": [asdict(g) for g in self.generations[start:]]})
            await _respond(send, 200, body.encode())
            return
        dialect = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}.get(path)
        if method != "POST" or dialect is None:
            await _respond(send, 404, b'{"error": {"message": "not found"}}')
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request = json.loads(raw)
            plan = self._plan(request, dialect)
        except (ValueError, KeyError, TypeError) as exc:
            await _respond(send, 400, json.dumps({"error": {"message": str(exc)}}).encode())
            return
        generation = Generation(
            f"gen-{len(self.generations) + 1}",
            dialect,
            str(request.get("model")),
            _now(),
            messages=len(request["messages"]),
            user=plan.user,
        )
        self.generations.append(generation)
        # Once the request is read, receive() returns only when the client goes away:
        # then the reply is cancelled wherever it is (pacing, prefill, or a send).
        reply = asyncio.current_task()
        assert reply is not None

        def client_went(watch: asyncio.Future[Any]) -> None:
            if not watch.cancelled() and generation.ended is None:
                generation.disconnected_ns = _now()
                reply.cancel()

        gone = asyncio.ensure_future(receive())
        gone.add_done_callback(client_went)
        try:
            await Reply(generation, plan, request, send, _closing(receive)).play()
        except asyncio.CancelledError:
            if generation.disconnected_ns is None:
                raise
            generation.ended = "disconnected"
        finally:
            gone.cancel()

    def _plan(self, request: dict[str, Any], dialect: str) -> Plan:
        messages: list[dict[str, Any]] = request["messages"]
        words: dict[str, str] = {}
        user = ""
        for message in messages:
            if message["role"] == "user" and _text(message["content"]):
                user = _text(message["content"])
                words = {key: value.strip('"') for key, value in DIRECTIVE.findall(user)}
        answered_tool = any(_is_tool_result(m) for m in messages)
        tools = request.get("tools") or []
        tool_name = None
        if tools:
            tool_name = tools[0]["function"]["name"] if dialect == "openai" else tools[0]["name"]
        last = messages[-1] if messages else {}
        start = (
            len(_text(last.get("content", "")).split()) if last.get("role") == "assistant" else 0
        )
        system = request.get("system", "")
        prompt = _text(system) + " " + " ".join(_text(m.get("content") or "") for m in messages)
        return Plan(
            tokens=int(words.get("tokens", self.defaults["tokens"])),
            rate=float(words.get("rate", self.defaults["rate"])),
            prefill=float(words.get("prefill", self.defaults["prefill"])),
            tool=None if answered_tool or tool_name is None else words.get("tool"),
            status=int(words["status"]) if "status" in words else None,
            cut=int(words["cut"]) if "cut" in words else None,
            badjson=int(words["badjson"]) if "badjson" in words else None,
            start=start,
            prompt_tokens=len(prompt.split()),
            tool_name=tool_name,
            user=user,
        )


class StreamCut(Exception):
    """Raised inside the app to make uvicorn drop the connection mid-response."""


class Reply:
    """One streamed reply: paced tokens in the dialect's events, stopped by a disconnect."""

    def __init__(
        self,
        generation: Generation,
        plan: Plan,
        request: dict[str, Any],
        send: Send,
        closing: Callable[[], bool],
    ) -> None:
        self.g = generation
        self.plan = plan
        self.request = request
        self.send = send
        self.client_gone = closing
        self.openai = generation.dialect == "openai"
        self.started = 0.0
        self.count = 0

    async def play(self) -> None:
        plan = self.plan
        await asyncio.sleep(plan.prefill)
        if plan.status is not None:
            self.g.ended = "status"
            await _respond(self.send, plan.status, self.error_body(plan.status))
            return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        self.g.first_byte_ns = _now()
        self.started = time.monotonic()
        await self.event(*self.opening())
        if plan.tool is not None:
            ok = await self.tool_call(plan.tool_name or "run", json.dumps({"command": plan.tool}))
        else:
            ok = await self.text()
        if not ok:  # the stream was broken on purpose
            return
        for name, data in self.closing():
            await self.event(name, data)
        if self.openai:
            done = {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True}
            await self.send(done)
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        self.g.ended = "complete"

    async def next_token(self) -> bool:
        """Wait for the next token's turn; log it as generated. False when the plan says
        to break the stream here."""
        plan = self.plan
        if plan.cut is not None and self.count >= plan.cut:
            self.g.ended = "cut"
            raise StreamCut
        if plan.badjson is not None and self.count >= plan.badjson:
            self.g.ended = "badjson"
            oops = {"type": "http.response.body", "body": b"data: {oops\n\n", "more_body": True}
            await self.send(oops)
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            return False
        due = self.started + self.count / plan.rate if plan.rate > 0 else 0.0
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if self.client_gone():
            # The loop has read the client's end of the connection, but the disconnect
            # has not reached the app yet: check before each token, as llama.cpp's
            # server does, rather than generate on into a closed socket.
            self.g.disconnected_ns = _now()
            raise asyncio.CancelledError
        self.count += 1
        self.g.tokens.append(_now())
        return True

    async def text(self) -> bool:
        if not self.openai:
            block = {"type": "text", "text": ""}
            await self.event("content_block_start", {"index": 0, "content_block": block})
        for i in range(self.plan.tokens):
            if not await self.next_token():
                return False
            word = WORDS[(self.plan.start + i) % len(WORDS)] + " "
            if self.openai:
                await self.event(None, self.chunk({"content": word}))
            else:
                delta = {"type": "text_delta", "text": word}
                await self.event("content_block_delta", {"index": 0, "delta": delta})
        if not self.openai:
            await self.event("content_block_stop", {"index": 0})
        return True

    async def tool_call(self, name: str, arguments: str) -> bool:
        call_id = f"call_{self.g.id}"
        pieces = [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
        if self.openai:
            head = {"index": 0, "id": call_id, "type": "function"}
            head["function"] = {"name": name, "arguments": ""}
            await self.event(None, self.chunk({"tool_calls": [head]}))
        else:
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            await self.event("content_block_start", {"index": 0, "content_block": block})
        for piece in pieces:
            if not await self.next_token():
                return False
            if self.openai:
                fragment = {"index": 0, "function": {"arguments": piece}}
                await self.event(None, self.chunk({"tool_calls": [fragment]}))
            else:
                delta = {"type": "input_json_delta", "partial_json": piece}
                await self.event("content_block_delta", {"index": 0, "delta": delta})
        if not self.openai:
            await self.event("content_block_stop", {"index": 0})
        return True

    # -- the dialects' frames -------------------------------------------------------------

    def opening(self) -> tuple[str | None, dict[str, Any]]:
        if self.openai:
            return None, self.chunk({"role": "assistant", "content": ""})
        message: dict[str, Any] = {
            "id": f"msg_{self.g.id}",
            "type": "message",
            "role": "assistant",
            "model": self.g.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.plan.prompt_tokens, "output_tokens": 0},
        }
        return "message_start", {"message": message}

    def closing(self) -> list[tuple[str | None, dict[str, Any]]]:
        tool = self.plan.tool is not None
        if self.openai:
            frames: list[tuple[str | None, dict[str, Any]]] = [
                (None, self.chunk({}, finish="tool_calls" if tool else "stop"))
            ]
            if (self.request.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "prompt_tokens": self.plan.prompt_tokens,
                    "completion_tokens": self.count,
                    "total_tokens": self.plan.prompt_tokens + self.count,
                }
                frames.append((None, {**self.chunk({}), "choices": [], "usage": usage}))
            return frames
        delta = {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None}
        return [
            ("message_delta", {"delta": delta, "usage": {"output_tokens": self.count}}),
            ("message_stop", {}),
        ]

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{self.g.id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.g.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def error_body(self, status: int) -> bytes:
        text = f"fake model server error {status}"
        if self.openai:
            return json.dumps({"error": {"message": text, "type": "server_error"}}).encode()
        return json.dumps(
            {"type": "error", "error": {"type": "api_error", "message": text}}
        ).encode()

    async def event(self, name: str | None, data: dict[str, Any]) -> None:
        if name is not None:
            data = {"type": name, **data}
        head = f"event: {name}\n" if name is not None else ""
        body = f"{head}data: {json.dumps(data)}\n\n".encode()
        await self.send({"type": "http.response.body", "body": body, "more_body": True})


def _text(content: Any) -> str:
    """The text of a message's content, whether a string or a list of parts or blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _closing(receive: Receive) -> Callable[[], bool]:
    """Whether the connection of this request is closing: uvicorn's `receive` belongs to
    an object holding the transport (its h11 and httptools protocols both do)."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        return lambda: False
    return transport.is_closing  # type: ignore[no-any-return]


def _is_tool_result(message: dict[str, Any]) -> bool:
    if message["role"] == "tool":
        return True
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") == "tool_result" for p in content
    )


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _now() -> int:
    return time.monotonic_ns()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--prefill", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeModelServer(
        tokens=args.tokens, rate=args.rate, prefill=args.prefill, host=args.host, port=args.port
    )
    config = uvicorn.Config(
        server.app,
        interface="asgi3",
        host=args.host,
        port=args.port,
        lifespan="off",
        log_level="critical",  # a disconnected reply is normal here, not an error
    )
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
