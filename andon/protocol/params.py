"""Canonical parameters of the methods andon serves (and the ListTasks result), shaped
like A2A 1.0.

The codecs turn each version's wire params into these models; the server hands them to
TaskService. Fields andon adds to A2A (cancel reason, wait, mode; a subscriber's last
event id) are typed here, wherever on the wire they arrived from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, Field, StrictBool, StrictInt, model_validator

from andon.protocol.types import CancelReason, Message, Model, Task, TaskState

# Clients written for other servers name the task `taskId`; A2A names it `id`.
_TASK_ID = Field(min_length=1, validation_alias=AliasChoices("id", "taskId"))


class PushNotificationAuth(Model):
    scheme: str
    credentials: str | None = None


class PushNotificationConfig(Model):
    url: str
    id: str | None = None
    token: str | None = None
    authentication: PushNotificationAuth | None = None


class SendMessageConfiguration(Model):
    accepted_output_modes: list[str] | None = None
    history_length: StrictInt | None = Field(default=None, ge=0)
    return_immediately: StrictBool = False
    """A JSON boolean: `0` or `"yes"` would guess the client's intent."""
    push_notification_config: PushNotificationConfig | None = None

    @property
    def blocking(self) -> bool:
        return not self.return_immediately


class SendMessageParams(Model):
    message: Message
    configuration: SendMessageConfiguration | None = None
    metadata: dict[str, Any] | None = None


class GetTaskParams(Model):
    id: str = _TASK_ID
    history_length: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None


class ListTasksParams(Model):
    context_id: str | None = None
    status: TaskState | None = Field(default=None, validation_alias=AliasChoices("status", "state"))
    page_size: int = Field(default=50, ge=1, le=100)
    page_token: str | None = None
    history_length: int | None = Field(default=None, ge=0)
    include_artifacts: bool = False
    # `lastUpdatedAfter` (milliseconds since epoch) is its name in the JSON-RPC `tasks/list`
    # drafted between 0.3 and 1.0, which 0.3-era clients send.
    status_timestamp_after: datetime | None = Field(
        default=None, validation_alias=AliasChoices("statusTimestampAfter", "lastUpdatedAfter")
    )


class ListTasksResult(Model):
    tasks: list[Task]
    next_page_token: str = ""
    page_size: int
    total_size: int


# andon's cancel options travel in metadata, where A2A clients can put them, or as
# top-level fields, which andon's own client sends.
_CANCEL_OPTIONS = {"reason": "andon.reason", "wait": "andon.wait", "mode": "andon.mode"}


class CancelTaskParams(Model):
    id: str = _TASK_ID
    metadata: dict[str, Any] | None = None
    reason: CancelReason | None = None
    wait: float | None = Field(default=None, ge=0)
    """Seconds the call may wait for the task to stop; None means the server's default."""
    mode: Literal["immediate", "graceful"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _lift_options(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
            return data
        metadata = dict(data["metadata"])
        found = {
            field: metadata.pop(key) for field, key in _CANCEL_OPTIONS.items() if key in metadata
        }
        if not found:
            return data
        # A top-level field wins over its metadata twin.
        lifted = {field: value for field, value in found.items() if data.get(field) is None}
        return {**data, **lifted, "metadata": metadata or None}

    def wire_metadata(self) -> dict[str, Any] | None:
        """Metadata with the options put back under their `andon.*` keys."""
        options = self.model_dump(mode="json", include=set(_CANCEL_OPTIONS), exclude_none=True)
        merged = {**(self.metadata or {}), **{_CANCEL_OPTIONS[k]: v for k, v in options.items()}}
        return merged or None


class SubscribeParams(Model):
    id: str = _TASK_ID
    metadata: dict[str, Any] | None = None
    last_event_id: str | None = None
    """Resume after this event (andon extension; the SSE `Last-Event-ID` header also works)."""

    @model_validator(mode="before")
    @classmethod
    def _event_id_as_text(cls, data: Any) -> Any:
        # A client may send the id as the number it looks like.
        if isinstance(data, dict):
            value = data.get("lastEventId")
            if isinstance(value, int) and not isinstance(value, bool):
                return {**data, "lastEventId": str(value)}
        return data


class CancelManyParams(Model):
    """andon extension: cancel tasks by ids, or every unfinished one of a context / states."""

    ids: list[str] | None = None
    context_id: str | None = None
    states: list[TaskState] | None = None
    reason: CancelReason = CancelReason.OPERATOR
    wait: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _some_selector(self) -> CancelManyParams:
        if self.ids is None and self.context_id is None and self.states is None:
            raise ValueError("give ids, contextId or states")
        return self


class RetryParams(Model):
    """andon extension: run an ended task again as a new task in the same context."""

    id: str = _TASK_ID


_PUSH_TASK = Field(min_length=1, validation_alias=AliasChoices("taskId", "task_id"))


class PushConfigParams(Model):
    """CreateTaskPushNotificationConfig (0.3 tasks/pushNotificationConfig/set)."""

    task_id: str = _PUSH_TASK
    config: PushNotificationConfig


class PushConfigRef(Model):
    """Get/DeleteTaskPushNotificationConfig: a task's config by its id."""

    task_id: str = _PUSH_TASK
    id: str = Field(min_length=1)


class ListPushConfigsParams(Model):
    task_id: str = _PUSH_TASK


class ExtendedCardParams(Model):
    """GetExtendedAgentCard takes nothing but the caller's credentials."""


Params = (
    SendMessageParams
    | GetTaskParams
    | ListTasksParams
    | CancelTaskParams
    | SubscribeParams
    | CancelManyParams
    | RetryParams
    | ExtendedCardParams
    | PushConfigParams
    | PushConfigRef
    | ListPushConfigsParams
)
