"""The store contract shared by every backend (SQLite embedded, PostgreSQL distributed).

A task is a row (its state, attempt epoch, reason, deadlines) plus an append-only event
log with a per-task sequence number. History and artifacts are folded from the log, so
one write per emit is all a running task costs. The state only changes through
`transition`, one compare-and-set that also appends the status event: whoever wins the
set writes the one final event, whoever loses writes nothing.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, LiteralString

from andon.protocol.types import CANCEL_MODE, Artifact, CancelMode, TaskState, agent_text
from andon.telemetry.observe import NO_OBSERVER, Observer

if TYPE_CHECKING:
    from andon.store.push import PushStore


class StoreUnusable(RuntimeError):
    """The store cannot be used as given (a file that is not a database, a database
    that does not exist, a schema of another version, another process on it); the
    message says what is wrong and what to do, in one line."""


EventKind = Literal["status", "progress", "artifact", "message"]
CHILDREN = "andon.children"
"""Task metadata: the tasks it delegated to other agents (`Store.record_child`)."""


@dataclass(frozen=True, slots=True)
class NewTask:
    id: str
    context_id: str
    owner: str
    metadata: dict[str, Any] = field(default_factory=dict)
    retry_of: str | None = None
    timeout: float | None = None
    idle_timeout: float | None = None
    input_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    context_id: str
    owner: str
    state: TaskState
    epoch: int
    reason: str | None
    prior_state: TaskState | None
    stored_status: dict[str, Any] | str | None  # the status message, or its JSON text
    metadata: dict[str, Any]
    retry_of: str | None
    timeout: float | None
    idle_timeout: float | None
    input_timeout: float | None
    created_at: float
    updated_at: float
    last_seq: int

    @property
    def status_message(self) -> dict[str, Any] | None:
        """The message of the current status. A store may keep it as the JSON text it
        read, decoded only here: most records (a claim's, a cancel's) never show it."""
        stored = self.stored_status
        return json.loads(stored) if isinstance(stored, str) else stored

    @property
    def cancel_mode(self) -> CancelMode:
        """The mode of the cancel under way (stored with `canceling`)."""
        return CancelMode(self.metadata.get(CANCEL_MODE, CancelMode.IMMEDIATE))

    @property
    def visible_state(self) -> TaskState:
        """The state shown on the wire: a task being torn down shows the state it had."""
        if self.state is TaskState.CANCELING:
            return self.prior_state or TaskState.WORKING
        return self.state


TASK_COLUMNS = (
    "id, context_id, owner, state, epoch, reason, prior_state, status_message, metadata, "
    "retry_of, timeout, idle_timeout, input_timeout, created_at, updated_at, last_seq"
)
"""The stored columns of a TaskRecord, in the order of its fields (SQL backends)."""


class Event:
    """One entry of a task's log. `data` may be shared by every follower of the task
    (the notifier hands the appended event, as stored, to each): read it, do not change
    it.

    A store may give `data` as the JSON text it stored: it is decoded on first read. An
    event waits in memory for its followers, and a crowd's thousands of streams hold
    thousands of them when a burst of cancels comes; as text, one is a fifth the size."""

    __slots__ = ("_data", "created_at", "final", "kind", "seq", "task_id")

    def __init__(
        self,
        task_id: str,
        seq: int,
        kind: EventKind,
        data: dict[str, Any] | str,
        final: bool,
        created_at: float,
    ) -> None:
        self.task_id = task_id
        self.seq = seq
        self.kind = kind
        self._data = data
        self.final = final
        self.created_at = created_at

    @property
    def data(self) -> dict[str, Any]:
        data = self._data
        if isinstance(data, str):
            data = self._data = json.loads(data)
        return data

    def _fields(self) -> tuple[Any, ...]:
        return (self.task_id, self.seq, self.kind, self.data, self.final, self.created_at)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # its data is a dict

    def __repr__(self) -> str:
        return f"Event{self._fields()!r}"


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[TaskRecord]
    next_page_token: str
    total_size: int


@dataclass(frozen=True, slots=True)
class TaskListing:
    """The two statements of a `list_tasks` call, in one backend's SQL."""

    page_sql: LiteralString
    page_params: list[Any]
    count_sql: LiteralString
    count_params: list[Any]
    page_size: int

    def page(self, records: list[TaskRecord], total: int) -> TaskPage:
        """The page from the records the page statement found (one more than a page
        when there is a next one)."""
        shown = records[: self.page_size]
        token = ""
        if len(records) > self.page_size and shown:
            token = encode_page_token(shown[-1].created_at, shown[-1].id)
        return TaskPage(shown, token, total)


def task_listing(
    *,
    table: LiteralString,
    columns: LiteralString,
    mark: LiteralString,
    state_in: LiteralString,
    state_values: Callable[[list[str]], Any],
    owner: str | None,
    context_id: str | None,
    states: Collection[TaskState] | None,
    page_size: int,
    page_token: str | None,
) -> TaskListing:
    """`list_tasks` as SQL: `mark` is the backend's placeholder, `state_in` its test of
    the state against one parameter holding a list (made by `state_values`). Newest
    first, keyed by (created_at, id) so a page token stays valid as tasks come."""
    where: list[LiteralString] = []
    params: list[Any] = []
    if owner is not None:
        where.append("owner = " + mark)
        params.append(owner)
    if context_id is not None:
        where.append("context_id = " + mark)
        params.append(context_id)
    if states is not None:
        where.append(state_in)
        params.append(state_values([s.value for s in states]))
    count_sql = "SELECT count(*) FROM " + table + (" WHERE " + " AND ".join(where) if where else "")
    count_params = list(params)
    if page_token:
        created, task_id = decode_page_token(page_token)
        where.append("(created_at, id) < (" + mark + ", " + mark + ")")
        params.extend([created, task_id])
    page_sql = "SELECT " + columns + " FROM " + table
    page_sql += " WHERE " + " AND ".join(where) if where else ""
    page_sql += " ORDER BY created_at DESC, id DESC LIMIT " + mark
    params.append(page_size + 1)
    return TaskListing(page_sql, params, count_sql, count_params, page_size)


def encode_page_token(created_at: float, task_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{task_id}".encode()).decode()


def decode_page_token(token: str) -> tuple[float, str]:
    """Raises ValueError on a token no store made."""
    try:
        created, _, task_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return float(created), task_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid page token") from exc


def status_event_data(
    state: TaskState,
    message: dict[str, Any] | None,
    reason: str | None,
    at: float,
    prior: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A status event's data. `metadata` is what the transition added to the task (the
    stop time of a cancel, say), so a stream's final event carries it too."""
    data: dict[str, Any] = {"state": state.value, "timestamp": at}
    if state is TaskState.CANCELING:
        data["priorState"] = prior
    if message is not None:
        data["message"] = message
    if reason is not None:
        data["reason"] = reason
    if metadata:
        data["metadata"] = metadata
    return data


def fold_artifacts(events: list[Event]) -> list[Artifact]:
    """The task's artifacts from its log: each chunk replaces or extends its artifact."""
    artifacts: dict[str, Artifact] = {}
    for event in events:
        if event.kind != "artifact":
            continue
        chunk = Artifact.model_validate(event.data["artifact"])
        existing = artifacts.get(chunk.artifact_id)
        if event.data.get("append") and existing is not None:
            existing.parts.extend(chunk.parts)
            if chunk.metadata:  # a later chunk adds to what the artifact says of itself
                existing.metadata = {**(existing.metadata or {}), **chunk.metadata}
        else:
            artifacts[chunk.artifact_id] = chunk
    return list(artifacts.values())


HANDOVER_LIMIT = 256
"""Events a follower is handed at most between two takes: one that falls further behind
(its client reads slowly) reads them from the log, rather than holding them in memory."""


class Wake:
    """A follower's flag, and what was appended to its task's log since it was last
    cleared: the events themselves when the store handed them over, None when it did
    not (the follower then reads the log).

    An asyncio.Event for one waiter, without an Event's queue of waiters: every open
    stream and every waiting call holds one (a crowd, thousands)."""

    __slots__ = ("_notifier", "_set", "_task_id", "_waiter", "appended")

    def __init__(self, notifier: Notifier, task_id: str) -> None:
        self.appended: list[Event] | None = []
        self._set = False
        self._waiter: asyncio.Future[None] | None = None
        self._notifier = notifier
        self._task_id = task_id

    def __enter__(self) -> Wake:
        self._notifier._listeners[self._task_id].add(self)
        return self

    def __exit__(self, *_: object) -> None:
        self._notifier._forget(self._task_id, self)

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False
        self.appended = []

    async def wait(self) -> None:
        """Return once the flag is set (at once if it is); one waiter at a time."""
        if self._set:
            return
        if self._waiter is not None:
            raise RuntimeError("a Wake has one waiter at a time")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self, after_seq: int) -> list[Event] | None:
        """Clear the flag, and return the events after `after_seq` appended since it
        was last cleared, if they are known and none is missing; else None."""
        appended = self.appended
        self.clear()
        if appended is None:
            return None
        appended = [event for event in appended if event.seq > after_seq]
        for expected, event in enumerate(appended, start=after_seq + 1):
            if event.seq != expected:
                return None
        return appended


class Notifier:
    """Wakes the followers of a task's log when events are appended to it.

    The store publishes after every write, with the events it appended when it has
    them at hand (a follower then need not read them back); a follower clears its flag
    *before* it reads, so an append between the read and the wait is never missed.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, set[Wake]] = defaultdict(set)
        self._watchers: set[asyncio.Event] = set()
        """Woken by every task's appends (the push sender while it has work)."""
        self.closed = False
        """The process is stopping: followers deliver what is stored, then stop waiting."""

    def listen(self, task_id: str) -> Wake:
        """A flag set at each change of the task's log, while its `with` block runs."""
        return Wake(self, task_id)

    def _forget(self, task_id: str, wake: Wake) -> None:
        listeners = self._listeners.get(task_id)
        if listeners is not None:
            listeners.discard(wake)
            if not listeners:
                del self._listeners[task_id]

    def publish(self, task_id: str, appended: Sequence[Event] | None = None) -> None:
        """The task's log (or record) changed; `appended`, when given, is every event
        the change added, in order."""
        for wake in self._listeners.get(task_id, ()):
            if (
                appended is None
                or wake.appended is None
                or len(wake.appended) + len(appended) > HANDOVER_LIMIT
            ):
                wake.appended = None
            else:
                wake.appended.extend(appended)
            wake.set()
        for flag in self._watchers:
            flag.set()

    def watch_all(self, flag: asyncio.Event, watching: bool) -> None:
        """Set `flag` on every task's appends (`watching`), or no longer."""
        if watching:
            self._watchers.add(flag)
        else:
            self._watchers.discard(flag)

    def publish_all(self) -> None:
        """Wake every follower: events may have come unannounced (a lost connection)."""
        for listeners in self._listeners.values():
            for wake in listeners:
                wake.appended = None
                wake.set()
        for flag in self._watchers:
            flag.set()

    def close(self) -> None:
        """Wake every follower for the last time: the process is stopping."""
        self.closed = True
        self.publish_all()

    def listener_count(self, task_id: str) -> int:
        return len(self._listeners.get(task_id, ()))


class Store(abc.ABC):
    """What every backend provides; `tests/test_store_contract.py` holds it to this.

    After each commit a backend wakes the task's followers (`notifier`) and reports the
    change to its `observer`: `task_created`, `task_changed` (every transition, those of
    `fail_unfinished` included), `event_appended`; `store_committed` for each transaction
    of task writes it commits (one per loop turn that wrote); and `store_failed` when an
    operation raises."""

    push: PushStore
    """Push notification configs and their outbox (andon/store/push.py)."""

    def __init__(self) -> None:
        self.notifier = Notifier()
        self.observer: Observer = NO_OBSERVER

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def create_task(self, task: NewTask, message: dict[str, Any]) -> TaskRecord:
        """Insert a `submitted` task with the user's message and status as its first events."""

    @abc.abstractmethod
    async def get_task(self, task_id: str) -> TaskRecord | None: ...

    @abc.abstractmethod
    async def list_tasks(
        self,
        *,
        owner: str | None = None,
        context_id: str | None = None,
        states: Collection[TaskState] | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> TaskPage:
        """Newest first. `owner=None` lists every owner's tasks (operators)."""

    @abc.abstractmethod
    async def transition(
        self,
        task_id: str,
        *,
        sources: Collection[TaskState],
        target: TaskState,
        epoch: int | None = None,
        claim: bool = False,
        reason: str | None = None,
        message: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> TaskRecord | None:
        """Compare-and-set the state and append its status event, in one transaction.

        Succeeds only if the task is in one of `sources` (and, when given, still at
        `epoch`); returns the new record, or None when the set lost. `claim` starts a
        new attempt: the epoch goes up by one. `reason` is stored with the task and is
        kept by later transitions unless they give their own. Raises IllegalTransition
        when the state machine never allows the move.
        """

    @abc.abstractmethod
    async def append(
        self, task_id: str, epoch: int, kind: EventKind, data: dict[str, Any]
    ) -> Event | None:
        """Append a non-status event for the attempt `epoch`.

        Refused (None) when the task has ended or belongs to another attempt, so a
        stale or torn-down attempt can never write.
        """

    @abc.abstractmethod
    async def record_child(self, task_id: str, epoch: int, child: dict[str, Any]) -> bool:
        """Add `child` (a task delegated to another agent: where, and its id) to the
        list under the task's `andon.children` metadata, for the attempt `epoch`.

        Refused (False) when the task has ended or belongs to another attempt. Two
        children recorded at once are both kept."""

    @abc.abstractmethod
    async def events(
        self, task_id: str, after_seq: int = 0, *, with_progress: bool = True
    ) -> list[Event]:
        """The task's events after `after_seq`, in order. `with_progress=False` leaves
        out progress events, which a Task view folds none of: a long task's log is
        mostly those, and a GetTask or a cancel answer need not decode them."""

    async def task_and_messages(self, task_id: str) -> tuple[TaskRecord | None, list[Any]]:
        """The task's record and the data of its message events, in order: what an
        attempt reads once it is registered. A store that can reads both at once."""
        record = await self.get_task(task_id)
        events = await self.events(task_id, with_progress=False)
        return record, [event.data for event in events if event.kind == "message"]

    @abc.abstractmethod
    async def fail_unfinished(
        self, reason: str, message: dict[str, Any] | None = None
    ) -> list[str]:
        """Fail every task left active by a process that died, with `reason` and the
        status `message` (a dumped Message); return their ids.

        Submitted tasks are left alone: they never started and are dispatched again.
        """

    @abc.abstractmethod
    async def submitted_ids(self) -> list[str]:
        """Ids of tasks still waiting to start, oldest first (dispatched again on start)."""

    async def committed(self) -> None:
        """Return once every write made before this call is committed. A backend may
        commit the writes of one loop turn together (group commit) and answer them
        before: whatever shows a write outside the process (an answer, a streamed
        event) waits for this first. A backend whose writes return once committed
        (PostgreSQL) has nothing to wait for."""
        return

    async def begin_cancel(
        self, task_id: str, sources: Collection[TaskState], reason: str, mode: CancelMode
    ) -> TaskRecord | None:
        """Compare-and-set a running task to `canceling`, storing the cancel's reason and
        mode: the record that whoever stops the attempt reads (None: the set lost)."""
        text = f"canceling (reason: {reason})"
        return await self.transition(
            task_id,
            sources=sources,
            target=TaskState.CANCELING,
            reason=reason,
            message=agent_text(text),
            metadata={CANCEL_MODE: mode.value},
        )

    async def ping(self) -> None:
        """Raise unless the storage answers (a readiness probe)."""
        await self.get_task("")

    async def follow(self, task_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        """Yield the task's events after `after_seq`, then new ones as they come,
        until (and including) the final event, or until the notifier closes."""
        first = True
        with self.notifier.listen(task_id) as wake:
            wake.clear()
            batch: list[Event] | None = await self.events(task_id, after_seq)
            while True:
                if batch:
                    await self.committed()
                    for event in batch:
                        yield event
                        after_seq = event.seq
                        if event.final:
                            return
                    batch = None  # not kept while waiting: a crowd's followers all wait
                # Followed from after its final event: there is nothing left to wait for.
                elif first and await self._ended_without_final(task_id, after_seq):
                    return
                first = False
                if not wake.is_set():
                    if self.notifier.closed:
                        return  # without the final event: the caller says why
                    await wake.wait()
                # What was appended meanwhile, as the store handed it over; read from
                # the log when it did not, or when any of it is missing.
                batch = wake.take(after_seq)
                if batch is None:
                    batch = await self.events(task_id, after_seq)

    async def _ended_without_final(self, task_id: str, after_seq: int) -> bool:
        record = await self.get_task(task_id)
        return record is None or (record.state.terminal and record.last_seq <= after_seq)
