"""The canonical A2A model set (shaped like A2A 1.0, field names in camelCase on the wire).

Every layer of andon speaks these models; the codecs in this package translate them to
and from the 1.0 and 0.3 wire forms.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def new_id() -> str:
    """128 random bits in hex: as unguessable as a uuid4 (122 bits), five times cheaper
    to make, and every message of every progress step needs one."""
    return os.urandom(16).hex()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=False
    )

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class TaskState(StrEnum):
    SUBMITTED = "submitted"
    WORKING = "working"
    INPUT_REQUIRED = "input-required"
    AUTH_REQUIRED = "auth-required"
    CANCELING = "canceling"  # internal only: shown on the wire as the state it had
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELED, TaskState.REJECTED}
)
ACTIVE_STATES = frozenset(
    {TaskState.WORKING, TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED, TaskState.CANCELING}
)


class CancelReason(StrEnum):
    USER = "user"
    CLIENT_DISCONNECT = "client_disconnect"
    ORPHANED = "orphaned"
    TIMEOUT = "timeout"
    INPUT_TIMEOUT = "input_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    SUPERSEDED = "superseded"
    OPERATOR = "operator"
    SHUTDOWN = "shutdown"
    PARENT_CANCELED = "parent_canceled"
    """The task was delegated by another agent's task (`ctx.call_agent`), and that
    task stopped: cancelled, lost with its worker, or ended without waiting for it."""


class CancelMode(StrEnum):
    """How a cancel asks the work to stop: `immediate` at its next await, `graceful`
    after its current step (within the graceful period)."""

    IMMEDIATE = "immediate"
    GRACEFUL = "graceful"


DIRECT_REPLY = "andon.directReply"
"""Task metadata: the agent answered with a message (`TaskContext.reply`)."""

STREAM_END = "andon.streamEnd"
"""Event metadata on the last event of a stream the server ended, not the task (the
server is stopping): why it ended. The stream is to be resumed."""

CANCEL_MODE = "andon.cancelMode"
"""Task metadata written with `canceling`: the mode the cancel asked for. With the
stored reason it is the one carrier of a cancel: whoever stops the attempt reads both
from the task's record."""


class FailReason(StrEnum):
    ERROR = "error"
    CANCEL_TIMEOUT = "cancel_timeout"
    WORKER_LOST = "worker_lost"


class Role(StrEnum):
    USER = "user"
    AGENT = "agent"


class Part(Model):
    """One piece of content: exactly one of text, raw (base64), url or data."""

    text: str | None = None
    raw: str | None = None
    url: str | None = None
    data: Any = None
    media_type: str | None = None
    filename: str | None = None
    metadata: dict[str, Any] | None = None


class Message(Model):
    message_id: str = Field(default_factory=new_id)
    role: Role
    parts: list[Part]
    context_id: str | None = None
    task_id: str | None = None
    reference_task_ids: list[str] | None = None
    extensions: list[str] | None = None
    metadata: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if p.text is not None)


class Artifact(Model):
    artifact_id: str = Field(default_factory=new_id)
    name: str | None = None
    description: str | None = None
    parts: list[Part]
    metadata: dict[str, Any] | None = None
    extensions: list[str] | None = None


class TaskStatus(Model):
    state: TaskState
    message: Message | None = None
    timestamp: str = Field(default_factory=utc_now)


class Task(Model):
    id: str
    context_id: str
    status: TaskStatus
    artifacts: list[Artifact] | None = None
    history: list[Message] | None = None
    metadata: dict[str, Any] | None = None


class TaskStatusUpdateEvent(Model):
    kind: Literal["status-update"] = "status-update"
    task_id: str
    context_id: str
    status: TaskStatus
    final: bool = False
    metadata: dict[str, Any] | None = None


class TaskArtifactUpdateEvent(Model):
    kind: Literal["artifact-update"] = "artifact-update"
    task_id: str
    context_id: str
    artifact: Artifact
    append: bool = False
    last_chunk: bool = False
    metadata: dict[str, Any] | None = None


def text_message(role: Role, text: str, **fields: Any) -> Message:
    return Message(role=role, parts=[Part(text=text)], **fields)


def agent_text(text: str, task_id: str | None = None) -> dict[str, Any]:
    """An agent's message of one text part, as stored and sent: what
    `Message(role=Role.AGENT, parts=[Part(text=text)], task_id=task_id).dump()` gives,
    without building the model (every progress step of every task makes one)."""
    if not isinstance(text, str):  # the model would refuse it; stored, it breaks every read
        raise TypeError(f"a message's text must be a str, not {type(text).__name__}")
    message: dict[str, Any] = {"messageId": new_id(), "role": "agent", "parts": [{"text": text}]}
    if task_id is not None:
        message["taskId"] = task_id
    return message
