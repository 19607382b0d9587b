"""What the client raises: one class per thing a caller (or a person) can act on.

Transport problems (`ServerUnreachable`, `Unauthorized`, `StreamLost`, `ProtocolError`)
come from HTTP; `RemoteError` and its subclasses are the JSON-RPC errors the server
answered, chosen by their A2A error code (andon.protocol.errors lists the codes).
"""

from __future__ import annotations

from typing import Any

from andon.protocol import errors as a2a


class ClientError(Exception):
    """Base of every error the andon client raises."""


class ServerUnreachable(ClientError):
    """No connection to the server (refused, no route, DNS, timeout)."""

    def __init__(self, url: str, cause: str = "") -> None:
        self.url = url
        self.cause = cause
        detail = f" ({cause})" if cause else ""
        super().__init__(f"cannot reach the server at {url}{detail}")


class Unauthorized(ClientError):
    """HTTP 401: no bearer token was sent, or the server refused it."""

    def __init__(self, url: str, message: str, *, token_given: bool) -> None:
        self.url = url
        self.message = message
        self.token_given = token_given
        super().__init__(f"{url}: {message}")


class ProtocolError(ClientError):
    """The server answered something that is not A2A JSON-RPC (wrong URL, proxy page)."""


class StreamLost(ClientError):
    """A stream dropped and could not be resumed within the allowed attempts."""

    def __init__(self, message: str, task_id: str | None, last_event_id: int | None) -> None:
        self.task_id = task_id
        self.last_event_id = last_event_id
        super().__init__(message)


class RemoteError(ClientError):
    """A JSON-RPC error the server answered; `code` is its A2A / JSON-RPC code."""

    code: int = a2a.InternalError.code

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        if code is not None:
            self.code = code
        self.message = message
        self.data = data
        super().__init__(message)


class TaskNotFound(RemoteError):
    code = a2a.TaskNotFound.code


class TaskNotCancelable(RemoteError):
    code = a2a.TaskNotCancelable.code


class UnsupportedOperation(RemoteError):
    code = a2a.UnsupportedOperation.code


class VersionNotSupported(RemoteError):
    """The server does not speak the A2A version the client asked for."""

    code = a2a.VersionNotSupported.code


class MethodNotFound(RemoteError):
    code = a2a.MethodNotFound.code


class InvalidParams(RemoteError):
    code = a2a.InvalidParams.code


_BY_CODE: dict[int, type[RemoteError]] = {
    cls.code: cls
    for cls in (
        TaskNotFound,
        TaskNotCancelable,
        UnsupportedOperation,
        VersionNotSupported,
        MethodNotFound,
        InvalidParams,
    )
}


def remote_error(error: Any) -> RemoteError:
    """The exception for a JSON-RPC `error` object."""
    if not isinstance(error, dict):
        return RemoteError(f"malformed error: {error!r}")
    code = error.get("code")
    message = str(error.get("message") or "error")
    if not isinstance(code, int) or isinstance(code, bool):
        return RemoteError(message, data=error.get("data"))
    return _BY_CODE.get(code, RemoteError)(message, code, error.get("data"))
