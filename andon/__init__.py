"""andon: serve Python agents over A2A, where cancel means stop."""

from andon.node.parts import open_service
from andon.protocol.types import CancelMode
from andon.runtime.agent import Agent, Skill
from andon.runtime.attempt import RuntimeSettings
from andon.runtime.blocking import SyncTaskContext
from andon.runtime.context import (
    CommandFailed,
    CommandResult,
    RemoteTaskFailed,
    TaskContext,
    TaskFailed,
)
from andon.runtime.current import current_task, task_http_client
from andon.runtime.scope import TaskCancelled
from andon.runtime.threads import check
from andon.service import ContextPolicy, Principal, ServiceSettings, TaskService

__all__ = [
    "Agent",
    "CancelMode",
    "CommandFailed",
    "CommandResult",
    "ContextPolicy",
    "Principal",
    "RemoteTaskFailed",
    "RuntimeSettings",
    "ServiceSettings",
    "Skill",
    "SyncTaskContext",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskService",
    "check",
    "current_task",
    "open_service",
    "task_http_client",
]
