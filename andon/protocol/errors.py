"""A2A errors: one exception class per JSON-RPC error code of the specification."""

from __future__ import annotations

from typing import Any, ClassVar


class A2AError(Exception):
    code: ClassVar[int] = -32603
    http_status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal error"
    # google.rpc.ErrorInfo reason of A2A 1.0 error details (UPPER_SNAKE name, no "Error")
    reason: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        self.message = message or self.default_message
        self.data = data
        super().__init__(self.message)


class JSONParseError(A2AError):
    code, http_status, default_message = -32700, 400, "Invalid JSON payload"
    reason = "JSON_PARSE"


class InvalidRequest(A2AError):
    code, http_status, default_message = -32600, 400, "Request payload validation error"
    reason = "INVALID_REQUEST"


class MethodNotFound(A2AError):
    code, http_status, default_message = -32601, 404, "Method not found"
    reason = "METHOD_NOT_FOUND"


class InvalidParams(A2AError):
    code, http_status, default_message = -32602, 400, "Invalid parameters"
    reason = "INVALID_PARAMS"


class InternalError(A2AError):
    code, http_status, default_message = -32603, 500, "Internal error"
    reason = "INTERNAL_ERROR"


class TaskNotFound(A2AError):
    code, http_status, default_message = -32001, 404, "Task not found"
    reason = "TASK_NOT_FOUND"


class TaskNotCancelable(A2AError):
    code, http_status, default_message = -32002, 409, "Task cannot be canceled"
    reason = "TASK_NOT_CANCELABLE"


class PushNotificationNotSupported(A2AError):
    code, http_status, default_message = -32003, 400, "Push Notification is not supported"
    reason = "PUSH_NOTIFICATION_NOT_SUPPORTED"


class UnsupportedOperation(A2AError):
    code, http_status, default_message = -32004, 400, "This operation is not supported"
    reason = "UNSUPPORTED_OPERATION"


class ContentTypeNotSupported(A2AError):
    code, http_status, default_message = -32005, 415, "Incompatible content types"
    reason = "CONTENT_TYPE_NOT_SUPPORTED"


class InvalidAgentResponse(A2AError):
    code, http_status, default_message = -32006, 502, "Invalid agent response"
    reason = "INVALID_AGENT_RESPONSE"


class ExtendedAgentCardNotConfigured(A2AError):
    code, http_status, default_message = -32007, 400, "Extended agent card is not configured"
    reason = "EXTENDED_AGENT_CARD_NOT_CONFIGURED"


class ExtensionSupportRequired(A2AError):
    code, http_status, default_message = -32008, 400, "A required extension is not supported"
    reason = "EXTENSION_SUPPORT_REQUIRED"


class VersionNotSupported(A2AError):
    code, http_status, default_message = -32009, 400, "This A2A protocol version is not supported"
    reason = "VERSION_NOT_SUPPORTED"
