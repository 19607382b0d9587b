"""andon: serve Python agents over A2A, where cancel means stop."""

from andon.node.parts import open_service
from andon.runtime.agent import Agent, Skill
from andon.runtime.context import (
    CommandFailed,
    CommandResult,
    SyncTaskContext,
    TaskContext,
    TaskFailed,
)
from andon.runtime.current import current_task, task_http_client
from andon.runtime.delegation import RemoteTaskFailed
from andon.runtime.scope import CancelMode, TaskCancelled
from andon.runtime.supervisor import RuntimeSettings
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
    "current_task",
    "open_service",
    "task_http_client",
]
