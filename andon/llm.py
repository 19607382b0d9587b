"""Streaming chat calls to a language model, owned by the task: `andon.llm`.

The common case is one call; the answer streams into the task's `response` artifact as
it is generated, and comes back whole:

    from andon import llm

    @agent.skill("chat")
    async def chat(ctx: andon.TaskContext) -> str:
        reply = await llm.chat(ctx, ctx.text)     # OPENAI_BASE_URL, OPENAI_API_KEY, ANDON_LLM_MODEL
        return reply.text

Requests go over the attempt's HTTP client (`ctx.http`), so a cancelled task closes
the connection and the model server (vLLM, llama.cpp, hosted APIs) stops generating;
no vendor SDK is needed. Two dialects: OpenAI chat-completions (`/chat/completions`:
OpenAI, vLLM, llama.cpp, Ollama, LiteLLM) and Anthropic messages (`/v1/messages`).

What a call leaves behind:
- the text deltas, appended to the artifact (`artifact=`) as they arrive (one that
  arrives within `Model.emit_every`, 20 ms, of the last append goes with the next);
- the tool calls the model made, assembled (`Completion.tool_calls`), and the assistant
  message to append to the conversation (`Completion.message`, in the dialect's shape);
- usage, summed over the calls of the attempt, in the task's metadata when the attempt
  ends: `andon.usage = {"promptTokens", "completionTokens", "calls", "estimated"}`
  (`estimated` when a call ended before the server reported its usage: the completion
  tokens are then the deltas received);
- when the call is cut (a cancel, a model-server error), the artifact ends with a chunk
  whose metadata says `andon.partial: true` and `andon.tokens` (deltas received), so the
  partial answer stays readable; `partial_answer(ctx)` hands it to a retry, which passes
  it as `prefix=` and the model continues from there (assistant prefill).

A graceful cancel lets the completion in progress finish (within the grace); the next
`chat` call is a step boundary and stops there. Errors of the model server — an HTTP
status of 400 or more, a line that is not JSON, a stream cut midway, no answer — raise
`ModelError`, a `TaskFailed`: the task ends `failed` with a message naming the server
and what went wrong, and no traceback is logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from andon.runtime.context import TaskContext, TaskFailed
from andon.runtime.scope import TaskCancelled

Dialect = Literal["openai", "anthropic"]
Messages = str | Sequence[dict[str, Any]]

USAGE = "andon.usage"
"""Task metadata: the attempt's token usage, summed over its calls."""
PARTIAL = "andon.partial"
"""Artifact metadata: the artifact's text was cut (a cancel or an error) before its end."""
TOKENS = "andon.tokens"
"""Artifact metadata, with `andon.partial`: deltas the cut call had received."""


class ModelError(TaskFailed):
    """The model server failed the call; unhandled, the task ends `failed` with this text."""

    def __init__(self, server: str, what: str, status: int | None = None) -> None:
        super().__init__(f"model server {server} {what}")
        self.server = server
        self.status = status


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does, a JSON schema of its
    arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    """True when the server did not report it: the completion tokens are the deltas
    received, the prompt tokens unknown (0)."""


@dataclass(frozen=True)
class Completion:
    text: str
    """The whole answer (with the `prefix` it continued, if any)."""
    tool_calls: list[ToolCall]
    finish_reason: str | None
    usage: Usage
    message: dict[str, Any]
    """The assistant's turn in the dialect's shape, to append to the conversation."""


@dataclass(frozen=True)
class Model:
    """A model behind a server: what `chat` calls. `Model.from_env()` reads
    OPENAI_BASE_URL / OPENAI_API_KEY (or ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY),
    ANDON_LLM_MODEL and ANDON_LLM_DIALECT."""

    name: str
    base_url: str = "https://api.openai.com/v1"
    """For `openai`, the URL that ends before `/chat/completions` (usually `.../v1`);
    for `anthropic`, the one before `/v1/messages`."""
    api_key: str | None = None
    dialect: Dialect = "openai"
    max_tokens: int | None = None
    """Sent as `max_tokens` (the Anthropic dialect requires one: 4096 when unset)."""
    emit_every: float = 0.02
    """Deltas go into the artifact at most this often (seconds): a delta that arrives
    sooner after the last append waits and goes with the next one (or at the end of the
    call). Each append is a store write and an event to every follower: at 200 tokens/s,
    0.02 makes about 50 appends a second instead of 200. 0 appends every delta alone."""
    read_timeout: float = 120.0
    """Seconds without a byte from the server (prefill included) before the call fails;
    the task's own deadline (`andon.timeout`) bounds the whole call anyway."""

    @classmethod
    def from_env(cls, name: str | None = None, dialect: Dialect | None = None) -> Model:
        """The model ANDON_LLM_MODEL names, in the dialect ANDON_LLM_DIALECT names
        (`openai`, the default, or `anthropic`), on that dialect's server."""
        model = name or os.environ.get("ANDON_LLM_MODEL")
        if not model:
            raise TaskFailed("no model named: set ANDON_LLM_MODEL or pass one")
        dialect = dialect or (
            "anthropic" if os.environ.get("ANDON_LLM_DIALECT") == "anthropic" else "openai"
        )
        if dialect == "anthropic":
            base = os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com")
            return cls(model, base, os.environ.get("ANTHROPIC_API_KEY"), "anthropic")
        base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        return cls(model, base, os.environ.get("OPENAI_API_KEY"), "openai")

    @property
    def url(self) -> str:
        path = "/chat/completions" if self.dialect == "openai" else "/v1/messages"
        return self.base_url.rstrip("/") + path

    async def chat(
        self,
        ctx: TaskContext,
        messages: Messages,
        *,
        tools: Sequence[Tool] = (),
        system: str | None = None,
        artifact: str | None = "response",
        prefix: str = "",
        **params: Any,
    ) -> Completion:
        """One streamed completion. `messages` is the conversation in the dialect's shape
        (a string is one user message); `system` a system prompt; `artifact` where the
        text streams (None: nowhere); `prefix` text the answer starts with — it goes
        into the artifact first and to the model as the assistant's unfinished turn, which
        the model continues; `params` are added to the request body as they are
        (`temperature=0.2`, ...)."""
        ctx.check()  # a new completion is a new step: a graceful cancel stops here
        conversation = [{"role": "user", "content": messages}] if isinstance(messages, str) else []
        conversation += [] if isinstance(messages, str) else list(messages)
        if prefix:
            conversation.append({"role": "assistant", "content": prefix})
        body = self._body(conversation, tools, system, params)
        stream = _Stream(self, ctx, artifact, prefix)
        try:
            if prefix and artifact is not None:
                await ctx.emit(prefix, artifact=artifact)
            await stream.run(body)
        except BaseException:
            add_usage(ctx, stream.usage())
            if stream.deltas and artifact is not None:
                # The connection is closed by now (the stream's `async with` was left):
                # the server stops first, then the cut answer is marked.
                # A delta received but refused by `emit` (the cancel came first) goes too.
                marker = {PARTIAL: True, TOKENS: stream.deltas}
                with contextlib.suppress(TaskCancelled):  # the attempt is already over
                    await ctx.close_artifact(artifact, marker, "".join(stream.unsaved))
            raise
        usage = stream.usage()
        add_usage(ctx, usage)
        return Completion(
            text=prefix + "".join(stream.text),
            tool_calls=stream.tool_calls(),
            finish_reason=stream.finish_reason,
            usage=usage,
            message=stream.message(prefix),
        )

    def tool_results(self, results: Sequence[tuple[ToolCall, str]]) -> list[dict[str, Any]]:
        """The messages that answer the model's tool calls, in the dialect's shape: one
        `tool` message each (OpenAI), or one user message of `tool_result` blocks
        (Anthropic). Append them to the conversation."""
        if self.dialect == "openai":
            return [
                {"role": "tool", "tool_call_id": call.id, "content": output}
                for call, output in results
            ]
        blocks = [
            {"type": "tool_result", "tool_use_id": call.id, "content": output}
            for call, output in results
        ]
        return [{"role": "user", "content": blocks}]

    def _body(
        self,
        messages: list[dict[str, Any]],
        tools: Sequence[Tool],
        system: str | None,
        params: dict[str, Any],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.name, "stream": True}
        if self.dialect == "openai":
            if system:
                messages = [{"role": "system", "content": system}, *messages]
            body["stream_options"] = {"include_usage": True}
            if tools:
                body["tools"] = [
                    {
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters,
                        },
                    }
                    for t in tools
                ]
            if self.max_tokens is not None:
                body["max_tokens"] = self.max_tokens
        else:
            if system:
                body["system"] = system
            body["max_tokens"] = self.max_tokens or 4096
            if tools:
                body["tools"] = [
                    {"name": t.name, "description": t.description, "input_schema": t.parameters}
                    for t in tools
                ]
        body["messages"] = messages
        return {**body, **params}

    def _headers(self) -> dict[str, str]:
        if self.dialect == "openai":
            return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        headers = {"anthropic-version": "2023-06-01"}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers


async def chat(ctx: TaskContext, messages: Messages, **options: Any) -> Completion:
    """`Model.from_env().chat(ctx, messages, **options)`: the model named by
    ANDON_LLM_MODEL on the OpenAI-compatible server of OPENAI_BASE_URL."""
    return await Model.from_env().chat(ctx, messages, **options)


async def partial_answer(ctx: TaskContext, artifact: str = "response") -> str:
    """When this task retries one (`andon/retry`) whose answer was cut: that answer's
    text, to pass as `prefix=` so the model continues it. Otherwise ""."""
    for earlier in await ctx.retried_artifacts():
        if earlier.artifact_id == artifact and (earlier.metadata or {}).get(PARTIAL):
            return "".join(part.text or "" for part in earlier.parts)
    return ""


def add_usage(ctx: TaskContext, usage: Usage, calls: int = 1) -> None:
    """Add `calls` model calls' usage to the task's `andon.usage` (kept however the
    attempt ends): for framework adapters that run model calls of their own."""
    total = ctx.final_metadata.setdefault(
        USAGE, {"promptTokens": 0, "completionTokens": 0, "calls": 0, "estimated": False}
    )
    total["promptTokens"] += usage.prompt_tokens
    total["completionTokens"] += usage.completion_tokens
    total["calls"] += calls
    total["estimated"] = total["estimated"] or usage.estimated


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Stream:
    """One streamed response, read event by event into text, tool calls and usage."""

    model: Model
    ctx: TaskContext
    artifact: str | None
    prefix: str
    text: list[str] = field(default_factory=list)
    unsaved: list[str] = field(default_factory=list)
    """Text received and not yet in the artifact."""
    saved_at: float = 0.0
    calls: dict[int, _Call] = field(default_factory=dict)
    deltas: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    done: bool = False

    async def run(self, body: dict[str, Any]) -> None:
        server = self.model.url
        timeout = httpx.Timeout(30.0, read=self.model.read_timeout)
        try:
            async with self.ctx.http.stream(
                "POST", server, json=body, headers=self.model._headers(), timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    detail = _error_detail(await response.aread())
                    what = f"answered HTTP {response.status_code}" + (
                        f": {detail}" if detail else ""
                    )
                    raise ModelError(server, what, response.status_code)
                events = _Events()
                async for chunk in response.aiter_bytes():
                    for data in events.feed(chunk):
                        self._take(data)
                    if self.done:
                        break
                    await self._pace()
            await self.save()
        except httpx.TimeoutException:
            raise ModelError(server, f"sent nothing for {self.model.read_timeout:g} s") from None
        except httpx.TransportError as exc:
            what = f"cut the stream after {self.deltas} tokens" if self.deltas else "failed"
            raise ModelError(server, f"{what}: {_describe(exc)}") from None
        if not self.done and self.finish_reason is None:
            raise ModelError(server, f"ended the stream after {self.deltas} tokens, unfinished")

    async def _pace(self) -> None:
        """Append what came, once `emit_every` has passed since the last append (text
        that comes sooner waits for the next chunk, or the end of the call)."""
        if time.monotonic() - self.saved_at >= self.model.emit_every:
            await self.save()

    def _take(self, data: str) -> None:
        if data == "[DONE]":
            self.done = True
            return
        try:
            frame = json.loads(data)
        except ValueError:
            raise ModelError(
                self.model.url, f"sent a line that is not JSON: {data[:80]!r}"
            ) from None
        if not isinstance(frame, dict):
            raise ModelError(self.model.url, f"sent an unexpected event: {data[:80]!r}")
        if frame.get("error") or frame.get("type") == "error":
            error = frame.get("error")
            detail = error.get("message") if isinstance(error, dict) else error
            raise ModelError(self.model.url, f"reported an error mid-stream: {detail}")
        if self.model.dialect == "openai":
            self._take_openai(frame)
        else:
            self._take_anthropic(frame)

    def _take_openai(self, frame: dict[str, Any]) -> None:
        if usage := frame.get("usage"):
            self.prompt_tokens = usage.get("prompt_tokens", 0)
            self.completion_tokens = usage.get("completion_tokens", 0)
        for choice in frame.get("choices") or []:
            delta = choice.get("delta") or {}
            if content := delta.get("content"):
                self._text(content)
            for piece in delta.get("tool_calls") or []:
                call = self.calls.setdefault(piece.get("index", len(self.calls)), _Call())
                call.id = piece.get("id") or call.id
                function = piece.get("function") or {}
                call.name = function.get("name") or call.name
                if arguments := function.get("arguments"):
                    call.arguments += arguments
                    self.deltas += 1
            self.finish_reason = choice.get("finish_reason") or self.finish_reason

    def _take_anthropic(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message_start":
            usage = (frame.get("message") or {}).get("usage") or {}
            self.prompt_tokens = usage.get("input_tokens", 0)
        elif kind == "content_block_start":
            block = frame.get("content_block") or {}
            if block.get("type") == "tool_use":
                self.calls[frame.get("index", len(self.calls))] = _Call(block["id"], block["name"])
        elif kind == "content_block_delta":
            delta = frame.get("delta") or {}
            if delta.get("type") == "text_delta":
                self._text(delta.get("text", ""))
            elif delta.get("type") == "input_json_delta":
                self.calls.setdefault(frame.get("index", 0), _Call()).arguments += delta.get(
                    "partial_json", ""
                )
                self.deltas += 1
        elif kind == "message_delta":
            self.finish_reason = (frame.get("delta") or {}).get("stop_reason") or self.finish_reason
            if (usage := frame.get("usage")) and "output_tokens" in usage:
                self.completion_tokens = usage["output_tokens"]
        elif kind == "message_stop":
            self.done = True

    def _text(self, text: str) -> None:
        self.text.append(text)
        self.deltas += 1
        if self.artifact is not None:
            self.unsaved.append(text)

    async def save(self) -> None:
        """Append the text received since the last append, as one artifact chunk."""
        if self.unsaved and self.artifact is not None:
            await self.ctx.emit("".join(self.unsaved), artifact=self.artifact)
            self.unsaved.clear()
            self.saved_at = time.monotonic()

    def usage(self) -> Usage:
        if self.completion_tokens is None:
            return Usage(self.prompt_tokens or 0, self.deltas, estimated=True)
        return Usage(self.prompt_tokens or 0, self.completion_tokens)

    def tool_calls(self) -> list[ToolCall]:
        calls = []
        for _, call in sorted(self.calls.items()):
            try:
                arguments = json.loads(call.arguments or "{}")
            except ValueError:
                raise ModelError(
                    self.model.url,
                    f"sent tool call arguments that are not JSON: {call.arguments!r}",
                ) from None
            calls.append(ToolCall(call.id, call.name, arguments, call.arguments))
        return calls

    def message(self, prefix: str) -> dict[str, Any]:
        text = prefix + "".join(self.text)
        if self.model.dialect == "openai":
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if self.calls:
                message["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for _, call in sorted(self.calls.items())
                ]
            return message
        blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        blocks += [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            for call in self.tool_calls()
        ]
        return {"role": "assistant", "content": blocks}


class _Events:
    """Server-sent events, fed the response's bytes as they come: the data of each
    complete event (both dialects name an event's kind in its data too, so its `event:`
    line is not needed). Lines are split here rather than by httpx's text decoders: a
    stream of tokens is tens of thousands of small chunks, and those layers cost about a
    tenth of reading one."""

    def __init__(self) -> None:
        self.pending = b""
        self.data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        complete = []
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode()
            if not line:
                if self.data:
                    complete.append("\n".join(self.data))
                self.data = []
            elif line.startswith("data:"):
                self.data.append(line[5:].removeprefix(" "))
        return complete


def _error_detail(body: bytes) -> str:
    """The message of an error body (both dialects nest it under `error`), or its start."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace").strip()
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or "")


def _describe(exc: httpx.TransportError) -> str:
    return str(exc) or type(exc).__name__
