"""The andon client: `AndonClient` (async) and `Client` (blocking) speak A2A 1.0 or 0.3
to an andon server (or any A2A server), with andon's extensions; the `andon` command
line (send, watch, tasks, cancel, retry) is built on them.

    from andon.client import Client

    with Client("http://127.0.0.1:8000") as client:
        for event in client.stream("sleep 3", on_disconnect="cancel"):
            print(event.seq, event.state)
"""

from andon.client.api import (
    DEFAULT_URL,
    AndonClient,
    CancelResult,
    EventStream,
    StreamEvent,
    user_message,
)
from andon.client.discover import Interface, choose, discover
from andon.client.errors import (
    ClientError,
    InvalidParams,
    MethodNotFound,
    ProtocolError,
    RemoteError,
    ServerUnreachable,
    StreamLost,
    TaskNotCancelable,
    TaskNotFound,
    Unauthorized,
    UnsupportedOperation,
    VersionNotSupported,
)
from andon.client.sync import Client
from andon.protocol.params import PushNotificationAuth, PushNotificationConfig

__all__ = [
    "DEFAULT_URL",
    "AndonClient",
    "CancelResult",
    "Client",
    "ClientError",
    "EventStream",
    "Interface",
    "InvalidParams",
    "MethodNotFound",
    "ProtocolError",
    "PushNotificationAuth",
    "PushNotificationConfig",
    "RemoteError",
    "ServerUnreachable",
    "StreamEvent",
    "StreamLost",
    "TaskNotCancelable",
    "TaskNotFound",
    "Unauthorized",
    "UnsupportedOperation",
    "VersionNotSupported",
    "choose",
    "discover",
    "user_message",
]
