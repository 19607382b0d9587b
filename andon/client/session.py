"""Following one task from the command line: its stream (or polls), Ctrl+C, questions.

Ctrl+C, the first time, sends CancelTask (reason `user`) and waits for the task to
stop; the second time the command exits at once: its stream closes, and the server
cancels the task through the stream's `cancel` disconnect policy (the backstop that
also covers a client that is killed or loses its terminal).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from andon.client.api import AndonClient, EventStream, StreamEvent
from andon.client.errors import ClientError, TaskNotCancelable
from andon.client.render import Ending, View
from andon.protocol.types import CancelReason, Task, TaskState

EXIT_CODES = {
    TaskState.COMPLETED: 0,
    TaskState.FAILED: 1,
    TaskState.REJECTED: 1,
    TaskState.CANCELED: 130,
    TaskState.INPUT_REQUIRED: 3,
    TaskState.AUTH_REQUIRED: 3,
}
EXIT_INTERRUPTED = 130
EXIT_TIMED_OUT = 124
"""A task its deadline cancelled (as `timeout(1)` exits), told apart from a Ctrl+C."""
EXIT_TERMINATED = 143
"""The command got SIGTERM (128 + 15)."""
DEADLINE_REASONS = frozenset(
    {CancelReason.TIMEOUT, CancelReason.IDLE_TIMEOUT, CancelReason.INPUT_TIMEOUT}
)

Questions = Literal["ask", "stop", "wait"]
"""At input-required: ask in the terminal and answer; stop (exit 3); or wait for
someone else's answer (watching)."""


def exit_code(ending: Ending) -> int:
    if ending.state is TaskState.CANCELED and ending.reason in DEADLINE_REASONS:
        return EXIT_TIMED_OUT
    return EXIT_CODES.get(ending.state, 1)


class Conversation:
    """Follows a task to its end for a command, and returns the exit code."""

    def __init__(
        self,
        client: AndonClient,
        view: View,
        *,
        questions: Questions = "ask",
        on_disconnect: str | None = "cancel",
        cancel_on_interrupt: bool = True,
    ) -> None:
        self.client = client
        self.view = view
        self.questions = questions
        self.on_disconnect = on_disconnect
        self.cancel_on_interrupt = cancel_on_interrupt
        self.task_id: str | None = None
        self.context_id: str | None = None
        self.streaming = False
        self._interrupted_at: float | None = None
        self._cancel_call: asyncio.Task[None] | None = None
        self._canceled: Task | None = None
        self._work: asyncio.Task[Ending] | None = None

    # -- running -----------------------------------------------------------------------

    async def follow(self, first: Callable[[], EventStream]) -> int:
        """Follow the stream `first` opens, through questions and answers."""
        return await self._run(self._stream_legs(first))

    async def poll(self, task: Task) -> int:
        """Follow a task without a stream, reading it now and then."""
        return await self._run(self._poll_legs(task))

    async def _run(self, work: Coroutine[Any, Any, Ending]) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._interrupt)
        loop.add_signal_handler(signal.SIGTERM, self._terminate)
        self._work = asyncio.ensure_future(work)
        try:
            try:
                ending = await self._work
            except asyncio.CancelledError:
                if self._canceled is None or not self._work.cancelled():
                    raise
                self.view.show(StreamEvent(None, self._canceled))
                ending = _ending_of(self._canceled)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
            if self._cancel_call is not None and not self._cancel_call.done():
                self._cancel_call.cancel()
        cancel_seconds = None
        if self._interrupted_at is not None and ending.state is TaskState.CANCELED:
            cancel_seconds = time.monotonic() - self._interrupted_at
        self.view.finish(ending, cancel_seconds)
        if ending.state in (TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED):
            self.view.note(
                f"the task waits for an answer: andon send --task {ending.task_id} 'ANSWER'"
            )
        return exit_code(ending)

    def _seen(self, event: StreamEvent, *, show: bool = True) -> None:
        if self.task_id is None and event.task_id:
            self.task_id = event.task_id
            item = event.item
            self.context_id = getattr(item, "context_id", None)
            self.view.header(self.task_id, self.context_id)
            if self._interrupted_at is not None and self._cancel_call is None:
                self._start_cancel()
        if show:
            self.view.show(event)

    async def _stream_legs(self, first: Callable[[], EventStream]) -> Ending:
        stream = first()
        self.streaming = True
        while True:
            last: StreamEvent | None = None
            stream.on_retry = self.view.reconnecting
            async with stream:
                async for event in stream:
                    self._seen(event)
                    last = event
            ending = _ending_of_event(last)
            if ending.state not in (TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED):
                return ending
            answer = await self._on_question(ending)
            if answer is None:
                if self.questions == "wait":
                    stream = self.client.subscribe(
                        ending.task_id,
                        last_event_id=stream.last_event_id,
                        on_disconnect=self.on_disconnect,
                    )
                    continue
                return ending
            stream = self.client.stream(
                answer, task_id=ending.task_id, on_disconnect=self.on_disconnect
            )

    async def _poll_legs(self, task: Task) -> Ending:
        # Not streaming, the command shows the task where it stops (ends or asks).
        self._seen(StreamEvent(None, task), show=False)
        while True:
            pause = 0.05
            while task.status.state not in _STOPS:
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, 0.5)
                task = await self.client.get(task.id)
                self.view.progress(task)
            self.view.show(StreamEvent(None, task))
            ending = _ending_of(task)
            if ending.state not in (TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED):
                return ending
            answer = await self._on_question(ending)
            if answer is None:
                if self.questions == "wait":
                    while task.status.state in (TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED):
                        await asyncio.sleep(0.5)
                        task = await self.client.get(task.id)
                    continue
                return ending
            task = await self.client.answer(task.id, answer, blocking=False)

    # -- questions ---------------------------------------------------------------------

    async def _on_question(self, ending: Ending) -> str | None:
        """The user's answer, or None (stop, or wait for another's answer)."""
        if self._cancel_call is not None:
            # A cancel is on its way: the task will not need an answer. Its result ends
            # this wait (unless the cancel failed).
            await asyncio.shield(self._cancel_call)
            return None
        question = ending.message or "(the agent asks for input)"
        ask = (
            self.questions == "ask"
            and ending.state is TaskState.INPUT_REQUIRED
            and sys.stdin.isatty()
        )
        self.view.question(question, prompt=ask)
        if not ask:
            if self.questions == "wait":
                # A replayed question may have been answered long ago.
                now = await self.client.get(ending.task_id)
                if now.status.state is ending.state:
                    self.view.note(
                        f"waiting for an answer (andon send --task {ending.task_id} 'ANSWER')"
                    )
                self.view.answered()
            return None
        while True:
            answer = await read_line()
            if answer is None:
                return None
            if answer.strip():
                self.view.answered()
                return answer.strip()
            self.view.question(question, prompt=True)

    # -- Ctrl+C ------------------------------------------------------------------------

    def _interrupt(self) -> None:
        if not self.cancel_on_interrupt:
            self.view.close()
            if self.task_id:
                self.view.note(
                    f"stopped watching; task {self.task_id} goes on "
                    f"(stop it with: andon cancel {self.task_id})"
                )
            _exit_now(EXIT_INTERRUPTED)
        if self._interrupted_at is not None:
            self.view.close()
            if self.streaming and self.on_disconnect == "cancel":
                self.view.note("exiting; the server cancels the task as this stream closes")
            elif self.task_id:
                self.view.note(f"exiting; the cancel of task {self.task_id} was sent")
            _exit_now(EXIT_INTERRUPTED)
        self._interrupted_at = time.monotonic()
        self.view.canceling("(Ctrl+C again to exit at once)")
        if self.task_id is not None:
            self._start_cancel()

    def _terminate(self) -> None:
        """SIGTERM: end the status line, say what becomes of the task, exit."""
        self.view.close()
        if self.task_id is not None:
            if self.streaming and self.on_disconnect == "cancel":
                self.view.note("terminated; the server cancels the task as this stream closes")
            else:
                self.view.note(
                    f"terminated; task {self.task_id} goes on "
                    f"(stop it with: andon cancel {self.task_id})"
                )
        _exit_now(EXIT_TERMINATED)

    def _start_cancel(self) -> None:
        self._cancel_call = asyncio.ensure_future(self._cancel())

    async def _cancel(self) -> None:
        assert self.task_id is not None
        try:
            task = await self.client.cancel(self.task_id, reason=CancelReason.USER)
        except TaskNotCancelable:
            return  # it ended meanwhile: its stream shows how
        except ClientError as exc:
            self.view.note(f"cancel failed: {exc}")
            return
        if task.status.state.terminal and self._work is not None and not self._work.done():
            self._canceled = task
            self._work.cancel()


_STOPS = frozenset(
    {*(s for s in TaskState if s.terminal), TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED}
)


def _ending_of(task: Task) -> Ending:
    ending = Ending.of(StreamEvent(None, task))
    assert ending is not None
    return ending


def _ending_of_event(event: StreamEvent | None) -> Ending:
    ending = Ending.of(event) if event is not None else None
    if ending is None:
        raise ClientError("the stream ended without saying how the task stands")
    return ending


async def read_line() -> str | None:
    """A line typed at the terminal (None at end of input), read without a thread so
    that Ctrl+C (a cancel) can end the wait."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    answer: asyncio.Future[str | None] = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not answer.done():
            answer.set_result(chunk.decode(errors="replace") if chunk else None)

    loop.add_reader(fd, readable)
    try:
        return await answer
    finally:
        loop.remove_reader(fd)


def _exit_now(code: int) -> None:
    """Leave at once: no cleanup waits on the network. Closing the process closes its
    sockets, which is what the server's disconnect policy acts on."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
