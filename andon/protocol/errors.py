"""A2A errors: one exception class per JSON-RPC error code of the specification."""

from __future__ import annotations

from typing import Any, ClassVar


class A2AError(Exception):
    code: ClassVar[int] = -32603
    http_status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        self.message = message or self.default_message
        self.data = data
        super().__init__(self.message)


class JSONParseError(A2AError):
    code, http_status, default_message = -32700, 400, "Invalid JSON payload"


class InvalidRequest(A2AError):
    code, http_status, default_message = -32600, 400, "Request payload validation error"


class MethodNotFound(A2AError):
    code, http_status, default_message = -32601, 404, "Method not found"


class InvalidParams(A2AError):
    code, http_status, default_message = -32602, 400, "Invalid parameters"


class InternalError(A2AError):
    code, http_status, default_message = -32603, 500, "Internal error"


class TaskNotFound(A2AError):
    code, http_status, default_message = -32001, 404, "Task not found"


class TaskNotCancelable(A2AError):
    code, http_status, default_message = -32002, 409, "Task cannot be canceled"


class PushNotificationNotSupported(A2AError):
    code, http_status, default_message = -32003, 400, "Push Notification is not supported"


class UnsupportedOperation(A2AError):
    code, http_status, default_message = -32004, 400, "This operation is not supported"


class ContentTypeNotSupported(A2AError):
    code, http_status, default_message = -32005, 415, "Incompatible content types"


class InvalidAgentResponse(A2AError):
    code, http_status, default_message = -32006, 502, "Invalid agent response"


class ExtendedAgentCardNotConfigured(A2AError):
    code, http_status, default_message = -32007, 400, "Extended agent card is not configured"


class ExtensionSupportRequired(A2AError):
    code, http_status, default_message = -32008, 400, "A required extension is not supported"


class VersionNotSupported(A2AError):
    code, http_status, default_message = -32009, 400, "This A2A protocol version is not supported"
